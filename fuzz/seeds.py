#!/usr/bin/env python3
"""Writes the seed inputs and the libFuzzer dictionary of one fuzz target.

    python3 fuzz/seeds.py key_file CORPUS_DIR DICT_FILE
    python3 fuzz/seeds.py process  CORPUS_DIR DICT_FILE
    python3 fuzz/seeds.py scheme_config CORPUS_DIR DICT_FILE
    python3 fuzz/seeds.py text CORPUS_DIR DICT_FILE
    python3 fuzz/seeds.py corpus CORPUS_DIR DICT_FILE

A target this script does not know gets an empty corpus and dictionary (and
a note on stderr): libFuzzer then starts from scratch.

Seeds come from the golden vectors (testdata/vectors/*.json), so they are
generated, not committed: valid key files for `key_file`; for `process` the
byte layout of `tracemark_core::internal::fuzz_process` (one length byte, a
scheme string, 16 history bytes, little-endian f32 logits); the scheme
strings alone for `scheme_config`; tampered and multilingual text for `text`
(the verifier's text path); JSONL lines, good and bad, for `corpus`. Seed files are named by their SHA-256, so
writing them again changes nothing. Standard library only.
"""

import hashlib
import json
import math
import struct
import sys
from pathlib import Path

VECTORS = Path(__file__).resolve().parent.parent / "testdata" / "vectors"
CONTEXTS = ["lefthash:0", "lefthash:1", "lefthash:4", "minhash:4", "selfhash:4"]


def load(name):
    return json.loads((VECTORS / f"{name}.json").read_text())["cases"]


def key_file_seeds():
    files = [case["key_file"] for case in load("keys")]
    seeds = [f.encode() for f in files]
    seeds += [f.rstrip("\n").encode() for f in files]  # no newline
    seeds += [f.replace("\n", "\r\n").encode() for f in files]  # CRLF
    tokens = ["tracemark-key-v1:", ":", "\n", "\r\n", "0" * 64, "f" * 8]
    return seeds, tokens


def num(x):
    # Rust's f64 `FromStr` reads Python's repr of a float.
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def process_input(config, history, row):
    cfg = config.encode()
    hist = bytes(h % 64 for h in history)[:16].ljust(16, b"\0")
    floats = b"".join(struct.pack("<f", -math.inf if x is None else x) for x in row[:256])
    return bytes([len(cfg)]) + cfg + hist + floats


def process_seeds():
    seeds = []
    for c in load("kgw"):
        config = f"kgw:gamma={num(c['gamma'])},delta={num(c['delta'])},context={c['context']}"
        bits = c.get("row_in_bits") or [0] * min(c["vocab"], 64)
        row = [struct.unpack("<f", struct.pack("<I", b))[0] for b in bits]
        seeds.append(process_input(config, c["history"], row))
    for c in load("tournament"):
        config = (
            f"tournament:layers={c['layers']},top_k={c['top_k']},temperature={num(c['temperature'])},"
            f"leaves={c['leaves']},context={c['context']}"
        )
        seeds.append(process_input(config, c["history"], c["logits"]))
    for c in load("gumbel"):
        config = f"gumbel:temperature={num(c['temperature'])},context={c['context']}"
        seeds.append(process_input(config, c["history"], c["logits"]))
    tokens = ["kgw:", "tournament:", "gumbel:", "gamma=", "delta=", "context=", "layers=", "top_k=",
              "temperature=", "leaves=", ",", "NaN", "inf", "-inf", "1e-45", "0.5"] + CONTEXTS
    return seeds, tokens


def scheme_config_seeds():
    seeds, tokens = process_seeds()
    # The scheme strings alone: the bytes after the length byte, up to the history.
    return list(dict.fromkeys(s[1 : 1 + s[0]] for s in seeds)), tokens


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "the\u200b quick\u200b brown\u200b fox",  # zero-width spaces
    "wa\u200dter\u00adm\u200ear\u200fk",  # joiner, soft hyphen, bidi marks
    "t\U000e0041ag\ufe0fs and s\ufe00electors",
    "no\u00a0break\u2009thin\u3000ideographic\u2028line",
    "\uff46\uff55\uff4c\uff4c width \U0001d41a\U0001d41b",  # full width, math bold
    "\u0441\u0430\u0440 \u0440\u0435\u0430\u0441\u0435 \u03bf\u039f",  # Cyrillic and Greek look-alikes
    "cafe\u0301 de\u0301ja\u0300",  # decomposed accents
    "\U0001f469\u200d\U0001f4bb \U0001f44d\U0001f3fd 1\ufe0f\u20e3 \U0001f3f4\U000e0067\U000e0062\U000e007f",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u0600\u0661\u0662 \ufdfa \ufb00 \u338f \u115f\u1160\u3164",
    "\r\n\t  \u0085",
]


def text_seeds():
    seeds = [t.encode() for t in TEXTS] + [b"\xff\xfe broken \xc3", b""]
    tokens = ["\u200b", "\u200d", "\u00ad", "\u200e", "\ufe0f", "\u00a0", "\u3000", "\uff41", "\u0430",
              "\u0301", "\U0001f469", "\U000e0041", "\u2028", " the", "in"]
    return seeds, tokens


def corpus_seeds():
    lines = [
        json.dumps({"text": "w1 w2 w3 w4 w5 w6", "id": 1}),
        json.dumps({"prompt": "w9 w8", "text": "w1\u200b w2\u00a0w3 \uff57\uff14"}),
        json.dumps({"ids": [1, 2, 3, 4, 5], "prompt_ids": [7]}),
        json.dumps({"ids": [1, 2, 99999]}),
        json.dumps({"ids": "not ids"}),
        json.dumps({"text": ""}),
        '{"text": "unterminated',
        "[1, 2, 3]",
    ]
    seeds = ["\n".join(lines).encode(), lines[0].encode(), "\n\n\n".encode(), b"\xff\n{}"]
    tokens = ['"text"', '"ids"', '"prompt"', '"prompt_ids"', '"id"', "{", "}", "[", "]", ":", "\n", "\u200b"]
    return seeds, tokens


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    target, corpus, dictionary = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    known = {
        "key_file": key_file_seeds,
        "process": process_seeds,
        "scheme_config": scheme_config_seeds,
        "text": text_seeds,
        "corpus": corpus_seeds,
    }
    if target not in known:
        print(f"no seeds for fuzz target `{target}` (add them to fuzz/seeds.py)", file=sys.stderr)
    seeds, tokens = known[target]() if target in known else ([], [])
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = corpus / hashlib.sha256(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
    dictionary.parent.mkdir(parents=True, exist_ok=True)
    # libFuzzer dictionary entries are C-escaped bytes in double quotes (UTF-8 for text).
    escape = lambda t: "".join(
        chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in ":=,-_. ") else f"\\x{b:02x}" for b in t.encode()
    )
    dictionary.write_text("".join(f'"{escape(t)}"\n' for t in tokens))
    print(f"{len(seeds)} seeds, {len(tokens)} dictionary entries", file=sys.stderr)


if __name__ == "__main__":
    main()
