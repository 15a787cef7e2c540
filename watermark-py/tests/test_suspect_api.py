"""tracemark.suspect_api against a real endpoint: llama-cpp-python's own
OpenAI-compatible server on SmolLM2 (a model that never saw our key's text:
the 0% suspect), behind a proxy that rate-limits and fails on purpose.

What it shows (issue 26's quick version): the audit pays for each query once
(an interrupted audit resumes from its cache), retries 429 and 5xx, keeps the
bearer token out of every file it writes, reports per prompt origin, and both
tests stay calibrated on the suspect that never learned from us (100 keys).
"""

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import tracemark as tm
from conftest import required_env
from tracemark import suspect_api

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"
TOKEN = "sk-audit-7f3a9c-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """llama-cpp-python's server (no watermark) on SmolLM2."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    gguf = Path(required_env("TRACEMARK_MODEL"))
    port = free_port()
    app = create_app(server_settings=ServerSettings(host="127.0.0.1", port=port), model_settings=
                     [ModelSettings(model=str(gguf), model_alias="suspect-0", n_ctx=1024, n_threads=2,
                                    n_threads_batch=2, verbose=False, logits_all=True)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 90
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


class Flaky:
    """A proxy that checks the bearer token, answers every third request with
    429 (Retry-After: 0) and the fifth with 503, and counts what it forwarded."""

    def __init__(self, upstream: str):
        self.forwarded = 0
        self.refused = 0
        self.seen = 0
        self.bodies = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.seen += 1
                if outer.seen % 3 == 0 or outer.seen == 5:
                    outer.refused += 1
                    self.send_response(429 if outer.seen % 3 == 0 else 503)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                req = urllib.request.Request(upstream + self.path, data=body,
                                             headers={"Content-Type": "application/json"}, method="POST")
                with urllib.request.urlopen(req, timeout=300) as r:
                    data = r.read()
                outer.forwarded += 1
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    from transformers import AutoTokenizer

    gguf = Path(required_env("TRACEMARK_MODEL"))
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out / "tokenizer.json"


def test_an_interrupted_audit_resumes_without_paying_twice(upstream, tokenizer_json, tmp_path, monkeypatch):
    cli = required_env("TRACEMARK_CLI")
    key = tmp_path / "served.key"
    tm.Key.from_bytes(bytes(range(40, 72))).save(key)
    subprocess.run([cli, "serving", "--key", str(key), "--scheme", KGW], check=True, capture_output=True)
    harvest = tmp_path / "requests.jsonl"
    questions = ["Explain how tides work.", "What is a prime number?", "Describe a rainforest.",
                 "How do vaccines work?", "Why is the sky blue?", "What causes earthquakes?"]
    harvest.write_text("".join(json.dumps({"account": f"account/{i}", "messages": [{"role": "user", "content": q}]})
                               + "\n" for i, q in enumerate(questions)))
    new = tmp_path / "new.txt"
    new.write_text("# new prompts\nWrite a haiku about rain.\nList three uses of copper.\nWhat is entropy?\n"
                   "Describe a city at night.\nHow do birds navigate?\nWhat is a black hole?\n")
    prompts = suspect_api.load_prompts(harvest, new)
    assert [p.origin for p in prompts[:4]] == ["harvest", "new", "harvest", "new"] and len(prompts) == 12
    monkeypatch.setenv("SUSPECT_API_TOKEN", TOKEN)
    proxy = Flaky(upstream)
    common = dict(key=key, tokenizer=tokenizer_json, prompts=prompts, cache=tmp_path / "cache", model="suspect-0",
                  max_tokens=48, top_logprobs=5, concurrency=2, backoff=0.01, cli=cli)
    # First run: the request budget stops it after 5 answers.
    s1 = suspect_api.audit(proxy.url, out=tmp_path / "first", max_requests=5, **common)
    assert s1["answers"] == 5 and s1["stopped"] and s1["queries_paid_this_run"] == 5
    assert proxy.refused >= 2 and s1["retries"], "429 and 503 were retried"
    # Second run: resumes; the 5 cached answers are not asked again.
    s2 = suspect_api.audit(proxy.url, out=tmp_path / "audit", max_requests=100, **common)
    assert s2["answers"] == 12 and s2["answers_from_cache"] == 5 and s2["queries_paid_this_run"] == 7
    assert proxy.forwarded == 12, "every prompt answered upstream exactly once"
    assert s2["models_returned"] == ["suspect-0"] and s2["endpoint"] == proxy.url
    assert s2["completion_tokens_total"] > 0
    fw = s2["family_wise"]
    assert fw["verdict"] == "not_detected" and fw["tests"] == len(s2["tests"]) == 6, fw
    assert "not detected" in (tmp_path / "audit.html").read_text()
    # The command line itself (the Python audit is a front to it): a third run, at the suspect's
    # own address instead of the proxy's, pays nothing (the cache is keyed by the request, not the host).
    listed = tmp_path / "prompts.jsonl"
    listed.write_text("".join(json.dumps({"origin": p.origin, "messages": [{"role": r, "content": c}
                                                                          for r, c in p.messages]}) + "\n"
                              for p in prompts))
    r = subprocess.run([cli, "radioactivity", "--quiet", "--api", upstream + "/v1", "--key", str(key), "--tokenizer",
                        str(tokenizer_json), "--prompts", str(listed), "--cache", str(tmp_path / "cache"),
                        "--out", str(tmp_path / "cli"), "--model", "suspect-0", "--max-tokens", "48",
                        "--concurrency", "2"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "family-wise over 6 tests" in r.stdout and "queries paid 0, from cache 12" in r.stdout, r.stdout
    assert proxy.forwarded == 12
    assert json.loads((tmp_path / "cli.json").read_text())["tests"] == s2["tests"]
    tests = {(t["origin"], t["test"]): t for t in s2["tests"]}
    for origin in ("harvest", "new", "all"):
        for test in ("black box", "probability"):
            t = tests[(origin, test)]
            assert t["log10_p"] is None or t["log10_p"] > -3, f"{origin} {test}: a clean suspect flagged: {t}"
    # The token is nowhere: reports, cache, corpora.
    corpora = Path(s2["corpora"])
    for f in [tmp_path / "audit.json", tmp_path / "audit.html", *(tmp_path / "cache").iterdir(), *corpora.iterdir()]:
        assert TOKEN not in f.read_text(), f
    assert all("Authorization" not in json.dumps(b) for b in proxy.bodies)
    # Calibration: the probability test on this suspect under 100 keys.
    lp = corpora / "all-probability.jsonl"
    ps = []
    for i in range(100):
        k = tmp_path / f"k{i}.key"
        tm.Key.from_bytes(bytes((i * 13 + j * 7 + 1) % 256 for j in range(32))).save(k)
        r = subprocess.run([cli, "radioactivity", "--json", "--logprobs", "--key", str(k), "--scheme", KGW,
                            "--vocab", "49152", str(lp)], capture_output=True, text=True)
        assert r.returncode in (0, 1), r.stderr
        ps.append(10 ** json.loads(r.stdout)["outcome"]["log10_p"])
    below = sum(p < 0.1 for p in ps)
    # 99.9% binomial range of Binomial(100, 0.1); the weighted tail is exact, so at most the discreteness.
    assert below <= 21, f"{below} of 100 keys below 0.1"
    assert min(ps) > 1e-4


HUMAN = [
    "The river had risen overnight, and by morning the lower fields were under a sheet of brown water. "
    "Farmers stood at the edge of the road, counting what they could still reach.",
    "She kept the letters in a tin box under the stairs, tied with string, and read one every winter "
    "when the snow closed the pass and the village went quiet.",
    "Bread rises because yeast eats sugar and gives off carbon dioxide, which the gluten traps in small "
    "pockets; an oven then sets the walls of those pockets into crumb.",
    "The committee met twice in March, first to hear the engineers and then the residents, and it "
    "postponed its decision until the survey of the bridge was finished.",
]


def test_reading_texts_through_echo(upstream, tokenizer_json, tmp_path):
    """The reading test on a real endpoint: human texts echoed with log-probabilities,
    tested (calibrated on a suspect that never learned from us), a response shifted by one
    position refused (llama-cpp-python shifts it when the prompt does not begin with the
    model's BOS token, here <|im_start|>), and texts that carry our watermark refused."""
    cli = required_env("TRACEMARK_CLI")
    key = tmp_path / "served.key"
    tm.Key.from_bytes(bytes(range(90, 122))).save(key)
    subprocess.run([cli, "serving", "--key", str(key), "--scheme", KGW], check=True, capture_output=True)
    chat = "<|im_start|>user\nWrite a paragraph.<|im_end|>\n<|im_start|>assistant\n"
    read = tmp_path / "read.jsonl"
    read.write_text("".join(json.dumps({"prompt": chat + t}) + "\n" for t in HUMAN))
    common = dict(key=key, tokenizer=tokenizer_json, cache=tmp_path / "cache", model="suspect-0", concurrency=2, cli=cli)
    s = suspect_api.audit(upstream + "/v1", prompts=suspect_api.load_prompts(read=read), out=tmp_path / "audit",
                          **common)
    assert s["prompts"]["read"] == 4 and s["answers"] == 4 and s["prompt_tokens_total"] > 100
    (t,) = s["tests"]
    assert (t["origin"], t["test"], t["documents"]) == ("read", "reading", 4), t
    assert t["log10_p"] is not None and t["log10_p"] > -3, t
    rows = [json.loads(line) for line in (Path(s["corpora"]) / "read-reading.jsonl").read_text().splitlines()]
    # Cut at the special tokens (they print as nothing), the rest kept.
    assert all(len(r["ids"]) == len(r["top"]) for r in rows) and sum(len(r["ids"]) for r in rows) > 120
    # Under 100 keys the reading test stays calibrated on this suspect.
    ps = []
    for i in range(100):
        k = tmp_path / f"k{i}.key"
        tm.Key.from_bytes(bytes((i * 29 + j * 11 + 3) % 256 for j in range(32))).save(k)
        r = subprocess.run([cli, "radioactivity", "--json", "--logprobs", "--key", str(k), "--scheme", KGW,
                            "--vocab", "49152", str(Path(s["corpora"]) / "read-reading.jsonl")],
                           capture_output=True, text=True)
        assert r.returncode in (0, 1), r.stderr
        ps.append(10 ** json.loads(r.stdout)["outcome"]["log10_p"])
    assert sum(p < 0.1 for p in ps) <= 21 and min(ps) > 1e-4, sorted(ps)[:5]
    # Without the BOS token the server's echo is one position late: refused, clearly.
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in HUMAN))
    with pytest.raises(suspect_api.AuditError, match="shifted by one position"):
        suspect_api.audit(upstream + "/v1", prompts=suspect_api.load_prompts(read=shifted), out=tmp_path / "shifted",
                          **common)
    # A text written with the key is refused before anything is sent.
    tok = tm.Tokenizer.from_file(tokenizer_json)
    scheme = tm.Scheme(tm.Key.load(key), KGW, tok.vocab_size)
    words = [tok.encode(" " + w)[0] for w in ("the", "a", "river", "stone", "light", "road", "house", "tree", "cold",
                                               "water", "green", "small", "old", "bright", "field", "wind")]
    ids, used = tok.encode("The"), set()
    for _ in range(120):
        green = [w for w in words if scheme.score(scheme.observe(ids, w)[2]) > 0.5]
        w = next((w for w in green if (ids[-1], w) not in used), green[0])
        used.add((ids[-1], w))
        ids.append(w)
    assert len(used) > 20  # distinct green pairs: p about 0.25^20 = 1e-12
    marked = tmp_path / "marked.jsonl"
    marked.write_text(json.dumps({"prompt": chat + tok.decode(ids)}) + "\n")
    with pytest.raises(suspect_api.AuditError, match="carry this key's watermark"):
        suspect_api.audit(upstream + "/v1", prompts=suspect_api.load_prompts(read=marked), out=tmp_path / "marked",
                          cache=tmp_path / "cache-marked", **{k: v for k, v in common.items() if k != "cache"})
    assert not list((tmp_path / "cache-marked").glob("*.json")), "nothing was sent"


def test_bad_inputs_are_clear(tmp_path):
    bad = tmp_path / "requests.jsonl"
    bad.write_text('{"account": "a"}\n')
    with pytest.raises(suspect_api.AuditError, match="needs \"messages\""):
        suspect_api.load_prompts(bad)
    bad.write_text("not json\n")
    with pytest.raises(suspect_api.AuditError, match="line 1: not JSON"):
        suspect_api.load_prompts(bad)
    r = subprocess.run([sys.executable, "-m", "tracemark.suspect_api", "--url", "http://127.0.0.1:9", "--key", "k",
                        "--tokenizer", "t", "--cache", str(tmp_path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "give --harvest, --new-prompts, --read or several" in r.stderr
    bad.write_text('{"messages": []}\n')
    with pytest.raises(suspect_api.AuditError, match="a text to read needs \"prompt\""):
        suspect_api.load_prompts(read=bad)


def test_the_command_line_refuses_clearly(tmp_path, tokenizer_json):
    cli = required_env("TRACEMARK_CLI")
    key = tmp_path / "k.key"
    tm.Key.from_bytes(bytes(range(32))).save(key)
    base = [cli, "radioactivity", "--key", str(key), "--scheme", KGW, "--api", "http://127.0.0.1:9/v1"]
    # --api takes no corpus file; the flags of an audit need --api; an audit needs our tokenizer.
    r = subprocess.run(base + ["--vocab", "100", "corpus.jsonl"], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot be used with" in r.stderr, r.stderr
    r = subprocess.run([cli, "radioactivity", "--key", str(key), "--cache", "c", "corpus.jsonl"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--api" in r.stderr, r.stderr
    bad = tmp_path / "requests.jsonl"
    bad.write_text('{"account": "a"}\n')
    audit = ["--harvest", str(bad), "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")]
    r = subprocess.run(base + ["--vocab", "100"] + audit, capture_output=True, text=True)
    assert r.returncode == 2 and "--tokenizer" in r.stderr, r.stderr
    # A bad request line is an input error that says what a line holds.
    r = subprocess.run(base + ["--tokenizer", str(tokenizer_json)] + audit, capture_output=True, text=True)
    assert r.returncode == 4 and "line 1: needs \"messages\"" in r.stderr and "prompts file" in r.stderr, r.stderr
    # An endpoint that never answers: an input error after the retries, nothing written as an answer.
    bad.write_text('{"prompt": "hello"}\n')
    r = subprocess.run(base + ["--tokenizer", str(tokenizer_json), "--retries", "1", "--backoff", "0.01"] + audit,
                       capture_output=True, text=True)
    assert r.returncode == 4 and "no answer for prompt 0 after 2 tries" in r.stderr, r.stderr
    assert not list((tmp_path / "c").iterdir())
