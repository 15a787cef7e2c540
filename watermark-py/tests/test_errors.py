"""Bad input: typed exceptions (all ValueError), nothing changed, no panic, no silent copy."""

import numpy as np
import pytest

import tracemark as tm

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"


def test_every_error_is_a_value_error():
    for name in ["InvalidParameterError", "NonFiniteLogitError", "VocabMismatchError", "TokenOutOfRangeError",
                 "LogitsLayoutError", "NotABiasSchemeError", "InvalidKeyError", "KeyFileExistsError", "EmptyInputError",
                 "TokenizerError", "TracemarkIOError"]:
        cls = getattr(tm, name)
        assert issubclass(cls, tm.TracemarkError) and issubclass(cls, ValueError), name


@pytest.mark.parametrize("spec,param", [
    ("kgw:gamma=0,delta=2,context=lefthash:1", "gamma"),
    ("kgw:gamma=0.25,delta=-1,context=lefthash:1", "delta"),
    ("kgw:gamma=0.25,delta=2,context=lefthash:33", "width"),
    ("tournament:layers=0,top_k=40,temperature=1,context=lefthash:1", "layers"),
    ("gumbel:temperature=0,context=lefthash:1", "temperature"),
    ("kgw:gamma=0.25,delta=2,context=lefthash:1,bogus=1", "parameter"),
    ("nope:x=1", "scheme"),
])
def test_bad_parameters_name_the_fix(key, spec, param):
    with pytest.raises(tm.InvalidParameterError, match=param):
        tm.Scheme(key, spec, 100)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_raise_and_change_nothing(key, rng, bad):
    for spec in [KGW, "gumbel:temperature=1,context=lefthash:1"]:
        scheme = tm.Scheme(key, spec, 1000)
        row = rng.normal(size=1000).astype(np.float32)
        row[500] = bad
        before = row.copy()
        with pytest.raises(tm.NonFiniteLogitError, match="index 500"):
            scheme.process([1], row)
        assert np.array_equal(row, before, equal_nan=True)
        batch = np.stack([before, before])
        with pytest.raises(tm.NonFiniteLogitError, match="row 0"):
            scheme.process_batch([[1], [2]], batch)


def test_logits_must_be_contiguous_float32_and_are_never_copied(key):
    scheme = tm.Scheme(key, KGW, 100)
    for bad in [np.zeros(100, dtype=np.float64), np.zeros(200, dtype=np.float32)[::2], [0.0] * 100]:
        with pytest.raises(tm.LogitsLayoutError, match="C-contiguous"):
            scheme.process([1], bad)
    with pytest.raises(tm.LogitsLayoutError):
        scheme.process_batch([[1], [2]], np.zeros((100, 2), dtype=np.float32).T)
    with pytest.raises(tm.VocabMismatchError):
        scheme.process([1], np.zeros(99, dtype=np.float32))
    with pytest.raises(tm.VocabMismatchError):
        scheme.process_batch([[1]], np.zeros((2, 100), dtype=np.float32))


def test_out_of_range_ids(key):
    scheme = tm.Scheme(key, KGW, 100)
    with pytest.raises(tm.TokenOutOfRangeError):
        scheme.process([100], np.zeros(100, dtype=np.float32))
    with pytest.raises(tm.TokenOutOfRangeError):
        scheme.process([-1], np.zeros(100, dtype=np.float32))
    detector = tm.Detector(key, KGW, 100)
    with pytest.raises(tm.TokenOutOfRangeError, match="position 2"):
        detector.detect_ids(None, [1, 2, 100])
    with pytest.raises(tm.EmptyInputError):
        detector.detect_ids(None, [])


def test_unknown_keyword_arguments_raise(key):
    with pytest.raises(TypeError):
        tm.Detector(key, KGW, 100, alhpa=0.01)
    with pytest.raises(TypeError):
        tm.Scheme(key, KGW, 100, delta=3)
    with pytest.raises(TypeError):
        tm.Detector(key, KGW, 100).detect_ids([1], [1, 2], promt=[1])
    with pytest.raises(TypeError):
        tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=100, gama=0.5)
    with pytest.raises(TypeError):
        tm.Scheme.gumbel(key, temperature=1.0, context="lefthash:1", vocab_size=100, delta=2)
    with pytest.raises(TypeError):
        tm.SchemeConfig.tournament(layers=30, top_k=40, temperature=1.0, context="lefthash:1", topk=3)
    with pytest.raises(TypeError):  # keywords only: no silent swap of gamma and delta
        tm.SchemeConfig.kgw(0.25, 2, "lefthash:1")


@pytest.mark.parametrize("build,param", [
    (lambda k: tm.Scheme.kgw(k, gamma=0, delta=2, context="lefthash:1", vocab_size=100), "gamma"),
    (lambda k: tm.Scheme.kgw(k, gamma=0.25, delta=-1, context="lefthash:1", vocab_size=100), "delta"),
    (lambda k: tm.Scheme.kgw(k, gamma=0.25, delta=2, context="lefthash:33", vocab_size=100), "width"),
    (lambda k: tm.Scheme.kgw(k, gamma=0.25, delta=2, context="sidehash:1", vocab_size=100), "context"),
    (lambda k: tm.Scheme.tournament(k, layers=0, top_k=40, temperature=1.0, context="lefthash:1", vocab_size=100),
     "layers"),
    (lambda k: tm.Scheme.tournament(k, layers=30, top_k=40, temperature=1.0, context="lefthash:1", vocab_size=100,
                                    leaves=9), "leaves"),
    (lambda k: tm.Scheme.gumbel(k, temperature=0, context="lefthash:1", vocab_size=100), "temperature"),
])
def test_keyword_constructors_name_the_fix(key, build, param):
    with pytest.raises(tm.InvalidParameterError, match=param):
        build(key)


def test_bias_of_a_scheme_that_needs_the_logits(key):
    scheme = tm.Scheme.gumbel(key, temperature=1.0, context="lefthash:1", vocab_size=100)
    with pytest.raises(tm.NotABiasSchemeError, match="process the logits"):
        scheme.bias([1, 2])


def test_one_memory_per_row(key):
    scheme = tm.Scheme(key, "gumbel:temperature=1,context=lefthash:1", 100)
    memory = tm.SeenContexts()
    with pytest.raises(tm.InvalidParameterError, match="its own memory"):
        scheme.process_batch([[1], [2]], np.zeros((2, 100), dtype=np.float32), [memory, memory])


def test_key_files(tmp_path, key):
    path = tmp_path / "k.key"
    key.save(path)
    assert tm.Key.load(path) == key
    with pytest.raises(tm.KeyFileExistsError):
        key.save(path)
    text = path.read_text()
    flipped = text[:17] + ("1" if text[17] == "0" else "0") + text[18:]
    (tmp_path / "bad.key").write_text(flipped)
    with pytest.raises(tm.InvalidKeyError, match="corrupted"):
        tm.Key.load(tmp_path / "bad.key")
    with pytest.raises(tm.TracemarkIOError):
        tm.Key.load(tmp_path / "missing.key")
    with pytest.raises(tm.InvalidKeyError):
        tm.Key.from_bytes(b"short")
    assert key.id not in repr(key.secret_bytes()) and key.secret_bytes().hex() not in repr(key)


def test_bad_detector_options(key):
    with pytest.raises(tm.InvalidParameterError, match="alpha"):
        tm.Detector(key, KGW, 100, alpha=2.0)
    with pytest.raises(tm.InvalidParameterError, match="dedup"):
        tm.Detector(key, KGW, 100, dedup="sometimes")
