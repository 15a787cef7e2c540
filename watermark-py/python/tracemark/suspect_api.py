"""Audit a suspect model through its API: did it learn from our watermarked answers?

The test a legal team can run against a rival's OpenAI-compatible endpoint
(issue 26). It sends prompts, keeps every response in a cache (so a long
audit survives a crash or a 429 storm and never pays twice for a query),
and runs exact tests with the key our answers were served under:

- **black box**: the suspect's sampled answers, scored like any text
  (``tracemark radioactivity``);
- **probability test**: when the API returns ``logprobs``/``top_logprobs``,
  the probability the suspect puts on the tokens our key favours at each
  position (``tracemark radioactivity --logprobs``; exact weighted tail);
- **reading test**: texts never written with the key (human text, our own
  answers served without the watermark) sent with ``echo`` to the completions
  route, so that the API returns the suspect's log-probabilities at every
  token of them; the same exact test over those positions. The audit refuses
  texts that carry our watermark.

Prompts come from the harvest (the requests the suspicious accounts sent, as
our serving logs hold them: one JSON object per line with ``messages`` or
``prompt``) and/or new prompts; each test is reported per origin and for all.
Texts to read (``--read``: one ``{"prompt": ...}`` per line) are their own
origin.

The bearer token is read from an environment variable (``--token-env``,
default ``SUSPECT_API_TOKEN``), never from a flag, and never written to a
log, a cache file, a report or an error.

Usage::

    python -m tracemark.suspect_api --url http://127.0.0.1:8080/v1 \\
        --key served.key --tokenizer tokenizer.json \\
        --harvest requests.jsonl --new-prompts prompts.txt \\
        --cache audit-cache --out audit --max-requests 2000 --max-tokens-total 400000

Outputs ``audit.json`` and ``audit.html`` (endpoint, the model id the API
returned, queries and tokens spent, prompts' origin, each test's p-value and
the family-wise verdict), and the corpora the tests ran on. The client, the
cache and the tests are ``tracemark radioactivity --api`` (the ``tracemark``
command line: ``--cli``, or ``$TRACEMARK_CLI``, or ``tracemark`` on PATH);
this module prepares its prompts and reads its report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["AuditError", "Prompt", "audit", "load_prompts", "main", "radioactivity_api"]


class AuditError(RuntimeError):
    """The audit could not go on (no answer after the retries, a budget spent, a bad response)."""


@dataclass(frozen=True)
class Prompt:
    """One prompt to send: chat ``messages`` or a completion ``prompt``, and where it came from."""

    origin: str
    messages: Optional[Tuple[Tuple[str, str], ...]] = None
    prompt: Optional[str] = None


def _jsonl_rows(path: Optional[Path]) -> Iterator[Tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file (none without a path)."""
    if path is None:
        return
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AuditError(f"{path}: line {n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise AuditError(f"{path}: line {n}: not a JSON object")
        yield n, row


def load_prompts(harvest: Optional[Path] = None, new: Optional[Path] = None, limit: Optional[int] = None,
                 read: Optional[Path] = None) -> List[Prompt]:
    """The harvest's requests (JSONL: ``messages`` or ``prompt`` per line), new
    prompts (one per line, ``#`` comments skipped) and texts to read (JSONL:
    ``prompt`` per line; never written with the key); the first two interleaved so
    that a budget spends on both, the texts to read after them; ``limit`` caps each origin."""
    out: Dict[str, List[Prompt]] = {"harvest": [], "new": [], "read": []}
    for n, row in _jsonl_rows(harvest):
        if isinstance(row.get("messages"), list):
            msgs = tuple((str(m["role"]), str(m["content"])) for m in row["messages"])
            out["harvest"].append(Prompt("harvest", messages=msgs))
        elif isinstance(row.get("prompt"), str):
            out["harvest"].append(Prompt("harvest", prompt=row["prompt"]))
        else:
            raise AuditError(f"{harvest}: line {n}: needs \"messages\" (a list) or \"prompt\" (a string)")
    for n, row in _jsonl_rows(read):
        if not isinstance(row.get("prompt"), str):
            raise AuditError(f"{read}: line {n}: a text to read needs \"prompt\" (a string)")
        out["read"].append(Prompt("read", prompt=row["prompt"]))
    if new is not None:
        for line in new.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                out["new"].append(Prompt("new", messages=(("user", line.strip()),)))
    if limit is not None:
        out = {k: v[:limit] for k, v in out.items()}
    merged: List[Prompt] = []
    for i in range(max(len(out["harvest"]), len(out["new"]))):
        merged += [v[i] for v in (out["harvest"], out["new"]) if i < len(v)]
    # Texts to read come after (no generation: they are cheap), so that adding them leaves the other
    # prompts' places, and with them their seeds and cache entries, as they were.
    merged += out["read"]
    return merged


def run_test(cli: str, key: Path, tokenizer: Path, corpus: Path, mode: str, scheme: Optional[str]) -> Optional[float]:
    """log10 p of one test through the CLI; None when inconclusive."""
    args = [cli, "radioactivity", "--json", "--key", str(key), "--tokenizer", str(tokenizer)]
    if scheme:
        args += ["--scheme", scheme]
    if mode == "logprobs":
        args.append("--logprobs")
    r = subprocess.run(args + [str(corpus)], capture_output=True, text=True)
    if r.returncode not in (0, 1, 3):
        raise AuditError(f"tracemark radioactivity ({mode}) failed: {r.stderr.strip()}")
    outcome = json.loads(r.stdout)["outcome"]
    return outcome.get("log10_p") if outcome.get("status") == "tested" else None


def audit(url: str, *, key: Path, tokenizer: Path, prompts: Sequence[Prompt], cache: Path, out: Path,
          model: str = "suspect", token_env: str = "SUSPECT_API_TOKEN", max_requests: int = 1000,
          max_tokens_total: int = 200_000, max_tokens: int = 200, top_logprobs: int = 5, concurrency: int = 4,
          retries: int = 6, backoff: float = 1.0, cli: Optional[str] = None, scheme: Optional[str] = None,
          alpha: Optional[float] = None) -> dict:
    """Queries the endpoint (cached, within the budget) and runs the tests, through
    ``tracemark radioactivity --api`` (one implementation of the client, the cache and
    the tests); writes ``out.json``, ``out.html`` and ``out-corpora/`` and returns the
    summary. See the module docstring."""
    cli = cli or os.environ.get("TRACEMARK_CLI") or "tracemark"
    cache.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tracemark-audit-") as tmp:
        listed = Path(tmp) / "prompts.jsonl"
        with listed.open("w", encoding="utf-8") as f:
            for p in prompts:
                row: dict = {"origin": p.origin}
                if p.messages is not None:
                    row["messages"] = [{"role": r, "content": c} for r, c in p.messages]
                else:
                    row["prompt"] = p.prompt
                f.write(json.dumps(row) + "\n")
        args = [cli, "radioactivity", "--quiet", "--json", "--api", url, "--key", str(key), "--tokenizer", str(tokenizer),
                "--prompts", str(listed), "--cache", str(cache), "--out", str(out), "--model", model,
                "--token-env", token_env, "--max-requests", str(max_requests), "--max-tokens-total", str(max_tokens_total),
                "--max-tokens", str(max_tokens), "--top-logprobs", str(top_logprobs), "--concurrency", str(concurrency),
                "--retries", str(retries), "--backoff", str(backoff)]
        if scheme:
            args += ["--scheme", scheme]
        if alpha is not None:
            args += ["--alpha", str(alpha)]
        r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode not in (0, 1, 3):
        raise AuditError(r.stderr.strip() or f"tracemark radioactivity --api exited with {r.returncode}")
    return json.loads(r.stdout)


radioactivity_api = audit
"""The radioactivity test through an API: :func:`audit` under the name the CLI's tests use."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracemark.suspect_api", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the API base, e.g. https://api.example.com/v1")
    ap.add_argument("--model", default="suspect", help="the model name to request")
    ap.add_argument("--key", type=Path, required=True, help="the key our answers were served under")
    ap.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json of our served model")
    ap.add_argument("--scheme", help="default: the key's serving manifest")
    ap.add_argument("--harvest", type=Path, help="JSONL of the suspicious accounts' requests")
    ap.add_argument("--new-prompts", type=Path, help="text file, one new prompt per line")
    ap.add_argument("--read", type=Path, help="JSONL of texts to read ({\"prompt\": ...}), never written with the key")
    ap.add_argument("--limit", type=int, help="at most this many prompts of each origin")
    ap.add_argument("--cache", type=Path, required=True, help="response cache (resumable audits)")
    ap.add_argument("--out", type=Path, required=True, help="report path without extension (.json and .html)")
    ap.add_argument("--token-env", default="SUSPECT_API_TOKEN", help="environment variable holding the bearer token")
    ap.add_argument("--max-requests", type=int, default=1000)
    ap.add_argument("--max-tokens-total", type=int, default=200_000)
    ap.add_argument("--max-tokens", type=int, default=200, help="tokens per answer")
    ap.add_argument("--top-logprobs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--retries", type=int, default=6)
    ap.add_argument("--cli", help="the tracemark binary (default $TRACEMARK_CLI or tracemark)")
    a = ap.parse_args(argv)
    if a.harvest is None and a.new_prompts is None and a.read is None:
        ap.error("give --harvest, --new-prompts, --read or several")
    try:
        prompts = load_prompts(a.harvest, a.new_prompts, a.limit, a.read)
        s = audit(a.url, key=a.key, tokenizer=a.tokenizer, prompts=prompts, cache=a.cache, out=a.out, model=a.model,
                  token_env=a.token_env, max_requests=a.max_requests, max_tokens_total=a.max_tokens_total,
                  max_tokens=a.max_tokens, top_logprobs=a.top_logprobs, concurrency=a.concurrency, retries=a.retries,
                  cli=a.cli, scheme=a.scheme)
    except (AuditError, OSError) as e:
        print(f"tracemark.suspect_api: {e}", file=sys.stderr)
        return 2
    for r in s["tests"]:
        p = "inconclusive" if r["log10_p"] is None else f"p = 10^{r['log10_p']:.2f}"
        print(f"{r['origin']:<8} {r['test']:<12} {r['documents']:>5} answers  {p}")
    fw = s["family_wise"]
    print(f"family-wise over {fw['tests']} tests at alpha {fw['alpha']:g}: {fw['verdict']}")
    print(f"queries paid {s['queries_paid_this_run']}, from cache {s['answers_from_cache']}, "
          f"completion tokens {s['completion_tokens_total']:,}; report {a.out.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
