"""Model-assisted scoring against the unweighted tests, on real SmolLM2 answers.

For each watermark arm, SmolLM2-135M-Instruct (transformers, CPU) answers the
evaluation prompts (lab/data/prompts.txt) watermarked under one key, and
unwatermarked; every answer is tested by tracemark's unweighted exact test and
by the weighted one (`Detector.detect_weighted`, weights from the same
model's distribution at each position, `tracemark.position_weights`), clean
and after 30% random token substitution (the eval's attack; the weights are
recomputed on the attacked text, as a verifier would). Reported: TPR at 1e-6
on the first 200 tokens, TPR at 1e-3 after substitution, and the false
positives of both tests on the unwatermarked answers. The calibration of the
weighted tests on human text under 1,000 keys is in
watermark-py/tests/test_weighted.py (part of `make test`).

Usage: python lab/python/weighted_power.py [--quick] [--out report.md]
(environment: TRACEMARK_MODEL, the GGUF).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

import tracemark as tm
from transformer_student import ROOT, Lab, Plan, log, quick_key, read_jsonl, stored_key, write_jsonl

ARMS = {
    "kgw δ=2, h=1": "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw δ=1, h=1": "kgw:gamma=0.25,delta=1,context=lefthash:1",
    "tournament m=30, h=4": "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    "gumbel, h=4": "gumbel:temperature=1,context=lefthash:4",
}
TOKENS = 200
NOTE = (
    "ΔNLL: the watermarked answers' mean negative log-likelihood per token minus the unwatermarked "
    "answers' (plain sampling at temperature 1, no top-k), both under the unwatermarked model, with two "
    'standard errors. The tournament arm draws among the top 40 candidates (`top_k=40`), which lowers NLL'
    ' by itself, so its ΔNLL is not a measure of distortion. TPR counts all answers, including those that'
    ' ended before 200 tokens. The edit-aware weights catch edits that leave an improbable token (random '
    'substitutions and insertions); a deletion or a plausible substitute leaves none, and a paraphrase is'
    ' not an edit of this kind at all.'
)


def prompts() -> List[str]:
    lines = (ROOT / "lab/data/prompts.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


@torch.no_grad()
def weights_of(lab: Lab, scheme: str, docs: List[dict], nll: Optional[List[float]] = None, edit: Optional[List[List[float]]] = None) -> List[List[float]]:
    """The weight of every answer token, from the model's distribution after
    the prompt and the answer before it (and, into `nll`, each answer's mean
    negative log-likelihood per token under the unwatermarked model; into
    `edit`, the edit-aware weights, `tracemark.edit_aware_weights`)."""
    out = []
    for start in range(0, len(docs), 8):
        rows = docs[start : start + 8]
        seqs = [r["prompt_ids"] + r["ids"] for r in rows]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [lab.pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logits = lab.model(input_ids=ids, attention_mask=mask).logits.float().numpy()
        for j, r in enumerate(rows):
            n = len(r["prompt_ids"])
            rows_j = np.ascontiguousarray(logits[j, n - 1 : n - 1 + len(r["ids"])])
            out.append(tm.position_weights(scheme, rows_j))
            lse = np.log(np.exp(rows_j - rows_j.max(-1, keepdims=True)).sum(-1)) + rows_j.max(-1)
            lps = rows_j[np.arange(len(r["ids"])), r["ids"]] - lse
            if nll is not None:
                nll.append(float(-np.mean(lps)))
            if edit is not None:
                edit.append(tm.edit_aware_weights(out[-1], lps.tolist(), width_of(scheme)))
    return out


def width_of(scheme: str) -> int:
    """The context width of a scheme string (`...context=lefthash:4` -> 4)."""
    return int(scheme.rsplit(":", 1)[1])


def substitute(ids: List[int], fraction: float, vocab: int, rng: random.Random) -> List[int]:
    return [rng.randrange(vocab) if rng.random() < fraction else t for t in ids]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--answers", type=int, default=0, help="answers per arm (default 64; quick 6)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    args = ap.parse_args()
    started = time.time()
    n = args.answers or (6 if args.quick else 64)
    cache = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark")) / f"weighted-power-{'quick' if args.quick else 'full'}"
    cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    lab = Lab(Plan.new(True), cache, Path("."))
    key_path = cache / "key.key"
    if args.quick and not key_path.exists():
        quick_key("weighted-power").save(key_path)
    key = stored_key(key_path)
    qs = prompts()[:n]
    chats = [lab.chat(q) for q in qs]
    sets: Dict[str, List[dict]] = {}
    for name, scheme in [("plain", None)] + list(ARMS.items()):
        slug = "".join(c if c.isalnum() else "-" for c in name.encode("ascii", "ignore").decode()).strip("-")
        path = cache / f"answers-{slug}-{n}.jsonl"
        if not path.exists():
            t = time.time()
            answers = lab.generate(chats, TOKENS, None if scheme is None else key, 77, scheme=scheme or "", batch=16)
            write_jsonl(path, ({"prompt_ids": c, "ids": a} for c, a in zip(chats, answers) if a))
            log(f"{name}: {sum(len(a) for a in answers)} tokens in {time.time() - t:.0f} s")
        sets[name] = read_jsonl(path)
    rows = []
    for name, scheme in ARMS.items():
        det = tm.Detector(key, scheme, lab.vocab, min_scored=1)
        res = {}
        for kind, docs in (("marked", sets[name]), ("plain", sets["plain"])):
            for attack in ("clean", "sub30"):
                rng = random.Random(5)
                tested = [dict(d, ids=substitute(d["ids"], 0.3, lab.vocab, rng)) if attack == "sub30" else d for d in docs]
                nll: List[float] = []
                edit: List[List[float]] = []
                ws = weights_of(lab, scheme, tested, nll if attack == "clean" else None, edit)
                if attack == "clean":
                    res[(kind, "nll")] = (nll, nll, nll)
                un, wt, ed = [], [], []
                for d, w, e in zip(tested, ws, edit):
                    r = det.detect_weighted(d["prompt_ids"], d["ids"], w)
                    un.append(r.unweighted.outcome.log10_p if r.unweighted.outcome.log10_p is not None else 0.0)
                    wt.append(r.log10_p)
                    ed.append(det.detect_weighted(d["prompt_ids"], d["ids"], e).log10_p)
                res[(kind, attack)] = (un, wt, ed)
        rows.append((name, scheme, res))
        log(f"{name}: done")
    calib = human_calibration(lab, 12 if args.quick else 48, 100 if args.quick else 1000)
    out = args.out or (cache / "report.md" if args.quick else ROOT / f"eval/results/weighted-{datetime.date.today().isoformat()}.md")
    out.write_text(render(rows, sets, n, calib, time.time() - started))
    log(f"report: {out}")
    return 0


def human_calibration(lab: Lab, docs_n: int, keys: int) -> Dict[str, List[float]]:
    """p-values of the weighted tests on Debian prose (docs_n passages of 160
    tokens, weights from the model) under `keys` keys derived from a fresh master."""
    human = Path(os.environ["TRACEMARK_HUMAN_TEXT"])
    docs = []
    for line in human.read_text().splitlines():
        d = json.loads(line)
        if d.get("category") != "prose":
            continue
        ids = lab.tok.encode(" ".join(d["text"].split()), add_special_tokens=False)
        docs += [{"prompt_ids": ids[s : s + 1], "ids": ids[s + 1 : s + 161]} for s in range(0, len(ids) - 161, 4000)]
        if len(docs) >= docs_n:
            break
    docs = docs[:docs_n]
    master = tm.Key.generate()
    out = {}
    for name, scheme in ARMS.items():
        edit: List[List[float]] = []
        ws = weights_of(lab, scheme, docs, None, edit)
        ps, pe = [], []
        for k in range(keys):
            det = tm.Detector(master.derive(f"calibration/{k}"), scheme, lab.vocab, min_scored=1)
            ps += [det.detect_weighted(d["prompt_ids"], d["ids"], w).p_value for d, w in zip(docs, ws)]
            pe += [det.detect_weighted(d["prompt_ids"], d["ids"], e).p_value for d, e in zip(docs, edit)]
        out[f"{name}, weighted"] = ps
        out[f"{name}, weighted + edit-aware"] = pe
    return out


def binom_range(n: int, p: float) -> tuple:
    """The central 99% range of Binomial(n, p), exactly."""
    from transformer_student import binom_range as exact

    return exact(n, p)


def delta_nll(marked: List[float], plain: List[float]) -> str:
    """Mean NLL per token of the watermarked answers minus the unwatermarked
    ones' (both under the unwatermarked model), with two standard errors."""
    if not marked or not plain:
        return "–"
    d = float(np.mean(marked) - np.mean(plain))
    se = float(np.sqrt(np.var(marked, ddof=1) / len(marked) + np.var(plain, ddof=1) / len(plain)))
    return f"{d:+.3f} ± {2 * se:.3f}"


def rate(xs: List[float], alpha: float) -> str:
    return f"{sum(x < np.log10(alpha) for x in xs) / max(len(xs), 1):.3f}"


def median(xs: List[float]) -> str:
    return f"{float(np.median(xs)):.1f}"


def render(rows, sets, n, calib, secs) -> str:
    lines = [f"# Model-assisted (entropy-weighted) scoring on SmolLM2, {datetime.date.today().isoformat()}", ""]
    lines.append(
        f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantised, transformers, CPU) answers {n} evaluation prompts (`lab/data/prompts.txt`) "
        f"with up to {TOKENS} new tokens at temperature 1, watermarked under one key per arm and unwatermarked. Each answer is tested "
        "with the unweighted exact test and with the weighted test (`Detector.detect_weighted`), whose weights come from the same model's "
        "next-token distribution at each position (`tracemark.position_weights`: kgw, the log-likelihood-ratio weight of a green bit from "
        "the spike entropy; tournament and gumbel, the entropy over ln 8, capped at 1), quantized to 1/16. Substitution: 30% of the tokens "
        "replaced by uniformly random ones (the eval's attack), weights recomputed on the attacked text. The weighted p-value is exact for "
        "kgw and tournament and a Chernoff bound (conservative) for gumbel. Unwatermarked answers: false-positive rate at 1e-3."
    )
    lines.append("")
    lines.append("Three scorings of the same answers: **u** unweighted, **w** weighted, **e** weighted and edit-aware (`tracemark.edit_aware_weights`: "
                 "observations that a token of model probability below 1e-4 touches, as token or context, get weight 0; key-independent, so still exact).")
    lines.append("")
    lines.append("| arm | answers | TPR at 1e-6 (u / w / e) | TPR at 1e-3 after 30% substitution (u / w / e) | median log10 p, clean (u / w / e) | median log10 p, 30% substituted (u / w / e) | FPR at 1e-3, plain (u / w / e) | ΔNLL (nats/token) ± 2 SE |")
    lines.append("|---|---:|---|---|---|---|---|---:|")
    base = rows[0][2][("plain", "nll")][0] if rows else []
    for name, _scheme, res in rows:
        clean, sub, plain = res[("marked", "clean")], res[("marked", "sub30")], res[("plain", "clean")]
        three = lambda f, xs, *a: " / ".join(f(x, *a) for x in xs)
        lines.append(
            f"| {name} | {len(clean[0])} | {three(rate, clean, 1e-6)} | {three(rate, sub, 1e-3)} | {three(median, clean)} | "
            f"{three(median, sub)} | {three(rate, plain, 1e-3)} | {delta_nll(res[('marked', 'nll')][0], base)} |"
        )
    lines.append("")
    lines.append(NOTE)
    lines.append("")
    lines.append("## Calibration on human text")
    lines.append("")
    some = next(iter(calib.values()))
    lines.append(f"The weighted tests on {len(some):,} (document, key) pairs: Debian-packaged prose "
                 "(passages of 160 tokens, weights from the model), each under every one of the keys derived from a fresh master key. Counts of p-values below "
                 "1e-2 and 1e-3 against the central 99% range of Binomial(tests, alpha); a conservative test (gumbel's bound) may fall below it.")
    lines.append("")
    lines.append("| arm | tests | p < 1e-2 | 99% range | p < 1e-3 | 99% range | within |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for name, ps in calib.items():
        t = len(ps)
        a2, a3 = sum(p < 1e-2 for p in ps), sum(p < 1e-3 for p in ps)
        r2, r3 = binom_range(t, 1e-2), binom_range(t, 1e-3)
        within = r2[0] <= a2 <= r2[1] and r3[0] <= a3 <= r3[1]
        below = a2 <= r2[1] and a3 <= r3[1]
        verdict = "yes" if within else ("below (conservative)" if below else "**above**")
        lines.append(f"| {name} | {t:,} | {a2} | {r2[0]}-{r2[1]} | {a3} | {r3[0]}-{r3[1]} | {verdict} |")
    lines.append("")
    lines.append(f"Run time {secs / 60:.0f} min on this machine ({os.cpu_count()} cores). Regenerate with `python lab/python/weighted_power.py` "
                 "(cached answers are reused).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
