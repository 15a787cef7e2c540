"""Why the semantic layer does not survive SmolLM2's paraphrase: how far a
paraphrase moves each sentence in the embedding space, measured on the
answers `make semantic-frontier` cached (issue 25, deliverable 6's diagnosis).

For every paraphrased answer of the frontier's layered and token-only arms:

- the cosine of the answer's mean sentence embedding with the original's, and
  whether the paraphrase degenerated (fewer than half of its sentences distinct);
- for each scored sentence of the paraphrase, its closest original sentence
  (cosine), and whether the two lie in the same region of the keyed partition
  (how many of the hyperplanes' sides differ);
- the share of scored sentences green under the chained rule, clean and
  paraphrased, against the scheme's gamma;
- as references, unrelated answers (another prompt's plain answer) and the
  plain and layered answers to the same prompt.

From the per-hyperplane flip rate f, the chance that a sentence keeps its
region with p planes is about (1 - f)^p, and the chained rule needs the
previous sentence's region too.

Usage: python lab/python/semantic_drift.py [--cache DIR] [--out FILE]
(environment: TRACEMARK_EMBEDDER, the all-MiniLM-L6-v2 directory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from semantic_frontier import SEMANTIC  # noqa: E402


def read_texts(path: Path) -> List[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def main() -> int:
    import tracemark as tm

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cache_root = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark"))
    ap.add_argument("--cache", type=Path, default=cache_root / "semantic-frontier-full")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    embedder = tm.Embedder(os.environ["TRACEMARK_EMBEDDER"])
    semantic = tm.Semantic(tm.Key.load(str(args.cache / "key.key")), SEMANTIC)

    def scored(text: str) -> List[str]:
        return [s for s in tm.sentences(text) if semantic.is_scored(s)]

    def doc_vector(text: str) -> np.ndarray:
        v = embedder.embed(tm.sentences(text) or [text]).mean(0)
        return v / np.linalg.norm(v)

    def degenerate(text: str) -> bool:
        s = tm.sentences(text)
        return len(s) > 3 and len(set(s)) < len(s) / 2

    def green_share(texts: List[str]) -> float:
        green = total = 0
        for t in texts:
            previous = None
            sentences = scored(t)
            for e in embedder.embed(sentences) if sentences else []:
                region = semantic.region(e)
                green += semantic.is_green_after(previous, region)
                total += 1
                previous = region
        return green / max(total, 1)

    def compare(name: str, originals: List[str], others: List[str]) -> dict:
        cos = [float(doc_vector(a) @ doc_vector(b)) for a, b in zip(originals, others)]
        best, same, flips = [], [], []
        for a, b in zip(originals, others):
            sa, sb = scored(a), scored(b)
            if not sa or not sb:
                continue
            ea, eb = embedder.embed(sa), embedder.embed(sb)
            sim = eb @ ea.T
            for j in range(len(sb)):
                i = int(sim[j].argmax())
                best.append(float(sim[j, i]))
                ra, rb = semantic.region(ea[i]), semantic.region(eb[j])
                same.append(ra == rb)
                flips.append(bin(ra ^ rb).count("1"))
        return {"name": name, "answers": len(originals), "doc_cos": float(np.median(cos)),
                "doc_cos_q25": float(np.percentile(cos, 25)), "degenerate": sum(map(degenerate, others)),
                "sentences": len(best), "best_cos": float(np.median(best)), "same_region": float(np.mean(same)),
                "flips": float(np.mean(flips)), "flip_rate": float(np.mean(flips)) / semantic.planes}

    c = args.cache
    layered, token, plain = read_texts(c / "layered.jsonl"), read_texts(c / "token-40.jsonl"), read_texts(c / "plain-40.jsonl")
    n = min(len(layered), len(token), len(plain))
    layered, token, plain = layered[:n], token[:n], plain[:n]
    rows = [
        compare("layered, paraphrased once", layered, read_texts(c / f"layered-para1-{n}.jsonl")),
        compare("token only, paraphrased once", token, read_texts(c / f"token-para1-{n}.jsonl")),
        compare("layered, paraphrased twice", layered, read_texts(c / f"layered-para2-{n}.jsonl")),
        compare("reference: another prompt's plain answer", plain, plain[1:] + plain[:1]),
        compare("reference: plain and layered answers to one prompt", plain, layered),
    ]
    greens = {"layered, clean": green_share(layered), "layered, paraphrased once": green_share(read_texts(c / f"layered-para1-{n}.jsonl")),
              "plain": green_share(plain)}
    f = rows[0]["flip_rate"]
    lines = [f"Scheme `{SEMANTIC}` (gamma {semantic.gamma}, {semantic.planes} hyperplanes, effective gamma "
             f"{semantic.effective_gamma:.3f}); {n} answers per arm, from `{c.name}`.", "",
             "| pair | answers | answer cosine (median, q25) | degenerate | scored sentences | closest-sentence cosine (median) "
             "| same region | hyperplane sides flipped |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['answers']} | {r['doc_cos']:.3f}, {r['doc_cos_q25']:.3f} | {r['degenerate']} | "
                     f"{r['sentences']} | {r['best_cos']:.3f} | {r['same_region']:.3f} | {r['flips']:.2f} of {semantic.planes} |")
    lines += ["", "Green share of scored sentences under the chained rule: " + "; ".join(f"{k} {v:.3f}" for k, v in greens.items())
              + f" (gamma {semantic.gamma}).", "",
              f"With a flip rate of {f:.3f} per hyperplane, a sentence keeps its region with probability about "
              + ", ".join(f"{(1 - f) ** p:.2f} at {p} planes" for p in (1, 2, 3, 4, 8))
              + "; the chained rule also needs the previous sentence's region.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
