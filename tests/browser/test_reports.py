"""The HTML reports of `tracemark report`, rendered in a real browser (headless Chromium).

Each report (detected, not detected, inconclusive, a corpus scan, a radioactivity
test) is written by the CLI from inputs made here with fixed seeds, opened in
Chromium over the DevTools protocol and checked: its verdict is in the DOM, its
script ran to the end without an error, nothing went to the console as an error,
and it asked for nothing but itself (every host name fails to resolve, and a
request would be recorded anyway). A separate `chromium --dump-dom` checks the
rendered DOM again. One more report of 100,000 token ids must render in time.

`make test-browser` runs this (it installs Chromium and provides TRACEMARK_CLI
and TRACEMARK_MODEL); `--update-screenshots` (or TRACEMARK_UPDATE_SCREENSHOTS=1)
also copies the five screenshots into docs/report/.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

import tracemark as tm
from tracemark.hf import TracemarkLogitsProcessor

import cdp

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "report"
SCHEME = "kgw:gamma=0.25,delta=2,context=lefthash:1"
ID_VOCAB = 1000          # the id inputs (radioactivity, the long report) use a small vocabulary
WIDTH, HEIGHT = 1280, 2000   # the window
SHOT_HEIGHT = 3000           # screenshots: the whole page down to its last content, at most this tall
SENTENCES = {            # what #verdict must say (lower case), and must not
    "detected": ("detected", ("no watermark", "not detected")),
    "not_detected": ("not detected", ()),
    "inconclusive": ("inconclusive", ()),
}


def required_env(name: str) -> str:
    """A path the Makefile provides. Missing means a broken setup: fail, never skip."""
    value = os.environ.get(name)
    if not value or not Path(value).exists():
        pytest.fail(f"{name} is not set to an existing file: run the tests through `make test-browser`")
    return value


# ---------------------------------------------------------------------------- inputs

PROMPTS = [
    "Describe a walk through a busy city market.",
    "Explain how bread rises, for a curious child.",
    "Write a short letter to a neighbour about a lost cat.",
    "What should I pack for a weekend of hiking in the mountains?",
]


def generate(model, tokenizer, processor, seed: int, new_tokens: int) -> list:
    """One answer per prompt from SmolLM2, sampled at temperature 1 (watermarked when `processor` is given)."""
    torch.manual_seed(seed)
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=False) for p in PROMPTS]
    batch = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    processors = LogitsProcessorList([processor] if processor else [])
    with torch.no_grad():
        out = model.generate(**batch, logits_processor=processors, max_new_tokens=new_tokens, do_sample=True,
                             temperature=1.0, top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)
    return [tokenizer.decode(row[batch["input_ids"].shape[1]:], skip_special_tokens=True).strip() for row in out]


def sample_ids(scheme: tm.Scheme, docs: int, length: int, seed: int) -> np.ndarray:
    """`docs` rows of `length` ids from flat logits through a lefthash:1 KGW scheme.

    With a context of one token the bias depends only on the previous id, so the
    whole process is a Markov chain: one table of cumulative probabilities per
    previous id, then one uniform draw per token.
    """
    bias = np.stack([scheme.bias([prev]) for prev in range(ID_VOCAB)]).astype(np.float64)
    cdf = np.cumsum(np.exp(bias), axis=1)
    cdf /= cdf[:, -1:]
    rng = np.random.default_rng(seed)
    u = rng.random((docs, length))
    ids = np.empty((docs, length), dtype=np.int64)
    ids[:, 0] = rng.integers(0, ID_VOCAB, docs)
    for d in range(docs):
        row, prev = ids[d], ids[d, 0]
        for t in range(1, length):
            prev = row[t] = min(int(np.searchsorted(cdf[prev], u[d, t], side="right")), ID_VOCAB - 1)
    return ids


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """Every input file of the reports, made once per session from fixed seeds."""
    d = tmp_path_factory.mktemp("inputs")
    # A fixed key (the screenshots show its id); `tracemark keygen` draws from the OS and is not reproducible.
    key = tm.Key.from_bytes(hashlib.sha256(b"tracemark browser test key").digest())
    key.save(d / "test.key")

    gguf = Path(required_env("TRACEMARK_MODEL"))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(d / "tokenizer")  # tokenizer.json, as a verifier would get it
    (d / "tokenizer" / "tokenizer.json").rename(d / "tokenizer.json")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    proc = TracemarkLogitsProcessor(key, SCHEME, model.config.vocab_size, pad_token_id=tokenizer.pad_token_id)
    marked = generate(model, tokenizer, proc, seed=1, new_tokens=160)
    plain = generate(model, tokenizer, None, seed=2, new_tokens=160)

    (d / "marked.txt").write_text(marked[0] + "\n")
    (d / "plain.txt").write_text(plain[0] + "\n")
    (d / "short.txt").write_text("Thanks, see you soon!\n")
    with open(d / "corpus.jsonl", "w") as f:  # a scan: watermarked and plain answers, interleaved
        for m, p in zip(marked, plain):
            f.write(json.dumps({"text": m}) + "\n" + json.dumps({"text": p}) + "\n")

    # Radioactivity: a student that learned the watermark weakly (delta 0.3 instead of 2, same green lists):
    # 40 answers of 250 tokens, each too weak alone, together far beyond the threshold.
    student = tm.Scheme.kgw(key, gamma=0.25, delta=0.3, context="lefthash:1", vocab_size=ID_VOCAB)
    with open(d / "student.jsonl", "w") as f:
        for row in sample_ids(student, docs=40, length=250, seed=3):
            f.write(json.dumps({"ids": row.tolist()}) + "\n")

    # The long input: 100,000 watermarked ids.
    strong = tm.Scheme(key, SCHEME, vocab_size=ID_VOCAB)
    (d / "long-ids.txt").write_text(" ".join(map(str, sample_ids(strong, docs=1, length=100_000, seed=4)[0])) + "\n")
    return d


# ---------------------------------------------------------------------------- the reports

def report_args(name: str) -> list:
    """The arguments after `tracemark report --out NAME.html`, with paths relative to the inputs."""
    key = ["--key", "test.key", "--scheme", SCHEME]
    text = [*key, "--tokenizer", "tokenizer.json"]
    ids = [*key, "--vocab", str(ID_VOCAB)]
    return {
        "detected": ["detect", *text, "marked.txt"],
        "not-detected": ["detect", *text, "plain.txt"],
        "inconclusive": ["detect", *text, "short.txt"],
        "scan": ["scan", *text, "corpus.jsonl"],
        "radioactivity": ["radioactivity", *ids, "student.jsonl"],
        "long": ["detect", *ids, "--ids", "long-ids.txt"],
    }[name]


# name -> (data-kind, data-verdict)
CASES = {
    "detected": ("detection", "detected"),
    "not-detected": ("detection", "not_detected"),
    "inconclusive": ("detection", "inconclusive"),
    "scan": ("scan", "detected"),
    "radioactivity": ("radioactivity", "detected"),
}


# `tracemark report` exits with its verdict's code, as the test's own command does.
EXIT = {"detected": 0, "not_detected": 1, "inconclusive": 3}


def write_report(inputs: Path, name: str, verdict: str) -> Path:
    """Runs `tracemark report` in the inputs' folder (the page shows the command: short paths read better)."""
    cli = required_env("TRACEMARK_CLI")
    out = inputs / f"{name}.html"
    r = subprocess.run([cli, "report", "--out", out.name, *report_args(name)],
                       cwd=inputs, capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT[verdict], f"tracemark report {name} exited with {r.returncode}:\n{r.stderr}"
    assert out.is_file() and out.stat().st_size > 0, f"no {out}"
    json.loads(out.with_suffix(".json").read_text())  # the data beside it parses
    return out


class _Scan(HTMLParser):
    """What the static and the dumped-DOM checks need: body attributes, #verdict's text, fetchable URLs."""

    # Attributes a browser fetches from. An <a href> is a link to follow, not a fetch.
    FETCHED = {"src", "srcset", "poster", "data", "action", "formaction", "background", "href", "xlink:href"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.body = None
        self.verdict_depth = 0
        self.verdict_text = ""
        self.external = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if self.verdict_depth:
            self.verdict_depth += 1
        elif a.get("id") == "verdict":
            self.verdict_depth = 1
        for k, v in attrs:
            if v and k in self.FETCHED and not (tag == "a" and k == "href") and remote(v):
                self.external.append(f"<{tag} {k}={v!r}>")
        if "url(" in (a.get("style") or "") and remote(a["style"].split("url(", 1)[1]):
            self.external.append(f"<{tag} style={a['style']!r}>")
        self.in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if self.verdict_depth:
            self.verdict_depth -= 1

    def handle_endtag(self, tag):
        if self.verdict_depth:
            self.verdict_depth -= 1
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.verdict_depth:
            self.verdict_text += data
        if self.in_style:
            for part in data.split("url(")[1:] + data.split("@import")[1:]:
                if remote(part):
                    self.external.append(f"<style> {part[:80]!r}")


def remote(value: str) -> bool:
    v = value.strip().strip("'\"( ").lower()
    return v.startswith(("http:", "https:", "//", "ws:", "wss:", "ftp:"))


def parse(html: str) -> _Scan:
    s = _Scan()
    s.feed(html)
    s.close()
    return s


@pytest.fixture(scope="session")
def browser():
    b = cdp.Browser(WIDTH, HEIGHT)
    yield b
    b.close()


def check_in_browser(browser, html: Path, kind: str, verdict: str, ready_timeout: float):
    """Opens the report in a new tab and checks it there; returns the tab and the seconds to ready."""
    page = browser.new_page()
    url = html.resolve().as_uri()
    t0 = time.monotonic()
    page.open(url, timeout=ready_timeout)
    ready = page.wait_for("document.body && document.body.dataset.ready === '1'", ready_timeout)
    seconds = time.monotonic() - t0
    state = page.evaluate("""(() => { const b = document.body, v = document.getElementById('verdict');
        return {kind: b.dataset.kind, verdict: b.dataset.verdict, ready: b.dataset.ready || null,
                jsError: b.dataset.jsError || null, text: v ? v.innerText : null}; })()""")
    errors = page.errors()
    assert not errors, f"{html.name}: errors in the browser:\n" + "\n".join(errors)
    assert state["jsError"] is None, f"{html.name}: the page's script failed: {state['jsError']}"
    assert ready and state["ready"] == "1", f"{html.name}: the script did not finish in {ready_timeout} s ({state})"
    assert (state["kind"], state["verdict"]) == (kind, verdict), f"{html.name}: {state}"
    check_sentence(html.name, verdict, state["text"])
    fetched = [u for u in page.requests if u != url and not u.startswith(("data:", "blob:", "about:"))]
    assert not fetched, f"{html.name} is not self-contained: it requested {fetched}"
    return page, seconds


def check_sentence(name: str, verdict: str, text) -> None:
    must, must_not = SENTENCES[verdict]
    assert text and text.strip(), f"{name}: no #verdict text"
    low = " ".join(text.lower().split())
    assert must in low and not any(m in low for m in must_not), f"{name}: #verdict says {text!r} for {verdict}"


def check_dumped_dom(html: Path, kind: str, verdict: str, timeout: float) -> None:
    dom = parse(cdp.dump_dom(html.resolve().as_uri(), timeout))
    assert dom.body is not None, f"{html.name}: no <body> in the dumped DOM"
    assert dom.body.get("data-kind") == kind and dom.body.get("data-verdict") == verdict, dom.body
    assert dom.body.get("data-ready") == "1" and "data-js-error" not in dom.body, dom.body
    check_sentence(html.name, verdict, dom.verdict_text)


def check_static(html: Path) -> None:
    external = parse(html.read_text()).external
    assert not external, f"{html.name} refers to resources outside itself: {external}"


def png_size(path: Path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def save_for_docs(shot: Path, dest: Path) -> None:
    """Copies a screenshot into the docs, as a 256-colour PNG when Pillow is there (a third of the size)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(shot, dest)
        return
    with Image.open(shot) as img:
        img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)


@pytest.mark.parametrize("name", list(CASES))
def test_report_renders_with_its_verdict(name, inputs, browser, request):
    kind, verdict = CASES[name]
    html = write_report(inputs, name, verdict)
    check_static(html)
    page, _ = check_in_browser(browser, html, kind, verdict, ready_timeout=20)
    shot = inputs / f"{name}.png"
    page.screenshot(shot, WIDTH, SHOT_HEIGHT)
    width, height = png_size(shot)
    assert width == WIDTH and 200 <= height <= SHOT_HEIGHT, (width, height)
    check_dumped_dom(html, kind, verdict, timeout=60)
    if request.config.getoption("--update-screenshots"):
        save_for_docs(shot, SCREENSHOTS / shot.name)


def test_report_of_100k_tokens_renders_in_time(inputs, browser):
    html = write_report(inputs, "long", "detected")
    check_static(html)
    page, seconds = check_in_browser(browser, html, "detection", "detected", ready_timeout=60)
    assert seconds < 60, f"{seconds:.1f} s to render 100,000 tokens"
    page.screenshot(inputs / "long.png", WIDTH, HEIGHT)
    # Still responsive after rendering: scrolling to the end and reading the DOM answer quickly.
    t0 = time.monotonic()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight); document.body.innerText.length",
                  timeout=30)
    assert time.monotonic() - t0 < 30, f"{time.monotonic() - t0:.1f} s to scroll to the end"
    check_dumped_dom(html, "detection", "detected", timeout=120)


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The harness itself: a page with a script error, a console error and a remote image fails each check."""
    broken = tmp_path / "broken.html"
    broken.write_text("""<!doctype html><html><head><meta charset="utf-8"></head>
        <body data-kind="detection" data-verdict="detected"><h1 id="verdict">Watermark detected</h1>
        <img src="https://example.com/pixel.png">
        <script>console.error("boom"); notAFunction(); document.body.dataset.ready = "1";</script></body></html>""")
    with pytest.raises(AssertionError, match="refers to resources outside itself"):
        check_static(broken)
    with pytest.raises(AssertionError) as e:
        check_in_browser(browser, broken, "detection", "detected", ready_timeout=2)
    for sign in ("console.error: boom", "uncaught: ReferenceError", "example.com/pixel.png"):
        assert sign in str(e.value), str(e.value)
    with pytest.raises(AssertionError, match="#verdict says"):
        check_sentence("x", "not_detected", "Watermark detected")
    with pytest.raises(AssertionError, match="#verdict says"):
        check_sentence("x", "detected", "Not detected")
