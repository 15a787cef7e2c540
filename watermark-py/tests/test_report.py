"""Streaming detection and HTML reports from Python."""

import json

import numpy as np
import pytest

import tracemark as tm
from conftest import generate, words

SCHEMES = [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.25,delta=2,context=selfhash:4",
    "tournament:layers=8,top_k=20,temperature=1,context=lefthash:4",
    "gumbel:temperature=1,context=lefthash:4",
]


@pytest.mark.parametrize("config", SCHEMES)
@pytest.mark.parametrize("window", [None, 16])
def test_running_report_equals_batch_after_every_chunk(key, rng, config, window):
    scheme = tm.Scheme(key, config, 3000)
    ids = generate(scheme, [7], 200, rng)
    ids = ids[:120] + ids[:40] + ids[120:]  # repeats, for deduplication
    detector = tm.Detector(key, config, 3000, window=window, marks=True)
    stream = detector.stream([7])
    with pytest.raises(tm.EmptyInputError):
        stream.report()
    at = 0
    while at < len(ids):
        step = int(rng.integers(1, 25))
        chunk = np.array(ids[at : at + step], dtype=np.int64) if step % 2 else ids[at : at + step]
        stream.push(chunk)
        at = min(at + step, len(ids))
        running = stream.report()
        batch = detector.detect_ids([7], ids[:at])
        assert running.to_dict() == batch.to_dict(), at
    assert len(stream) == len(ids) and stream.scored == batch.counts.scored
    assert stream.report().verdict == "detected"
    assert "DetectionStream(tokens=" in repr(stream)


def test_a_bad_id_adds_nothing(key):
    detector = tm.Detector(key, SCHEMES[0], 100)
    stream = detector.stream()
    stream.push([1, 2, 3])
    with pytest.raises(tm.TokenOutOfRangeError):
        stream.push([4, 100])
    assert len(stream) == 3


def test_detection_report_html_and_sealed_json(key, rng, tmp_path):
    config = SCHEMES[0]
    scheme = tm.Scheme(key, config, 3000)
    ids = generate(scheme, [7], 150, rng)
    text = words(ids)
    tok = tmp_path / "tokenizer.json"
    from conftest import word_tokenizer_json  # noqa: PLC0415

    tok.write_text(word_tokenizer_json(3000))
    detection = tm.Detector(key, config, 3000, marks=True, window=32).detect_text(tm.Tokenizer.from_file(str(tok)), "w7", text)
    html, raw = tm.detection_report(detection, text=text, name="answer.txt", command="tracemark report ...")
    report = json.loads(raw)
    assert report["format"] == "tracemark-report/1" and report["kind"] == "detection"
    assert report["verdict"] == "detected" and report["report_sha256"].startswith("sha256:")
    assert report["detection"] == json.loads(detection.to_json()) and report["text"] == text
    assert 'data-verdict="detected"' in html and 'id="verdict">Watermark detected<' in html
    assert report["report_sha256"] in html and "answer.txt" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched
    # Every token of the text is marked once, and the text survives HTML escaping.
    assert html.count('<span class="g') + html.count('<span class="r') == detection.counts.scored
    plain = tm.Detector(tm.Key.generate(), config, 3000, marks=True).detect_ids([7], ids)
    html, raw = tm.detection_report(plain)
    assert json.loads(raw)["verdict"] == "not_detected" and 'data-verdict="not_detected"' in html


def test_report_escapes_the_text(key):
    detector = tm.Detector(key, SCHEMES[0], 3000, marks=True)
    detection = detector.detect_ids([1], [2, 3])
    html, _ = tm.detection_report(detection, name="<script>alert(1)</script>")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert json.loads(_)["verdict"] == "inconclusive" and 'id="verdict">Inconclusive<' in html
