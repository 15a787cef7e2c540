//! The text attacks of the robustness tables that rewrite what a reader sees:
//! emoji removal (the cleaning step of the emoji attack), a rule-based
//! paraphraser, and the measure of how much meaning a rewrite keeps.

use std::collections::HashMap;

use unicode_properties::UnicodeEmoji;

/// Whether `c` is part of an emoji: a non-ASCII character with the Unicode
/// `Emoji` or `Emoji_Component` property (pictographs, skin-tone modifiers,
/// the zero-width joiner and variation selector of emoji sequences, regional
/// indicators, tags). ASCII digits, `#` and `*` have the property too (as
/// keycap bases) and are kept.
pub fn is_emoji(c: char) -> bool {
    !c.is_ascii() && c.is_emoji_char_or_emoji_component()
}

/// `text` with its emojis removed ([`is_emoji`]), and the space an emoji
/// leaves between two words collapsed to one, as an attacker cleaning a
/// generation would: `"the 🌞 sun"` becomes `"the sun"`.
pub fn strip_emoji(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut removed = false;
    for c in text.chars() {
        if is_emoji(c) {
            removed = true;
            continue;
        }
        if removed {
            if c == ' ' && (out.is_empty() || out.ends_with([' ', '\n'])) {
                removed = false;
                continue;
            }
            if c == '\n' && out.ends_with(' ') {
                out.pop();
            }
        }
        removed = false;
        out.push(c);
    }
    if removed && out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Runs of emoji characters per word in `text` (words: runs of alphanumeric
/// characters): how well a model followed "put an emoji between every two
/// words" (1 when it did throughout; 0 when `text` has no words).
pub fn emojis_per_word(text: &str) -> f64 {
    let (mut words, mut emojis) = (0usize, 0usize);
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if c.is_alphanumeric() && !prev.is_some_and(char::is_alphanumeric) {
            words += 1;
        }
        if is_emoji(c) && !prev.is_some_and(is_emoji) {
            emojis += 1;
        }
        prev = Some(c);
    }
    if words == 0 {
        0.0
    } else {
        emojis as f64 / words as f64
    }
}

/// The rule-based paraphraser's synonyms: each word is replaced by the other
/// of its pair, in both directions, keeping a capital first letter.
pub const SYNONYMS: [(&str, &str); 40] = [
    ("big", "large"),
    ("small", "little"),
    ("important", "crucial"),
    ("help", "assist"),
    ("helps", "assists"),
    ("use", "employ"),
    ("uses", "employs"),
    ("used", "employed"),
    ("many", "numerous"),
    ("often", "frequently"),
    ("start", "begin"),
    ("started", "began"),
    ("show", "demonstrate"),
    ("shows", "demonstrates"),
    ("make", "create"),
    ("makes", "creates"),
    ("also", "additionally"),
    ("because", "since"),
    ("however", "nevertheless"),
    ("quickly", "rapidly"),
    ("fast", "quick"),
    ("good", "fine"),
    ("great", "excellent"),
    ("very", "really"),
    ("different", "distinct"),
    ("people", "individuals"),
    ("way", "manner"),
    ("ways", "methods"),
    ("example", "instance"),
    ("simple", "easy"),
    ("need", "require"),
    ("needs", "requires"),
    ("get", "obtain"),
    ("find", "discover"),
    ("enough", "sufficient"),
    ("whole", "entire"),
    ("world", "globe"),
    ("answer", "reply"),
    ("story", "tale"),
    ("happy", "glad"),
];

/// The synonym of a lowercase word, if [`SYNONYMS`] has one (the first pair
/// that names it).
fn synonym(word: &str) -> Option<&'static str> {
    SYNONYMS.iter().find_map(|&(a, b)| {
        if a == word {
            Some(b)
        } else if b == word {
            Some(a)
        } else {
            None
        }
    })
}

/// `word` with its first character upper-cased.
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `clause` with its first letter lower-cased when its first word is a plain
/// capitalised word (not `I`, an acronym or a name in capitals).
fn decapitalised(clause: &str) -> String {
    let first_word: String = clause.chars().take_while(|c| c.is_alphabetic()).collect();
    let mut chars = first_word.chars();
    let plain =
        chars.next().is_some_and(char::is_uppercase) && chars.clone().next().is_some() && chars.all(char::is_lowercase);
    if !plain {
        return clause.to_string();
    }
    let mut c = clause.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// What [`rule_paraphrase`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleParaphrase {
    /// The rewritten text.
    pub text: String,
    /// Words of the input.
    pub words: usize,
    /// Words replaced by a synonym.
    pub replaced: usize,
    /// Sentences whose two clauses were swapped.
    pub swapped: usize,
}

/// Replaces every word that has a synonym in [`SYNONYMS`].
fn replace_synonyms(text: &str) -> (String, usize, usize) {
    let mut out = String::with_capacity(text.len());
    let (mut words, mut replaced) = (0, 0);
    let mut word = String::new();
    let mut flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        words += 1;
        let lower = word.to_lowercase();
        match synonym(&lower) {
            Some(s) => {
                replaced += 1;
                if word.starts_with(char::is_uppercase) {
                    out.push_str(&capitalised(s));
                } else {
                    out.push_str(s);
                }
            }
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    (out, words, replaced)
}

/// A sentence `"A, B."` as `"B, a."` when it has exactly one comma and
/// each side has at least three words.
fn swap_clauses(sentence: &str) -> Option<String> {
    let body = sentence.trim_end_matches(['.', '!', '?']);
    let end = &sentence[body.len()..];
    let (a, b) = body.split_once(", ")?;
    let enough = |s: &str| s.split_whitespace().count() >= 3;
    if body.matches(',').count() != 1 || !enough(a) || !enough(b) {
        return None;
    }
    Some(format!("{}, {}{end}", capitalised(b), decapitalised(a)))
}

/// A deterministic rewriter, for reference: every word with a synonym in
/// [`SYNONYMS`] is replaced by it, and every sentence of the form
/// "clause, clause." (one comma, three words or more on each side) has its
/// two clauses swapped. Line breaks and the spaces between sentences are kept.
pub fn rule_paraphrase(text: &str) -> RuleParaphrase {
    let (replaced_text, words, replaced) = replace_synonyms(text);
    let mut out = String::with_capacity(replaced_text.len());
    let mut swapped = 0;
    for (li, line) in replaced_text.split('\n').enumerate() {
        if li > 0 {
            out.push('\n');
        }
        // Sentences end at '.', '!' or '?' followed by a space (or at the line's end).
        let mut rest = line;
        while !rest.is_empty() {
            let cut = rest
                .char_indices()
                .find(|&(i, c)| matches!(c, '.' | '!' | '?') && rest[i + c.len_utf8()..].starts_with(' '))
                .map_or(rest.len(), |(i, c)| i + c.len_utf8());
            let (sentence, tail) = rest.split_at(cut);
            match swap_clauses(sentence) {
                Some(s) => {
                    swapped += 1;
                    out.push_str(&s);
                }
                None => out.push_str(sentence),
            }
            let spaces = tail.len() - tail.trim_start_matches(' ').len();
            out.push_str(&tail[..spaces]);
            rest = &tail[spaces..];
        }
    }
    RuleParaphrase {
        text: out,
        words,
        replaced,
        swapped,
    }
}

/// Frequent English function words of four letters or more, left out of
/// [`content_words`] with the words shorter than four letters.
const FUNCTION_WORDS: [&str; 40] = [
    "that", "this", "with", "from", "have", "they", "their", "there", "which", "what", "when", "where", "will",
    "would", "could", "should", "about", "into", "than", "then", "them", "these", "those", "were", "been", "being",
    "also", "some", "such", "each", "other", "more", "most", "very", "your", "over", "only", "just", "while",
    "because",
];

/// The content words of `text`, lower-cased, with their counts: runs of
/// alphanumeric characters of at least four characters that are not in a
/// list of 40 frequent function words.
pub fn content_words(text: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.chars().count() < 4 {
            continue;
        }
        let w = w.to_lowercase();
        if !FUNCTION_WORDS.contains(&w.as_str()) {
            *out.entry(w).or_insert(0) += 1;
        }
    }
    out
}

/// Content-word overlap of a rewrite with its source (ROUGE-1 on content
/// words, counts clipped).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overlap {
    /// Share of the source's content words found in the rewrite.
    pub recall: f64,
    /// Share of the rewrite's content words found in the source.
    pub precision: f64,
    /// Their harmonic mean (0 when either is 0).
    pub f1: f64,
}

/// The content-word overlap ([`content_words`]) of `rewrite` with `source`;
/// all zero when either has no content word.
pub fn content_overlap(source: &str, rewrite: &str) -> Overlap {
    let (a, b) = (content_words(source), content_words(rewrite));
    let (na, nb) = (a.values().sum::<usize>(), b.values().sum::<usize>());
    let common: usize = a.iter().map(|(w, &n)| n.min(b.get(w).copied().unwrap_or(0))).sum();
    if na == 0 || nb == 0 || common == 0 {
        return Overlap {
            recall: 0.0,
            precision: 0.0,
            f1: 0.0,
        };
    }
    let (recall, precision) = (common as f64 / na as f64, common as f64 / nb as f64);
    Overlap {
        recall,
        precision,
        f1: 2.0 * recall * precision / (recall + precision),
    }
}

/// Lower-cased runs of alphanumeric characters.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The share of `rewrite`'s word 5-grams (lower-cased) that occur in
/// `source`: how much of a rewrite is copied verbatim (0 when it has fewer
/// than five words).
pub fn copied_share(source: &str, rewrite: &str) -> f64 {
    let (a, b) = (words(source), words(rewrite));
    let seen: std::collections::HashSet<&[String]> = a.windows(5).collect();
    let grams = b.windows(5).count();
    if grams == 0 {
        return 0.0;
    }
    b.windows(5).filter(|g| seen.contains(g)).count() as f64 / grams as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emojis_and_the_space_they_leave_are_removed() {
        assert_eq!(strip_emoji("The 🌞 sun 🌞 rises 👍🏽 early."), "The sun rises early.");
        assert_eq!(strip_emoji("🚀 Rockets fly 🚀\nhigh ❤️"), "Rockets fly\nhigh");
        assert_eq!(strip_emoji("Family👨‍👩‍👧 time"), "Family time");
        // Digits, '#' and '*' are keycap bases (Emoji property) but ASCII: kept.
        assert_eq!(strip_emoji("Call #1 at 10 * 2"), "Call #1 at 10 * 2");
        assert_eq!(strip_emoji("plain  text"), "plain  text");
        assert_eq!(emojis_per_word("a 🌞 b 🌞🌞 c"), 2.0 / 3.0);
        assert_eq!(emojis_per_word("🌞"), 0.0);
    }

    #[test]
    fn the_rule_based_paraphrase_swaps_synonyms_and_clauses() {
        let text = "When the sun rises, many people start their day. It is a big help!\nGood.";
        let p = rule_paraphrase(text);
        assert_eq!(
            p.text,
            "Numerous individuals begin their day, when the sun rises. It is a large assist!\nFine."
        );
        assert_eq!((p.words, p.replaced, p.swapped), (15, 6, 1));
        // Clauses of two words stay; "I" keeps its capital.
        let q = rule_paraphrase("I think, so you do too. Use it.");
        assert_eq!(q.text, "I think, so you do too. Employ it.");
        assert_eq!(
            swap_clauses("I know that well, but you know it better.").as_deref(),
            Some("But you know it better, I know that well.")
        );
    }

    #[test]
    fn overlap_counts_clipped_content_words() {
        let o = content_overlap("Plants convert sunlight into sugar, sugar", "Sugar comes from plants");
        // Source: plants, convert, sunlight, sugar x2 (5); rewrite: sugar, comes, plants (3); common 2.
        assert!(
            (o.recall - 0.4).abs() < 1e-12 && (o.precision - 2.0 / 3.0).abs() < 1e-12,
            "{o:?}"
        );
        assert!((o.f1 - 0.5).abs() < 1e-12);
        assert_eq!(content_overlap("the cat", "a dog").f1, 0.0);
    }

    #[test]
    fn copied_share_counts_verbatim_five_grams() {
        let source = "One two three four five six seven.";
        assert_eq!(copied_share(source, "one, two three four FIVE six"), 1.0);
        // Of "zero one two three four five": "zero..four" is new, "one..five" copied.
        assert_eq!(copied_share(source, "zero one two three four five"), 0.5);
        assert_eq!(copied_share(source, "one two"), 0.0);
    }
}
