"""The golden vectors of testdata/vectors (written by testdata/gen_vectors.py from
docs/SPEC.md), checked through the Python package: the same files the Rust tests read."""

import math
import struct

import numpy as np
import pytest

import tracemark as tm
from tracemark import _native
from conftest import vectors


def test_there_are_at_least_forty_cases():
    assert sum(len(vectors(n)) for n in ["keys", "prf", "mix", "contexts", "kgw", "tournament", "gumbel"]) >= 40


@pytest.mark.parametrize("case", vectors("keys"), ids=lambda c: c["key_id"][:8])
def test_keys(case, tmp_path):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    assert key.id == case["key_id"]
    path = tmp_path / "k.key"
    key.save(path)
    assert path.read_text() == case["key_file"]
    assert tm.Key.load(path) == key
    for d in case["derived"]:
        child = key.derive(d["label"])
        assert child.secret_bytes().hex() == d["key"]
        assert child.id == d["key_id"]
    chain = key
    for label in case["derived_chain"]["labels"]:
        chain = chain.derive(label)
    assert chain.secret_bytes().hex() == case["derived_chain"]["key"]


@pytest.mark.parametrize("case", vectors("mix"), ids=lambda c: f"{c['seed']}-{c['word']}")
def test_mix(case):
    seed = int(case["seed"], 16)
    w = case["word"]
    assert _native.mix(seed, w) == case["mix"]
    assert _native.value16(seed, (2 * w) & 0xFFFFFFFF) == case["value16_of_2w"]
    assert _native.value16(seed, (2 * w + 1) & 0xFFFFFFFF) == case["value16_of_2w_plus_1"]


SCHEMES = {
    "kgw": "kgw:gamma=0.25,delta=1,context={}",
    "tournament": "tournament:layers=30,top_k=40,temperature=1,context={}",
    "gumbel": "gumbel:temperature=1,context={}",
}


@pytest.mark.parametrize("case", vectors("contexts"))
def test_contexts(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    scheme = tm.Scheme(key, SCHEMES[case["scheme"]].format(case["context"]), 128256)
    obs = scheme.observe(case["history"], 0)
    if case["context_key"] is None:
        assert obs is None
        return
    assert obs[0] == int(case["context_key"], 16)
    for token, seed in case["token_seeds"].items():
        assert scheme.observe(case["history"], int(token))[1] == int(seed, 16)


@pytest.mark.parametrize("case", vectors("kgw"), ids=lambda c: f"{c['vocab']}-{c['context']}")
def test_kgw(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    spec = f"kgw:gamma={case['gamma']},delta={case['delta']},context={case['context']}"
    scheme = tm.Scheme(key, spec, case["vocab"])
    for token, value in case["values"].items():
        ctx, _, got = scheme.observe(case["history"], int(token))
        assert got == value
        assert ctx == int(case["context_key"], 16)
    if "row_in_bits" in case:
        row = np.array(case["row_in_bits"], dtype=np.uint32).view(np.float32).copy()
        scheme.process(case["history"], row)
        assert row.view(np.uint32).tolist() == case["row_out_bits"]
    bias = scheme.bias(case["history"])
    assert bias.dtype == np.float32 and set(np.unique(bias).tolist()) <= {0.0, float(case["delta"])}
    for token, green in case["green"].items():
        assert (bias[int(token)] == case["delta"]) == green


def logits_of(case):
    return np.array([-np.inf if x is None else x for x in case["logits"]], dtype=np.float32)


@pytest.mark.parametrize("case", vectors("tournament"))
def test_tournament(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    spec = (f"tournament:layers={case['layers']},top_k={case['top_k']},temperature={case['temperature']},"
            f"leaves={case['leaves']},context={case['context']}")
    row = logits_of(case)
    scheme = tm.Scheme(key, spec, len(row))
    for token, value in zip(case["candidates"], case["values"]):
        assert scheme.observe(case["history"], token)[2] == value
    scheme.process(case["history"], row)
    for got, want in zip(row.tolist(), case["log_probs"]):
        if want is None:
            assert got == -math.inf
        else:
            assert abs(got - want) <= 2e-6 * max(1.0, abs(want))


@pytest.mark.parametrize("case", vectors("gumbel"))
def test_gumbel(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    row = logits_of(case)
    scheme = tm.Scheme(key, f"gumbel:temperature={case['temperature']},context={case['context']}", len(row))
    for token, value in enumerate(case["values"]):
        assert scheme.observe(case["history"], token)[2] == value
    scheme.process(case["history"], row)
    assert np.isfinite(row).sum() == 1
    assert int(np.argmax(row)) == case["selected"]
