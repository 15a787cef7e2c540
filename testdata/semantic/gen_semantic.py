#!/usr/bin/env python3
"""Reference implementation of docs/SPEC.md §15.3 (the keyed semantic
partition) that writes the golden vectors testdata/semantic/v1.json and,
for chained regions (`chain=previous`), testdata/semantic/v1-chain.json.

Standard library only, written from the spec text, independent of the Rust
code (it borrows only §1's HMAC and SipHash from testdata/gen_vectors.py,
which the other golden vectors already pin): watermark-core's
tests/semantic.rs and watermark-py/tests/test_semantic_vectors.py check the
library and this file against each other.

    python3 testdata/semantic/gen_semantic.py          # rewrite v1.json and v1-chain.json
    python3 testdata/semantic/gen_semantic.py --check  # fail if either differs
"""

import hashlib
import json
import math
import random
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from gen_vectors import SPEC, f32, hmac_sha256, scheme_prf_key, siphash24, words  # noqa: E402

OUT = HERE / "v1.json"
OUT_CHAIN = HERE / "v1-chain.json"
MEAN_FILE = HERE / "reference-mean-v1.json"
DIM = 384
TAG_PLANE = 0x05000000
TAG_REGION = 0x06000000
TAG_CHAIN = 0x07000000
CHAIN_START = 0xFFFFFFFF
# SPEC §15.1's white space (Unicode White_Space).
WHITE_SPACE = set(map(chr, [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                            0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))


# ---- the reference mean ------------------------------------------------------

def mean_sha256(values) -> str:
    return hashlib.sha256(b"".join(struct.pack("<f", v) for v in values)).hexdigest()


def reference_mean():
    m = json.loads(MEAN_FILE.read_text())
    values = [f32(v) for v in m["values"]]
    assert len(values) == DIM and m["dim"] == DIM
    assert mean_sha256(values) == m["sha256"], "reference mean does not match its hash"
    return values


# ---- config -----------------------------------------------------------------

def parse_config(s: str):
    name, _, rest = s.partition(":")
    assert name == "semantic"
    p = dict(item.split("=", 1) for item in rest.split(",") if item)
    cfg = {"gamma": float(p.pop("gamma")), "planes": int(p.pop("planes")),
           "margin": float(p.pop("margin", "0.002")), "min_words": int(p.pop("min_words", "5")),
           "chain": p.pop("chain", "none")}
    assert not p, p
    assert cfg["chain"] in ("none", "previous"), cfg["chain"]
    G = math.floor(cfg["gamma"] * 65536 + 0.5)
    assert 0 < cfg["gamma"] < 1 and 1 <= G <= 65535 and 1 <= cfg["planes"] <= 16
    assert 0 <= cfg["margin"] < 1 and cfg["min_words"] >= 1
    cfg["G"] = G
    return cfg


def canonical(cfg) -> str:
    def num(x):  # Rust's `{}` of an f64: shortest round trip, no exponent, no trailing `.0`
        r = repr(float(x))
        return r[:-2] if r.endswith(".0") else r
    chain = "" if cfg["chain"] == "none" else f",chain={cfg['chain']}"  # chain=none is left out
    return (f"semantic:gamma={num(cfg['gamma'])},planes={cfg['planes']},margin={num(cfg['margin'])},"
            f"min_words={cfg['min_words']}{chain}")


def word_count(s: str) -> int:
    n, inword = 0, False
    for ch in s:
        if ch in WHITE_SPACE:
            inword = False
        elif not inword:
            n, inword = n + 1, True
    return n


# ---- keyed values -------------------------------------------------------------

class Semantic:
    def __init__(self, key: bytes, cfg, mean):
        self.cfg = cfg
        self.k0, self.k1 = scheme_prf_key(key, "semantic")
        d = cfg["planes"]
        self.normals = [[self.coordinate(j, i) for i in range(DIM)] for j in range(d)]
        self.norms = [math.sqrt(float(sum(c * c for c in n))) for n in self.normals]
        self.values = [siphash24(self.k0, self.k1, words(TAG_REGION + d, r)) & 0xFFFF for r in range(1 << d)]
        self.mean = mean

    def coordinate(self, j, i):
        w = siphash24(self.k0, self.k1, words(TAG_PLANE, j, i))
        return sum((w >> s) & 0xFFFF for s in (0, 16, 32, 48)) - 131070

    def green(self, r):
        return self.values[r] < self.cfg["G"]

    def value_after(self, prev, r):
        """The value deciding whether r is green after prev (None: the first
        scored sentence): chain=none, the region's own; chain=previous,
        PRF(TAG_CHAIN(d); prev or CHAIN_START, r) & 0xffff."""
        if self.cfg["chain"] == "none":
            return self.values[r]
        p = CHAIN_START if prev is None else prev
        return siphash24(self.k0, self.k1, words(TAG_CHAIN + self.cfg["planes"], p, r)) & 0xFFFF

    def green_after(self, prev, r):
        return self.value_after(prev, r) < self.cfg["G"]

    def project(self, e):
        x = [f32(a) - b for a, b in zip(e, self.mean)]
        ps, region, margin = [], 0, math.inf
        for j, n in enumerate(self.normals):
            p = 0.0
            for c, xi in zip(n, x):
                p += float(c) * xi
            if p > 0.0:
                region |= 1 << j
            margin = min(margin, abs(p) / self.norms[j])
            ps.append(p)
        return ps, region, margin


# ---- cases ------------------------------------------------------------------

KEYS = [bytes(range(32)), bytes([0xA5] * 32), hashlib.sha256(b"tracemark semantic golden key").digest()]
CONFIGS = ["semantic:gamma=0.25,planes=8",
           "semantic:gamma=0.5,planes=3,margin=0,min_words=1",
           "semantic:planes=12,gamma=0.1,margin=0.01,min_words=3"]
WORDS = ["Yes.", "One two three four five.", "  tabs\tand\u00a0no-break\u3000spaces here ",
         "a\u2028b", "", "Les élèves écrivent une phrase.", "\u6f22\u5b57\u306e\u6587\u3002"]


def embeddings(mean):
    out = []
    rng = random.Random(25)
    for _ in range(4):  # random unit vectors
        v = [rng.gauss(0.0, 1.0) for _ in range(DIM)]
        n = math.sqrt(sum(a * a for a in v))
        out.append([f32(a / n) for a in v])
    out.append(list(mean))  # the mean itself: every projection 0, region 0
    out.append([f32(m + (0.01 if i % 7 == 0 else -0.002)) for i, m in enumerate(mean)])
    ref = json.loads((HERE.parent / "embed" / "minilm.json").read_text())
    out += [[f32(a) for a in c["embedding"]] for c in ref["cases"][:3]]  # sentence-transformers outputs
    return out


def cases():
    mean = reference_mean()
    embs = embeddings(mean)
    out = []
    for key in KEYS:
        for cs in CONFIGS:
            cfg = parse_config(cs)
            s = Semantic(key, cfg, mean)
            proj = []
            for k, e in enumerate(embs):
                ps, r, m = s.project(e)
                proj.append({"embedding": k, "projections": ps, "region": r, "margin": m, "green": s.green(r),
                             "accepted": s.green(r) and m >= cfg["margin"]})
            out.append({
                "key": key.hex(), "config": cs, "canonical": canonical(cfg), "green_threshold": cfg["G"],
                "effective_gamma": cfg["G"] / 65536,
                "normals": [{"head": n[:8], "sum": sum(n), "sum_squares": sum(c * c for c in n), "norm": s.norms[j]}
                            for j, n in enumerate(s.normals)],
                "region_values": s.values[:32], "green_regions": sum(map(s.green, range(1 << cfg["planes"]))),
                "projections": proj,
                "words": [{"text": w, "count": word_count(w), "scored": word_count(w) >= cfg["min_words"]}
                          for w in WORDS],
            })
    return embs, out


CHAIN_CONFIGS = ["semantic:gamma=0.25,planes=8,chain=previous",
                 "semantic:gamma=0.5,planes=3,margin=0,min_words=1,chain=previous",
                 "semantic:chain=previous,planes=12,gamma=0.1,margin=0.01,min_words=3"]
# A text's scored sentences as indices into the embeddings, with repeats (the
# same sentence again, and a pair repeated: 0 1 ... 0 1).
CHAIN_SEQUENCE = [0, 1, 2, 0, 1, 3, 3, 4, 5, 6, 7, 8, 0, 1]


def chain_cases():
    """Chained regions (chain=previous): per key and configuration the values
    of (previous, region) pairs, the green count over all pairs (d <= 8), and
    a text's scored sentences in order: previous region, region, value, green,
    acceptance, and the detection's unit (the pair) with dedup."""
    mean = reference_mean()
    embs = embeddings(mean)
    out = []
    for key in KEYS:
        for cs in CHAIN_CONFIGS:
            cfg = parse_config(cs)
            s = Semantic(key, cfg, mean)
            d = cfg["planes"]
            n = 1 << d
            prevs = [None, 0, 1, n - 1, 5 % n]
            pairs = [{"previous": p, "region": r, "value": s.value_after(p, r), "green": s.green_after(p, r)}
                     for p in prevs for r in range(min(n, 16))]
            sentences, seen, k = [], set(), 0
            prev = None
            for idx in CHAIN_SEQUENCE:
                _, r, m = s.project(embs[idx])
                unit = (prev, r)
                repeated = unit in seen
                seen.add(unit)
                g = s.green_after(prev, r)
                k += 0 if repeated else int(g)
                sentences.append({"embedding": idx, "previous": prev, "region": r, "value": s.value_after(prev, r),
                                  "green": g, "accepted": g and m >= cfg["margin"], "repeated": repeated})
                prev = r
            case = {"key": key.hex(), "config": cs, "canonical": canonical(cfg), "green_threshold": cfg["G"],
                    "pairs": pairs, "sentences": sentences, "distinct": len(seen), "green": k}
            if d <= 8:  # every (previous or start, region): (2^d + 1) 2^d values
                case["green_pairs"] = sum(s.green_after(p, r) for p in [None, *range(n)] for r in range(n))
            out.append(case)
    return out


def write_or_check(path, text):
    if "--check" in sys.argv:
        if not path.exists() or path.read_text() != text:
            print(f"{path} differs from what the reference computes", file=sys.stderr)
            sys.exit(1)
    else:
        path.write_text(text)


def main():
    embs, cs = cases()
    text = json.dumps({"spec": SPEC, "section": "15.3", "generator": "testdata/semantic/gen_semantic.py",
                       "reference_mean_sha256": json.loads(MEAN_FILE.read_text())["sha256"],
                       "embeddings": embs, "cases": cs},
                      indent=None, separators=(",", ":")) + "\n"
    write_or_check(OUT, text)
    print(f"{len(json.loads(text)['cases'])} cases")
    chained = chain_cases()
    text = json.dumps({"spec": SPEC, "section": "15.3", "generator": "testdata/semantic/gen_semantic.py",
                       "embeddings_from": "v1.json", "chain_start": CHAIN_START, "tag_chain": TAG_CHAIN,
                       "sequence": CHAIN_SEQUENCE, "cases": chained},
                      indent=None, separators=(",", ":")) + "\n"
    write_or_check(OUT_CHAIN, text)
    print(f"{len(chained)} chained cases")


if __name__ == "__main__":
    main()
