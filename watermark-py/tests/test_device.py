"""The device path (tracemark.device) against the golden vectors and the core,
on CPU torch: every keyed value bit-exact, every kgw row and gumbel selection
bit-exact, the tournament within the vectors' tolerance. The same checks run
on CUDA through scripts/gpu-check.sh when a GPU is lent."""

import math
import os

import numpy as np
import pytest
import torch

import tracemark as tm
from tracemark import _native
from tracemark.device import DeviceScheme, ln, mix
from conftest import vectors
from distributions import assert_same_distribution

# scripts/gpu-check.sh runs this file on CUDA (TRACEMARK_TEST_DEVICE=cuda); make test on CPU.
DEVICE = torch.device(os.environ.get("TRACEMARK_TEST_DEVICE", "cpu"))


def dev(x):
    return torch.as_tensor(x).to(DEVICE)


def host(t):
    return t.cpu().numpy()


def seeds_tensor(seeds):
    return torch.tensor(np.array(seeds, dtype=np.uint64).view(np.int64), device=DEVICE)


@pytest.mark.parametrize("case", vectors("mix"), ids=lambda c: f"{c['seed']}-{c['word']}")
def test_mix_vectors(case):
    got = mix(seeds_tensor([int(case["seed"], 16)]), torch.tensor([case["word"]], device=DEVICE))
    assert int(got[0]) == case["mix"]


def test_mix_matches_the_core_on_random_words(rng):
    seeds = rng.integers(0, 2**64, size=64, dtype=np.uint64)
    words = rng.integers(0, 2**32, size=512, dtype=np.uint64).astype(np.int64)
    got = host(mix(seeds_tensor(seeds)[:, None], dev(words)[None, :]))
    for i in range(0, 64, 7):
        for j in range(0, 512, 31):
            assert got[i, j] == _native.mix(int(seeds[i]), int(words[j]))


def test_ln_is_the_cores_bit_for_bit(rng):
    # The core's gumbel score of a value is -ln(1 - u) through its own ln.
    scheme = tm.Scheme(tm.Key.generate(), "gumbel:temperature=1,context=lefthash:1", 8)
    values = np.concatenate([rng.integers(0, 2**32, size=20_000), [0, 1, 2**31, 2**32 - 2, 2**32 - 1]])
    one_minus_u = (4294967295.5 - dev(values.astype(np.float64))) * (1.0 / 4294967296.0)
    got = (-ln(one_minus_u)).tolist()
    assert got == [scheme.score(int(v)) for v in values]
    # And the golden vectors' scores (from math.log) within an ulp.
    for case in vectors("gumbel"):
        v = torch.tensor(case["values"], dtype=torch.float64, device=DEVICE)
        got = host(-ln((4294967295.5 - v) * (1.0 / 4294967296.0)))
        assert np.all(np.abs(got - np.array(case["scores"])) <= np.spacing(np.array(case["scores"])))


def test_ln_is_close_to_math_log(rng):
    x = dev(np.exp(rng.uniform(-700, 700, size=10_000)))
    got = host(ln(x))
    want = np.log(host(x))
    assert np.all(np.abs(got - want) <= 2 * np.spacing(np.abs(want)) + 1e-300)


def device_rows(scheme, histories):
    d = DeviceScheme(scheme.config, scheme.vocab_size, DEVICE)
    return d, d.row_seeds([scheme] * len(histories), histories)


@pytest.mark.parametrize("case", vectors("kgw"), ids=lambda c: f"{c['vocab']}-{c['context']}")
def test_kgw_vectors(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    scheme = tm.Scheme(key, f"kgw:gamma={case['gamma']},delta={case['delta']},context={case['context']}", case["vocab"])
    d, rows = device_rows(scheme, [case["history"]])
    green = d.green(rows)[0]
    for token, want in case["green"].items():
        assert bool(green[int(token)]) == want
    for token, value in case["values"].items():
        assert int(d._values(rows, torch.tensor([int(token)], device=DEVICE), sixteen=True)[0, 0]) == value
    if "row_in_bits" in case:
        row = np.array(case["row_in_bits"], dtype=np.uint32).view(np.float32)
        out = host(d.apply(dev(row.copy())[None, :], rows)[0])
        assert out.view(np.uint32).tolist() == case["row_out_bits"]


def logits_of(case):
    return np.array([-np.inf if x is None else x for x in case["logits"]], dtype=np.float32)


@pytest.mark.parametrize("case", vectors("tournament"), ids=lambda c: c["context"])
def test_tournament_vectors(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    spec = (f"tournament:layers={case['layers']},top_k={case['top_k']},temperature={case['temperature']},"
            f"leaves={case['leaves']},context={case['context']}")
    row = logits_of(case)
    scheme = tm.Scheme(key, spec, len(row))
    d, rows = device_rows(scheme, [case["history"]])
    values = d._values(rows, torch.tensor([case["candidates"]], device=DEVICE), sixteen=False)[0].tolist()
    assert values == case["values"]
    out = d.apply(dev(row)[None, :], rows)[0].tolist()
    for got, want in zip(out, case["log_probs"]):
        if want is None:
            assert got == -math.inf
        else:
            assert abs(got - want) <= 2e-6 * max(1.0, abs(want))


@pytest.mark.parametrize("case", vectors("gumbel"), ids=lambda c: c["context"])
def test_gumbel_vectors(case):
    key = tm.Key.from_bytes(bytes.fromhex(case["key"]))
    row = logits_of(case)
    scheme = tm.Scheme(key, f"gumbel:temperature={case['temperature']},context={case['context']}", len(row))
    d, rows = device_rows(scheme, [case["history"]])
    tokens = torch.arange(len(row), device=DEVICE)
    assert d._values(rows, tokens, sixteen=False)[0].tolist() == case["values"]
    out = host(d.apply(dev(row)[None, :], rows)[0])
    assert np.isfinite(out).sum() == 1
    assert int(np.argmax(out)) == case["selected"]
    assert out[case["selected"]] == row[case["selected"]]


CONFIGS = [
    "kgw:gamma=0.25,delta=2,context=lefthash:0",
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.5,delta=1.5,context=minhash:3",
    "kgw:gamma=0.25,delta=2,context=selfhash:4",
    "gumbel:temperature=1,context=lefthash:4",
    "gumbel:temperature=0.7,context=selfhash:3",
    "gumbel:temperature=1.3,context=minhash:2",
    "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    "tournament:layers=12,top_k=7,temperature=0.8,leaves=3,context=selfhash:2",
]


@pytest.mark.parametrize("config", CONFIGS)
def test_batches_match_the_core_under_several_keys(config, rng):
    """Rows under different keys in one batch (cohort keys), short histories,
    banned tokens and ties: the device result is the core's."""
    vocab = 1001
    master = tm.Key.from_bytes(rng.bytes(32))  # fixed by the seeded rng: the same cases every run
    schemes = [tm.Scheme(master.derive(f"cohort/{c}"), config, vocab) for c in range(3)]
    d = DeviceScheme(schemes[0].config, vocab, DEVICE)
    for trial in range(4):
        batch = 9
        histories = [rng.integers(0, vocab, size=int(rng.integers(0, 12))).tolist() for _ in range(batch)]
        logits = rng.normal(0, 3, size=(batch, vocab)).astype(np.float32)
        logits[:, rng.integers(0, vocab, size=50)] = -np.inf
        logits[0, :] = np.round(logits[0, :])  # many ties
        row_schemes = [schemes[i % 3] for i in range(batch)]
        rows = d.row_seeds(row_schemes, histories)
        got = host(d.apply(dev(logits.copy()), rows))
        for i in range(batch):
            want = logits[i].copy()
            row_schemes[i].process(histories[i], want)
            if config.startswith("tournament"):
                assert_same_distribution(got[i], want)
            else:
                assert got[i].view(np.uint32).tolist() == want.view(np.uint32).tolist(), (trial, i)


def test_repeated_contexts_follow_the_memories():
    key = tm.Key.generate()
    scheme = tm.Scheme(key, "gumbel:temperature=1,context=lefthash:1", 64)
    d = DeviceScheme(scheme.config, 64, DEVICE)
    memories = [tm.SeenContexts(), tm.SeenContexts()]
    logits = torch.zeros(2, 64, device=DEVICE)
    first = d.row_seeds([scheme] * 2, [[5], [5]], memories)
    assert first.watermark.tolist() == [True, True]
    again = d.row_seeds([scheme] * 2, [[1, 5], [7]], memories)
    assert again.watermark.tolist() == [False, True]
    out = d.apply(logits, again)
    assert torch.equal(out[0], logits[0]) and torch.isfinite(out[1]).sum() == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_select_what_float32_selects(dtype, rng):
    key = tm.Key.generate()
    vocab = 500
    logits = dev(rng.normal(0, 2, size=(4, vocab)).astype(np.float32)).to(dtype)
    histories = [[1, 2, 3, 4]] * 4
    for config in ["gumbel:temperature=1,context=lefthash:4", "kgw:gamma=0.25,delta=2,context=lefthash:1"]:
        scheme = tm.Scheme(key, config, vocab)
        d, rows = device_rows(scheme, histories)
        got = d.apply(logits, rows)
        assert got.dtype == dtype
        want = host(logits.float()).copy()
        scheme.process_batch(histories, want)
        if config.startswith("gumbel"):
            assert got.float().argmax(-1).tolist() == want.argmax(-1).tolist()
        else:
            assert torch.equal(got, logits + dev((want - host(logits.float())) != 0).to(dtype) * 2)


def test_a_scheme_of_another_configuration_is_refused():
    key = tm.Key.generate()
    d = DeviceScheme("kgw:gamma=0.25,delta=2,context=lefthash:1", 100)
    other = tm.Scheme(key, "kgw:gamma=0.5,delta=2,context=lefthash:1", 100)
    with pytest.raises(ValueError, match="this DeviceScheme is for"):
        d.row_seeds([other], [[1]])
    with pytest.raises(tm.TokenOutOfRangeError):
        d.row_seeds([tm.Scheme(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 100)], [[100]])
