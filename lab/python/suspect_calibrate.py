"""Calibration of the suspect-API audit on a real endpoint (issue 26, deliverable 2).

The teacher itself (SmolLM2-135M-Instruct, unwatermarked: it never saw text
watermarked with any of our keys) is served by llama-cpp-python's own
OpenAI-compatible server with log-probabilities on, and audited through that
endpoint by `tracemark radioactivity --api`, the command a legal team runs.
Every key is then a control key: the corpora the audit wrote are tested
under 1,000 keys derived from a control master, and the share of p-values
below 0.1, 0.01 and 0.001 is compared with the 99% binomial range of a
calibrated test. Both tests (black box, probability) are checked.

Usage: python lab/python/suspect_calibrate.py [--answers N] [--keys K] [--threads T]
(environment: TRACEMARK_MODEL, TRACEMARK_CLI, TRACEMARK_CACHE). Cached:
the responses (a rerun asks nothing), the tokenizer, the control master.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]
SCHEME = "kgw:gamma=0.25,delta=2,context=lefthash:1"


def binomial_range(n: int, p: float, level: float = 0.99) -> tuple:
    """The central `level` range of Binomial(n, p): (lo, hi) counts."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    tail, lo = 0.0, 0
    while tail + pmf[lo] <= (1 - level) / 2:
        tail += pmf[lo]
        lo += 1
    tail, hi = 0.0, n
    while tail + pmf[hi] <= (1 - level) / 2:
        tail += pmf[hi]
        hi -= 1
    return lo, hi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=104, help="answers to ask (half harvest-like, half new prompts)")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per answer")
    ap.add_argument("--keys", type=int, default=1000, help="control keys")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from tracemark import Key
    from suspect_students import serve
    from transformer_student import log, prompt_pool, stored_key

    cache = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark")) / "suspect-api-calibration"
    cache.mkdir(parents=True, exist_ok=True)
    cli = os.environ["TRACEMARK_CLI"]
    gguf = Path(os.environ["TRACEMARK_MODEL"])
    tok_json = cache / "tokenizer.json"
    if not tok_json.exists():
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(cache / "tok")
        (cache / "tok" / "tokenizer.json").rename(tok_json)
    master_path = cache / "control-master.key"
    stored_key(master_path)
    audit_key = cache / "audit.key"
    if not audit_key.exists():
        Key.load(master_path).derive("audit").save(audit_key)

    # Prompts: the harvest's kind of questions (never sent to this model by a harvester, but the same
    # templates) and the new prompts, as the audit of a suspect would send them.
    harvest = cache / "requests.jsonl"
    harvest.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n"
                               for q in prompt_pool()[: args.answers // 2]))
    new = cache / "new-prompts.txt"
    lines = [l for l in (ROOT / "lab/data/prompts.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    new.write_text("".join(l + "\n" for l in (lines * (1 + args.answers // max(1, 2 * len(lines))))[: args.answers // 2]))

    # Texts to read (the reading test): this model's own unwatermarked answers to the harvest's questions,
    # in the chat format (it begins with the BOS token, <|im_start|>, so llama-cpp-python's echo is aligned).
    import suspect_harvest
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_json))
    read = cache / "read-texts.jsonl"
    read.write_text("".join(json.dumps({"prompt": tok.decode(d["prompt_ids"] + d["ids"], skip_special_tokens=False)})
                            + "\n" for d in suspect_harvest.load("plain")[: args.answers // 2]))

    started = time.time()
    url, stop = serve(gguf, "teacher", args.threads)
    try:
        r = subprocess.run([cli, "radioactivity", "--quiet", "--json", "--api", url, "--model", "teacher",
                            "--key", str(audit_key), "--scheme", SCHEME, "--tokenizer", str(tok_json),
                            "--harvest", str(harvest), "--new-prompts", str(new), "--read", str(read),
                            "--cache", str(cache / "api-cache"), "--out", str(cache / "audit"),
                            "--max-tokens", str(args.tokens), "--concurrency", "1",
                            "--max-requests", str(args.answers + args.answers // 2), "--max-tokens-total", str(10**9)],
                           capture_output=True, text=True)
    finally:
        stop()
    if r.returncode not in (0, 1, 3):
        log(f"the audit failed: {r.stderr.strip()}")
        return 2
    summary = json.loads(r.stdout)
    log(f"audit: {summary['answers']} answers, {summary['completion_tokens_total']:,} completion tokens, "
        f"{time.time() - started:.0f} s")

    corpora = Path(summary["corpora"])
    labels = ",".join(f"control/{i}" for i in range(args.keys))
    rows = []
    for test, flag, name in (("black box", [], "all-black-box.jsonl"),
                             ("probability", ["--logprobs"], "all-probability.jsonl"),
                             ("reading", ["--logprobs"], "read-reading.jsonl")):
        r = subprocess.run([cli, "radioactivity", "--quiet", "--json", "--key", str(master_path), "--derive-labels",
                            labels, "--scheme", SCHEME, "--tokenizer", str(tok_json), *flag, str(corpora / name)],
                           capture_output=True, text=True)
        if r.returncode not in (0, 1, 3):
            log(f"{test}: {r.stderr.strip()}")
            return 2
        keys = json.loads(r.stdout)["keys"]
        ps = [10 ** k["tested"]["log10_p"] for k in keys if k.get("tested")]
        lines = [json.loads(line) for line in (corpora / name).read_text().splitlines() if line.strip()]
        docs = len({d["text"] for d in lines}) if lines and "text" in lines[0] else len(lines)
        rows.append((test, docs, ps))
        log(f"{test}: {len(ps)} keys tested")

    ok = True
    out = args.out or ROOT / f"eval/results/suspect-api-calibration-{datetime.date.today().isoformat()}.md"
    md = ["# The suspect-API audit's calibration on a real endpoint", "",
          "SmolLM2-135M-Instruct, unwatermarked (it never saw text watermarked with any of these keys), served by "
          "llama-cpp-python's OpenAI-compatible server with log-probabilities (top 5) and audited through the endpoint "
          f"by `tracemark radioactivity --api`: {summary['answers']} queries: answers of at most {args.tokens} tokens "
          f"to {summary['prompts']['harvest']} harvest-style questions and {summary['prompts']['new']} new prompts "
          f"({summary['completion_tokens_total']:,} completion tokens), and {summary['prompts'].get('read', 0)} texts read "
          "(its own unwatermarked answers to the harvest's questions, echoed with their log-probabilities: the reading "
          "test). The corpora the audit wrote are then tested under "
          f"{args.keys:,} keys derived from a control master (`--derive-labels control/0..{args.keys - 1}`), scheme `{SCHEME}`. "
          "A calibrated test puts each share inside the 99% binomial range.", "",
          "| test | answers or texts | keys | p < 0.1 (99% range) | p < 0.01 (99% range) | p < 0.001 (99% range) | min p |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for test, docs, ps in rows:
        cells = []
        for a in (0.1, 0.01, 0.001):
            lo, hi = binomial_range(len(ps), a)
            k = sum(p < a for p in ps)
            ok &= k <= hi
            cells.append(f"{k} ({lo}-{hi})")
        md.append(f"| {test} | {docs} | {len(ps)} | " + " | ".join(cells) + f" | {min(ps):.2g} |")
    md += ["", "Only the upper end of each range is a failure (a conservative test may sit below it: the black box's "
           "discreteness, the probability test's quantised weights).", "",
           f"Reproduce: `make suspect-calibrate` ({(time.time() - started) / 60:.0f} minutes in this run, 2 cores beside "
           "other jobs; the responses are cached, so a rerun asks only what is not cached).", ""]
    out.write_text("\n".join(md))
    log(f"report: {out} ({'inside' if ok else 'OUTSIDE'} the 99% ranges)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
