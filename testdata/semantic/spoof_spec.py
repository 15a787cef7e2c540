#!/usr/bin/env python3
"""Spoofing the semantic layer from harvested answers (issue 25, deliverable 2:
"order-independent regions ... are easier to learn from harvested answers, so
run the stealing harness against it as well"). A simulation on real
embeddings with the spec's keyed values (calibrate_spec.py's `Keyed`,
checked against the golden vectors at start-up), for `chain=none` and
`chain=previous` at d = 8, gamma 1/4.

Sentences: the held-out embeddings of embed_human.py (the reference mean
never saw them), split by document (SHA-256 of the document index, a public
rule) into three disjoint pools: what the watermarked model "says" (G,
40%), the attacker's human reference (R, 30%) and the attacker's own
sentences to spoof with (B, 30%).

Per key:
- **Harvest.** N answers of L sentences generated as the layer generates
  (deliverable 3): each sentence drawn from G until its unit is green (after
  the previous sentence's region for `chain=previous`), at most 16
  candidates (the default cap; at the cap the last candidate is kept). The
  attacker sees the answers' sentences (their embeddings, from the public
  embedder), never the key.
- **Learned spoof.** The attacker scores each sentence of B by the share of
  harvested sentences among its k = 20 nearest neighbours (cosine) in the
  harvest plus an equal number of R's sentences: a density ratio, the
  standard way to learn which parts of the space the watermark favours. A
  spoofed text is 20 sentences drawn from B's top 5% by that score, in a
  random order; a sharper variant uses k = 5 and the top 1%. Baseline: 20
  random sentences of B.
- **Recombined harvest.** Texts of 20 sentences cut from the harvest itself
  and put together in a new order: single sentences, and runs of two or
  five consecutive sentences of one answer. This is copying our text, not
  writing new text; it is what a harvester who pastes our sentences into
  their own documents does, and it shows what chaining keeps.

Each text is tested as the verifier tests it (distinct units, exact
binomial tail); reported: the share of texts at p <= 1e-3 and <= 1e-6 and
the median log10 p.

    nice -n 10 "$VENV/bin/python" testdata/semantic/spoof_spec.py EMB10.npz KEYS [N]
"""

import hashlib
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import calibrate_spec as cs  # noqa: E402
import gen_semantic as ref  # noqa: E402

D = 8
L = 10  # sentences per harvested answer
CAP = 16  # candidates per sentence, the generation default
TEXT = 20  # sentences per spoofed text
TEXTS = 200  # spoofed texts per attack and key
K_NN = 20
TOP = 0.05


def pools(doc):
    """Each sentence's pool by a public hash of its document: 0 = G, 1 = R, 2 = B."""
    h = np.array([hashlib.sha256(f"spoof pool {d}".encode()).digest()[0] for d in range(int(doc.max()) + 1)])
    by_doc = np.where(h < 102, 0, np.where(h < 179, 1, 2))
    return by_doc[doc]


def test_texts(seqs, region, k, chained, lnt):
    """log10 p of each text (a list of sentence indices in order), as the verifier tests it."""
    out = []
    values = k.region_values(D)
    for s in seqs:
        r = region[s]
        prev = np.r_[-1, r[:-1]]
        units = set(zip(prev.tolist(), r.tolist())) if chained else {(-1, x) for x in r.tolist()}
        up = np.array([u[0] for u in units])
        ur = np.array([u[1] for u in units])
        green = (k.pair_values(D, up, ur) if chained else values[ur]) < cs.G
        out.append(lnt[len(units), int(green.sum())] / math.log(10))
    return np.array(out)


def harvest(gidx, region, k, chained, n, rng):
    """N answers of L sentences, each sentence rejection-sampled from G (cap CAP)."""
    values = k.region_values(D)
    answers, cap_hits = [], 0
    for _ in range(n):
        prev, ans = -1, []
        for _ in range(L):
            cand = rng.choice(gidx, CAP)
            r = region[cand]
            green = (k.pair_values(D, np.full(CAP, prev), r) if chained else values[r]) < cs.G
            hit = np.flatnonzero(green)
            pick = cand[hit[0]] if len(hit) else cand[-1]
            cap_hits += not len(hit)
            ans.append(pick)
            prev = region[pick]
        answers.append(ans)
    return answers, cap_hits


def knn_scores(xb, xh, xr, k_nn=K_NN):
    """Share of harvested sentences among each B sentence's k_nn nearest (cosine) in H + R."""
    ref_ = np.concatenate([xh, xr])
    ref_ /= np.linalg.norm(ref_, axis=1, keepdims=True)
    label = np.r_[np.ones(len(xh)), np.zeros(len(xr))]
    xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
    out = np.empty(len(xb))
    for i in range(0, len(xb), 2048):
        sim = xb[i:i + 2048] @ ref_.T
        nn = np.argpartition(-sim, k_nn, axis=1)[:, :k_nn]
        out[i:i + 2048] = label[nn].mean(axis=1)
    return out


def recombined(answers, run, rng):
    """TEXTS texts of TEXT sentences: runs of `run` consecutive harvested sentences, new order."""
    texts = []
    for _ in range(TEXTS):
        t = []
        while len(t) < TEXT:
            a = answers[rng.integers(len(answers))]
            s = rng.integers(0, L - run + 1)
            t.extend(a[s:s + run])
        texts.append(np.array(t[:TEXT]))
    return texts


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    z = np.load(args[0])
    n_keys = int(args[1])
    n = int(args[2]) if len(args) > 2 else 1000
    mean = np.array(ref.reference_mean(), dtype=np.float64)
    print(f"spec values checked against the golden vectors: {cs.check_against_golden(mean)} regions and values")
    held = np.isin(z["doc"], np.flatnonzero(z["half"] == 1))
    emb, doc = z["emb"][held].astype(np.float64), z["doc"][held]
    pool = pools(doc)
    gidx, ridx, bidx = (np.flatnonzero(pool == p) for p in range(3))
    print(f"{len(emb)} held-out sentences: G {len(gidx)}, R {len(ridx)}, B {len(bidx)}; d={D}, gamma {cs.GAMMA}, "
          f"N = {n} harvested answers of {L} sentences (cap {CAP}), {TEXTS} texts of {TEXT} sentences per attack and key, "
          f"{n_keys} keys")
    lnt = cs.ln_upper_table(TEXT + 1)
    x = emb - mean
    keys = [hashlib.sha256(f"tracemark semantic spoofing key {i}".encode()).digest() for i in range(n_keys)]
    attacks = ("random B (baseline)", "learned: top 5% of B (k = 20)", "learned: top 1% of B (k = 5)",
               "recombined: single sentences",
               "recombined: runs of 2", "recombined: runs of 5")
    res = {(c, a): [] for c in ("none", "previous") for a in attacks}
    caps = {"none": 0, "previous": 0}
    for kk, key in enumerate(keys):
        k = cs.Keyed(key, D)
        region, _ = k.regions(x, D)
        for chain in ("none", "previous"):
            chained = chain == "previous"
            rng = np.random.default_rng(kk * 2 + chained)
            answers, hits = harvest(gidx, region, k, chained, n, rng)
            caps[chain] += hits
            hs = np.unique(np.concatenate(answers))
            rs = rng.choice(ridx, min(len(ridx), len(hs)), replace=False)
            score = knn_scores(emb[bidx], emb[hs], emb[rs])
            top = bidx[score >= np.quantile(score, 1 - TOP)]
            score5 = knn_scores(emb[bidx], emb[hs], emb[rs], 5)
            top1 = bidx[np.argsort(-score5, kind="stable")[: max(TEXT, len(bidx) // 100)]]
            texts = {
                attacks[0]: [rng.choice(bidx, TEXT, replace=False) for _ in range(TEXTS)],
                attacks[1]: [rng.choice(top, TEXT, replace=False) for _ in range(TEXTS)],
                attacks[2]: [rng.choice(top1, TEXT, replace=False) for _ in range(TEXTS)],
                attacks[3]: recombined(answers, 1, rng),
                attacks[4]: recombined(answers, 2, rng),
                attacks[5]: recombined(answers, 5, rng),
            }
            for a, ts in texts.items():
                res[(chain, a)].append(test_texts(ts, region, k, chained, lnt))
        print(f"  [{kk + 1} keys]", file=sys.stderr, flush=True)
    print()
    print("| chain | attack | texts | p <= 1e-3 | p <= 1e-6 | median log10 p |")
    print("|---|---|---:|---:|---:|---:|")
    for chain in ("none", "previous"):
        for a in attacks:
            v = np.concatenate(res[(chain, a)])
            print(f"| {chain} | {a} | {len(v)} | {np.mean(v <= -3):.3f} | {np.mean(v <= -6):.3f} | {np.median(v):.2f} |")
    for chain in ("none", "previous"):
        print(f"harvest cap hits, chain={chain}: {caps[chain]} of {n_keys * n * L} sentences")


if __name__ == "__main__":
    main()
