//! Bindings of `tracemark_verifier::text::sentences`: sentence segmentation
//! (`docs/SPEC.md` §15), the units of the semantic layer.

use pyo3::prelude::*;

/// The sentences of `text`, in order (`docs/SPEC.md` §15, segmentation
/// version `SENTENCES_VERSION`): cut at line breaks, at `.` `!` `?` `…`
/// before white space (not before a lowercase word, after an abbreviation or
/// a list number), and at `。` `！` `？`; trimmed; pieces without a letter or
/// digit dropped. The same function the Rust verifier and decoder use.
///
/// >>> import tracemark as tm
/// >>> tm.sentences("Dr. Smith arrived at 5 p.m. on Monday. He left!\n1. Tea, e.g. green tea.")
/// ['Dr. Smith arrived at 5 p.m. on Monday.', 'He left!', '1. Tea, e.g. green tea.']
#[pyfunction]
pub(crate) fn sentences(text: &str) -> Vec<String> {
    tracemark_verifier::sentences(text)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The sentences of `text` as `(start, end)` code-point offsets, so that
/// `text[start:end]` is each of `sentences(text)`.
///
/// >>> import tracemark as tm
/// >>> text = "One. Two!"
/// >>> [text[a:b] for a, b in tm.sentence_spans(text)]
/// ['One.', 'Two!']
#[pyfunction]
pub(crate) fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let spans = tracemark_verifier::sentence_spans(text);
    // Byte offsets to code-point offsets, in one pass over the text.
    let mut out = Vec::with_capacity(spans.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut advance = |to: usize| {
        chars += text[byte..to].chars().count();
        byte = to;
        chars
    };
    for r in spans {
        let start = advance(r.start);
        let end = advance(r.end);
        out.push((start, end));
    }
    out
}
