"""The semantic scheme's binding (``tracemark.Semantic``) against the golden
vectors, and layered generation in transformers (``tracemark.hf.generate_layered``)
on SmolLM2 with the real embedder: every steered sentence is green (except
recorded cap hits), the token layer is still detected, and a seed reproduces
the answer. Needs TRACEMARK_MODEL and TRACEMARK_EMBEDDER (``make test-python``
sets them); without them the real-model tests fail, never skip."""

import json

import numpy as np
import pytest

import tracemark as tm
from conftest import REPO, required_env
from tracemark.hf import DEFAULT_MAX_CANDIDATES, TracemarkLogitsProcessor, generate_layered

GOLDEN = json.loads((REPO / "testdata" / "semantic" / "v1.json").read_text())
TOKEN = "kgw:gamma=0.25,delta=2,context=lefthash:1"
SEMANTIC = "semantic:gamma=0.25,planes=8,chain=previous"


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["config"])
def test_binding_reproduces_the_golden_regions_bit_for_bit(case):
    s = tm.Semantic(tm.Key.from_bytes(bytes.fromhex(case["key"])), case["config"])
    assert s.config == case["canonical"]
    assert s.effective_gamma == case["effective_gamma"]
    assert case["key"] not in repr(s)
    for p in case["projections"]:
        e = np.asarray(GOLDEN["embeddings"][p["embedding"]], dtype=np.float32)
        got = s.project(e)
        assert got.projections == p["projections"]
        assert (got.region, got.margin) == (p["region"], p["margin"])
        assert s.region(list(map(float, e))) == p["region"]
        assert s.is_green(p["region"]) == p["green"]
        assert s.accepts(e) == p["accepted"] == s.accepts_after(None, e)
    assert sum(s.is_green(r) for r in range(s.regions)) == case["green_regions"]


def test_chained_green_bits_and_bad_input():
    s = tm.Semantic(tm.Key.from_bytes(bytes(range(32))), SEMANTIC)
    assert (s.chain, s.planes, s.regions, s.min_words) == ("previous", 8, 256, 5)
    assert s.is_scored("one two three four five") and not s.is_scored("Yes, surely.")
    # The first scored sentence is chained on the start value: is_green is its bit.
    assert all(s.is_green(r) == s.is_green_after(None, r) for r in range(256))
    # After a previous region, about gamma of the 256 x 256 pairs are green
    # (Binomial(65536, 1/4): mean 16384, sd 111; 5 sd tolerance).
    green = sum(s.is_green_after(p, r) for p in range(256) for r in range(256))
    assert abs(green - 16384) < 5 * 111
    with pytest.raises(tm.InvalidParameterError, match="e.g."):
        tm.Semantic(tm.Key.from_bytes(bytes(32)), "semantic:gamma=0.25")
    with pytest.raises(tm.InvalidParameterError, match="384"):
        s.project(np.zeros(383, dtype=np.float32))
    with pytest.raises(tm.InvalidParameterError):
        s.region([float("nan")] * 384)
    with pytest.raises(TypeError):
        s.region("not an embedding")


@pytest.fixture(scope="module")
def embedder() -> tm.Embedder:
    return tm.Embedder(required_env("TRACEMARK_EMBEDDER"))


def chat_ids(tokenizer, message):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                        return_tensors="pt")
    return ids["input_ids"] if hasattr(ids, "input_ids") else ids


def test_layered_answer_is_green_detected_and_reproducible(smollm2, embedder, key):
    model, tokenizer = smollm2
    prompt = chat_ids(tokenizer, "Explain how photosynthesis works.")
    semantic = tm.Semantic(key, SEMANTIC)
    proc = TracemarkLogitsProcessor(key, TOKEN, model.config.vocab_size)
    out = generate_layered(model, tokenizer, prompt, proc, semantic, embedder, 120, seed=11)
    st = out.stats
    assert st.tokens_kept == len(out.ids) and st.tokens_generated >= st.tokens_kept
    assert st.candidates == sum(st.candidates_per_sentence)
    assert all(1 <= c <= DEFAULT_MAX_CANDIDATES for c in st.candidates_per_sentence)
    text = tokenizer.decode(out.ids, skip_special_tokens=True)
    assert st.sentences >= 3, (st, text)

    # The verifier's view, from the final text alone: the steered regions in
    # order, each green after its predecessor except at a cap hit.
    scored = [text[a:b] for a, b in tm.sentence_spans(text) if semantic.is_scored(text[a:b])]
    regions = [semantic.region(e) for e in embedder.embed(scored)]
    assert len(regions) == len(st.regions) + int(st.unsteered_final), (st, text)
    assert regions[: len(st.regions)] == st.regions
    previous, red = None, 0
    for r in st.regions:
        red += not semantic.is_green_after(previous, r)
        previous = r
    assert red <= st.cap_hits, (red, st)

    # The token layer keeps its power on the layered answer.
    detection = tm.Detector(key, TOKEN, model.config.vocab_size).detect_ids(prompt[0].numpy(), np.asarray(out.ids))
    assert detection.detected, detection.to_dict()

    # A seed reproduces the answer (a shorter run of the same code path).
    a = generate_layered(model, tokenizer, prompt, proc, semantic, embedder, 40, seed=5)
    b = generate_layered(model, tokenizer, prompt, proc, semantic, embedder, 40, seed=5)
    assert a.ids == b.ids and a.stats.candidates_per_sentence == b.stats.candidates_per_sentence


def test_layered_generation_rejects_bad_arguments(smollm2, embedder, key):
    model, tokenizer = smollm2
    semantic = tm.Semantic(key, SEMANTIC)
    with pytest.raises(tm.InvalidParameterError, match="at least 1"):
        generate_layered(model, tokenizer, [1, 2], None, semantic, embedder, 10, max_candidates=0)
    with pytest.raises(tm.InvalidParameterError, match="non-empty"):
        generate_layered(model, tokenizer, [], None, semantic, embedder, 10)
