"""Audit a suspect model through its API: did it learn from our watermarked answers?

The test a legal team can run against a rival's OpenAI-compatible endpoint
(issue 26). It sends prompts, keeps every response in a cache (so a long
audit survives a crash or a 429 storm and never pays twice for a query),
and runs two exact tests with the key our answers were served under:

- **black box**: the suspect's sampled answers, scored like any text
  (``tracemark radioactivity``);
- **probability test**: when the API returns ``logprobs``/``top_logprobs``,
  the probability the suspect puts on the tokens our key favours at each
  position (``tracemark radioactivity --logprobs``; exact weighted tail).

Prompts come from the harvest (the requests the suspicious accounts sent, as
our serving logs hold them: one JSON object per line with ``messages`` or
``prompt``) and/or new prompts; each test is reported per origin and for all.

The bearer token is read from an environment variable (``--token-env``,
default ``SUSPECT_API_TOKEN``), never from a flag, and never written to a
log, a cache file, a report or an error.

Usage::

    python -m tracemark.suspect_api --url http://127.0.0.1:8080/v1 \\
        --key served.key --tokenizer tokenizer.json \\
        --harvest requests.jsonl --new-prompts prompts.txt \\
        --cache audit-cache --out audit --max-requests 2000 --max-tokens-total 400000

Outputs ``audit.json`` and ``audit.html`` (endpoint, the model id the API
returned, queries and tokens spent, prompts' origin, each test's p-value),
and the corpora the tests ran on. The tests run through the ``tracemark``
command line (``--cli``, or ``$TRACEMARK_CLI``, or ``tracemark`` on PATH).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import html
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["AuditError", "Prompt", "audit", "load_prompts", "main", "radioactivity_api"]


class AuditError(RuntimeError):
    """The audit could not go on (no answer after the retries, a budget spent, a bad response)."""


@dataclass(frozen=True)
class Prompt:
    """One prompt to send: chat ``messages`` or a completion ``prompt``, and where it came from."""

    origin: str
    messages: Optional[Tuple[Tuple[str, str], ...]] = None
    prompt: Optional[str] = None


def load_prompts(harvest: Optional[Path] = None, new: Optional[Path] = None, limit: Optional[int] = None) -> List[Prompt]:
    """The harvest's requests (JSONL: ``messages`` or ``prompt`` per line) and new
    prompts (one per line, ``#`` comments skipped), interleaved so that a
    budget spends on both origins; ``limit`` caps each origin."""
    out: Dict[str, List[Prompt]] = {"harvest": [], "new": []}
    if harvest is not None:
        for n, line in enumerate(harvest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise AuditError(f"{harvest}: line {n}: not JSON ({e.msg})") from None
            if isinstance(row.get("messages"), list):
                msgs = tuple((str(m["role"]), str(m["content"])) for m in row["messages"])
                out["harvest"].append(Prompt("harvest", messages=msgs))
            elif isinstance(row.get("prompt"), str):
                out["harvest"].append(Prompt("harvest", prompt=row["prompt"]))
            else:
                raise AuditError(f"{harvest}: line {n}: needs \"messages\" (a list) or \"prompt\" (a string)")
    if new is not None:
        for line in new.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                out["new"].append(Prompt("new", messages=(("user", line.strip()),)))
    if limit is not None:
        out = {k: v[:limit] for k, v in out.items()}
    merged: List[Prompt] = []
    for i in range(max(len(out["harvest"]), len(out["new"]))):
        merged += [v[i] for v in (out["harvest"], out["new"]) if i < len(v)]
    return merged


@dataclass
class Budget:
    max_requests: int
    max_tokens: int
    requests: int = 0
    tokens: int = 0

    def left(self) -> bool:
        return self.requests < self.max_requests and self.tokens < self.max_tokens


@dataclass
class Client:
    """An OpenAI-compatible endpoint, with retries and a response cache."""

    url: str
    token: Optional[str]
    model: str
    max_tokens: int
    top_logprobs: int
    cache: Path
    retries: int = 6
    backoff: float = 1.0
    timeout: float = 120.0
    temperature: float = 1.0
    log: List[str] = field(default_factory=list)

    def body(self, p: Prompt, i: int) -> dict:
        common = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                  "seed": i, "logprobs": True}
        if p.messages is not None:
            return {**common, "messages": [{"role": r, "content": c} for r, c in p.messages],
                    "top_logprobs": self.top_logprobs}
        return {**common, "prompt": p.prompt, "logprobs": self.top_logprobs}

    def endpoint(self, p: Prompt) -> str:
        return self.url.rstrip("/") + ("/chat/completions" if p.messages is not None else "/completions")

    def cache_path(self, p: Prompt, i: int) -> Path:
        digest = hashlib.sha256(json.dumps([self.endpoint(p), self.body(p, i)], sort_keys=True).encode()).hexdigest()
        return self.cache / f"{digest[:32]}.json"

    def cached(self, p: Prompt, i: int) -> Optional[dict]:
        path = self.cache_path(p, i)
        if path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                path.unlink()  # a torn write from a crash: ask again
        return None

    def ask(self, p: Prompt, i: int) -> dict:
        """The response to prompt ``i``, from the endpoint (retrying 429, 5xx and
        connection errors with exponential backoff and jitter, honouring
        Retry-After), saved to the cache before it is returned."""
        data = json.dumps(self.body(p, i)).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delay = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.endpoint(p), data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    response = json.loads(r.read())
                break
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code != 429 and e.code < 500:
                    raise AuditError(f"{self.endpoint(p)}: HTTP {e.code} for prompt {i}: the request was refused") from None
                wait = e.headers.get("Retry-After") if e.headers else None
                pause = float(wait) if wait and wait.replace(".", "", 1).isdigit() else delay
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = type(e).__name__
                pause = delay
            if attempt == self.retries:
                raise AuditError(f"{self.endpoint(p)}: no answer for prompt {i} after {self.retries + 1} tries ({last}); "
                                 "run the audit again: answers so far are cached and are not asked again")
            self.log.append(f"prompt {i}: {last}, retry {attempt + 1} in {pause:.1f} s")
            time.sleep(pause * (1 + 0.25 * random.random()))
            delay = min(delay * 2, 60.0)
        path = self.cache_path(p, i)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(response), encoding="utf-8")
        tmp.replace(path)
        return response


def piece_map(tokenizer_path: Path) -> Dict[str, int]:
    """Token text (as APIs print it) -> id, for the pieces that decode uniquely."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    seen: Dict[str, int] = {}
    clash = set()
    for i in range(tok.get_vocab_size()):
        piece = tok.decode([i], skip_special_tokens=False)
        if piece in seen or "\ufffd" in piece or not piece:
            clash.add(piece)
        seen.setdefault(piece, i)
    return {k: v for k, v in seen.items() if k not in clash}


def parse(response: dict) -> Tuple[str, List[Tuple[str, List[Tuple[str, float]]]], int, str]:
    """(text, [(sampled token, [(candidate, logprob)])], completion tokens, model id) of a
    chat or completion response; the token list is empty when no logprobs came back."""
    choice = (response.get("choices") or [{}])[0]
    model = str(response.get("model", ""))
    used = int((response.get("usage") or {}).get("completion_tokens", 0))
    if "message" in choice:
        text = choice["message"].get("content") or ""
        content = ((choice.get("logprobs") or {}).get("content")) or []
        steps = [(c["token"], [(t["token"], float(t["logprob"])) for t in c.get("top_logprobs") or []])
                 for c in content]
    else:
        text = choice.get("text") or ""
        lp = choice.get("logprobs") or {}
        steps = [(t, [(k, float(v)) for k, v in (top or {}).items()])
                 for t, top in zip(lp.get("tokens") or [], lp.get("top_logprobs") or [])]
    return text, steps, used, model


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
          retries: int = 6, backoff: float = 1.0, cli: Optional[str] = None, scheme: Optional[str] = None) -> dict:
    """Queries the endpoint (cached, within the budget) and runs the tests; writes
    ``out.json`` and ``out.html`` and returns the summary. See the module docstring."""
    cli = cli or os.environ.get("TRACEMARK_CLI") or "tracemark"
    cache.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    client = Client(url, os.environ.get(token_env) or None, model, max_tokens, top_logprobs, cache,
                    retries=retries, backoff=backoff)
    budget = Budget(max_requests, max_tokens_total)
    responses: Dict[int, dict] = {}
    todo = []
    for i, p in enumerate(prompts):
        hit = client.cached(p, i)
        if hit is not None:
            responses[i] = hit
        else:
            todo.append(i)
    cached = len(responses)
    stopped = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures: Dict[concurrent.futures.Future, int] = {}
        pending = list(todo)
        while pending or futures:
            while pending and len(futures) < concurrency and budget.left():
                i = pending.pop(0)
                budget.requests += 1
                futures[pool.submit(client.ask, prompts[i], i)] = i
            if not futures:
                stopped = "the request or token budget was spent"
                break
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
            for f in done:
                i = futures.pop(f)
                responses[i] = f.result()
                _, steps, used, _ = parse(responses[i])
                budget.tokens += used or len(steps)
    pieces = piece_map(tokenizer)
    work = Path(tempfile.mkdtemp(prefix=f"{out.name}-corpora-", dir=out.parent))
    models, unmapped = set(), 0
    corpora: Dict[str, Tuple[List[dict], List[dict]]] = {"harvest": ([], []), "new": ([], [])}
    for i in sorted(responses):
        text, steps, _, mid = parse(responses[i])
        models.add(mid)
        texts, lps = corpora[prompts[i].origin]
        if text.strip():
            texts.append({"text": text})
        ids = [pieces.get(t) for t, _ in steps]
        if steps and all(x is not None for x in ids):
            top = [[[pieces[c], lp] for c, lp in cands if c in pieces and lp <= 0.0] for _, cands in steps]
            lps.append({"ids": ids, "top": top})
        elif steps:
            unmapped += 1
    results = []
    for origin in ("harvest", "new", "all"):
        texts = corpora["harvest"][0] + corpora["new"][0] if origin == "all" else corpora[origin][0]
        lps = corpora["harvest"][1] + corpora["new"][1] if origin == "all" else corpora[origin][1]
        for mode, docs in (("black box", texts), ("probability", lps)):
            if not docs:
                continue
            corpus = work / f"{origin}-{mode.replace(' ', '-')}.jsonl"
            corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
            log10_p = run_test(cli, key, tokenizer, corpus, "logprobs" if mode == "probability" else "text", scheme)
            results.append({"origin": origin, "test": mode, "documents": len(docs), "log10_p": log10_p,
                            "corpus": corpus.name})
    summary = {
        "format": "tracemark-api-audit/1",
        "endpoint": url,
        "model_requested": model,
        "models_returned": sorted(models),
        "prompts": {"harvest": sum(p.origin == "harvest" for p in prompts), "new": sum(p.origin == "new" for p in prompts)},
        "answers": len(responses),
        "queries_paid_this_run": budget.requests,
        "answers_from_cache": cached,
        "completion_tokens_this_run": budget.tokens,
        "completion_tokens_total": sum(parse(r)[2] for r in responses.values()),
        "stopped": stopped,
        "unmapped_answers": unmapped,
        "retries": client.log,
        "tests": results,
        "corpora": str(work),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".html").write_text(render_html(summary), encoding="utf-8")
    return summary


radioactivity_api = audit
"""The radioactivity test through an API: :func:`audit` under the name the CLI's tests use."""


def render_html(s: dict) -> str:
    e = html.escape
    def p(log10_p: Optional[float]) -> str:
        return "inconclusive" if log10_p is None else f"10<sup>{log10_p:.2f}</sup>"

    rows = "".join(
        f"<tr><td>{e(r['origin'])}</td><td>{e(r['test'])}</td><td>{r['documents']}</td><td>{p(r['log10_p'])}</td></tr>"
        for r in s["tests"])
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tracemark API audit</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:900px;margin:2em auto}}td,th{{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left}}</style></head>
<body><h1>API audit: did the suspect model learn from our watermarked answers?</h1>
<p>Endpoint <code>{e(s['endpoint'])}</code>; model id returned: <code>{e(', '.join(s['models_returned']) or 'none')}</code>.</p>
<p>Prompts: {s['prompts']['harvest']} from the harvest (the suspicious accounts' own requests), {s['prompts']['new']} new.
Answers: {s['answers']} ({s['queries_paid_this_run']} queries paid in this run, {s['answers_from_cache']} from the cache);
completion tokens: {s['completion_tokens_total']:,} in all.{' Stopped early: ' + e(s['stopped']) + '.' if s['stopped'] else ''}</p>
<table><tr><th>prompts</th><th>test</th><th>answers</th><th>p-value</th></tr>{rows}</table>
<p>Each p-value is exact (the probability test: an exact weighted tail, or a conservative bound for gumbel schemes) and is the
chance of a result at least this extreme if the suspect model never learned from text watermarked with this key. Six tests are
listed; a verdict at level alpha should use alpha / 6 (Bonferroni) or name one test before the audit.</p>
</body></html>
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracemark.suspect_api", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the API base, e.g. https://api.example.com/v1")
    ap.add_argument("--model", default="suspect", help="the model name to request")
    ap.add_argument("--key", type=Path, required=True, help="the key our answers were served under")
    ap.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json of our served model")
    ap.add_argument("--scheme", help="default: the key's serving manifest")
    ap.add_argument("--harvest", type=Path, help="JSONL of the suspicious accounts' requests")
    ap.add_argument("--new-prompts", type=Path, help="text file, one new prompt per line")
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
    if a.harvest is None and a.new_prompts is None:
        ap.error("give --harvest, --new-prompts or both")
    try:
        prompts = load_prompts(a.harvest, a.new_prompts, a.limit)
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
    print(f"queries paid {s['queries_paid_this_run']}, from cache {s['answers_from_cache']}, "
          f"completion tokens {s['completion_tokens_total']:,}; report {a.out.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
