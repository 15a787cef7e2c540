"""Model-assisted (entropy-weighted) scoring: exactness, input checks, and
calibration on Debian-packaged human text under 1,000 keys with weights from
the real SmolLM2."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import tracemark as tm
from conftest import required_env

SCHEMES = {
    "kgw": "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "tournament": "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    "gumbel": "gumbel:temperature=1,context=lefthash:4",
}
VOCAB = 49152


def binom_upper(n: int, p: float, mass: float = 0.995) -> int:
    """The top of the central 99% range of Binomial(n, p)."""
    acc, k = 0.0, 0
    while True:
        acc += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p))
        if acc >= mass:
            return k
        k += 1


def binom_lower(n: int, p: float, mass: float = 0.005) -> int:
    acc, k = 0.0, 0
    while True:
        acc += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p))
        if acc > mass:
            return k
        k += 1


@pytest.mark.parametrize("name", ["kgw", "tournament"])
def test_unit_weights_give_the_unweighted_exact_test(name, key, rng):
    det = tm.Detector(key, SCHEMES[name], VOCAB, min_scored=1)
    for _ in range(5):
        ids = rng.integers(0, VOCAB, 300)
        w = det.detect_weighted([1, 2, 3, 4], ids, [1.0] * len(ids))
        assert w.exact
        assert w.weighted == w.unweighted.counts.scored
        assert w.log10_p == pytest.approx(w.unweighted.outcome.log10_p, abs=1e-9)


def test_gumbel_bound_is_conservative(key, rng):
    det = tm.Detector(key, SCHEMES["gumbel"], VOCAB, min_scored=1)
    ids = rng.integers(0, VOCAB, 300)
    w = det.detect_weighted([1, 2, 3, 4], ids, [1.0] * len(ids))
    assert not w.exact
    assert w.log10_p >= w.unweighted.outcome.log10_p - 1e-9


def test_zero_weights_drop_tokens_and_bad_weights_are_refused(key, rng):
    det = tm.Detector(key, SCHEMES["kgw"], VOCAB, min_scored=10)
    ids = rng.integers(0, VOCAB, 50)
    w = det.detect_weighted(None, ids, [0.0] * 50)
    assert w.weighted == 0 and w.verdict == "inconclusive" and w.log10_p == 0.0
    with pytest.raises(tm.InvalidParameterError, match="one weight per completion token"):
        det.detect_weighted(None, ids, [0.5] * 49)
    with pytest.raises(tm.InvalidParameterError, match="not in"):
        det.detect_weighted(None, ids, [0.5] * 49 + [1.5])
    with pytest.raises(tm.InvalidParameterError, match="not in"):
        det.detect_weighted(None, ids, [0.5] * 49 + [float("nan")])


def test_position_weights_follow_the_model_certainty():
    certain = np.full((1, 1000), -50.0, dtype=np.float32)
    certain[0, 7] = 20.0
    flat = np.zeros((1, 1000), dtype=np.float32)
    for scheme in SCHEMES.values():
        assert tm.position_weights(scheme, certain)[0] < 1e-6
        assert tm.position_weights(scheme, flat)[0] > 0.99
    rows = np.concatenate([certain, flat])
    assert len(tm.position_weights(SCHEMES["kgw"], rows)) == 2


@pytest.fixture(scope="module")
def human_docs_with_weights():
    """24 Debian prose passages (160 tokens each) with SmolLM2's weights at every position."""
    gguf = Path(required_env("TRACEMARK_MODEL"))
    human = Path(required_env("TRACEMARK_HUMAN_TEXT"))
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    docs = []
    for line in human.read_text().splitlines():
        d = json.loads(line)
        if d.get("category") != "prose":
            continue
        ids = tok.encode(" ".join(d["text"].split()), add_special_tokens=False)
        for start in range(0, len(ids) - 161, 4000):
            docs.append(ids[start : start + 161])
        if len(docs) >= 24:
            break
    docs = docs[:24]
    assert len(docs) == 24
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(docs)).logits.float().numpy()
    out = []
    for ids, lg in zip(docs, logits):
        # The weight of ids[i+1] comes from the distribution after ids[..=i].
        rows = np.ascontiguousarray(lg[:-1])
        weights = {name: tm.position_weights(s, rows) for name, s in SCHEMES.items()}
        lse = np.log(np.exp(rows - rows.max(-1, keepdims=True)).sum(-1)) + rows.max(-1)
        weights["logprobs"] = (rows[np.arange(len(ids) - 1), ids[1:]] - lse).tolist()
        out.append((ids[:1], ids[1:], weights))
    return out


@pytest.mark.parametrize("name", list(SCHEMES))
def test_weighted_scores_are_calibrated_on_human_text_under_1000_keys(name, human_docs_with_weights):
    master = tm.Key.from_bytes(bytes(range(7, 39)))
    ps = []
    for k in range(1000):
        det = tm.Detector(master.derive(f"calibration/{k}"), SCHEMES[name], VOCAB, min_scored=1)
        for prompt, ids, weights in human_docs_with_weights:
            ps.append(det.detect_weighted(prompt, ids, weights[name]).p_value)
    n = len(ps)
    for alpha in (1e-2, 1e-3):
        hits = sum(p < alpha for p in ps)
        assert hits <= binom_upper(n, alpha), f"{name}: {hits} of {n} below {alpha}"
        if name != "gumbel":
            # Exact tests: the rate is alpha, within the exact 99% range.
            assert hits >= binom_lower(n, alpha), f"{name}: only {hits} of {n} below {alpha}"


def test_edit_aware_weights_zero_what_an_edit_touches():
    w = tm.edit_aware_weights([0.5] * 8, [-1.0] * 3 + [-30.0] + [-1.0] * 4, width=2)
    assert w == [0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5, 0.5]
    assert tm.edit_aware_weights([1.0, 1.0], [float("nan"), -1.0], width=0) == [0.0, 1.0]
    with pytest.raises(ValueError, match="weights for"):
        tm.edit_aware_weights([1.0], [], width=1)
    with pytest.raises(ValueError, match="width"):
        tm.edit_aware_weights([1.0], [-1.0], width=-1)


def test_realign_keeps_the_probable_tokens():
    assert tm.realign([5, 6, 7, 8], [-1.0, -20.0, -1.0, float("nan")]) == [0, 2]
    with pytest.raises(ValueError, match="log-probabilities"):
        tm.realign([1, 2], [-1.0])


def test_realignment_undoes_insertions(key, rng):
    """Watermarked ids (kgw, h=1, every token green by rejection), then random
    insertions marked improbable: the realigned test recovers the clean
    p-value exactly, the edit-aware one loses the broken observations, and the
    edit-robust p-value is twice the better one."""
    det = tm.Detector(key, SCHEMES["kgw"], VOCAB, min_scored=1)
    ids = [1]
    while len(ids) < 121:
        t = int(rng.integers(0, VOCAB))
        if det.detect_weighted([ids[-1]], [t], [1.0]).statistic == 1.0:
            ids.append(t)
    clean = det.detect_weighted([ids[0]], ids[1:], [1.0] * 120)
    edited, lps = [], []
    for t in ids[1:]:
        edited.append(t)
        lps.append(-1.0)
        if rng.random() < 0.3:
            edited.append(int(rng.integers(0, VOCAB)))
            lps.append(-25.0)
    r = tm.detect_edit_robust(det, [ids[0]], edited, [1.0] * len(edited), lps)
    assert r.kept == 120 and r.tokens == len(edited)
    assert r.realigned.log10_p == pytest.approx(clean.log10_p, abs=1e-9)
    assert r.edit_aware.log10_p > r.realigned.log10_p
    assert r.chosen == "realigned"
    assert r.log10_p == pytest.approx(math.log10(2) + clean.log10_p, abs=1e-9)
    assert r.detected(1e-6)
    with pytest.raises(ValueError, match="log-probabilities"):
        tm.detect_edit_robust(det, None, edited, [1.0] * len(edited), lps[:-1])


@pytest.mark.parametrize("name", list(SCHEMES))
def test_edit_robust_test_is_calibrated_on_human_text_under_1000_keys(name, human_docs_with_weights):
    """The edit-robust test (Bonferroni over two exact tests) is conservative:
    at most alpha of human texts below alpha, under 1,000 keys."""
    master = tm.Key.from_bytes(bytes(range(9, 41)))
    ps = []
    for k in range(1000):
        det = tm.Detector(master.derive(f"calibration/{k}"), SCHEMES[name], VOCAB, min_scored=1)
        for prompt, ids, weights in human_docs_with_weights:
            ps.append(tm.detect_edit_robust(det, prompt, ids, weights[name], weights["logprobs"]).p_value)
    n = len(ps)
    for alpha in (1e-2, 1e-3):
        hits = sum(p < alpha for p in ps)
        assert hits <= binom_upper(n, alpha), f"{name}: {hits} of {n} below {alpha}"
