#!/usr/bin/env python3
"""What one uninterruptible tokenizer call costs: a mebibyte of each kind of text that has no
point the service may cut it at (one word, digits, CJK without punctuation, combining marks,
punctuation, spaces) and of prose, encoded whole by the `tokenizers` library (the Rust crate
the verifier links), one thread. Sizes `text::MAX_UNCUT` (docs/verifier.md, "Tokenisation that
can be stopped").

    RAYON_NUM_THREADS=1 python benches/tokenizer-cost.py "$(python3 scripts/fetch.py tokenizer)" [more tokenizer.json]
"""
import random
import sys
import time

from tokenizers import Tokenizer

M = 1 << 20
# The 1,000 most common Chinese characters, in no order that matters.
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def cases():
    rng = random.Random(1)
    return {
        "prose": ("the quick brown fox jumps over the lazy dog. " * 30000)[:M],
        "cjk, no punctuation": "".join(rng.choice(HANZI) for _ in range(M // 3)),
        "one word, one letter": "a" * M,
        "one word, random letters": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(M)),
        "combining marks": "e" + "\u0301" * (M // 2),
        "digits": "".join(rng.choice("0123456789") for _ in range(M)),
        "punctuation": "".join(rng.choice("!@#$%^&*()") for _ in range(M)),
        "spaces": " " * M,
    }


def main():
    texts = cases()
    for path in sys.argv[1:]:
        tokenizer = Tokenizer.from_file(path)
        for name, text in texts.items():
            t0 = time.perf_counter()
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            took = time.perf_counter() - t0
            mib = len(text.encode()) / M
            print(f"{path}: {name}: {mib:.2f} MiB, {len(ids)} ids, {took * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
