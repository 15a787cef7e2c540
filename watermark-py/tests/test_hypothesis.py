"""Property: under the null hypothesis (text independent of the key) p-values are
uniform (gumbel, continuous) or conservative (kgw/tournament, discrete), whatever the text."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracemark as tm

KEYS = 120


def ks_uniform(p):
    p = np.sort(np.asarray(p))
    n = len(p)
    return max(np.max(np.arange(1, n + 1) / n - p), np.max(p - np.arange(n) / n))


texts = st.one_of(
    st.lists(st.integers(0, 4999), min_size=60, max_size=300),
    # Repetitive text: a short phrase repeated, the case deduplication exists for.
    st.tuples(st.lists(st.integers(0, 4999), min_size=3, max_size=12), st.integers(5, 40)).map(lambda t: t[0] * t[1]),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_p_values_are_uniform_under_the_null(text):
    for spec, discrete in [("gumbel:temperature=1,context=lefthash:1", False),
                           ("kgw:gamma=0.25,delta=2,context=lefthash:1", True),
                           ("kgw:gamma=0.25,delta=2,context=selfhash:3", True)]:
        p = []
        for _ in range(KEYS):
            r = tm.Detector(tm.Key.generate(), spec, 5000, min_scored=1).detect_ids(None, text)
            p.append(r.outcome.p_value if r.outcome.p_value is not None else 1.0)
        if discrete:
            for alpha in (0.05, 0.1, 0.2):
                share = np.mean(np.asarray(p) <= alpha)
                assert share <= alpha + 4 * np.sqrt(alpha * (1 - alpha) / KEYS), (spec, alpha, share)
        else:
            # Kolmogorov-Smirnov at level 1e-3 (critical value 1.95 / sqrt(n)).
            assert ks_uniform(p) < 1.95 / np.sqrt(KEYS), spec


@settings(max_examples=300, deadline=None)
@given(text=st.text(), prompt=st.one_of(st.none(), st.text()))
def test_any_text_gives_a_report_or_a_typed_error(text, prompt, word_tokenizer_session):
    """Arbitrary Unicode (surrogates excluded by Python's str) through
    canonicalisation, the tokenizer and detection: a report or a TracemarkError,
    never a panic; canonical spans stay inside the UTF-8 bytes of the text."""
    canonical, changes = tm.canonicalize(text)
    size = len(text.encode())
    assert all(0 <= start < end <= size for _, start, end, _, _ in changes)
    key = tm.Key.from_bytes(bytes(range(32)))
    det = tm.Detector(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", word_tokenizer_session.vocab_size,
                      min_scored=1, marks=True)
    try:
        r = det.detect_text(word_tokenizer_session, prompt, text)
    except tm.TracemarkError:
        return
    assert r.verdict in ("detected", "not_detected", "inconclusive") and r.canonical is not None
    for m in r.to_dict()["marks"]:
        assert m["span"] is None or 0 <= m["span"][0] <= m["span"][1] <= size
