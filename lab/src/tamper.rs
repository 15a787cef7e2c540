//! The tamperings [`canonicalize`](tracemark_verifier::canonicalize) undoes, as attacks:
//! for tests, the evaluation's attack columns and anyone who wants to check
//! a verifier against them.
//!
//! Each leaves the words a reader sees unchanged and changes the bytes a
//! tokenizer sees. [`tamper`] applies one at a `rate` (the share of eligible
//! places changed), drawing from a seeded ChaCha stream so that an attack is
//! reproducible.

use core::fmt;

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unicode_normalization::UnicodeNormalization;

/// One way to change a text's bytes without changing what a reader sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tampering {
    /// A zero-width space (U+200B) after words.
    ZeroWidthSpace,
    /// A zero-width joiner (U+200D) inside words.
    ZeroWidthJoiner,
    /// A soft hyphen (U+00AD) inside words.
    SoftHyphen,
    /// Bidi marks (U+200E, U+200F) around words.
    BidiMarks,
    /// Invisible tag characters (U+E0020–E007E) inside words.
    TagCharacters,
    /// Variation selectors (U+FE00–FE0F) after letters.
    VariationSelectors,
    /// No-break and other space separators for spaces.
    SpaceVariants,
    /// Full-width forms (U+FF01–FF5E) for ASCII letters and digits.
    FullWidth,
    /// Cyrillic and Greek look-alikes for Latin letters.
    Homoglyphs,
    /// Accented letters decomposed into a base letter and a combining mark.
    Decomposed,
}

impl Tampering {
    /// Every tampering.
    pub const ALL: [Tampering; 10] = [
        Tampering::ZeroWidthSpace,
        Tampering::ZeroWidthJoiner,
        Tampering::SoftHyphen,
        Tampering::BidiMarks,
        Tampering::TagCharacters,
        Tampering::VariationSelectors,
        Tampering::SpaceVariants,
        Tampering::FullWidth,
        Tampering::Homoglyphs,
        Tampering::Decomposed,
    ];

    /// Its short name (as in the evaluation's tables).
    pub fn name(self) -> &'static str {
        match self {
            Self::ZeroWidthSpace => "zwsp",
            Self::ZeroWidthJoiner => "zwj",
            Self::SoftHyphen => "shy",
            Self::BidiMarks => "bidi",
            Self::TagCharacters => "tags",
            Self::VariationSelectors => "vs",
            Self::SpaceVariants => "nbsp",
            Self::FullWidth => "fullwidth",
            Self::Homoglyphs => "homoglyph",
            Self::Decomposed => "nfd",
        }
    }
}

impl fmt::Display for Tampering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Look-alikes from other scripts for Latin letters: the attacker's table.
/// (Canonicalisation does not use it; it maps back with the Unicode
/// confusables data, and a test checks that it maps every one of these.)
pub const HOMOGLYPHS: [(char, char); 14] = [
    ('a', 'а'),
    ('c', 'с'),
    ('e', 'е'),
    ('i', 'і'),
    ('j', 'ј'),
    ('o', 'о'),
    ('p', 'р'),
    ('s', 'ѕ'),
    ('x', 'х'),
    ('y', 'у'),
    ('A', 'Α'),
    ('B', 'Β'),
    ('H', 'Η'),
    ('T', 'Τ'),
];

/// Space separators a space can be swapped for.
const SPACES: [char; 5] = ['\u{00A0}', '\u{2002}', '\u{2009}', '\u{202F}', '\u{3000}'];

/// `text` with `tampering` applied at `rate` (0 to 1) of its eligible places,
/// drawn from a ChaCha stream seeded with `seed`.
pub fn tamper(text: &str, tampering: Tampering, rate: f64, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hit = move || rate >= 1.0 || rng.random::<f64>() < rate;
    let mut out = String::with_capacity(text.len() * 2);
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let inside_word = c.is_alphanumeric() && next.is_some_and(char::is_alphanumeric);
        match tampering {
            Tampering::ZeroWidthSpace => {
                out.push(c);
                if c.is_alphanumeric() && !next.is_some_and(char::is_alphanumeric) && hit() {
                    out.push('\u{200B}');
                }
            }
            Tampering::ZeroWidthJoiner | Tampering::SoftHyphen | Tampering::TagCharacters => {
                out.push(c);
                if inside_word && hit() {
                    out.push(match tampering {
                        Tampering::ZeroWidthJoiner => '\u{200D}',
                        Tampering::SoftHyphen => '\u{00AD}',
                        _ => char::from_u32(0xE0020 + u32::from(c) % 0x5F).unwrap_or('\u{E0020}'),
                    });
                }
            }
            Tampering::BidiMarks => {
                let word_start = c.is_alphanumeric() && !prev.is_some_and(char::is_alphanumeric);
                if word_start && hit() {
                    out.push('\u{200E}');
                    out.push(c);
                    out.push('\u{200F}');
                } else {
                    out.push(c);
                }
            }
            Tampering::VariationSelectors => {
                out.push(c);
                if c.is_alphabetic() && hit() {
                    out.push(char::from_u32(0xFE00 + u32::from(c) % 16).unwrap_or('\u{FE00}'));
                }
            }
            Tampering::SpaceVariants => out.push(if c == ' ' && hit() {
                SPACES[u32::from(prev.unwrap_or(' ')) as usize % SPACES.len()]
            } else {
                c
            }),
            Tampering::FullWidth => out.push(if c.is_ascii_alphanumeric() && hit() {
                char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c)
            } else {
                c
            }),
            Tampering::Homoglyphs => out.push(match HOMOGLYPHS.iter().find(|(latin, _)| *latin == c) {
                Some(&(_, fake)) if hit() => fake,
                _ => c,
            }),
            Tampering::Decomposed => {
                if c.is_ascii() || !hit() {
                    out.push(c);
                } else {
                    out.extend(core::iter::once(c).nfd());
                }
            }
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tampering_changes_bytes_and_is_reproducible() {
        let text = "Café owners in Zürich opened early: the espresso was ready by six.";
        for t in Tampering::ALL {
            let a = tamper(text, t, 1.0, 7);
            assert_ne!(a, text, "{t}");
            assert_eq!(a, tamper(text, t, 1.0, 7), "{t}");
            assert_eq!(tamper(text, t, 0.0, 7), text, "{t}");
        }
        let half = tamper(text, Tampering::FullWidth, 0.5, 1);
        let changed = half.chars().filter(|c| !c.is_ascii()).count();
        let eligible = text.chars().filter(char::is_ascii_alphanumeric).count();
        assert!(changed > 0 && changed < eligible, "{changed} of {eligible}");
    }
}
