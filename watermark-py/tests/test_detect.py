"""Detection from Python: reports, text, keyrings, corpus scans."""

import json

import numpy as np
import pytest

import tracemark as tm
from conftest import generate, words

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"


def test_detect_ids_and_report(key, rng):
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 150, rng)
    report = tm.Detector(key, KGW, 3000).detect_ids([7], ids)
    assert report.detected and report.verdict == "detected"
    outcome = report.outcome
    assert outcome.status == "tested" and outcome.reason is None
    assert outcome.log10_p < -6 and 0 <= outcome.p_value < 1e-6 and report.verdict_log10_p == outcome.log10_p
    assert outcome.test.name == "binomial upper tail of the green count" and outcome.test.z_score > 4
    assert outcome.test.statistic > outcome.test.expected
    assert report.key_id == key.id and report.scheme == KGW == scheme.describe() and report.window is None
    assert report.counts.prompt == 1 and report.counts.seen == 150 and 0 < report.counts.scored <= 150
    assert report.spec == tm.SPEC_VERSION and report.tool.startswith("tracemark ") and report.dedup == "pair"
    assert report.alpha == 1e-6 and report.input_sha256 is None
    d = report.to_dict()
    assert d["counts"]["prompt"] == 1 and d["spec"] == tm.SPEC_VERSION and d["key_id"] == key.id
    assert d["outcome"]["status"] == "tested" and d["outcome"]["log10_p"] == outcome.log10_p
    assert json.loads(report.to_json()) == d
    assert "detected" in repr(report)
    other = tm.Detector(tm.Key.generate(), KGW, 3000).detect_ids([7], ids)
    assert other.verdict == "not_detected"


def test_prompt_comes_first_as_in_rust(key, rng):
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7, 8], 60, rng)
    detector = tm.Detector(key, KGW, 3000)
    by_keyword = detector.detect_ids(prompt=[7, 8], completion=ids)
    assert detector.detect_ids([7, 8], ids).to_dict() == by_keyword.to_dict()
    assert by_keyword.counts.prompt == 2 and by_keyword.counts.seen == 60
    assert detector.detect_ids(None, ids).counts.prompt == 0
    assert detector.detect_ids([], ids).counts.prompt == 0


def test_scheme_configs_and_strings_are_interchangeable(key, rng):
    config = tm.SchemeConfig.kgw(gamma=0.25, delta=2, context="lefthash:1")
    assert str(config) == KGW and config == tm.SchemeConfig(KGW) and config.context == "lefthash:1"
    scheme = config.build(key, 3000)
    ids = generate(scheme, [7], 80, rng)
    by_config = tm.Detector(key, config, 3000).detect_ids([7], ids)
    by_string = tm.Detector(key, KGW, 3000).detect_ids([7], ids)
    assert by_config.to_dict() == by_string.to_dict()
    assert tm.Detector(key, scheme.config, 3000).detect_ids([7], ids).scheme == KGW
    import pytest
    with pytest.raises(TypeError, match="SchemeConfig"):
        tm.Detector(key, 3, 3000)


def test_inconclusive_is_typed_not_nan(key):
    r = tm.Detector(key, KGW, 100).detect_ids(None, [1, 2, 3])
    assert r.verdict == "inconclusive" and r.verdict_log10_p is None
    o = r.outcome
    assert o.status == "inconclusive" and o.p_value is None and o.log10_p is None and o.test is None
    assert "at least 10" in o.reason and r.to_dict()["outcome"]["reason"] == o.reason


def test_detect_text_with_tokenizer_and_window(key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    marked = generate(scheme, [1], 100, rng)
    text = words(list(rng.integers(0, 3000, 300)) + marked + list(rng.integers(0, 3000, 300)))
    det = tm.Detector(key, KGW, word_tokenizer.vocab_size, window=32, marks=True)
    r = det.detect_text(word_tokenizer, "w1", text)
    d = r.to_dict()
    w = r.window
    assert w.log10_p < -6 and 250 <= w.start < 420 and w.start < w.end and w.scored >= 32
    assert w.log10_p >= w.log10_p_uncorrected and w.windows_examined > 1
    assert w.decides_verdict and r.verdict == "detected" and r.verdict_log10_p == w.family_log10_p
    assert w.family_log10_p < r.outcome.log10_p and "Bonferroni" in w.family_correction
    assert d["window"]["family_log10_p"] == w.family_log10_p and d["window"]["decides_verdict"] is True
    assert w.span is not None and text[w.span[0]:w.span[1]].startswith("w")
    assert d["tokenizer"]["fingerprint"] == word_tokenizer.fingerprint
    assert len(d["marks"]) == 700 and d["marks"][0]["span"] == [0, len(text.split()[0])]
    assert word_tokenizer.decode(word_tokenizer.encode("w5 w6")) == "w5 w6"


def test_forgery_reference_flags_a_watermark_only_where_the_reference_is_dense(key, rng):
    scheme = tm.Scheme(key, KGW, 3000)
    marked = generate(scheme, [1], 200, rng)
    forged = list(marked) + [int(t) for t in rng.integers(0, 3000, 200)]
    # The reference holds the watermarked half twice: its pairs are dense, the rest sparse.
    det = tm.Detector(key, KGW, 3000, forgery_reference=[([1], marked), ([1], marked)])
    r = det.detect_ids([1], forged)
    assert r.detected and r.looks_forged
    f = r.forgery
    assert f["artifact"] and f["reference_documents"] == 2 and f["dense"] + f["sparse"] == r.counts.scored
    assert f["dense_hits"] / f["dense"] > 2 * f["sparse_hits"] / f["sparse"] and f["log10_p"] < -3
    genuine = det.detect_ids([1], generate(scheme, [1], 200, rng))
    assert genuine.detected and not genuine.looks_forged
    plain = tm.Detector(key, KGW, 3000).detect_ids([1], forged)
    assert plain.forgery is None and not plain.looks_forged
    try:
        tm.Detector(key, KGW, 3000, forgery_reference=[([1], [5000])])
    except tm.TracemarkError as e:
        assert "5000" in str(e)
    else:
        raise AssertionError("a reference id outside the vocabulary must be refused")


def test_tampered_text_verifies_through_its_canonical_form(key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    text = words(generate(scheme, [1], 150, rng))
    # A zero-width space after every word and full-width letters: the same
    # words to a reader, other tokens to a tokenizer.
    tampered = "\u200b ".join(text.split(" ")).replace("w", "\uff57")
    det = tm.Detector(key, KGW, word_tokenizer.vocab_size, marks=True)
    clean = det.detect_text(word_tokenizer, "w1", text)
    assert clean.detected and clean.canonical.total == 0 and len(clean.canonical.forms) == 1
    r = det.detect_text(word_tokenizer, "w1", tampered)
    c = r.canonical
    assert r.detected and c.decided_by == "canonical" and c.total == c.invisible + c.compatibility
    assert c.invisible == 149 and c.compatibility == 150 and c.whitespace == c.confusable == 0
    assert [f[0] for f in c.forms] == ["as_given", "canonical"]
    assert abs(c.family_log10_p - (c.forms[1][3] + np.log10(2))) < 1e-12 and r.verdict_log10_p == c.family_log10_p
    kind, start, end, frm, to = c.changes[0]  # spans are byte offsets into the UTF-8 text
    assert kind == "compatibility" and tampered.encode()[start:end].decode() == "\uff57" and (frm, to) == ("U+FF57", "U+0077")
    assert ("invisible", "U+200B", "", 149) in c.characters
    assert r.to_dict()["canonical"]["changes"]["invisible"] == 149
    off = tm.Detector(key, KGW, word_tokenizer.vocab_size, canonicalize=False)
    assert not off.detect_text(word_tokenizer, "w1", tampered).detected
    assert off.detect_text(word_tokenizer, "w1", tampered).canonical is None
    assert tm.canonicalize(tampered)[0] == text and tm.canonicalize("a\u00a0b") == ("a b", [("whitespace", 1, 3, "U+00A0", "U+0020")])


def test_keyring_names_the_cohort(rng):
    master = tm.Key.generate()
    labels = [f"cohort/{i}" for i in range(6)]
    ring = tm.Keyring.derived(master, labels)
    assert len(ring) == 6 and ring.labels == labels
    ids = generate(tm.Scheme(master.derive("cohort/4"), KGW, 3000), [2], 150, rng)
    r = tm.KeyringDetector(ring, KGW, 3000, alpha=0.01).detect_ids([2], ids)
    assert isinstance(r, tm.KeyringDetection) and all(isinstance(k, tm.KeyResult) for k in r.keys)
    assert [k.label for k in r.keys if k.detected] == ["cohort/4"] == [k.label for k in r.detected]
    assert r.best == 4 and "Holm" in r.correction and r.alpha == 0.01
    hit = r.keys[4]
    assert hit.key_id == master.derive("cohort/4").id and hit.log10_p == hit.tested.log10_p < -2
    assert hit.tested.detected and hit.tested.log10_p_adjusted >= hit.tested.log10_p
    assert r.best_detection.key_id == hit.key_id and r.best_detection.detected
    assert r.to_dict()["keys"][4]["tested"]["detected"] is True and json.loads(r.to_json()) == r.to_dict()
    explicit = tm.Keyring([("a", master), ("b", master.derive("cohort/4"))])
    assert tm.KeyringDetector(explicit, KGW, 3000, alpha=0.01).detect_ids([2], ids).best == 1
    # An inconclusive key has no test and is never named.
    short = tm.KeyringDetector(ring, KGW, 3000, alpha=0.01).detect_ids(None, ids[:3])
    assert all(k.tested is None and not k.detected and k.log10_p is None for k in short.keys)


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


def test_ids_held_as_one_row_of_a_2d_array_are_accepted(key, rng):
    # What researchers hold: `generate` returns shape [1, n]; a list of one list; numpy rows of any int dtype.
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 120, rng)
    detector = tm.Detector(key, KGW, 3000)
    want = detector.detect_ids([7], ids).to_dict()
    for held in (np.array([ids], dtype=np.int64), [list(ids)], np.array(ids, dtype=np.int16), np.array([ids], dtype=np.uint16)):
        assert detector.detect_ids(np.array([7]), held).to_dict() == want
    with pytest.raises(tm.TokenOutOfRangeError, match="one row"):
        detector.detect_ids([7], np.array([ids, ids], dtype=np.int64))
    with pytest.raises(tm.TokenOutOfRangeError):
        detector.detect_ids([7], np.zeros((1, 2, 3), dtype=np.int64))
