"""Detection from Python: reports, text, keyrings, corpus scans."""

import json

import numpy as np

import tracemark as tm
from conftest import generate, words

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"


def test_detect_ids_and_report(key, rng):
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 150, rng)
    report = tm.Detector(key, KGW, 3000).detect_ids(ids, prompt=[7])
    assert report.detected and report.verdict == "detected"
    assert report.log10_p < -6 and 0 <= report.p_value < 1e-6
    assert report.key_id == key.id and report.scheme == KGW
    d = report.to_dict()
    assert d["counts"]["prompt"] == 1 and d["spec"] == tm.SPEC_VERSION and d["tool"].startswith("tracemark ")
    assert json.loads(report.to_json()) == d
    assert "detected" in repr(report)
    other = tm.Detector(tm.Key.generate(), KGW, 3000).detect_ids(ids, prompt=[7])
    assert other.verdict == "not_detected"


def test_inconclusive_is_typed_not_nan(key):
    r = tm.Detector(key, KGW, 100).detect_ids([1, 2, 3])
    assert r.verdict == "inconclusive" and r.p_value is None and r.log10_p is None and r.z_score is None
    assert "at least 10" in r.to_dict()["inconclusive_reason"]


def test_detect_text_with_tokenizer_and_window(key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    marked = generate(scheme, [1], 100, rng)
    text = words(list(rng.integers(0, 3000, 300)) + marked + list(rng.integers(0, 3000, 300)))
    det = tm.Detector(key, KGW, word_tokenizer.vocab_size, window=32, marks=True)
    r = det.detect_text(word_tokenizer, text, prompt="w1")
    d = r.to_dict()
    assert d["window"]["log10_p"] < -6 and 250 <= d["window"]["start"] < 420
    assert d["tokenizer"]["fingerprint"] == word_tokenizer.fingerprint
    assert len(d["marks"]) == 700 and d["marks"][0]["span"] == [0, len(text.split()[0])]
    assert word_tokenizer.decode(word_tokenizer.encode("w5 w6")) == "w5 w6"


def test_keyring_names_the_cohort(rng):
    master = tm.Key.generate()
    labels = [f"cohort/{i}" for i in range(6)]
    ring = tm.Keyring.derived(master, labels)
    assert len(ring) == 6 and ring.labels == labels
    ids = generate(tm.Scheme(master.derive("cohort/4"), KGW, 3000), [2], 150, rng)
    r = tm.KeyringDetector(ring, KGW, 3000, alpha=0.01).detect_ids(ids, prompt=[2])
    assert [k["label"] for k in r["keys"] if k["detected"]] == ["cohort/4"]
    assert r["best"] == 4 and "Holm" in r["correction"]
    explicit = tm.Keyring([("a", master), ("b", master.derive("cohort/4"))])
    assert tm.KeyringDetector(explicit, KGW, 3000, alpha=0.01).detect_ids(ids, prompt=[2])["best"] == 1


def test_scan_corpus(tmp_path, key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    lines = [json.dumps({"id": i, "ids": generate(scheme, [i], 80, rng)}) for i in range(4)]
    lines.append("{broken")
    lines.append(json.dumps({"text": words(rng.integers(0, 3000, 80))}))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    docs, summary = tm.scan_corpus(tm.Detector(key, KGW, 3000), corpus, tokenizer=word_tokenizer, jobs=2)
    assert len(docs) == 6 and docs[4]["line"] == 5 and "JSON" in docs[4]["error"]
    assert summary["detected"] == 4 and summary["errors"] == 1 and summary["not_detected"] == 1
    assert summary["aggregate"]["verdict"] == "detected"
    # Restricting to the contexts of a reference corpus (our own outputs, which must be clean).
    reference = tmp_path / "ours.jsonl"
    reference.write_text("\n".join(lines[:2]) + "\n")
    docs, filtered = tm.scan_corpus(tm.Detector(key, KGW, 3000), corpus, tokenizer=word_tokenizer, reference=reference)
    counts = filtered["aggregate"]["counts"]
    assert 0 < counts["scored"] < summary["aggregate"]["counts"]["scored"] and counts["skipped_by_filter"] > 0
    import pytest
    with pytest.raises(tm.TracemarkError, match="line 5"):
        tm.scan_corpus(tm.Detector(key, KGW, 3000), corpus, tokenizer=word_tokenizer, reference=corpus)
