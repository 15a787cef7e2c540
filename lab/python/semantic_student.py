"""Does the semantic layer survive distillation through paraphrase-laundered
answers? (issue 25, deliverable 7; no bar: the report says what it sees.)

The answers are `make semantic-frontier`'s (its cache is read, never
written): 40 layered answers of SmolLM2-135M-Instruct (token layer
`kgw:gamma=0.25,delta=2,context=lefthash:1`, sentence layer
`semantic:gamma=0.25,planes=8,chain=previous`, one key) and the same answers
paraphrased once by the unwatermarked model, as a harvester who launders
before training would. Students, each SmolLM2-135M-Instruct fully
fine-tuned on (question, answer) pairs as `make distill-transformer` trains
them (2 epochs, learning rate 1e-4, batch 4):

- *layered, paraphrased*: on the paraphrased answers (the deliverable);
- *layered*: on the answers as served (does the sentence layer reach a
  student at all when nobody launders?);
- *base model*: no training (the control: the same prompts, the same tests).

Each student answers 40 new evaluation prompts (lab/data/prompts.txt after
the frontier's 40; 200 tokens, temperature 1) and is tested two ways:

- *black box*: `tracemark scan --semantic` over all its answers as one
  account (sentences deduplicated by region key across the answers, the
  token layer deduplicated by pair): the token layer's, the semantic
  layer's and the layered p-value (SPEC §15.4);
- *reading mode* (token layer only: the semantic layer has no reading
  mode): the student's most likely next token at every position of our 40
  layered answers as served, `tracemark radioactivity --reading`.

The p-values are the exact tests' (calibrated on human text: the semantic
layer in `eval/results/semantic-calibration-*.md`, the token layer's
reading mode in `distill-transformer`'s controls).

Usage: python lab/python/semantic_student.py [--quick] [--out report.md]
(environment: TRACEMARK_MODEL, TRACEMARK_EMBEDDER, TRACEMARK_CLI; students'
answers are cached under <cache>/semantic-student-{quick,full}).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import List

import torch

from frontier import prompts, slug
from semantic_frontier import SEMANTIC, TOKEN, account_scan
from transformer_student import ROOT, Cli, Lab, Plan, log, read_jsonl, tokens

# Evaluation prompts the frontier's layered answers did not use.
FIRST_NEW_PROMPT = 40


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="three answers per student, one training epoch (a smoke run)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    args = ap.parse_args()
    started = time.time()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    tag = "quick" if args.quick else "full"
    root = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark"))
    source = root / f"semantic-frontier-{tag}"
    cache = root / f"semantic-student-{tag}"
    cache.mkdir(parents=True, exist_ok=True)
    n = 3 if args.quick else 40
    answer_tokens = 48 if args.quick else 200
    layered_path, para_path = source / "layered.jsonl", source / f"layered-para1-{n}.jsonl"
    if not layered_path.exists() or not para_path.exists():
        raise SystemExit(f"run `make semantic-frontier{' QUICK=1' if args.quick else ''}` first (needs {para_path})")
    key_path = source / "key.key"
    cli = os.environ["TRACEMARK_CLI"]
    plan = Plan.new(False)
    if args.quick:
        plan.epochs = 1
    lab = Lab(plan, cache, Path(cli))
    tok_json = lab.tokenizer_json()
    embedder_dir = os.environ["TRACEMARK_EMBEDDER"]

    def as_ids(rows: List[dict]) -> List[dict]:
        return [{"prompt_ids": d["prompt_ids"], "ids": lab.tok.encode(d["text"], add_special_tokens=False)}
                for d in rows if d["text"].strip()]

    served = as_ids(read_jsonl(layered_path)[:n])
    laundered = as_ids(read_jsonl(para_path))
    chats = [lab.chat(q) for q in prompts()[FIRST_NEW_PROMPT : FIRST_NEW_PROMPT + n]]
    students = [("base model (control)", None), ("layered", served), ("layered, paraphrased once", laundered)]
    tests = Cli(Path(cli), lab.vocab, cache)
    rows = []
    for i, (name, data) in enumerate(students):
        name_slug = slug(name)
        meta = cache / f"student-{name_slug}.json"
        if meta.exists():
            s = json.loads(meta.read_text())
        else:
            t = time.time()
            lab.reset()
            loss = lab.train(data, 20 + i) if data else None
            train_secs = time.time() - t
            ids = lab.generate(chats, answer_tokens, None, 2000 + i)
            answers = [lab.tok.decode(a, skip_special_tokens=True) for a in ids]
            reading = [dict(d) for d in served]
            for d, pred in zip(reading, lab.predictions(reading)):
                d["predicted"] = pred
            s = {"name": name, "train_tokens": tokens(data or []), "loss": loss, "train_secs": train_secs,
                 "answers": answers, "answer_tokens": sum(len(a) for a in ids), "reading": reading}
            meta.write_text(json.dumps(s))
            log(f"student {name}: {s['train_tokens']} training tokens, loss {loss}, {train_secs:.0f} s training, "
                f"{s['answer_tokens']} answer tokens")
        bb = account_scan(cli, key_path, str(tok_json), embedder_dir, s["answers"], cache / f"answers-{name_slug}.jsonl")
        rd = tests.log10_p(key_path, "reading", s["reading"], None)
        rows.append((s, bb, rd))
        log(f"{name}: black box token {bb['token']:.2f}, semantic {bb['semantic']:.2f} ({bb['sentences']} sentences), "
            f"layered {bb['layered']:.2f}; reading {rd:.2f}")
    out = args.out or (cache / "report.md" if args.quick else ROOT / f"eval/results/semantic-student-{datetime.date.today().isoformat()}.md")
    out.write_text(render(n, answer_tokens, plan, served, laundered, rows, time.time() - started))
    log(f"report: {out}")
    return 0


def render(n: int, answer_tokens: int, plan: Plan, served: List[dict], laundered: List[dict], rows, secs: float) -> str:
    lines = [
        "# The semantic layer through a distilled student (issue 25, deliverable 7)", "",
        f"Training data: `make semantic-frontier`'s {len(served)} layered answers ({tokens(served):,} tokens; token layer "
        f"`{TOKEN}`, sentence layer `{SEMANTIC}`) as served, and the same answers paraphrased once by the unwatermarked "
        f"SmolLM2 ({tokens(laundered):,} tokens). Students: SmolLM2-135M-Instruct fully fine-tuned ({plan.epochs} epochs, "
        f"learning rate {plan.lr:g}, batch {plan.batch}); the control is the base model, untrained. Each answers {n} new "
        f"evaluation prompts ({answer_tokens} tokens, temperature 1). Black box: `tracemark scan --semantic` over a student's "
        "answers as one account; reading mode (token layer): the student's most likely next token at every position of our "
        "layered answers as served. log10 p of each test:", "",
        "| student | training tokens | loss | answer tokens | sentences scored | black box: token layer | black box: semantic layer "
        "| black box: layered | reading mode (token layer) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, bb, rd in rows:
        loss = "" if s["loss"] is None else f"{s['loss']:.3f}"
        lines.append(f"| {s['name']} | {s['train_tokens']:,} | {loss} | {s['answer_tokens']:,} | {bb['sentences']} | "
                     f"{bb['token']:.2f} | {bb['semantic']:.2f} | {bb['layered']:.2f} | {rd:.2f} |")
    lines += ["", f"Total time {secs / 60:.0f} minutes on this machine (`make semantic-student`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
