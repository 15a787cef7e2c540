#!/usr/bin/env python3
"""Reference implementation of sentence segmentation version 1 (docs/SPEC.md
section 15) that writes the golden vectors testdata/sentences/v1.json.

Standard library only, written from the spec text, independent of the Rust
code: the verifier's unit tests (verifier/src/text/sentences.rs) and pytest
(watermark-py/tests/test_sentences.py, which also runs `segment` below on
every case) check the library against what this file computes.

    python3 testdata/sentences/gen_sentences.py          # rewrite the vectors
    python3 testdata/sentences/gen_sentences.py --check  # fail if the committed vectors differ
"""

import json
import sys
import unicodedata
from pathlib import Path

VERSION = 1
OUT = Path(__file__).resolve().parent / f"v{VERSION}.json"

# Rule 1: line breaks (exactly the characters str.splitlines splits at).
LINE_BREAKS = set("\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029")
# White space: the Unicode White_Space property (Rust's char::is_whitespace).
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                  "\u200a\u2028\u2029\u202f\u205f\u3000")
SPACED = set(".!?\u2026")
IDEOGRAPHIC = set("\u3002\uff01\uff1f\uff61")
CLOSERS = set("\"')]}*_\u2019\u201d\u00bb\u300d\u300f\uff09")
ABBREVIATIONS = {"Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "vs", "cf", "al", "Fig", "Eq"}


def ascii_alnum(c):
    return c.isascii() and c.isalnum()


def ends_sentence(line, start, run_start, run_end, end):
    """Rule 2 and 3: does the terminator run line[run_start:run_end], closed up to `end`, end the sentence?"""
    if any(c in IDEOGRAPHIC for c in line[run_start:run_end]):
        return True
    if end == len(line):
        return True
    if line[end] not in WHITE_SPACE:
        return False
    rest = [c for c in line[end:] if c not in WHITE_SPACE]
    if not rest:
        return True
    nxt = rest[0]
    if nxt.isascii() and (nxt.islower() or nxt.isdigit()):  # (a)
        return False
    if line[run_start:run_end] != ".":
        return True
    word_start = run_start
    while word_start > start and (ascii_alnum(line[word_start - 1]) or line[word_start - 1] == "."):
        word_start -= 1
    word = line[word_start:run_start]
    if (len(word) == 1 and word.isupper()) or "." in word or word in ABBREVIATIONS:  # (b), (c)
        return False
    only_word = all(c in WHITE_SPACE for c in line[start:word_start])
    return not (word != "" and word.isdigit() and only_word)  # (d)


def segment(text):
    """The sentences of `text` as code-point spans [start, end) (section 15)."""
    spans = []

    def push(a, b):
        while a < b and text[a] in WHITE_SPACE:
            a += 1
        while b > a and text[b - 1] in WHITE_SPACE:
            b -= 1
        if any(unicodedata.category(c)[0] in "LN" for c in text[a:b]):  # rule 4
            spans.append([a, b])

    offset = 0
    lines = []
    for i, c in enumerate(text):
        if c in LINE_BREAKS:
            lines.append((offset, text[offset:i]))
            offset = i + 1
    lines.append((offset, text[offset:]))
    for base, line in lines:
        start = i = 0
        while i < len(line):
            if line[i] not in SPACED and line[i] not in IDEOGRAPHIC:
                i += 1
                continue
            run_start = i
            while i < len(line) and (line[i] in SPACED or line[i] in IDEOGRAPHIC):
                i += 1
            run_end = i
            while i < len(line) and line[i] in CLOSERS:
                i += 1
            if ends_sentence(line, start, run_start, run_end, i):
                push(base + start, base + i)
                start = i
        push(base + start, base + len(line))
    return spans


CASES = [
    ("two plain sentences", "The cat sat. The dog ran."),
    ("question and exclamation", "Is it raining? Yes! Take an umbrella."),
    ("no terminator at the end", "First sentence. And a second without a full stop"),
    ("a line break ends a sentence", "A heading\nThe body starts here. It goes on."),
    ("CRLF, NEL, LS and PS are line breaks", "One\r\nTwo\x85Three\u2028Four\u2029Five"),
    ("blank lines and indentation", "\n\n   Indented sentence.   \n\n\tTabbed one.\n"),
    ("a lowercase word after the stop keeps the sentence", "See the results etc. and the appendix."),
    ("a digit after the stop keeps the sentence", "It is in vol. 3 of the series. Next one."),
    ("an abbreviation before a capital", "Dr. Watson met Mr. Holmes. They talked."),
    ("initialisms with inner dots", "He moved to the U.S. Army base. E.g. Fort Knox."),
    ("a single initial", "Written by J. R. R. Tolkien. A classic."),
    ("a single lowercase letter is no initial", "Set x = d. Then stop."),
    ("a numbered list", "Steps:\n1. Open the box.\n2. Take out the manual. Read it.\n10. Done."),
    ("a year before a capital is not a list number", "It ended in 2024. The next began."),
    ("a closing quote stays with its sentence", "She said \"Stop.\" Then she left."),
    ("an exclamation inside quotes before a lowercase word", "He shouted \"Run!\" and ran."),
    ("closing brackets and emphasis", "(This is aside.) **Bold sentence.** _Italic one._ Plain."),
    ("curly quotes and guillemets", "\u201cHello.\u201d \u00abBonjour.\u00bb \u2018Hi.\u2019 End."),
    ("ellipsis and repeated marks", "Wait... What?! Really\u2026 Yes."),
    ("an ellipsis before a lowercase word", "Well\u2026 maybe not."),
    ("decimals and versions", "Pi is 3.14 and Python is 3.11.7 now. Fine."),
    ("a URL", "Visit https://example.org/a.b?c=d. Then come back."),
    ("Chinese full stops need no space", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002\u6211\u4eec\u53bb\u516c\u56ed\u5427\uff01\u597d\u5417\uff1f"),
    ("a halfwidth ideographic full stop", "\u30c6\u30b9\u30c8\uff61\u6b21"),
    ("punctuation-only pieces are not sentences", "---\n***\n. . .\nReal text."),
    ("markdown bullets and headings", "# Title\n- first item\n- second item. With more.\n```\ncode()\n```"),
    ("non-breaking and ideographic spaces are white space", "One.\u00a0Two.\u3000Three."),
    ("a stop before the end of line with trailing spaces", "Last one.   "),
    ("empty text", ""),
    ("white space only", " \t \n \u3000 "),
    ("Cyrillic and Greek capitals after the stop", "\u041f\u0440\u0438\u0432\u0435\u0442. \u041a\u0430\u043a \u0434\u0435\u043b\u0430? \u0393\u03b5\u03b9\u03b1."),
    ("a non-ASCII lowercase word after the stop breaks", "Fin. \u00e9t\u00e9 chaud."),
    ("a figure reference", "See Fig. 4 and Eq. 2. They agree."),
    ("vs and cf", "Rust vs. Python. Cf. the table."),
    ("no space after the stop", "One.Two. Three."),
    ("code-like text", "x = a.b(c); y = d.e!f; done."),
]


def vectors():
    cases = []
    for name, text in CASES:
        spans = segment(text)
        cases.append({"name": name, "input": text, "sentences": [text[a:b] for a, b in spans], "spans": spans})
    return {
        "version": VERSION,
        "about": "Sentence segmentation v1 golden vectors (docs/SPEC.md section 15): input, sentences, and their "
                 "code-point spans [start, end). Written by testdata/sentences/gen_sentences.py; read by "
                 "verifier/src/text/sentences.rs's tests and watermark-py/tests/test_sentences.py.",
        "cases": cases,
    }


def main():
    text = json.dumps(vectors(), ensure_ascii=True, indent=1) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT} is not what {Path(__file__).name} writes: run it without --check")
        return
    OUT.write_text(text)
    print(OUT)


if __name__ == "__main__":
    main()
