"""Shared fixtures: the repository's golden vectors, keys, a word-level tokenizer."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import tracemark as tm

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "testdata" / "vectors"


def vectors(name: str) -> list:
    data = json.loads((VECTORS / f"{name}.json").read_text())
    assert data["spec"] == tm.SPEC_VERSION
    assert data["cases"], name
    return data["cases"]


def required_env(name: str) -> str:
    """A path the Makefile provides. Missing means a broken setup: fail, never skip."""
    value = os.environ.get(name)
    if not value or not Path(value).exists():
        pytest.fail(f"{name} is not set to an existing file: run the tests through `make test`")
    return value


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M (the GGUF at $TRACEMARK_MODEL) and its tokenizer, through transformers, once per module."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import torch

    gguf = Path(required_env("TRACEMARK_MODEL"))
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model, tokenizer


@pytest.fixture
def key() -> tm.Key:
    # Fixed, so that a test's outcome is the same on every run (a fresh key made
    # each real-model or greedy generation a draw). Tests that need another key
    # make one with Key.generate().
    return tm.Key.from_bytes(bytes(range(100, 132)))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def word_tokenizer_json(n: int) -> str:
    vocab = {f"w{i}": i for i in range(n)}
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"},
    })


@pytest.fixture
def word_tokenizer(tmp_path) -> tm.Tokenizer:
    path = tmp_path / "tokenizer.json"
    path.write_text(word_tokenizer_json(3000))
    return tm.Tokenizer.from_file(path)


@pytest.fixture(scope="session")
def word_tokenizer_session(tmp_path_factory) -> tm.Tokenizer:
    """The word-level tokenizer, once per session (for hypothesis tests)."""
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    path.write_text(word_tokenizer_json(3000))
    return tm.Tokenizer.from_file(path)


def words(ids) -> str:
    return " ".join(f"w{i}" for i in ids)


def generate(scheme: tm.Scheme, prompt, n: int, rng: np.random.Generator, temperature: float = 1.0):
    """Samples n tokens from random logits processed by the scheme."""
    ids = list(prompt)
    for _ in range(n):
        row = (rng.normal(size=scheme.vocab_size) * 2.0).astype(np.float32)
        scheme.process(ids, row)
        p = np.exp((row - row.max()) / temperature)
        p /= p.sum()
        ids.append(int(rng.choice(scheme.vocab_size, p=p)))
    return ids[len(prompt):]
