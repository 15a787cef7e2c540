"""tracemark.llama_cpp for real: llama.cpp (llama-cpp-python, built from
source) generates from the SmolLM2 GGUF with the watermark, and `tracemark
detect` (the CLI) finds it on the decoded text; the OpenAI-compatible server
with the processor installed server-side answers the `openai` client, and
each answer names the account whose API key asked (`tracemark attribute`
finds it under its default label format). `python -m tracemark.llama_cpp`
hands llama.cpp's settings to `Llama` as llama-cpp-python's server does, and
refuses a bad accounts file in one line, before loading any model."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tracemark as tm
from conftest import required_env

import llama_cpp  # make test installs it (requirements-llama.txt): a missing install fails, never skips
from tracemark.llama_cpp import (
    AccountsError,
    TracemarkLlamaProcessor,
    account_label_problem,
    create_app,
    hash_api_key,
    load_accounts,
    model_settings,
)
from tracemark.llama_cpp import _parser as server_parser
from tracemark.serving import ServerKeys

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"
PROMPTS = [
    "Explain how a bicycle gear works to a curious child.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "What are the main causes of the seasons on Earth?",
    "Describe your ideal weekend in a small mountain town.",
]
# llama.cpp's usual sampling (the processor sees the raw logits first in its chain; kgw needs nothing else).
SAMPLING = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)


def test_llama_cpp_is_the_pinned_build():
    assert llama_cpp.__version__ == "0.3.36"


@pytest.fixture(scope="module")
def gguf():
    return Path(required_env("TRACEMARK_MODEL"))


@pytest.fixture(scope="module")
def cli():
    return required_env("TRACEMARK_CLI")


@pytest.fixture(scope="module")
def llm(gguf):
    return llama_cpp.Llama(model_path=str(gguf), n_ctx=1024, n_threads=2, verbose=False, seed=0)


@pytest.fixture(scope="module")
def tokenizer_json(gguf, tmp_path_factory):
    """SmolLM2's tokenizer.json, converted from the GGUF by transformers (what a verifier would use)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    assert (out / "tokenizer.json").exists()
    return out / "tokenizer.json"


def detect(cli, tokenizer, key_path, text, tmp_path, labels=None):
    f = tmp_path / "answer.txt"
    f.write_text(text)
    cmd = [cli, "detect", "--key", str(key_path), "--scheme", KGW, "--tokenizer", str(tokenizer), "--json", str(f)]
    if labels:
        cmd[4:4] = ["--derive-labels", ",".join(labels)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr  # 0: detected, 1: not detected
    return json.loads(r.stdout)


def test_processor_matches_the_core_on_llama_cpp_rows(llm):
    # llama.cpp hands a strided view of its candidates; the processor returns a contiguous row.
    key = tm.Key.generate()
    scheme = tm.Scheme(key, KGW, llm.n_vocab())
    seen = []

    def spy(input_ids, scores):
        seen.append((np.array(input_ids), np.array(scores, dtype=np.float32)))
        return scores

    proc = TracemarkLlamaProcessor(scheme)
    lps = llama_cpp.LogitsProcessorList([spy, proc])
    llm.create_completion("The capital of France is", max_tokens=6, logits_processor=lps, **SAMPLING)
    assert proc.steps == len(seen) >= 1
    ids, row = seen[0]
    want = row.copy()
    scheme.process(ids.tolist(), want)
    got = TracemarkLlamaProcessor(scheme)(ids, row)
    assert got.flags.c_contiguous and got.view(np.uint32).tolist() == want.view(np.uint32).tolist()


def test_watermarked_answers_are_detected_and_plain_ones_are_not(llm, cli, tokenizer_json, tmp_path, key):
    # The fixed test key (conftest): with a fresh key each run, the answers (and so their power) were a
    # draw, and one CI run got a 200-token answer with 74 scored tokens that was not detected at 1e-6.
    key_path = tmp_path / "master.key"
    key.save(key_path)
    scheme = tm.Scheme(key, KGW, llm.n_vocab())
    marked, plain = [], []
    for i, prompt in enumerate(PROMPTS):
        messages = [{"role": "user", "content": prompt}]
        for out, lps in ((marked, TracemarkLlamaProcessor.list(scheme)), (plain, None)):
            r = llm.create_chat_completion(messages, max_tokens=200, seed=100 + i, logits_processor=lps, **SAMPLING)
            out.append(r["choices"][0]["message"]["content"])
    marked_p = [detect(cli, tokenizer_json, key_path, t, tmp_path) for t in marked]
    plain_p = [detect(cli, tokenizer_json, key_path, t, tmp_path) for t in plain]
    for d, text in zip(marked_p, marked):
        assert d["verdict"] == "detected" and d["outcome"]["log10_p"] <= -6, (d["outcome"], text[:200])
    for d in plain_p:
        assert d["verdict"] != "detected" and d["outcome"]["log10_p"] > -3, d["outcome"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_compatible_server_watermarks_each_account(gguf, cli, tokenizer_json, tmp_path):
    import openai
    import uvicorn
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    # A fixed master key and fixed seeds: the answers, and so the verdicts, are the same on every
    # run (with a fresh key, a short low-entropy answer fails the 1e-6 test now and then).
    master = tm.Key.from_bytes(bytes(range(3, 35)))
    key_path = tmp_path / "master.key"
    master.save(key_path)
    keys = ServerKeys(master, KGW)
    accounts = {hash_api_key("sk-alice"): "account/alice", hash_api_key("sk-bob"): "account/bob"}
    port = free_port()
    app = create_app(
        keys,
        accounts,
        ServerSettings(host="127.0.0.1", port=port),
        [ModelSettings(model=str(gguf), model_alias="smollm2", n_ctx=1024, n_threads=2, n_threads_batch=2, verbose=False)],
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        answers = {}
        for api_key, account in [("sk-alice", "account/alice"), ("sk-bob", "account/bob")]:
            client = openai.OpenAI(base_url=base, api_key=api_key)
            chat = client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": PROMPTS[1]}],
                max_tokens=200,
                temperature=0.8,
                top_p=0.95,
                seed=7,
                extra_body={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1},
            )
            answers[account] = chat.choices[0].message.content
        # logit_bias (which llama-cpp-python would otherwise drop our processor for) and streaming
        stream = openai.OpenAI(base_url=base, api_key="sk-alice").completions.create(
            model="smollm2", prompt="Once upon a time", max_tokens=200, temperature=0.8, top_p=0.95, stream=True, seed=7,
            logit_bias={"11977": 1.0}, extra_body={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1},
        )
        answers["account/alice (streamed, logit_bias)"] = "".join(c.choices[0].text for c in stream)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key="sk-eve").completions.create(model="smollm2", prompt="Hi", max_tokens=2)
    finally:
        server.should_exit = True
        thread.join(30)
    labels = ["account/alice", "account/bob"]
    ids = tmp_path / "ids.txt"
    ids.write_text("alice\nbob\n")
    for account, text in answers.items():
        report = detect(cli, tokenizer_json, key_path, text, tmp_path, labels=labels)
        named = [k["label"] for k in report["keys"] if k.get("tested", {}).get("detected")]
        assert named == [account.split(" ")[0]], (account, report["keys"], text[:200])
        # `tracemark attribute` with its default --label-format account/{} names the same account.
        (tmp_path / "answer.txt").write_text(text)
        r = subprocess.run(
            [cli, "attribute", "--key", str(key_path), "--scheme", KGW, "--tokenizer", str(tokenizer_json),
             "--accounts-file", str(ids), "--json", str(tmp_path / "answer.txt")],
            capture_output=True, text=True,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert [m["label"] for m in json.loads(r.stdout)["named"]] == [account.split(" ")[0]], r.stdout


# `python -m tracemark.llama_cpp`: settings and the accounts file, checked before any model loads.

KNOBS = ["--n-ctx", "512", "--n_threads", "3", "--n-threads-batch", "5", "--n-batch", "64",
         "--n-gpu-layers", "-1", "--seed", "42", "--chat-format", "chatml", "--verbose"]


@pytest.fixture
def llama_kwargs(monkeypatch):
    """Loads ModelSettings through llama-cpp-python's own loader (unwrapped from the watermark),
    with a stand-in for `Llama` that records its keyword arguments instead of loading a model."""
    from llama_cpp.server.model import LlamaProxy

    seen = {}

    class Recorder:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(llama_cpp, "Llama", Recorder)
    load = LlamaProxy.load_llama_from_model_settings
    load = getattr(load, "__wrapped__", load)

    def kwargs_of(settings):
        seen.clear()
        assert isinstance(load(settings), Recorder)
        return dict(seen)

    return kwargs_of


def test_server_options_reach_the_llama_constructor(llama_kwargs):
    settings = model_settings(server_parser().parse_args(["--model", "m.gguf", "--accounts", "a.json", *KNOBS]))
    got = llama_kwargs(settings)
    want = dict(model_path="m.gguf", n_ctx=512, n_threads=3, n_threads_batch=5, n_batch=64, n_gpu_layers=-1,
                seed=42, chat_format="chatml", verbose=True)
    assert {k: got[k] for k in want} == want


def test_server_options_left_out_keep_llama_cpp_pythons_defaults(llama_kwargs):
    from llama_cpp.server.settings import ModelSettings

    got = llama_kwargs(model_settings(server_parser().parse_args(["--model", "m.gguf", "--accounts", "a.json"])))
    theirs = ModelSettings(model="m.gguf")
    for name in ("n_threads", "n_threads_batch", "n_batch", "n_gpu_layers", "seed", "chat_format"):
        assert got[name] == getattr(theirs, name), name
    assert got["n_ctx"] == 2048 and got["verbose"] is False  # ours: quiet, 2048 tokens
    # -1 threads: every core (llama-cpp-python's rule), in either spelling; --verbose takes a value too
    args = ["--model", "m.gguf", "--accounts", "a.json", "--n-threads", "-1", "--n_threads_batch", "-1", "--verbose", "no"]
    got = llama_kwargs(model_settings(server_parser().parse_args(args)))
    assert got["n_threads"] == got["n_threads_batch"] == os.cpu_count() and got["verbose"] is False


def test_environment_variables_of_llama_cpp_pythons_names_play_no_part(llama_kwargs, monkeypatch):
    # llama-cpp-python's settings read unprefixed variables; ours are the flags alone.
    for name, value in [("MODEL", "elsewhere.gguf"), ("N_CTX", "not a number"), ("CACHE", "/tmp/somewhere"),
                        ("N_THREADS", "7"), ("VERBOSE", "yes"), ("HOST", "0.0.0.0"), ("PORT", "x")]:
        monkeypatch.setenv(name, value)
    settings = model_settings(server_parser().parse_args(["--model", "m.gguf", "--accounts", "a.json"]))
    got = llama_kwargs(settings)
    assert got["model_path"] == "m.gguf" and got["n_ctx"] == 2048 and got["verbose"] is False
    assert got["n_threads"] != 7 and settings.cache is False
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from tracemark.llama_cpp import _flags_only

    assert isinstance(settings, ModelSettings)
    server = _flags_only(ServerSettings)(host="127.0.0.1", port=8080)
    assert (server.host, server.port) == ("127.0.0.1", 8080) and isinstance(server, ServerSettings)


@pytest.mark.parametrize(
    "option, value, says",
    [("--n-threads", "0", "--n-threads 0: Input should be greater than or equal to 1"),
     ("--n-gpu-layers", "-2", "--n-gpu-layers -2: Input should be greater than or equal to -1"),
     ("--chat-format", "chatm", "--chat-format 'chatm' is not one of llama-cpp-python's chat formats: alpaca,")],
)
def test_out_of_range_server_options_are_named(option, value, says):
    with pytest.raises(ValueError) as e:
        model_settings(server_parser().parse_args(["--model", "m.gguf", "--accounts", "a.json", option, value]))
    assert says in str(e.value)


def run_server(tmp_path, accounts_name, *extra):
    """`python -m tracemark.llama_cpp` with no watermark key in its environment and an empty
    "model" file: everything it says comes from the checks made before a model would load."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMARK_")}
    return subprocess.run(
        [sys.executable, "-m", "tracemark.llama_cpp", "--model", str(model), "--accounts", str(tmp_path / accounts_name), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )


DIGEST = hash_api_key("sk-carol")


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("missing.json", None, "--accounts {path}: no such file; give a JSON file {{\"<sha256 hex of an API key>\": \"account/<id>\", ...}}"),
        ("invalid.json", '{"%s": "account/carol",}' % DIGEST, "--accounts {path}: not valid JSON (Expecting property name enclosed in double quotes at line 1, column 86)"),
        ("list.json", json.dumps([DIGEST, "account/carol"]), "--accounts {path}: a JSON array, not an object; it must map API key digests to labels"),
        ("empty.json", "{}", "--accounts {path}: lists no account, so every request would get 401"),
        ("bare.json", json.dumps({DIGEST: "carol"}), '--accounts {path}: the label "carol" (of %s...) is not of the form account/<id>' % DIGEST[:12]),
        ("digest.json", json.dumps({"sk-carol": "account/carol"}), '--accounts {path}: "sk-carol" is not the SHA-256 hex digest of an API key'),
        ("twice.json", '{"%s": "account/carol", "%s": "account/dave"}' % (DIGEST, DIGEST), "--accounts {path}: \"%s\" is listed twice" % DIGEST),
    ],
)
def test_a_bad_accounts_file_is_one_clear_line_before_any_model_loads(tmp_path, name, content, says):
    if content is not None:
        (tmp_path / name).write_text(content)
    r = run_server(tmp_path, name)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m tracemark.llama_cpp: error: "), r.stderr
    assert says.format(path=tmp_path / name) in lines[0], r.stderr


def test_the_bare_label_error_says_the_format_and_the_fix(tmp_path):
    (tmp_path / "bare.json").write_text(json.dumps({DIGEST: "carol"}))
    line = run_server(tmp_path, "bare.json").stderr.strip()
    assert "<id> being 1-120 printable ASCII characters without space or '/'" in line
    assert "--label-format account/{}" in line and line.endswith('write "account/carol"'), line


def test_a_good_accounts_file_passes_and_the_next_check_speaks(tmp_path):
    # account/carol is accepted: the server goes on to its watermark key, which this environment lacks.
    (tmp_path / "ok.json").write_text("\ufeff" + json.dumps({DIGEST: "account/carol", hash_api_key("sk-c2"): "account/carol"}))
    r = run_server(tmp_path, "ok.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "python -m tracemark.llama_cpp: error: no watermark key: set TRACEMARK_KEY_FILE to the server's key file (tracemark keygen)"
    assert load_accounts(tmp_path / "ok.json") == {DIGEST: "account/carol", hash_api_key("sk-c2"): "account/carol"}


def test_account_labels_have_one_form_that_the_core_accepts():
    good = ["account/carol", "account/0", "account/" + "x" * 120, "account/a.b-c_d@e:f", "account/~!"]
    bad = {
        "carol": 'write "account/carol"',
        "acct/carol": "is not of the form account/<id>",
        "account/": "has an empty <id>",
        "account/" + "x" * 121: "has an <id> of 121 characters",
        "account/a b": 'has " " in its <id>',
        "account/a/b": 'has "/" in its <id>',
        "account/caf\u00e9": 'has "\\u00e9" in its <id>',
        "account/a\tb": 'has "\\t" in its <id>',
        7: "is a JSON number, not a string",
        None: "is JSON null, not a string",
    }
    checker = tm.Key.generate()
    for label in good:
        assert account_label_problem(label) is None, label
        checker.derive(label)  # the core's rule (1-128 bytes in 0x21..0x7e) holds too
    for label, says in bad.items():
        problem = account_label_problem(label)
        assert problem is not None and says in problem, (label, problem)


def test_create_app_refuses_a_bare_label_before_loading_a_model():
    keys = ServerKeys(tm.Key.generate(), KGW)
    with pytest.raises(AccountsError, match=r'accounts: the label "carol" .* is not of the form account/<id>'):
        create_app(keys, {DIGEST: "carol"}, None, [])
