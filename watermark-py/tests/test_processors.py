"""Processing logits from Python: in place, without copying, batched, threaded."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import tracemark as tm
from tracemark.scoring import context_width

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"
ALL = [KGW, "kgw:gamma=0.5,delta=1,context=selfhash:4",
       "tournament:layers=30,top_k=40,temperature=1,context=lefthash:2", "gumbel:temperature=1,context=lefthash:2"]


def test_process_is_in_place_and_zero_copy(key, rng):
    scheme = tm.Scheme(key, KGW, 5000)
    row = rng.normal(size=5000).astype(np.float32)
    before = row.copy()
    address = row.__array_interface__["data"][0]
    step = scheme.process(np.array([3, 4], dtype=np.int64), row)
    assert step.watermarked and step.kind == "watermarked" and step.context_key is not None
    assert row.__array_interface__["data"][0] == address
    diff = row - before
    assert set(np.round(np.unique(diff), 5).tolist()) <= {0.0, 2.0}
    assert 0.2 < (diff > 1).mean() < 0.3
    bias = scheme.bias([3, 4])
    assert bias.dtype == np.float32 and np.array_equal(row, before + bias)
    assert scheme.bias([]) is None  # shorter than the context width


@pytest.mark.parametrize("build,string", [
    (lambda k: tm.Scheme.kgw(k, gamma=0.25, delta=2, context="lefthash:1", vocab_size=2000),
     "kgw:gamma=0.25,delta=2,context=lefthash:1"),
    (lambda k: tm.Scheme.tournament(k, layers=30, top_k=40, temperature=1.0, leaves=2, context="lefthash:4",
                                    vocab_size=2000),
     "tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4"),
    (lambda k: tm.Scheme.gumbel(k, temperature=1.0, context="lefthash:4", vocab_size=2000),
     "gumbel:temperature=1,context=lefthash:4"),
])
def test_keyword_constructors_equal_scheme_strings(key, rng, build, string):
    by_keywords, by_string = build(key), tm.Scheme(key, string, 2000)
    assert by_keywords.describe() == by_string.describe() == str(by_keywords.config)
    assert by_keywords.config == by_string.config == tm.SchemeConfig(string)
    assert tm.Scheme(key, by_keywords.config, 2000).describe() == by_string.describe()
    history = rng.integers(0, 2000, size=6)
    a = rng.normal(size=2000).astype(np.float32)
    b = a.copy()
    by_keywords.process(history, a)
    by_string.process(history, b)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_contracts_state_what_integrations_need(key):
    kgw = tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=100).contract
    assert kgw.generation == tm.Generation.BIAS and not kgw.controls_sampling and not kgw.skip_repeated
    assert not tm.Generation.BIAS.controls_sampling and tm.Generation.SELECTION.controls_sampling
    assert kgw.null.distribution == "binomial" and kgw.null.trials == 1 and kgw.null.p == 0.25
    assert kgw.statistic == "green count" and kgw.null.total(8) == "Binomial(n=8, p=0.25)"
    assert kgw.null.test_name(kgw.statistic) == "binomial upper tail of the green count"
    mean, sd = kgw.null.total_moments(16)
    assert mean == 4.0 and abs(sd - np.sqrt(3.0)) < 1e-12
    tour = tm.SchemeConfig.tournament(layers=30, top_k=40, temperature=1.0, context="lefthash:4").contract
    assert tour.generation == tm.Generation.DISTRIBUTION and tour.controls_sampling and tour.skip_repeated
    assert tour.null.trials == 30 and tour.null.p == 0.5
    gumbel = tm.SchemeConfig("gumbel:temperature=1,context=lefthash:4").contract
    assert gumbel.generation == tm.Generation.SELECTION and gumbel.controls_sampling and gumbel.skip_repeated
    assert gumbel.null.distribution == "exponential" and gumbel.null.trials is None and gumbel.null.p is None
    assert "Exponential" in repr(gumbel) and "BIAS" in repr(tm.Generation.BIAS)


def test_score_follows_the_contract(key):
    scheme = tm.Scheme.gumbel(key, temperature=1.0, context="lefthash:1", vocab_size=100)
    _, _, value = scheme.observe([3], 7)
    assert np.isfinite(scheme.score(value)) and scheme.score(value) >= 0
    kgw = tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=100)
    scores = {kgw.score(kgw.observe([3], t)[2]) for t in range(100)}
    assert scores <= {0.0, 1.0}


@pytest.mark.parametrize("spec", ALL)
def test_batch_equals_rows_and_accepts_arrays_or_lists(key, rng, spec):
    scheme = tm.Scheme(key, spec, 2000)
    histories = rng.integers(0, 2000, size=(6, 5))
    logits = rng.normal(size=(6, 2000)).astype(np.float32)
    expected = logits.copy()
    for i in range(6):
        scheme.process(histories[i], expected[i])
    steps = scheme.process_batch(histories, logits)
    assert [s.kind for s in steps] == ["watermarked"] * 6
    assert np.array_equal(logits.view(np.uint32), expected.view(np.uint32))
    as_lists = rng.normal(size=(2, 2000)).astype(np.float32)
    scheme.process_batch([[1, 2], [3]], as_lists)


@pytest.mark.parametrize("spec", ALL)
def test_process_tail_is_process_batch_on_the_windows(key, rng, spec):
    """`process_tail` reads only each row's last context-width ids of the whole
    sequences, and gives `process_batch`'s rows bit for bit; int32 ids too."""
    scheme = tm.Scheme(key, spec, 3000)
    width = context_width(spec)
    ids = rng.integers(0, 3000, size=(3, 9))
    logits = rng.normal(size=(3, 3000)).astype(np.float32)
    expected = logits.copy()
    steps = scheme.process_batch(ids[:, -width:], expected)
    for dtype in (np.int64, np.int32):
        rows = logits.copy()
        assert scheme.process_tail(ids.astype(dtype), rows) == sum(s.watermarked for s in steps) == 3
        assert np.array_equal(rows.view(np.uint32), expected.view(np.uint32))
    # Histories shorter than the context width leave their rows unchanged, as process_batch does.
    short = logits.copy()
    assert scheme.process_tail(ids[:, :width - 1], short) == 0
    assert np.array_equal(short, logits)


def test_process_tail_declines_other_layouts_and_changes_nothing(key, rng):
    """None (nothing read or written) for what the fast path does not take; a
    bad id is an error, as everywhere."""
    scheme = tm.Scheme(key, KGW, 1000)
    ids = rng.integers(0, 1000, size=(2, 4))
    logits = rng.normal(size=(2, 1000)).astype(np.float32)
    copy = logits.copy()
    wide = rng.normal(size=(2, 2000)).astype(np.float32)
    for bad_ids, bad_logits in [
        (ids, logits.astype(np.float64)),        # not float32
        (ids, np.asfortranarray(logits)),        # not C-contiguous
        (ids, wide[:, ::2]),                     # strided
        (ids, logits[0]),                        # 1-D
        (ids, rng.normal(size=(2, 999)).astype(np.float32)),  # not the scheme's vocabulary
        (ids[0], logits),                        # 1-D ids
        (ids[:1], logits),                       # batch mismatch
        (ids.astype(np.uint8), logits),          # an id dtype the fast path does not read
        ([[1, 2], [3, 4]], logits),              # a list
    ]:
        assert scheme.process_tail(bad_ids, bad_logits) is None
    assert np.array_equal(logits, copy)
    with pytest.raises(tm.TokenOutOfRangeError):
        scheme.process_tail(np.array([[1, -1], [2, 3]]), logits)
    with pytest.raises(tm.TokenOutOfRangeError):
        scheme.process_tail(np.array([[1, 5000], [2, 3]]), logits)
    assert np.array_equal(logits, copy)


def test_short_history_and_repeated_contexts(key, rng):
    scheme = tm.Scheme(key, "gumbel:temperature=1,context=lefthash:3", 100)
    row = rng.normal(size=100).astype(np.float32)
    copy = row.copy()
    assert scheme.process([1, 2], row).kind == "skipped_short_context"
    assert np.array_equal(row, copy)
    memory = tm.SeenContexts()
    assert scheme.process([1, 2, 3], row.copy(), memory).watermarked
    assert scheme.process([9, 1, 2, 3], row, memory).kind == "skipped_repeated_context"
    assert np.array_equal(row, copy) and len(memory) == 1
    memories = [tm.SeenContexts(), tm.SeenContexts()]
    logits = rng.normal(size=(2, 100)).astype(np.float32)
    steps = scheme.process_batch([[1, 2, 3], [1, 2, 3]], logits, memories)
    assert all(s.watermarked for s in steps) and [len(m) for m in memories] == [1, 1]
    steps = scheme.process_batch([[5, 1, 2, 3], [4, 5, 6]], logits, memories)
    assert [s.kind for s in steps] == ["skipped_repeated_context", "watermarked"]
    memory.clear()
    assert len(memory) == 0


def test_threads_in_parallel_match_serial(key, rng):
    scheme = tm.Scheme(key, KGW, 50_000)
    rows = rng.normal(size=(16, 50_000)).astype(np.float32)
    histories = rng.integers(0, 50_000, size=(16, 3))
    expected = rows.copy()
    for i in range(16):
        scheme.process(histories[i], expected[i])
    detector = tm.Detector(key, KGW, 50_000, min_scored=1)
    errors = []

    def work(i):
        try:
            for _ in range(20):
                scheme.process(histories[i], rows[i].copy())
                detector.detect_ids(None, histories[i])
            scheme.process(histories[i], rows[i])
        except Exception as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert np.array_equal(rows, expected)


SHARED_MEMORY_SCRIPT = """
import threading
import numpy as np
import tracemark as tm

key = tm.Key.from_bytes(bytes(range(32)))
scheme = tm.Scheme(key, "gumbel:temperature=1,context=lefthash:1", 20_000)
memory = tm.SeenContexts()
contexts = 400
results = {0: [], 1: []}
errors = []
start = threading.Barrier(2)

def work(t):
    try:
        start.wait()
        local = np.random.default_rng(t)
        for c in range(contexts):
            row = local.normal(size=20_000).astype(np.float32)
            if c % 2:
                step = scheme.process([c], row, memory)
            else:
                step = scheme.process_batch([[c]], row[None, :].copy(), [memory])[0]
            results[t].append(step.watermarked)
            len(memory)  # takes the lock too
    except BaseException as e:
        errors.append(repr(e))

threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
# Each context was watermarked by exactly one of the two threads.
assert [a + b for a, b in zip(results[0], results[1])] == [1] * contexts, results
assert len(memory) == contexts
memory.clear()
assert len(memory) == 0
print("ok")
"""


def test_threads_sharing_one_memory_take_turns():
    """Two threads share one SeenContexts. Its lock is only taken with the GIL
    released: no deadlock (a lock taken while attached and held across the
    detach stalls the whole interpreter, hence the subprocess and its timeout),
    no panic, and every context is watermarked by exactly one thread."""
    try:
        r = subprocess.run([sys.executable, "-c", SHARED_MEMORY_SCRIPT], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: two threads sharing one SeenContexts did not finish in 120 s")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
