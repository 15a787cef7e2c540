"""The Spark tests run in their own cached environment (make test-spark): pyspark
4.3 with pandas below 3, on local[2] (two executor threads, Python workers as on
a cluster). They compare tracemark.spark with `tracemark scan` (TRACEMARK_CLI)
on the same corpus."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import tracemark as tm

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

VOCAB = 3000


def required_env(name: str) -> str:
    """A path the Makefile provides. Missing means a broken setup: fail, never skip."""
    value = os.environ.get(name)
    if not value or not Path(value).exists():
        pytest.fail(f"{name} is not set to an existing file: run the tests through `make test-spark`")
    return value


@pytest.fixture(scope="session")
def cli() -> str:
    return required_env("TRACEMARK_CLI")


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("tracemark-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "3")
        # Small file blocks: a test corpus spans several partitions and line numbering crosses blocks.
        .config("spark.sql.files.maxPartitionBytes", "8192")
        .config("spark.sql.files.openCostInBytes", "0")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def word_tokenizer_json(n: int) -> str:
    vocab = {f"w{i}": i for i in range(n)}
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"},
    })


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    path.write_text(word_tokenizer_json(VOCAB))
    return path


def words(ids) -> str:
    return " ".join(f"w{i}" for i in ids)


def generate(scheme: tm.Scheme, prompt, n: int, rng: np.random.Generator):
    """n tokens sampled from random logits processed by the scheme."""
    ids = list(prompt)
    for _ in range(n):
        row = (rng.normal(size=scheme.vocab_size) * 2.0).astype(np.float32)
        scheme.process(ids, row)
        p = np.exp(row - row.max())
        p /= p.sum()
        ids.append(int(rng.choice(scheme.vocab_size, p=p)))
    return ids[len(prompt):]


def corpus_lines(scheme: tm.Scheme, seed: int, marked: int = 8, plain: int = 8):
    """Text and ids documents, watermarked and not, repeats across documents and
    inside one, a text whose canonical form differs, bad lines and blank lines."""
    rng = np.random.default_rng(seed)
    lines = []
    docs = [generate(scheme, [i + 1, i + 2], 60, rng) for i in range(marked)]
    for i, ids in enumerate(docs):
        if i % 2:
            lines.append(json.dumps({"text": words(ids), "prompt": words([i + 1, i + 2])}))
        else:
            lines.append(json.dumps({"ids": ids, "prompt_ids": [i + 1, i + 2], "id": f"marked-{i}"}))
    lines.append(json.dumps({"ids": docs[0]}))  # a repeat across documents
    lines.append(json.dumps({"text": words(docs[2] + docs[2])}))  # a repeat inside a document
    tampered = words(docs[3]).replace(" ", "\u00a0", 4).replace(" ", " \u200b", 2)
    lines.append(json.dumps({"text": tampered, "id": {"kind": "tampered"}}))
    lines += ["", '{"ids": [1, 2,', "[1, 2, 3]", json.dumps({"ids": [1, VOCAB + 5]}), json.dumps({"ids": []}), "  "]
    lines.append(json.dumps({"ids": [3, 4]}))  # too short to test
    for i in range(plain):
        ids = rng.integers(0, VOCAB, size=80).tolist()
        lines.append(json.dumps({"ids": ids}) if i % 2 else json.dumps({"text": words(ids), "id": i}))
    lines.append(lines[-1])  # a whole document again
    return lines
