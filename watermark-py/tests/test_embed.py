"""The sentence embedder through the bindings (tracemark.Embedder: all-MiniLM-L6-v2
on candle's BERT, in Rust) against sentence-transformers' own embeddings of the
same sentences (testdata/embed/minilm.json, written by gen_minilm.py): a cosine
of at least 0.9999 per sentence. Needs TRACEMARK_EMBEDDER (`make test-python`
sets it from `python3 scripts/fetch.py embedder`)."""

import json

import numpy as np
import pytest

import tracemark as tm
from conftest import REPO, required_env

GOLDEN = json.loads((REPO / "testdata" / "embed" / "minilm.json").read_text())


@pytest.fixture(scope="module")
def embedder() -> tm.Embedder:
    return tm.Embedder(required_env("TRACEMARK_EMBEDDER"))


def test_embeddings_match_sentence_transformers(embedder):
    assert embedder.fingerprint == "sha256:" + GOLDEN["model_sha256"]
    assert (embedder.dim, embedder.max_tokens, embedder.normalizes) == (GOLDEN["dim"], GOLDEN["max_seq_length"], True)
    sentences = [c["sentence"] for c in GOLDEN["cases"]]
    got = embedder.embed(sentences)
    assert got.dtype == np.float32 and got.shape == (len(sentences), GOLDEN["dim"])
    want = np.array([c["embedding"] for c in GOLDEN["cases"]], dtype=np.float64)
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= GOLDEN["min_cosine"], dict(zip(sentences, cos.tolist()))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert [embedder.token_count(s) for s in sentences] == [c["tokens"] for c in GOLDEN["cases"]]


def test_default_folder_and_the_sentences_of_a_text(embedder, monkeypatch):
    monkeypatch.setenv("TRACEMARK_EMBEDDER", required_env("TRACEMARK_EMBEDDER"))
    default = tm.Embedder()
    assert default.fingerprint == embedder.fingerprint
    text = "The cat sat on the mat. A cat was sitting on the mat!\nThe stock market fell sharply on Monday."
    v = default.embed(tm.sentences(text))
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > 0.8 and v[0] @ v[2] < 0.3
    assert embedder.embed([]).shape == (0, 384)
    assert "Embedder(dim=384" in repr(embedder)


def test_bad_input_is_a_typed_error(embedder, tmp_path):
    with pytest.raises(tm.TracemarkIOError):
        tm.Embedder(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(tm.ModelError):
        tm.Embedder(tmp_path)
    with pytest.raises(TypeError):
        embedder.embed("one string, not a list")
