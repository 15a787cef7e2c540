"""The harvest at scale for the suspect-API experiment (issue 26, deliverable 4).

A distillation campaign sends our watermarked teacher (SmolLM2-135M-Instruct,
the distillation experiment's kgw scheme under API-account cohort 1's key)
many requests through many accounts and keeps the answers. This script plays
the campaign at a scale that lets a student train on at least 200,000 tokens:

- watermarked answers until `--marked-tokens` (default 260,000) answer tokens,
  and unwatermarked answers of the same teacher until `--plain-tokens`
  (default 210,000), the filler of the 0-10% students;
- the requests, with the account each was sent from (`requests.jsonl`: what
  our serving logs hold for the suspicious accounts; the runbook starts
  there);
- prompts: the distillation templates x topics (549 questions), asked again
  with new sampling seeds round after round; lab/data/prompts.txt is never
  asked, so it stays new to every student (the API test's "new prompts").

Every chunk of 32 answers is its own gzip file under lab/data/suspect-harvest/
(committed: a new machine starts with an empty cache, and twice a harvest in
the cache was lost with its machine), written atomically with fixed gzip
headers; a run that is stopped (kill, reboot, a new session) resumes at the
first missing chunk and never regenerates one. `--status` prints how far the
harvest is without loading the model.

The key is the experiment's own, public by construction (`experiment_master`:
SHA-256 of a stated label), so that the committed harvest, the students
trained on it and their audits agree on any machine. It marks this lab's
data only; it is nobody's deployment key and a watermark under it proves
nothing about anyone's text.

Usage: python lab/python/suspect_harvest.py [--threads N] [--status]
(environment: TRACEMARK_MODEL, the GGUF; TRACEMARK_CACHE, the cache root).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHUNK = 32
NEW_TOKENS = 256
ACCOUNTS = 240
"""Accounts the campaign spreads its requests over (labels `account/{n}`)."""


EXPERIMENT_LABEL = b"tracemark lab experiment key: suspect-api-full (public; not for deployment)"


def experiment_master():
    """The full run's master key: SHA-256 of EXPERIMENT_LABEL (public, see above)."""
    import hashlib

    from tracemark import Key

    return Key.from_bytes(hashlib.sha256(EXPERIMENT_LABEL).digest())


def cache_dir() -> Path:
    """Where the chunks live: lab/data/suspect-harvest (TRACEMARK_SUSPECT_HARVEST overrides)."""
    default = Path(__file__).resolve().parents[1] / "data" / "suspect-harvest"
    return Path(os.environ.get("TRACEMARK_SUSPECT_HARVEST", default))


def run_dir() -> Path:
    """The run's cache (keys, requests, students): $TRACEMARK_CACHE/suspect-api-full."""
    root = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark"))
    return root / "suspect-api-full"


def read_chunk(path: Path) -> List[dict]:
    import gzip

    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines() if line.strip()]


def write_chunk(path: Path, rows: List[dict]) -> None:
    """Atomically, with mtime 0 and no file name in the gzip header (the same bytes on every machine)."""
    import gzip

    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
    tmp.rename(path)


def plan(kind: str) -> Iterator[Tuple[int, int, List[str]]]:
    """(round, chunk, questions) in generation order: every round asks the
    whole pool again in a new shuffle."""
    from transformer_student import prompt_pool

    pool = prompt_pool()
    for rnd in range(1000):
        order = list(pool)
        random.Random(f"{kind}/{rnd}").shuffle(order)
        for c in range(0, len(order), CHUNK):
            yield rnd, c // CHUNK, order[c : c + CHUNK]


def chunk_path(kind: str, rnd: int, chunk: int) -> Path:
    return cache_dir() / f"{kind}-r{rnd:02d}-c{chunk:02d}.jsonl.gz"


def done_tokens(kind: str) -> Tuple[int, int]:
    """(answers, answer tokens) already harvested of `kind`."""
    rows = load(kind)
    return len(rows), sum(len(r["ids"]) for r in rows)


def load(kind: str) -> List[dict]:
    """Every harvested answer of `kind`, in generation order."""
    rows = []
    for p in sorted(cache_dir().glob(f"{kind}-r*-c*.jsonl.gz")):
        rows += read_chunk(p)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--marked-tokens", type=int, default=260_000)
    ap.add_argument("--plain-tokens", type=int, default=210_000)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--status", action="store_true", help="print progress and exit")
    args = ap.parse_args()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    targets = {"marked": args.marked_tokens, "plain": args.plain_tokens}
    if args.status:
        for kind, target in targets.items():
            n, toks = done_tokens(kind)
            print(f"{kind}: {n:,} answers, {toks:,} of {target:,} tokens")
        return 0

    import torch
    from transformer_student import Lab, Plan, log, write_jsonl

    torch.set_num_threads(args.threads)
    root = run_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = experiment_master().derive("cohort/1")
    lab = Lab(Plan.new(False), root, Path("unused"))
    for kind, seed_base in (("marked", 1_000), ("plain", 2_000)):
        _, toks = done_tokens(kind)
        for rnd, chunk, qs in plan(kind):
            if toks >= targets[kind]:
                break
            path = chunk_path(kind, rnd, chunk)
            if path.exists():
                continue
            t = time.time()
            prompts = [lab.chat(q) for q in qs]
            answers = lab.generate(prompts, NEW_TOKENS, key if kind == "marked" else None, seed_base + rnd * 100 + chunk)
            rows = []
            for i, (q, pr, a) in enumerate(zip(qs, prompts, answers)):
                account = f"account/{random.Random(f'{kind}/{rnd}/{chunk}/{i}').randrange(ACCOUNTS)}"
                if a:
                    rows.append({"q": q, "account": account, "prompt_ids": pr, "ids": a})
            write_chunk(path, rows)
            got = sum(len(r["ids"]) for r in rows)
            toks += got
            log(f"{kind} round {rnd} chunk {chunk}: {got:,} tokens in {time.time() - t:.0f} s ({toks:,} of {targets[kind]:,})")
    # The suspicious accounts' requests, as our serving logs hold them.
    reqs = [{"account": r["account"], "messages": [{"role": "user", "content": r["q"]}]} for r in load("marked")]
    write_jsonl(root / "requests.jsonl", reqs)
    log(f"done: {len(reqs):,} requests in {root / 'requests.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
