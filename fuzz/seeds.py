#!/usr/bin/env python3
"""Writes the seed inputs and the libFuzzer dictionary of one fuzz target.

    python3 fuzz/seeds.py key_file CORPUS_DIR DICT_FILE
    python3 fuzz/seeds.py process  CORPUS_DIR DICT_FILE
    python3 fuzz/seeds.py scheme_config CORPUS_DIR DICT_FILE

A target this script does not know gets an empty corpus and dictionary (and
a note on stderr): libFuzzer then starts from scratch.

Seeds come from the golden vectors (testdata/vectors/*.json), so they are
generated, not committed: valid key files for `key_file`; for `process` the
byte layout of `tracemark_core::internal::fuzz_process` (one length byte, a
scheme string, 16 history bytes, little-endian f32 logits); the scheme
strings alone for `scheme_config`. Seed files are named by their SHA-256, so
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


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    target, corpus, dictionary = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    known = {"key_file": key_file_seeds, "process": process_seeds, "scheme_config": scheme_config_seeds}
    if target not in known:
        print(f"no seeds for fuzz target `{target}` (add them to fuzz/seeds.py)", file=sys.stderr)
    seeds, tokens = known[target]() if target in known else ([], [])
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = corpus / hashlib.sha256(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
    dictionary.parent.mkdir(parents=True, exist_ok=True)
    # libFuzzer dictionary entries are C-escaped strings in double quotes.
    escape = lambda t: "".join(c if c.isalnum() or c in ":=,-_. " else f"\\x{ord(c):02x}" for c in t)
    dictionary.write_text("".join(f'"{escape(t)}"\n' for t in tokens))
    print(f"{len(seeds)} seeds, {len(tokens)} dictionary entries", file=sys.stderr)


if __name__ == "__main__":
    main()
