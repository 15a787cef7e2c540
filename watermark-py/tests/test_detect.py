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


def test_a_quote_pasted_as_a_paragraph_is_found_exactly(key, rng, word_tokenizer):
    # SPEC §16 v4: the runs of whole paragraphs (after blank lines) are
    # examined beside the grid, so a watermarked paragraph is matched exactly.
    scheme = tm.Scheme(key, KGW, 3000)
    marked = generate(scheme, [1], 100, rng)
    before, after = list(rng.integers(0, 3000, 300)), list(rng.integers(0, 3000, 300))
    paragraphs = [words(before[:150]), words(before[150:]), words(marked), words(after)]
    text = "\n\n".join(paragraphs)
    det = tm.Detector(key, KGW, word_tokenizer.vocab_size, window=32)
    r = det.detect_text(word_tokenizer, "w1", text)
    w = r.window
    assert w.paragraphs and w.segments_examined >= 3
    assert (w.start, w.end) == (300, 400)
    assert text[w.span[0]:w.span[1]] == paragraphs[2]
    assert "whole paragraphs" in w.correction and r.to_dict()["window"]["paragraphs"] is True
    # One paragraph: the grid alone (version 3).
    one = det.detect_text(word_tokenizer, "w1", " ".join(paragraphs)).window
    assert not one.paragraphs and one.segments_examined == 0


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
    # Invisible characters are tampering only: the canonical form alone is tested (SPEC 14.1), no factor.
    assert [f[0] for f in c.forms] == ["canonical"] and c.plan == "canonical" and clean.canonical.plan == "as_given"
    assert c.canonical_version == 2 and c.blank == c.spacing == c.lookalike == c.mark == c.bidi_override == c.normalisation == 0
    assert c.family_log10_p == min(c.forms[0][3], 0.0) and r.verdict_log10_p == c.family_log10_p
    kind, start, end, frm, to = c.changes[0]  # spans are byte offsets into the UTF-8 text
    assert kind == "compatibility" and tampered.encode()[start:end].decode() == "\uff57" and (frm, to) == ("U+FF57", "U+0077")
    assert ("invisible", "U+200B", "", 149) in c.characters
    assert r.to_dict()["canonical"]["changes"]["invisible"] == 149
    off = tm.Detector(key, KGW, word_tokenizer.vocab_size, canonicalize=False)
    assert not off.detect_text(word_tokenizer, "w1", tampered).detected
    assert off.detect_text(word_tokenizer, "w1", tampered).canonical is None
    assert tm.canonicalize(tampered)[0] == text and tm.canonicalize("a\u00a0b") == ("a b", [("whitespace", 1, 3, "U+00A0", "U+0020")])


def test_keyring_names_the_cohort(rng):
    # A fixed master: at alpha = 0.01 a random one names a wrong cohort in about
    # 1 run in 100 (Holm keeps that family-wise rate, it does not remove it).
    master = tm.Key.from_bytes(bytes(range(40, 72)))
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


def test_cli_names_min_tokens_window_and_window_min(key, rng):
    # The keywords are the CLI's (--min-tokens, --window, --window-min); the old names still work.
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 120, rng)
    by_new = tm.Detector(key, KGW, 3000, min_tokens=5).detect_ids([7], ids[:6])
    by_old = tm.Detector(key, KGW, 3000, min_scored=5).detect_ids([7], ids[:6])
    assert by_new.to_dict() == by_old.to_dict() and by_new.outcome.status == "tested"
    assert tm.Detector(key, KGW, 3000, min_tokens=7, min_scored=7).detect_ids([7], ids[:6]).outcome.status == "inconclusive"
    with pytest.raises(tm.InvalidParameterError, match="min_scored is the old name of min_tokens"):
        tm.Detector(key, KGW, 3000, min_tokens=5, min_scored=7)
    with pytest.raises(tm.InvalidParameterError, match="min_tokens must be at least 1"):
        tm.Detector(key, KGW, 3000, min_tokens=0)
    # window=True searches with the default shortest window (32), never an error about min_scored.
    windowed = tm.Detector(key, KGW, 3000, window=True).detect_ids([7], ids)
    assert windowed.window is not None and windowed.window.scored >= 32
    assert windowed.to_dict() == tm.Detector(key, KGW, 3000, window=32).detect_ids([7], ids).to_dict()
    assert windowed.to_dict() == tm.Detector(key, KGW, 3000, window=True, window_min=32).detect_ids([7], ids).to_dict()
    narrow = tm.Detector(key, KGW, 3000, window=True, window_min=16).detect_ids([7], ids)
    assert narrow.to_dict() == tm.Detector(key, KGW, 3000, window_min=16).detect_ids([7], ids).to_dict()
    assert narrow.window.windows_examined > windowed.window.windows_examined
    for off in (False, None):
        assert tm.Detector(key, KGW, 3000, window=off).detect_ids([7], ids).window is None
    with pytest.raises(tm.InvalidParameterError, match="drop window_min"):
        tm.Detector(key, KGW, 3000, window=False, window_min=16)
    with pytest.raises(tm.InvalidParameterError, match="old spelling"):
        tm.Detector(key, KGW, 3000, window=16, window_min=32)
    with pytest.raises(tm.InvalidParameterError, match="window_min=1: a window needs at least 2"):
        tm.Detector(key, KGW, 3000, window=True, window_min=1)
    with pytest.raises(TypeError, match="window must be True, False or None"):
        tm.Detector(key, KGW, 3000, window="yes")
    # A window asked for on a text too short for it says why it did not run.
    short = tm.Detector(key, KGW, 3000, window=True).detect_ids([7], ids[:20])
    assert short.window is None and "shortest window is 32" in short.window_skipped
    assert windowed.window_skipped is None
    ring = tm.KeyringDetector(tm.Keyring([("k", key)]), KGW, 3000, min_tokens=5).detect_ids([7], ids[:6])
    assert ring.keys[0].tested is not None
    with pytest.raises(tm.InvalidParameterError, match="give one"):
        tm.KeyringDetector(tm.Keyring([("k", key)]), KGW, 3000, min_tokens=5, min_scored=6)


def test_p_value_evidence_strength_and_checklist_on_the_detection(key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 150, rng)
    detector = tm.Detector(key, KGW, 3000)
    hit = detector.detect_ids([7], ids)
    # p_value and log10_p are the verdict's, where users reach for them; the whole text's without a window.
    assert hit.p_value == hit.outcome.p_value and hit.log10_p == hit.outcome.log10_p == hit.verdict_log10_p
    assert hit.strength == "strong" and hit.evidence.endswith(": detected") and not hit.is_short
    assert "1e-6" in hit.evidence or "1e-06" in hit.evidence
    lines = hit.checklist
    assert [line.split(":")[0] for line in lines] == ["key", "scheme", "input", "prompt", "length"]
    assert key.id in lines[0] and "given (1 tokens" in lines[3]
    # With a window, the verdict's p-value is the corrected family p-value, not the whole text's.
    windowed = tm.Detector(key, KGW, 3000, window=True).detect_ids([7], ids)
    assert windowed.log10_p == windowed.window.family_log10_p and windowed.p_value == pytest.approx(10 ** windowed.log10_p)
    # Not detected is graded, and says what a text of this length needs.
    plain = tm.Detector(tm.Key.generate(), KGW, 3000).detect_ids([7], ids)
    assert plain.verdict == "not_detected" and plain.strength in ("none", "faint", "weak")
    assert plain.evidence.endswith("not detected") and "length: " in plain.checklist[-1]
    short = detector.detect_ids([7], ids[:12])
    assert short.is_short and "short text" in short.checklist[-1]
    text = detector.detect_text(word_tokenizer, "w7", words(ids))
    assert text.checklist[2].startswith("tokenizer: " + word_tokenizer.fingerprint)
    none = detector.detect_ids(None, [1, 2, 3])
    assert none.p_value is None and none.log10_p is None and none.strength is None and none.evidence is None


def test_reports_carry_marks_for_the_page_and_show_them_when_asked(key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 120, rng)
    text = words(ids)
    plain = tm.Detector(key, KGW, 3000).detect_text(word_tokenizer, "w7", text)
    marked = tm.Detector(key, KGW, 3000, marks=True).detect_text(word_tokenizer, "w7", text)
    assert plain.to_dict()["marks"] is None and len(marked.to_dict()["marks"]) == 120
    assert {k: v for k, v in marked.to_dict().items() if k != "marks"} == {k: v for k, v in plain.to_dict().items() if k != "marks"}
    # Without marks=True the page still marks every scored token.
    html, _ = tm.detection_report(plain, text=text)
    assert html.count('<span class="g') + html.count('<span class="r') == plain.counts.scored > 0
    marked_html, _ = tm.detection_report(marked, text=text)
    assert marked_html.count('<span class="g') == html.count('<span class="g')
    with pytest.warns(UserWarning, match="made on token ids"):
        tm.detection_report(tm.Detector(key, KGW, 3000).detect_ids([7], ids), text=text)
    stream = tm.Detector(key, KGW, 3000).stream([7])
    stream.push(ids)
    assert stream.report().to_dict()["marks"] is None
    weighted = tm.Detector(key, KGW, 3000).detect_weighted([7], ids, [1.0] * len(ids))
    assert json.loads(weighted.to_json())["unweighted"]["marks"] is None and weighted.unweighted.to_dict()["marks"] is None
    ring = tm.KeyringDetector(tm.Keyring([("k", key)]), KGW, 3000).detect_text(word_tokenizer, "w7", text)
    assert ring.to_dict()["best_detection"]["marks"] is None
    html, _ = tm.detection_report(ring.best_detection, text=text)
    assert html.count('<span class="g') + html.count('<span class="r') == plain.counts.scored


def test_tokenizers_from_json_and_from_hugging_face_objects(key, rng, tmp_path):
    import hashlib

    from tokenizers import Tokenizer as HFTokenizer

    from conftest import word_tokenizer_json

    spec = word_tokenizer_json(3000)
    (tmp_path / "tokenizer.json").write_text(spec)
    from_file = tm.Tokenizer.from_file(tmp_path / "tokenizer.json")
    from_json = tm.Tokenizer.from_json(spec)
    assert from_json.fingerprint == from_file.fingerprint == "sha256:" + hashlib.sha256(spec.encode()).hexdigest()
    hf = HFTokenizer.from_str(spec)
    converted = tm.Tokenizer.from_transformers(hf)
    assert converted.fingerprint == "sha256:" + hashlib.sha256(hf.to_str().encode()).hexdigest()
    assert tm.Tokenizer.from_transformers(from_file).fingerprint == from_file.fingerprint
    scheme = tm.Scheme(key, KGW, 3000)
    ids = generate(scheme, [7], 150, rng)
    text = words(ids)
    detector = tm.Detector(key, KGW, 3000)
    want = detector.detect_text(from_file, "w7", text).to_dict()
    for tok in (hf, converted):
        got = detector.detect_text(tok, "w7", text).to_dict()
        assert got["tokenizer"]["fingerprint"] == converted.fingerprint
        assert {k: v for k, v in got.items() if k != "tokenizer"} == {k: v for k, v in want.items() if k != "tokenizer"}
    # Truncation or padding left on the Hugging Face tokenizer never shortens what is tested.
    hf.enable_truncation(max_length=20)
    assert detector.detect_text(hf, "w7", text).counts.seen == 150 and hf.truncation is not None
    ring = tm.KeyringDetector(tm.Keyring([("k", key)]), KGW, 3000)
    assert ring.detect_text(hf, "w7", text).keys[0].detected
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": text}) + "\n")
    docs, summary = tm.scan_corpus(detector, corpus, tokenizer=hf)
    assert summary["detected"] == 1
    with pytest.raises(TypeError, match="tracemark.Tokenizer, a transformers fast tokenizer or a tokenizers.Tokenizer"):
        detector.detect_text("tokenizer.json", None, text)


def test_scan_corpus_without_a_tokenizer_raises_when_no_line_can_be_tested(tmp_path, key, rng, word_tokenizer):
    scheme = tm.Scheme(key, KGW, 3000)
    texts = [json.dumps({"text": words(generate(scheme, [1], 40, rng))}) for _ in range(3)]
    corpus = tmp_path / "text.jsonl"
    corpus.write_text("\n".join(texts) + "\n")
    detector = tm.Detector(key, KGW, 3000)
    with pytest.raises(tm.InvalidParameterError, match="tokenizer=") as e:
        tm.scan_corpus(detector, corpus)
    assert "--tokenizer" not in str(e.value)
    # A mixed corpus: the text lines fail one by one, naming the keyword; the ids lines are tested.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(texts + [json.dumps({"ids": generate(scheme, [1], 60, rng)})]) + "\n")
    docs, summary = tm.scan_corpus(detector, mixed)
    assert summary["errors"] == 3 and summary["detected"] == 1
    assert all("tokenizer=" in d["error"] and "--tokenizer" not in d["error"] for d in docs[:3])
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{broken\n[1, 2\n")
    with pytest.raises(tm.EmptyInputError, match=r"\(2 of 2 lines failed\); line 1: not valid JSON"):
        tm.scan_corpus(detector, broken, tokenizer=word_tokenizer)


def test_pair_buckets_merge_to_the_distinct_pairs():
    # tracemark.spark's pair dedup: batches packed by bucket, each bucket merged across batches.
    from tracemark import _native

    u64, u32, f64 = np.uint64, np.uint32, np.float64
    a = _native.pair_buckets(np.array([1, 2, 1, 2**63 + 5], u64), np.array([5, 5, 5, 6], u32),
                             np.array([1, 0, 1, 1], f64), 4)
    b = _native.pair_buckets(np.array([2**63 + 5, 9], u64), np.array([6, 7], u32), np.array([1, 1], f64), 4)
    assert len(a) == len(b) == 4 and sum(len(x) for x in a) == 3 * 20
    merged = [_native.merge_pair_bucket([a[i], b[i]]) for i in range(4)]
    assert (sum(n for n, _ in merged), sum(t for _, t in merged)) == (4, 3.0)
    with pytest.raises(tm.InvalidParameterError):
        _native.pair_buckets(np.array([1], u64), np.array([1, 2], u32), np.array([1], f64), 4)
    with pytest.raises(tm.TracemarkError):
        _native.merge_pair_bucket([b"\0" * 19])
