#!/usr/bin/env python3
"""Reference implementation of docs/SPEC.md (tracemark/v1) that writes the
golden vectors under testdata/vectors/.

Standard library only, written from the spec text, independent of the Rust
code: the Rust tests (watermark-core/tests/golden.rs) and pytest check the
library against what this file computes.

    python3 testdata/gen_vectors.py          # rewrite the vectors
    python3 testdata/gen_vectors.py --check  # fail if the committed vectors differ
"""

import hashlib
import hmac
import json
import math
import struct
import sys
from pathlib import Path

SPEC = "tracemark/v1"
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
OUT = Path(__file__).resolve().parent / "vectors"


# ---- §1 primitives -----------------------------------------------------------

def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M64


def siphash24(k0: int, k1: int, msg: bytes) -> int:
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rnd():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & M64; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & M64; v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & M64; v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & M64; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)

    n = len(msg)
    blocks = n // 8
    for i in range(blocks):
        m = int.from_bytes(msg[8 * i:8 * i + 8], "little")
        v3 ^= m; rnd(); rnd(); v0 ^= m
    last = bytearray(msg[8 * blocks:]) + bytes(8 - (n - 8 * blocks))
    last[7] = n & 0xFF
    m = int.from_bytes(bytes(last), "little")
    v3 ^= m; rnd(); rnd(); v0 ^= m
    v2 ^= 0xFF
    for _ in range(4):
        rnd()
    return v0 ^ v1 ^ v2 ^ v3


def words(*ws) -> bytes:
    return b"".join(struct.pack("<I", w) for w in ws)


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


# ---- §2 keys -----------------------------------------------------------------

def key_id(k: bytes) -> str:
    return hmac_sha256(k, b"tracemark/v1/key-id")[:16].hex()


def key_file(k: bytes) -> str:
    check = hmac_sha256(k, b"tracemark/v1/key-file-check")[:4].hex()
    return f"tracemark-key-v1:{k.hex()}:{check}\n"


def derive(k: bytes, label: str) -> bytes:
    b = label.encode("ascii")
    assert 1 <= len(b) <= 128 and all(0x21 <= c <= 0x7E for c in b)
    return hmac_sha256(k, b"tracemark/v1/derive/" + b)


def serving_mac(k: bytes, scheme: str, tokenizer: str) -> str:
    return hmac_sha256(k, b"tracemark/v1/serving-manifest/" + scheme.encode() + b"\x00" + tokenizer.encode())[:16].hex()


SERVED = [("kgw:gamma=0.25,delta=2,context=lefthash:1", ""),
          ("kgw:gamma=0.25,delta=2,context=lefthash:1", "sha256:" + "ab" * 32),
          ("gumbel:temperature=0.7,context=lefthash:4", "")]


def scheme_prf_key(k: bytes, scheme: str):
    sk = hmac_sha256(k, b"tracemark/v1/scheme/" + scheme.encode())
    return int.from_bytes(sk[0:8], "little"), int.from_bytes(sk[8:16], "little")


# ---- §4–6 PRF, contexts, mix -------------------------------------------------

TAG = {"lefthash": 0x01000000, "minhash": 0x02000000, "selfhash": 0x03000000}
TAG_RANK = 0x04000000


def mix(s: int, w: int) -> int:
    a = s & M32
    b = (s >> 32) | 1
    x = w ^ a
    x ^= x >> 16
    x = (x * b) & M32
    x ^= x >> 15
    x = (x * 0x735A2D97) & M32
    x ^= x >> 15
    return x


def value16(s: int, v: int) -> int:
    return (mix(s, v >> 1) >> (16 * (v & 1))) & 0xFFFF


class Seeder:
    def __init__(self, key: bytes, scheme: str, mode: str, h: int):
        self.k0, self.k1 = scheme_prf_key(key, scheme)
        self.mode, self.h = mode, h
        self.rho = self.prf(TAG_RANK)

    def prf(self, *ws) -> int:
        return siphash24(self.k0, self.k1, words(*ws))

    def rank(self, t: int) -> int:
        return mix(self.rho, t)

    def anchor(self, tokens):
        return min(tokens, key=self.rank)

    def context(self, history):
        """(context key, context anchor or None), or None when too short."""
        h = self.h
        if len(history) < h:
            return None
        window = history[len(history) - h:]
        tag = TAG[self.mode] + h
        if self.mode == "lefthash":
            return self.prf(tag, *window), None
        a = self.anchor(window)
        return self.prf(tag, a), a

    def token_seed(self, ctx, v: int) -> int:
        key, a = ctx
        if self.mode == "selfhash" and self.rank(v) < self.rank(a):
            return self.prf(TAG["selfhash"] + self.h, v)
        return key


# ---- §7–9 schemes -------------------------------------------------------------

def green_threshold(gamma: float) -> int:
    return int(math.floor(gamma * 65536 + 0.5))  # round half away from zero (gamma > 0)


def tournament_probs(logits, k, T, m, n_leaves, seeder, ctx):
    finite = [(l, i) for i, l in enumerate(logits) if l != -math.inf]
    finite.sort(key=lambda p: (-p[0], p[1]))
    cands = finite[:k]
    mx = cands[0][0]
    p = [math.exp((l - mx) / T) for l, _ in cands]
    tot = sum(p)
    p = [q / tot for q in p]
    vals = [mix(seeder.token_seed(ctx, t), t) for _, t in cands]
    for layer in range(m):
        p1 = sum(q for q, v in zip(p, vals) if (v >> layer) & 1)
        if p1 <= 0.0 or p1 >= 1.0:
            continue
        q0 = 1.0 - p1
        f1 = (1.0 - q0 ** n_leaves) / p1
        f0 = q0 ** (n_leaves - 1)
        p = [q * (f1 if (v >> layer) & 1 else f0) for q, v in zip(p, vals)]
    tot = sum(p)
    out = [None] * len(logits)  # None = -inf
    for (l, t), q in zip(cands, p):
        out[t] = math.log(q / tot)
    return out, [(t, v) for (_, t), v in zip(cands, vals)]


def gumbel_u(v: int) -> float:
    return (v + 0.5) / 2 ** 32


def gumbel_select(logits, T, seeder, ctx):
    best, best_s = None, None
    for i, l in enumerate(logits):
        if l == -math.inf:
            continue
        u = gumbel_u(mix(seeder.token_seed(ctx, i), i))
        s = l / T - math.log(-math.log(u))
        if best is None or s > best_s:
            best, best_s = i, s
    return best


# ---- the vectors --------------------------------------------------------------

KEYS = [
    bytes(32),
    bytes([0xFF]) * 32,
    bytes(range(32)),
    bytes.fromhex("4f1c8a2d9e3b7f6a0c5d2e8b1a9f4c7e3d6b0a8f2c5e9d1b7a4f0c3e8d2b6a9f"),
]
SCHEMES = ["kgw", "tournament", "gumbel"]


def keys_cases():
    cases = []
    for k in KEYS:
        labels = ["cohort/0", "cohort/7", "tenant/acme", "~" * 128]
        cases.append({
            "key": k.hex(),
            "key_id": key_id(k),
            "key_file": key_file(k),
            "derived": [{"label": l, "key": derive(k, l).hex(), "key_id": key_id(derive(k, l))} for l in labels],
            "derived_chain": {"labels": ["tenant/acme", "cohort/3"],
                              "key": derive(derive(k, "tenant/acme"), "cohort/3").hex()},
            "scheme_prf_keys": {s: ["%016x" % w for w in scheme_prf_key(k, s)] for s in SCHEMES},
            "serving_macs": [{"scheme": s, "tokenizer": t, "mac": serving_mac(k, s, t)} for s, t in SERVED],
        })
    return cases


def prf_cases():
    cases = []
    for k in KEYS[:2]:
        k0, k1 = scheme_prf_key(k, "kgw")
        for ws in [[TAG_RANK], [0x01000000], [0x01000001, 0], [0x01000002, 7, 49151],
                   [0x01000003, 1, 2, 3], [0x01000005, 11, 22, 33, 44, 55], [0x03000004, M32]]:
            cases.append({"k0": "%016x" % k0, "k1": "%016x" % k1, "words": ws,
                          "prf": "%016x" % siphash24(k0, k1, words(*ws))})
    return cases


def mix_cases():
    cases = []
    for s in [0, 1, M64, 0x0123456789ABCDEF, 0xFEDCBA9876543210]:
        for w in [0, 1, 2, 0x7FFFFFFF, 0x80000000, M32, 24575, 64127]:
            cases.append({"seed": "%016x" % s, "word": w, "mix": mix(s, w),
                          "value16_of_2w": value16(s, (2 * w) & M32), "value16_of_2w_plus_1": value16(s, (2 * w + 1) & M32)})
    return cases


def context_cases():
    cases = []
    histories = [[], [5], [0, 128255], [1, 2, 3, 4], [9, 8, 7, 6, 5, 4, 3], [128255, 0, 128255, 0, 17]]
    for ki, k in enumerate(KEYS[2:]):
        for scheme in SCHEMES[:2] if ki == 0 else SCHEMES[2:]:
            for mode, h in [("lefthash", 0), ("lefthash", 1), ("lefthash", 4), ("minhash", 1), ("minhash", 4),
                            ("selfhash", 1), ("selfhash", 4)]:
                sd = Seeder(k, scheme, mode, h)
                for hist in histories:
                    ctx = sd.context(hist)
                    case = {"key": k.hex(), "scheme": scheme, "context": f"{mode}:{h}", "history": hist}
                    if ctx is None:
                        case["context_key"] = None
                    else:
                        case["context_key"] = "%016x" % ctx[0]
                        case["anchor"] = ctx[1]
                        case["token_seeds"] = {str(t): "%016x" % sd.token_seed(ctx, t) for t in [0, 1, 2, 17, 128255]}
                    cases.append(case)
    return cases


def kgw_cases():
    cases = []
    configs = [(0.25, 2.0, "lefthash", 1), (0.5, 1.0, "lefthash", 0), (0.1, 4.0, "lefthash", 4),
               (0.25, 2.0, "minhash", 4), (0.25, 2.0, "selfhash", 4), (0.3333, 1.5, "selfhash", 1)]
    for vocab in [2, 3, 17, 49152, 128256, 256000]:
        for ci, (gamma, delta, mode, h) in enumerate(configs):
            k = KEYS[(vocab + ci) % len(KEYS)]
            sd = Seeder(k, "kgw", mode, h)
            hist = [(7919 * i + vocab) % vocab for i in range(6)]
            ctx = sd.context(hist)
            g = green_threshold(gamma)
            toks = sorted({0, 1, vocab // 2, max(vocab - 2, 0), vocab - 1})
            vals = {str(t): value16(sd.token_seed(ctx, t), t) for t in toks}
            case = {"key": k.hex(), "gamma": gamma, "delta": delta, "context": f"{mode}:{h}", "vocab": vocab,
                    "history": hist, "green_threshold": g, "context_key": "%016x" % ctx[0],
                    "values": vals, "green": {t: v < g for t, v in vals.items()}}
            if vocab <= 17:
                row = [f32(((i * 37) % 11) * 0.75 - 3.0) for i in range(vocab)]
                row[vocab - 1] = -math.inf
                out = []
                for t, x in enumerate(row):
                    green = value16(sd.token_seed(ctx, t), t) < g
                    out.append(f32(x + f32(delta)) if green else x)
                case["row_in_bits"] = [f32_bits(x) for x in row]
                case["row_out_bits"] = [f32_bits(x) for x in out]
            cases.append(case)
    return cases


def tournament_cases():
    cases = []
    for i, (m, k, T, n, mode, h) in enumerate([(1, 10, 1.0, 2, "lefthash", 1), (3, 5, 0.7, 2, "lefthash", 2),
                                               (30, 8, 1.0, 2, "minhash", 3), (30, 10, 1.3, 3, "selfhash", 2),
                                               (32, 4, 1.0, 2, "lefthash", 0)]):
        key = KEYS[i % len(KEYS)]
        sd = Seeder(key, "tournament", mode, h)
        logits = [f32(((j * 53) % 17) * 0.4 - 2.0) for j in range(12)]
        logits[3] = -math.inf
        hist = [3, 1, 4, 1, 5][: max(h, 1)]
        ctx = sd.context(hist)
        out, vals = tournament_probs(logits, k, T, m, n, sd, ctx)
        mask = M32 if m == 32 else (1 << m) - 1
        cases.append({"key": key.hex(), "layers": m, "top_k": k, "temperature": T, "leaves": n,
                      "context": f"{mode}:{h}", "history": hist, "logits": [None if x == -math.inf else x for x in logits],
                      "candidates": [t for t, _ in vals], "values": [v for _, v in vals],
                      "g_sums": [bin(v & mask).count("1") for _, v in vals], "log_probs": out})
    return cases


def gumbel_cases():
    cases = []
    for i, (T, mode, h) in enumerate([(1.0, "lefthash", 1), (0.5, "lefthash", 3), (2.0, "minhash", 2),
                                      (1.0, "selfhash", 2), (0.8, "lefthash", 0), (1.0, "lefthash", 2)]):
        key = KEYS[(i + 1) % len(KEYS)]
        sd = Seeder(key, "gumbel", mode, h)
        logits = [f32(((j * 29) % 13) * 0.5 - 3.0) for j in range(20)]
        logits[(3 * i) % 20] = -math.inf
        hist = [2, 7, 1, 8][: max(h, 1)]
        ctx = sd.context(hist)
        vals = [mix(sd.token_seed(ctx, t), t) for t in range(20)]
        cases.append({"key": key.hex(), "temperature": T, "context": f"{mode}:{h}", "history": hist,
                      "logits": [None if x == -math.inf else x for x in logits], "values": vals,
                      "uniforms": [gumbel_u(v) for v in vals], "scores": [-math.log(1.0 - gumbel_u(v)) for v in vals],
                      "selected": gumbel_select(logits, T, sd, ctx)})
    return cases


def main():
    files = {"keys": keys_cases(), "prf": prf_cases(), "mix": mix_cases(), "contexts": context_cases(),
             "kgw": kgw_cases(), "tournament": tournament_cases(), "gumbel": gumbel_cases()}
    check = "--check" in sys.argv
    OUT.mkdir(parents=True, exist_ok=True)
    failed = False
    for name, cases in files.items():
        text = json.dumps({"spec": SPEC, "generator": "testdata/gen_vectors.py", "cases": cases}, indent=1) + "\n"
        path = OUT / f"{name}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} differs from what the reference computes", file=sys.stderr)
                failed = True
        else:
            path.write_text(text)
        print(f"{name}: {len(cases)} cases")
    print(f"total: {sum(len(c) for c in files.values())} cases")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
