"""Sentence segmentation (docs/SPEC.md section 15): the binding against the
golden vectors of testdata/sentences/v1.json, and the golden vectors against
the independent reference of the spec that wrote them (gen_sentences.py)."""

import importlib.util
import json

import tracemark as tm
from conftest import REPO

GOLDEN = json.loads((REPO / "testdata" / "sentences" / "v1.json").read_text())


def reference():
    spec = importlib.util.spec_from_file_location("gen_sentences", REPO / "testdata" / "sentences" / "gen_sentences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_vectors():
    assert GOLDEN["version"] == tm.SENTENCES_VERSION == 1
    assert len(GOLDEN["cases"]) >= 20
    for case in GOLDEN["cases"]:
        assert tm.sentences(case["input"]) == case["sentences"], case["name"]
        spans = tm.sentence_spans(case["input"])
        assert [list(s) for s in spans] == case["spans"], case["name"]
        assert [case["input"][a:b] for a, b in spans] == case["sentences"], case["name"]


def test_the_golden_file_is_what_the_reference_writes():
    ref = reference()
    assert ref.vectors() == GOLDEN


def test_binding_agrees_with_the_reference_on_more_text():
    # Inputs the golden file does not hold: every pairing of pieces around the rules' edges.
    ref = reference()
    pieces = ["Dr.", "dr.", "1.", "2024.", "U.S.", "J.", "x.", "Hi!", "Why?", "so...", "\u2026", "\u3002", "\"",
              ")", "**", " ", "  ", "\n", "\r\n", "\u00a0", "Word", "word", "7", "\u00e9t\u00e9", "\u4eca"]
    for a in pieces:
        for b in pieces:
            for c in ["", " Next.", " next", "\nEnd"]:
                text = a + " " + b + c
                assert tm.sentence_spans(text) == [tuple(s) for s in ref.segment(text)], repr(text)


def test_types():
    assert tm.sentences("") == [] and tm.sentence_spans("") == []
    assert isinstance(tm.SENTENCES_VERSION, int)
