#!/usr/bin/env python3
"""Quick calibration of the semantic partition (SPEC §15.3) on held-out human
text under many keys (issue 25, deliverables 2 and 5; the numbers are in
docs/semantic.md).

Input: the .npz of embed_human.py. Uses the *held-out* half only (the
reference mean was computed on the other half). Keys are
SHA-256("tracemark semantic calibration key <i>"), public test keys. Normals,
region values and green bits come from the spec's reference
(gen_semantic.py); projections use numpy (float64 matrix products, whose
summation order differs from the spec's only in the last bits).

Per number of planes d and per centring (the reference mean, or none:
hyperplanes through the origin as SemStamp), it reports

1. per key, the share of the held-out sentences that fall in green regions
   (every sentence counted): its spread over keys against the binomial sd;
2. the exact per-document test of the verifier (dedup by region within a
   document, binomial tail of the green count over distinct regions): the
   share of (document, key) tests with p <= 1e-2 and 1e-3, against what the
   exact null gives for the same documents (the binomial is discrete, so the
   null's rate is below the nominal level), and the worst key's rate;
3. the same for the sentence-chained variant (SemStamp's: the green bit of a
   sentence's region depends on the previous scored sentence's region; keyed
   green table of 2^d x 2^d, simulated with numpy's generator seeded per key),
   with dedup by (previous region, region). This stand-in is superseded by
   calibrate_spec.py, which computes both variants with the spec's keyed
   values (chain=previous of SPEC §15.3) and writes
   calibration-chained-1000-keys.txt.

Per key it also reports the spread of the per-key counts of documents
with p <= 1e-2: their index of dispersion (variance over mean; about 1 when
keys differ only by chance, Poisson) and the number of keys with more than
twice the null's expected count, against the number Poisson chance gives.

    nice -n 10 "$VENV/bin/python" testdata/semantic/calibrate.py EMB.npz [KEYS] [D ...] [--no-origin]
"""

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import gen_semantic as ref  # noqa: E402
from gen_vectors import siphash24, words  # noqa: E402

GAMMA = 0.25
G = 16384


def ln_binom_upper(k, n, p):
    from math import comb, log
    if k == 0:
        return 0.0
    return log(sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1)))


def null_rate(n, alpha, p=G / 65536):
    """P(p-value <= alpha) under the exact null, for n distinct regions."""
    from math import comb
    tail = 0.0
    for k in range(n, -1, -1):
        t = tail + comb(n, k) * p ** k * (1 - p) ** (n - k)
        if t > alpha:
            return tail
        tail = t
    return tail


def main():
    z = np.load(sys.argv[1])
    n_keys = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    ds = [int(a) for a in sys.argv[3:] if not a.startswith("--")] or [4, 6, 8, 10, 12]
    origin = "--no-origin" not in sys.argv
    held = np.flatnonzero(z["half"] == 1)
    rows = np.isin(z["doc"], held)
    emb = z["emb"][rows].astype(np.float64)
    doc = z["doc"][rows]
    mean = np.array(ref.reference_mean(), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(doc)]))
    cats = z["category"]
    print(f"held-out: {len(bounds)} documents, {len(doc)} sentences; {n_keys} keys; gamma {G / 65536}")
    print("documents per category:", {c: int(np.sum(cats[held] == c)) for c in sorted(set(cats[held]))})
    dmax = max(ds)
    keys = [hashlib.sha256(f"tracemark semantic calibration key {i}".encode()).digest() for i in range(n_keys)]
    normals, values = [], []
    for key in keys:
        k0, k1 = ref.scheme_prf_key(key, "semantic")
        nrm = np.array([[sum((siphash24(k0, k1, words(ref.TAG_PLANE, j, i)) >> s) & 0xFFFF for s in (0, 16, 32, 48))
                         - 131070 for i in range(ref.DIM)] for j in range(dmax)], dtype=np.float64)
        normals.append(nrm)
        values.append({d: np.array([siphash24(k0, k1, words(ref.TAG_REGION + d, r)) & 0xFFFF for r in range(1 << d)])
                       for d in ds})
    centrings = [("reference mean", emb - mean)] + ([("none (origin)", emb)] if origin else [])
    for centring, x in centrings:
        for d in ds:
            shares, tests, worst = [], {1e-2: 0, 1e-3: 0}, {1e-2: 0.0, 1e-3: 0.0}
            chained_shares, ctests = [], {1e-2: 0, 1e-3: 0}
            null_exp, cnull_exp = {1e-2: 0.0, 1e-3: 0.0}, {1e-2: 0.0, 1e-3: 0.0}
            distinct_sizes = []
            per_key = {"order-independent": [], "chained": []}
            for kk, key in enumerate(keys):
                proj = x @ normals[kk][:d].T
                region = ((proj > 0) * (1 << np.arange(d))).sum(axis=1)
                green = values[kk][d][region] < G
                shares.append(green.mean())
                rng = np.random.default_rng([kk, d])
                table = rng.random((1 << d, 1 << d)) < G / 65536
                key_hits = {1e-2: 0, 1e-3: 0}
                key_chain = []
                chain_hits = 0
                for a, b in bounds:
                    regs = region[a:b]
                    uniq = np.unique(regs)
                    n, k = len(uniq), int((values[kk][d][uniq] < G).sum())
                    distinct_sizes.append(n)
                    lp = ln_binom_upper(k, n, G / 65536)
                    # chained: pairs (previous region, region); the first sentence has no previous one
                    pairs = {(int(p), int(r)) for p, r in zip(regs[:-1], regs[1:])}
                    cn = len(pairs)
                    ck = sum(bool(table[p, r]) for p, r in pairs)
                    key_chain.extend(table[p, r] for p, r in zip(regs[:-1], regs[1:]))
                    clp = ln_binom_upper(ck, cn, G / 65536) if cn else 0.0
                    for alpha in (1e-2, 1e-3):
                        hit = lp <= np.log(alpha) + 1e-12
                        key_hits[alpha] += hit
                        tests[alpha] += hit
                        chit = clp <= np.log(alpha) + 1e-12
                        ctests[alpha] += chit
                        if alpha == 1e-2:
                            chain_hits += chit
                        if kk == 0:
                            null_exp[alpha] += null_rate(n, alpha)
                            cnull_exp[alpha] += null_rate(cn, alpha) if cn else 0.0
                chained_shares.append(np.mean(key_chain))
                per_key["order-independent"].append(key_hits[1e-2])
                per_key["chained"].append(chain_hits)
                for alpha in (1e-2, 1e-3):
                    worst[alpha] = max(worst[alpha], key_hits[alpha] / len(bounds))
            shares = np.array(shares)
            n_s = len(doc)
            total = len(bounds) * n_keys
            print(f"\ncentring {centring}, d={d}: sentence green share over keys: mean {shares.mean():.4f}, "
                  f"sd {shares.std():.4f} (binomial sd {np.sqrt(GAMMA * (1 - GAMMA) / n_s):.4f}), "
                  f"min {shares.min():.4f}, max {shares.max():.4f}; distinct regions per document: "
                  f"median {int(np.median(distinct_sizes))}, mean {np.mean(distinct_sizes):.1f}")
            for alpha in (1e-2, 1e-3):
                exp = null_exp[alpha] * n_keys
                lo, hi = exp - 2.576 * np.sqrt(exp), exp + 2.576 * np.sqrt(exp)
                print(f"  order-independent, p <= {alpha:g}: {tests[alpha]} of {total} tests "
                      f"({tests[alpha] / total:.5f}); exact null expects {exp:.1f} ({exp / total:.5f}, "
                      f"99% range about {max(lo, 0):.0f}-{hi:.0f}); worst key {worst[alpha]:.4f}")
            cs = np.array(chained_shares)
            for alpha in (1e-2, 1e-3):
                exp = cnull_exp[alpha] * n_keys
                print(f"  chained, p <= {alpha:g}: {ctests[alpha]} of {total} ({ctests[alpha] / total:.5f}); "
                      f"exact null expects {exp:.1f}")
            from math import exp as _exp, factorial
            for variant, counts in per_key.items():
                counts = np.array(counts, dtype=float)
                lam = (null_exp if variant == "order-independent" else cnull_exp)[1e-2]
                over = int(np.sum(counts > 2 * lam))
                p_over = 1 - sum(_exp(-lam) * lam ** j / factorial(j) for j in range(int(np.floor(2 * lam)) + 1))
                print(f"  {variant}, per key at p <= 0.01: mean {counts.mean():.2f} documents (null {lam:.2f}), "
                      f"index of dispersion {counts.var() / max(counts.mean(), 1e-9):.2f}, max {int(counts.max())}; "
                      f"keys above 2x the null: {over} of {n_keys} (Poisson chance {p_over * n_keys:.1f})")
            print(f"  chained: sentence green share over keys: mean {cs.mean():.4f}, sd {cs.std():.4f}, "
                  f"min {cs.min():.4f}, max {cs.max():.4f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
