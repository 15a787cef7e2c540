"""tracemark.llama_cpp for real: llama.cpp (llama-cpp-python, built from
source) generates from the SmolLM2 GGUF with the watermark, and `tracemark
detect` (the CLI) finds it on the decoded text; the OpenAI-compatible server
with the processor installed server-side answers the `openai` client, and
each answer names the account whose API key asked."""

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tracemark as tm
from conftest import required_env

import llama_cpp  # make test installs it (requirements-llama.txt): a missing install fails, never skips
from tracemark.llama_cpp import TracemarkLlamaProcessor, create_app, hash_api_key
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


def test_watermarked_answers_are_detected_and_plain_ones_are_not(llm, cli, tokenizer_json, tmp_path):
    key = tm.Key.generate()
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
    for account, text in answers.items():
        report = detect(cli, tokenizer_json, key_path, text, tmp_path, labels=labels)
        named = [k["label"] for k in report["keys"] if k.get("tested", {}).get("detected")]
        assert named == [account.split(" ")[0]], (account, report["keys"], text[:200])
