"""Processing logits from Python: in place, without copying, batched, threaded."""

import threading

import numpy as np
import pytest

import tracemark as tm

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
    mask = scheme.green_mask([3, 4])
    assert np.array_equal(mask, diff > 1)


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
                detector.detect_ids(histories[i])
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
