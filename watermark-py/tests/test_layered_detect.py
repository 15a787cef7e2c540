"""Detector.detect_text(..., semantic=, embedder=): the semantic layer's exact
test over sentences and the layered verdict (docs/SPEC.md 15.3-15.4) through
the bindings, on the real embedder (all-MiniLM-L6-v2). The semantic p-value is
the exact binomial tail of its own counts, the layered p-value is
min(2 p_token, 2 p_semantic) capped at 1 (a layer that cannot be tested gives
its weight to the other), and without semantic= nothing changes. Needs
TRACEMARK_EMBEDDER (`make test-python` sets it from `python3 scripts/fetch.py
embedder`)."""

import json
import math

import numpy as np
import pytest

import tracemark as tm
from conftest import required_env

SEMANTIC = "semantic:gamma=0.25,planes=8"
VOCAB = 1000

POOL = [
    "The committee approved the new budget after a long debate.",
    "Photosynthesis turns light energy into chemical energy in plants.",
    "The river flooded the valley during the spring thaw.",
    "She practised the violin for three hours every evening.",
    "Compilers translate source code into machine instructions.",
    "The bakery on the corner sells fresh bread every morning.",
    "Volcanic eruptions can cool the global climate for years.",
    "He forgot his umbrella and got soaked on the way home.",
    "The treaty ended a war that had lasted nearly a decade.",
    "Honeybees communicate the location of flowers by dancing.",
    "A balanced diet includes vegetables, grains and some protein.",
    "The telescope revealed thousands of previously unknown galaxies.",
    "Our team lost the final match by a single goal.",
    "Interest rates rose sharply after the inflation report.",
    "The old lighthouse still guides ships along the rocky coast.",
    "Children learn languages faster than most adults do.",
    "The museum displays paintings from the Dutch golden age.",
    "Regular exercise lowers the risk of heart disease.",
    "The train to the capital was delayed by heavy snow.",
    "Mathematicians proved the conjecture after three centuries.",
    "The recipe calls for two cups of flour and an egg.",
    "Glaciers in the Alps have shrunk dramatically since 1900.",
    "The startup raised money to build cheaper solar panels.",
    "My grandmother tells stories about growing up on a farm.",
    "Encryption protects messages from being read by strangers.",
    "The orchestra tuned their instruments before the concert began.",
    "Elephants remember the paths to distant water holes.",
    "The election results surprised most political analysts.",
    "Rust prevents data races at compile time through ownership.",
    "A thunderstorm knocked out power across the whole town.",
]


@pytest.fixture(scope="module")
def embedder() -> tm.Embedder:
    return tm.Embedder(required_env("TRACEMARK_EMBEDDER"))


@pytest.fixture(scope="module")
def setup():
    key = tm.Key.from_bytes(bytes(range(32)))
    scheme = tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=VOCAB)
    vocab = {f"w{i}": i for i in range(VOCAB)}
    spec = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}}
    tok = tm.Tokenizer.from_json(json.dumps(spec))
    return key, scheme, tok


def binomial_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def watermarked_words(scheme, n: int) -> str:
    rng = np.random.default_rng(3)
    prompt, ids = [1], []
    for _ in range(n):
        row = rng.normal(size=VOCAB).astype(np.float32)
        scheme.process(prompt + ids, row)
        ids.append(int(row.argmax()))
    return " ".join(f"w{i}" for i in ids)


def test_both_layers_and_the_layered_p_value(setup, embedder):
    key, scheme, tok = setup
    detector = tm.Detector(key, scheme.config, VOCAB)
    text = watermarked_words(scheme, 60) + "\n" + " ".join(POOL[:6]) + " Yes."
    plain = detector.detect_text(tok, None, text)
    assert plain.semantic is None and plain.layered is None
    assert "semantic" not in plain.to_dict() and "layered" not in plain.to_dict()
    d = detector.detect_text(tok, None, text, semantic=SEMANTIC, embedder=embedder)
    s, lay = d.semantic, d.layered
    # 8 sentences: the word ids (one long sentence), 6 from the pool, "Yes." too short.
    assert (s["counts"]["sentences"], s["counts"]["short"], s["counts"]["scored"]) == (8, 1, 7)
    n, k = s["counts"]["distinct"], s["counts"]["green"]
    assert s["outcome"]["null"] == f"Binomial(n={n}, p=0.25)"
    assert s["outcome"]["log10_p"] == pytest.approx(math.log10(binomial_tail(k, n, 0.25)), abs=1e-9)
    assert sum(x["status"] == "scored" and x["green"] for x in s["sentences"]) == k
    # min(2 p_t, 2 p_s), capped at 1; the token test itself is unchanged.
    token = plain.verdict_log10_p
    assert lay["token_log10_p"] == token and lay["semantic_log10_p"] == s["outcome"]["log10_p"]
    assert (lay["token_weight"], lay["semantic_weight"]) == (0.5, 0.5)
    want = min(0.0, min(token, lay["semantic_log10_p"]) + math.log10(2))
    assert d.log10_p == pytest.approx(want, abs=1e-12) and d.verdict_log10_p == d.log10_p
    assert lay["decided_by"] == ("token" if token <= lay["semantic_log10_p"] else "semantic")
    assert d.outcome.log10_p == plain.outcome.log10_p
    assert d.detected == (want < -6)
    # Spans point into the text as given.
    spans = [x["span"] for x in s["sentences"]]
    assert text[spans[1]["start"]:spans[1]["end"]] == POOL[0]
    # The report page has the semantic section and the layered verdict.
    html, sealed = tm.detection_report(d, text=text)
    assert 'id="semantic"' in html and 'id="layered"' in html and 'id="sentences"' in html
    assert json.loads(sealed)["detection"]["layered"]["log10_p"] == d.log10_p


def test_semantic_alone_when_the_token_layer_cannot_be_tested(setup, embedder):
    key, scheme, tok = setup
    semantic = tm.Semantic(key, SEMANTIC)
    rows = embedder.embed(POOL)
    seen, green = set(), []
    for sentence, row in zip(POOL, rows):
        r = semantic.region(row)
        if r not in seen:
            seen.add(r)
            if semantic.is_green(r):
                green.append(sentence)
    assert len(green) >= 2, green  # (1/4)^2 < alpha = 0.1
    text = " ".join(green)
    d = tm.Detector(key, scheme.config, VOCAB, alpha=0.1).detect_text(
        tok, None, text, semantic=semantic, embedder=embedder
    )
    assert d.outcome.status == "inconclusive"  # every word is w0: one repeated context
    lay = d.layered
    assert (lay["token_log10_p"], lay["token_weight"], lay["semantic_weight"]) == (None, 0.0, 1.0)
    assert d.log10_p == pytest.approx(len(green) * math.log10(0.25), abs=1e-9)
    assert d.verdict == "detected" and lay["decided_by"] == "semantic"
    # Neither layer: inconclusive.
    short = tm.Detector(key, scheme.config, VOCAB).detect_text(
        tok, None, "Yes. No. Maybe so.", semantic=SEMANTIC, embedder=embedder
    )
    assert short.verdict == "inconclusive" and short.layered["log10_p"] is None


def test_bad_arguments(setup, embedder):
    key, scheme, tok = setup
    detector = tm.Detector(key, scheme.config, VOCAB)
    text = " ".join(POOL[:3])
    with pytest.raises(TypeError, match="embedder"):
        detector.detect_text(tok, None, text, semantic=SEMANTIC)
    with pytest.raises(TypeError, match="semantic"):
        detector.detect_text(tok, None, text, embedder=embedder)
    other = tm.Semantic(tm.Key.from_bytes(bytes(32)), SEMANTIC)
    with pytest.raises(ValueError, match="one key") as e:
        detector.detect_text(tok, None, text, semantic=other, embedder=embedder)
    assert bytes(range(32)).hex() not in str(e.value)
    with pytest.raises(ValueError, match="gamma"):
        detector.detect_text(tok, None, text, semantic="semantic:gamma=2,planes=8", embedder=embedder)
    with pytest.raises(TypeError, match="float32"):
        class Float64Embedder:
            def embed(self, sentences):
                return np.zeros((len(sentences), 384))

        detector.detect_text(tok, None, text, semantic=SEMANTIC, embedder=Float64Embedder())
    with pytest.raises(TypeError):
        detector.detect_text(tok, None, text, semantic=SEMANTIC, embedder=embedder, nonsense=1)
