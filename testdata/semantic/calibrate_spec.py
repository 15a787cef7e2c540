#!/usr/bin/env python3
"""Calibration of the semantic scheme *as specified* (SPEC §15.3), both
variants: order-independent regions (`chain=none`) and chained regions
(`chain=previous`), under many keys on the held-out half of the human text
(issue 25, deliverable 5; the numbers are in docs/semantic.md), and a
simulation of what reordering, deleting and rewriting sentences leave of a
text's scoring units.

Unlike calibrate.py's chained column (a numpy stand-in table), every keyed
value here is the spec's: SipHash-2-4 under the scheme sub-key, vectorised
with numpy's wrapping uint64 arithmetic, checked at start-up against the
golden vectors v1.json and v1-chain.json (normals, region values, pair
values, regions of the vector embeddings). Projections are float64 matrix
products; the few whose magnitude is below 1e-6 (where the summation order
could flip a sign) are recomputed in the spec's order (np.add.accumulate),
so every region is the spec's region.

Input: the .npz of embed_human.py (held-out half only: the reference mean
was computed on the other). Keys are SHA-256("tracemark semantic calibration
key <i>"), public test keys. Per document the scored sentences are those of
embed_human.py (at least 5 words, at most 24, in order), so each one's
previous scored sentence is the one before it in the file. An .npz of
`embed_human.py --all-held-out --per-doc 10` (every held-out document, its
first 10 scored sentences) gives the per-key test 10 times the documents.

    nice -n 19 "$VENV/bin/python" testdata/semantic/calibrate_spec.py EMB.npz KEYS D [D ...]
    nice -n 19 "$VENV/bin/python" testdata/semantic/calibrate_spec.py EMB.npz KEYS D --robustness
"""

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import gen_semantic as ref  # noqa: E402

G = 16384
GAMMA = G / 65536
ALPHAS = (1e-2, 1e-3)
U = np.uint64
C0, C1, C2, C3 = U(0x736F6D6570736575), U(0x646F72616E646F6D), U(0x6C7967656E657261), U(0x7465646279746573)


def _rotl(x, b):
    return (x << U(b)) | (x >> U(64 - b))


def siphash_words(k0, k1, tag, *ws):
    """SipHash-2-4 of the LE32 words (tag, *ws), for arrays of words (one or
    two after the tag), as SPEC §4 frames them; returns uint64 arrays."""
    with np.errstate(over="ignore"):
        k0, k1 = U(k0), U(k1)
        ws = [np.asarray(w, dtype=np.uint64) for w in ws]
        shape = np.broadcast(*ws).shape
        v0 = np.full(shape, k0 ^ C0, dtype=np.uint64)
        v1 = np.full(shape, k1 ^ C1, dtype=np.uint64)
        v2 = np.full(shape, k0 ^ C2, dtype=np.uint64)
        v3 = np.full(shape, k1 ^ C3, dtype=np.uint64)

        def rnd():
            nonlocal v0, v1, v2, v3
            v0 = v0 + v1; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)
            v2 = v2 + v3; v3 = _rotl(v3, 16) ^ v2
            v0 = v0 + v3; v3 = _rotl(v3, 21) ^ v0
            v2 = v2 + v1; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)

        def block(m):
            nonlocal v0, v3
            v3 = v3 ^ m; rnd(); rnd(); v0 = v0 ^ m

        n = 4 * (1 + len(ws))
        if len(ws) == 1:  # 8 bytes: one block, then the length block
            block(U(tag) | (ws[0] << U(32)))
            block(np.full(shape, U(n) << U(56), dtype=np.uint64))
        elif len(ws) == 2:  # 12 bytes: one block, then the third word and the length
            block(U(tag) | (ws[0] << U(32)))
            block(ws[1] | (U(n) << U(56)))
        else:
            raise ValueError("one or two words after the tag")
        v2 = v2 ^ U(0xFF)
        for _ in range(4):
            rnd()
        return v0 ^ v1 ^ v2 ^ v3


class Keyed:
    """One key's spec values, vectorised."""

    def __init__(self, key: bytes, dmax: int):
        self.k0, self.k1 = ref.scheme_prf_key(key, "semantic")
        j, i = np.meshgrid(np.arange(dmax), np.arange(ref.DIM), indexing="ij")
        w = siphash_words(self.k0, self.k1, ref.TAG_PLANE, j, i)
        s = sum((w >> U(b)) & U(0xFFFF) for b in (0, 16, 32, 48))
        self.normals = s.astype(np.int64) - 131070  # dmax x 384

    def region_values(self, d):
        return (siphash_words(self.k0, self.k1, ref.TAG_REGION + d, np.arange(1 << d)) & U(0xFFFF)).astype(np.int64)

    def pair_values(self, d, q, r):
        """value(q, r); q = -1 stands for the start (CHAIN_START)."""
        q = np.where(np.asarray(q) < 0, ref.CHAIN_START, q).astype(np.uint64)
        return (siphash_words(self.k0, self.k1, ref.TAG_CHAIN + d, q, r) & U(0xFFFF)).astype(np.int64)

    def regions(self, x, d):
        """Regions of centred embeddings x (float64, n x 384), exactly as §15.3."""
        nrm = self.normals[:d].astype(np.float64)
        p = x @ nrm.T
        near = np.abs(p) < 1e-6
        for a, j in zip(*np.nonzero(near)):  # recompute in the spec's order
            p[a, j] = np.add.accumulate(nrm[j] * x[a])[-1]
        return ((p > 0) * (1 << np.arange(d))).sum(axis=1), p


def check_against_golden(mean):
    """Every vectorised value against the golden vectors (and thereby the Rust core)."""
    v1 = json.loads((HERE / "v1.json").read_text())
    embs = np.array(v1["embeddings"], dtype=np.float32).astype(np.float64)
    checked = 0
    for case in v1["cases"]:
        cfg = ref.parse_config(case["config"])
        d = cfg["planes"]
        k = Keyed(bytes.fromhex(case["key"]), d)
        for j, n in enumerate(case["normals"]):
            assert k.normals[j, :8].tolist() == n["head"] and int(k.normals[j].sum()) == n["sum"]
            assert int((k.normals[j] ** 2).sum()) == n["sum_squares"]
        assert k.region_values(d)[:32].tolist() == case["region_values"]
        regions, p = k.regions(embs - mean, d)
        for pr in case["projections"]:
            assert int(regions[pr["embedding"]]) == pr["region"], (case["config"], pr["embedding"])
            checked += 1
    chain = json.loads((HERE / "v1-chain.json").read_text())
    for case in chain["cases"]:
        d = ref.parse_config(case["config"])["planes"]
        k = Keyed(bytes.fromhex(case["key"]), d)
        q = np.array([-1 if p["previous"] is None else p["previous"] for p in case["pairs"]])
        r = np.array([p["region"] for p in case["pairs"]])
        assert k.pair_values(d, q, r).tolist() == [p["value"] for p in case["pairs"]]
        regions, _ = k.regions(embs - mean, d)
        for t in case["sentences"]:
            assert int(regions[t["embedding"]]) == t["region"]
            qq = -1 if t["previous"] is None else t["previous"]
            assert int(k.pair_values(d, [qq], [t["region"]])[0]) == t["value"]
            checked += 1
    return checked


def ln_upper_table(nmax, p=GAMMA):
    """ln P(Binomial(n, p) >= k) for 0 <= k <= n <= nmax (exact, math.comb)."""
    t = np.full((nmax + 1, nmax + 2), -np.inf)
    for n in range(nmax + 1):
        for k in range(n + 1):
            t[n, k] = math.log(sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1)))
    return t


def null_rate_table(nmax, alpha, p=GAMMA):
    """P(p-value <= alpha) under the exact null, for n distinct units."""
    out = np.zeros(nmax + 1)
    for n in range(nmax + 1):
        tail = 0.0
        for k in range(n, -1, -1):
            t = tail + math.comb(n, k) * p ** k * (1 - p) ** (n - k)
            if t > alpha:
                break
            tail = t
        out[n] = tail
    return out


def units(doc, region, chained, d):
    """Per sentence its unit id (within the file), and which are first in their document.

    chain=none: (document, region); chain=previous: (document, previous, region),
    previous = -1 (the start) for a document's first scored sentence."""
    first = np.r_[True, doc[1:] != doc[:-1]]
    prev = np.where(first, -1, np.r_[-1, region[:-1]])
    if chained:
        uid = (doc.astype(np.int64) << 40) | ((prev + 1).astype(np.int64) << 20) | region
    else:
        uid = (doc.astype(np.int64) << 40) | region
    return uid, prev


def poisson_pmf(j, lam):
    return math.exp(-lam + j * math.log(lam) - math.lgamma(j + 1)) if lam > 0 else float(j == 0)


def poisson_sf(x, lam):
    """P(X > x), X ~ Poisson(lam)."""
    return max(0.0, 1.0 - sum(poisson_pmf(j, lam) for j in range(int(math.floor(x)) + 1)))


def calibrate(emb, doc, n_docs, keys, ds, mean):
    x = emb - mean
    nmax = int(np.bincount(doc).max())
    lnt = ln_upper_table(nmax)
    rates = {a: null_rate_table(nmax, a) for a in ALPHAS}
    for d in ds:
        stats = {v: {"flags": {a: np.zeros(len(keys), int) for a in ALPHAS},
                     "null": {a: np.zeros(len(keys)) for a in ALPHAS},
                     "var": {a: 0.0 for a in ALPHAS}, "share": [], "n": []} for v in ("none", "previous")}
        for kk, key in enumerate(keys):
            k = Keyed(key, max(ds))
            region, _ = k.regions(x, d)
            values = k.region_values(d)
            for variant in ("none", "previous"):
                uid, prev = units(doc, region, variant == "previous", d)
                u, idx = np.unique(uid, return_index=True)
                udoc, ureg, uprev = doc[idx], region[idx], prev[idx]
                green = (values[ureg] if variant == "none" else k.pair_values(d, uprev, ureg)) < G
                n = np.bincount(udoc, minlength=n_docs)
                kg = np.bincount(udoc, weights=green, minlength=n_docs).astype(int)
                st = stats[variant]
                allg = (values[region] if variant == "none" else k.pair_values(d, prev, region)) < G
                st["share"].append(allg.mean())
                st["n"].append(n.mean())
                lp = lnt[n, kg]
                for a in ALPHAS:
                    st["flags"][a][kk] = int(np.sum((lp <= math.log(a) + 1e-12) & (n > 0)))
                    r = rates[a][n]
                    st["null"][a][kk] = r.sum()
                    st["var"][a] += float((r * (1 - r)).sum())
            if kk % 100 == 99:
                print(f"  [d={d}: {kk + 1} keys]", file=sys.stderr, flush=True)
        total = n_docs * len(keys)
        print(f"\nd={d}, {len(keys)} keys x {n_docs} documents = {total} tests, gamma {GAMMA}")
        for variant in ("none", "previous"):
            st = stats[variant]
            sh = np.array(st["share"])
            print(f"  chain={variant}: scored-sentence green share over keys: mean {sh.mean():.4f}, sd {sh.std():.4f} "
                  f"(binomial sd {math.sqrt(GAMMA * (1 - GAMMA) / len(doc)):.4f}), min {sh.min():.4f}, "
                  f"max {sh.max():.4f}; distinct units per document: mean {np.mean(st['n']):.2f}")
            for a in ALPHAS:
                f, lam = st["flags"][a], st["null"][a]
                exp, sd = lam.sum(), math.sqrt(st["var"][a])
                lo, hi = exp - 2.576 * sd, exp + 2.576 * sd
                inside = "inside" if lo <= f.sum() <= hi else "OUTSIDE"
                mean_lam = lam.mean()
                nominal = a * n_docs
                over_nom = int(np.sum(f > 2 * nominal))
                chance_nom = sum(poisson_sf(2 * nominal, l) for l in lam)
                over_null = int(np.sum(f > 2 * lam))
                chance_null = sum(poisson_sf(2 * l, l) for l in lam)
                worst = int(f.argmax())
                hist = np.bincount(f)
                exp_hist = [sum(poisson_pmf(j, l) for l in lam) for j in range(len(hist))]
                print(f"    p <= {a:g}: pooled {f.sum()} of {total} ({f.sum() / total:.5f}); exact null expects "
                      f"{exp:.1f} ({exp / total:.5f}), 99% range {max(lo, 0):.0f}-{hi:.0f}: {inside}")
                print(f"      per key: mean {f.mean():.3f} documents (exact null {mean_lam:.3f}, nominal {nominal:.2f}), "
                      f"index of dispersion {f.var() / max(f.mean(), 1e-9):.2f}; keys above 2x nominal "
                      f"(> {2 * nominal:.2f} documents): {over_nom} (Poisson chance {chance_nom:.1f}); keys above 2x "
                      f"the exact null: {over_null} (chance {chance_null:.1f}); worst key #{worst}: {f[worst]} "
                      f"documents ({f[worst] / n_docs:.4f}, {f[worst] / n_docs / a:.1f}x nominal)")
                print("      keys by number of flagged documents: " + ", ".join(
                    f"{j}: {int(h)} (chance {e:.1f})" for j, (h, e) in enumerate(zip(hist, exp_hist))))
        sys.stdout.flush()


def robustness(emb, doc, n_docs, keys, d, mean, seed=25):
    """What edits leave of a text's distinct scoring units, both variants.

    Per document (its scored sentences in order, regions under each key), an
    edit gives a new sequence; a unit *survives* when it is a unit of the
    edited text. For a fully watermarked text (every original unit green)
    the edited text's units are the survivors (green) and new ones (green
    with probability gamma under the key, drawn here): the share of
    documents still at p <= 1e-3 is reported, for documents of at least
    10 scored sentences. Edits: reorder all sentences, swap two adjacent
    ones, move one, delete one, delete a quarter, and a stand-in for a
    rewrite: each sentence keeps its region with probability q, else lands
    in a uniformly random region (the per-sentence survival q of a real
    paraphrase is not measured here)."""
    x = emb - mean
    rng = np.random.default_rng(seed)
    nmax = int(np.bincount(doc).max())
    lnt = ln_upper_table(nmax)
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(doc)]))

    def unit_set(seq, chained):
        if chained:
            return set(zip([-1] + list(seq[:-1]), seq))
        return set(seq)

    def edits(seq):
        n = len(seq)
        out = {}
        out["reorder all"] = list(rng.permutation(seq))
        s = list(seq); i = rng.integers(n - 1); s[i], s[i + 1] = s[i + 1], s[i]; out["swap two adjacent"] = s
        s = list(seq); v = s.pop(rng.integers(n)); s.insert(int(rng.integers(n)), v); out["move one"] = s
        s = list(seq); s.pop(rng.integers(n)); out["delete one"] = s
        keep = np.sort(rng.choice(n, n - n // 4, replace=False)); out["delete a quarter"] = [seq[i] for i in keep]
        for q in (0.9, 0.8, 0.7):
            out[f"rewrite, q={q}"] = [r if rng.random() < q else int(rng.integers(1 << d)) for r in seq]
        return out

    res = {}
    for key in keys:
        k = Keyed(key, d)
        region, _ = k.regions(x, d)
        for a, b in bounds:
            seq = [int(r) for r in region[a:b]]
            if len(seq) < 10:
                continue
            for name, new in edits(seq).items():
                for chained in (False, True):
                    before, after = unit_set(seq, chained), unit_set(new, chained)
                    surv = len(before & after)
                    n = len(after)
                    kg = surv + int(rng.binomial(n - surv, GAMMA))
                    r = res.setdefault((name, chained), [0, 0, 0, 0])
                    r[0] += surv; r[1] += len(before); r[2] += lnt[n, kg] <= math.log(1e-3); r[3] += 1
    print(f"\nrobustness, d={d}, {len(keys)} keys, documents of at least 10 scored sentences; survival = share of the "
          f"original distinct units that are units of the edited text; detection = share of fully watermarked "
          f"documents still at p <= 1e-3 (new units green with probability {GAMMA})")
    for name in ("reorder all", "swap two adjacent", "move one", "delete one", "delete a quarter",
                 "rewrite, q=0.9", "rewrite, q=0.8", "rewrite, q=0.7"):
        a, b = res[(name, False)], res[(name, True)]
        print(f"  {name:20s} chain=none: survival {a[0] / a[1]:.3f}, detection {a[2] / a[3]:.3f}   "
              f"chain=previous: survival {b[0] / b[1]:.3f}, detection {b[2] / b[3]:.3f}   ({a[3]} documents x keys)")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    z = np.load(args[0])
    # --also=MORE.npz (repeatable): more held-out documents, after those of the first file.
    for more in [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--also=")]:
        m = np.load(more)
        z = {"emb": np.concatenate([z["emb"], m["emb"]]), "doc": np.concatenate([z["doc"], m["doc"] + len(z["half"])]),
             "half": np.concatenate([z["half"], m["half"]])}
    n_keys = int(args[1])
    ds = [int(a) for a in args[2:]] or [8]
    mean = np.array(ref.reference_mean(), dtype=np.float64)
    print(f"vectorised spec values checked against the golden vectors: {check_against_golden(mean)} regions and values")
    held = np.flatnonzero(z["half"] == 1)
    rows = np.isin(z["doc"], held)
    emb = z["emb"][rows].astype(np.float64)
    _, doc = np.unique(z["doc"][rows], return_inverse=True)  # 0..n_docs-1, in file order
    n_docs = int(doc.max()) + 1
    assert np.all(np.diff(doc) >= 0)
    print(f"held-out: {n_docs} documents, {len(doc)} scored sentences (at least 5 words, at most "
          f"{int(np.bincount(doc).max())} per document)")
    keys = [hashlib.sha256(f"tracemark semantic calibration key {i}".encode()).digest() for i in range(n_keys)]
    if "--robustness" in sys.argv:
        robustness(emb, doc, n_docs, keys, ds[0], mean)
    else:
        calibrate(emb, doc, n_docs, keys, ds, mean)


if __name__ == "__main__":
    main()
