//! Sentences: the units the semantic layer embeds, steers and scores.
//!
//! Sentence segmentation version [`SENTENCES_VERSION`] (1), defined in
//! `docs/SPEC.md` §15 and pinned by golden vectors
//! (`testdata/sentences/v1.json`, written by an independent Python reference
//! of the spec, `testdata/sentences/gen_sentences.py`). It is a handful of
//! explicit rules on code points, not a statistical model, so that a decoder,
//! the verifier and the Python package cut the same text into the same
//! sentences, and a third party can re-implement it from the spec:
//!
//! - a line break always ends a sentence;
//! - `.` `!` `?` `…` (with any closing quotes, brackets or emphasis marks
//!   after them) end a sentence when white space follows, unless the next
//!   word starts with an ASCII lowercase letter or digit (`e.g. this`), or
//!   a lone `.` follows an abbreviation (`Dr.`, `U.S.`, `J.`), or the number
//!   of a numbered list item (`1. First`);
//! - the ideographic full stops `。` `！` `？` `｡` end a sentence wherever
//!   they stand;
//! - sentences are trimmed of white space, and a piece without a letter or a
//!   digit (`---`, `**`) is not a sentence.
//!
//! ```
//! use tracemark_verifier::text::sentences::sentences;
//!
//! let text = "Dr. Smith arrived at 5 p.m. on Monday. He left!\n1. Tea, e.g. green tea.";
//! assert_eq!(
//!     sentences(text),
//!     ["Dr. Smith arrived at 5 p.m. on Monday.", "He left!", "1. Tea, e.g. green tea."]
//! );
//! ```

use core::ops::Range;

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The version of the segmentation rules (`docs/SPEC.md` §15). Anything that
/// changes where a sentence starts or ends bumps it.
pub const SENTENCES_VERSION: u32 = 1;

/// Words after which a lone `.` does not end a sentence (compared
/// case-sensitively; `docs/SPEC.md` §15, rule 3c).
pub const ABBREVIATIONS: [&str; 13] = [
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "vs", "cf", "al", "Fig", "Eq",
];

/// Line breaks (§15 rule 1): the characters Python's `str.splitlines` splits at.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}' | '\u{1D}' | '\u{1E}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Terminators that end a sentence only before white space (§15 rule 3).
fn is_spaced_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '\u{2026}')
}

/// Ideographic terminators, which end a sentence wherever they stand (§15 rule 2).
fn is_ideographic_terminator(c: char) -> bool {
    matches!(c, '\u{3002}' | '\u{FF01}' | '\u{FF1F}' | '\u{FF61}')
}

fn is_terminator(c: char) -> bool {
    is_spaced_terminator(c) || is_ideographic_terminator(c)
}

/// Closing quotes, brackets and emphasis marks that stay with the sentence
/// they close (§15 rule 2).
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | ')'
            | ']'
            | '}'
            | '*'
            | '_'
            | '\u{2019}'
            | '\u{201D}'
            | '\u{00BB}'
            | '\u{300D}'
            | '\u{300F}'
            | '\u{FF09}'
    )
}

/// A letter or a digit: general category L* or N* (§15 rule 4).
fn is_letter_or_digit(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    )
}

/// Whether a terminator run `chars[run]`, followed by closers up to
/// `chars[end]`, ends the sentence that started at `chars[start]` (§15 rule 3).
fn ends_sentence(chars: &[(usize, char)], start: usize, run: Range<usize>, end: usize) -> bool {
    if chars[run.clone()].iter().any(|&(_, c)| is_ideographic_terminator(c)) {
        return true;
    }
    if end == chars.len() {
        return true;
    }
    if !chars[end].1.is_whitespace() {
        return false;
    }
    // (a) The next word starts with an ASCII lowercase letter or digit.
    match chars[end..].iter().map(|&(_, c)| c).find(|c| !c.is_whitespace()) {
        None => return true,
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => return false,
        Some(_) => {}
    }
    if run.len() != 1 || chars[run.start].1 != '.' {
        return true;
    }
    // The word before a lone `.`: ASCII letters, digits and dots.
    let word_start = chars[start..run.start]
        .iter()
        .rposition(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '.'))
        .map_or(start, |i| start + i + 1);
    let word: String = chars[word_start..run.start].iter().map(|&(_, c)| c).collect();
    let initial = word.len() == 1 && word.as_bytes()[0].is_ascii_uppercase();
    // (b) An initialism (`U.S`, `e.g`, `p.m`) or one capital letter (`J`); (c) a listed abbreviation.
    if initial || word.contains('.') || ABBREVIATIONS.contains(&word.as_str()) {
        return false;
    }
    // (d) The number of a numbered list item: the sentence so far is that number.
    let only_word = chars[start..word_start].iter().all(|&(_, c)| c.is_whitespace());
    let number = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
    !(number && only_word)
}

/// The sentences of `text` as byte ranges into it, in order (`docs/SPEC.md`
/// §15): each trimmed of white space, none empty, none without a letter or a
/// digit.
pub fn sentence_spans(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut push = |piece: Range<usize>| {
        let s = &text[piece.clone()];
        let trimmed = s.trim_start_matches(char::is_whitespace);
        let lead = s.len() - trimmed.len();
        let trimmed = trimmed.trim_end_matches(char::is_whitespace);
        if trimmed.chars().any(is_letter_or_digit) {
            let start = piece.start + lead;
            out.push(start..start + trimmed.len());
        }
    };
    let mut line_start = 0;
    for line in text.split(is_line_break) {
        let chars: Vec<(usize, char)> = line.char_indices().map(|(i, c)| (line_start + i, c)).collect();
        let byte = |i: usize| chars.get(i).map_or(line_start + line.len(), |&(b, _)| b);
        let (mut start, mut i) = (0, 0);
        while i < chars.len() {
            if !is_terminator(chars[i].1) {
                i += 1;
                continue;
            }
            let run_start = i;
            while i < chars.len() && is_terminator(chars[i].1) {
                i += 1;
            }
            let run_end = i;
            while i < chars.len() && is_closer(chars[i].1) {
                i += 1;
            }
            if ends_sentence(&chars, start, run_start..run_end, i) {
                push(byte(start)..byte(i));
                start = i;
            }
        }
        push(byte(start)..line_start + line.len());
        // `split` consumed exactly one line-break character after this line.
        line_start += line.len() + text[line_start + line.len()..].chars().next().map_or(0, char::len_utf8);
    }
    out
}

/// The sentences of `text`, in order (`docs/SPEC.md` §15): the slices of
/// [`sentence_spans`].
pub fn sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).into_iter().map(|r| &text[r]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Golden {
        version: u32,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        input: String,
        sentences: Vec<String>,
        /// Code-point offsets `[start, end)`.
        spans: Vec<[usize; 2]>,
    }

    #[test]
    fn golden_vectors_v1() {
        let golden: Golden = serde_json::from_str(include_str!("../../../testdata/sentences/v1.json"))
            .expect("testdata/sentences/v1.json is valid");
        assert_eq!(golden.version, SENTENCES_VERSION);
        assert!(golden.cases.len() >= 20, "the golden file has its cases");
        for case in &golden.cases {
            assert_eq!(sentences(&case.input), case.sentences, "{}", case.name);
            let spans: Vec<[usize; 2]> = sentence_spans(&case.input)
                .into_iter()
                .map(|r| {
                    [
                        case.input[..r.start].chars().count(),
                        case.input[..r.end].chars().count(),
                    ]
                })
                .collect();
            assert_eq!(spans, case.spans, "{}", case.name);
        }
    }

    #[test]
    fn empty_and_blank_text_have_no_sentences() {
        assert!(sentences("").is_empty());
        assert!(sentences(" \n\t\r\n ").is_empty());
        assert!(sentences("--- ** ...").is_empty());
    }

    #[test]
    fn every_span_is_trimmed_inside_its_line_and_in_order() {
        let text = "  One. Two!\r\n\u{2028}Three?  \u{85}四。五！ \u{2029}last";
        let spans = sentence_spans(text);
        assert_eq!(sentences(text), ["One.", "Two!", "Three?", "四。", "五！", "last"]);
        for w in spans.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
        for r in spans {
            let s = &text[r];
            assert_eq!(s, s.trim());
            assert!(!s.contains(is_line_break));
        }
    }
}
