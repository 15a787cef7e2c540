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
    /// Spaces doubled (canonical form v2).
    DoubledSpaces,
    /// Tabs for spaces (v2).
    Tabs,
    /// U+2800 braille blank for spaces (v2).
    BrailleBlank,
    /// A combining dot below (U+0323) after letters (v2).
    DotBelow,
    /// A dot below after letters, composed by NFC where Unicode has the
    /// letter (`ạ ọ ḅ`) (v2).
    DotBelowComposed,
    /// Small capitals for the letters they look like (`ᴄ ᴏ ꜱ ᴜ ᴠ ᴡ ᴢ`) (v2).
    SmallCapitals,
    /// IPA and dotless letters (`ɑ ɡ ı ȷ`) for `a g i j` (v2).
    LatinLookalikes,
    /// Greek letters for the Latin ones a reader reads them as (`Ι κ ν ο`)
    /// (v2).
    Greek,
    /// Words written backwards inside a right-to-left override (RLO …
    /// PDF), which displays them as the original words (v2).
    ReversedWords,
    /// Cyrillic look-alikes for the Latin letters that have one, and genuine
    /// Russian paragraphs appended, more of them than the Latin letters
    /// left: by a whole-text count Cyrillic is dominant (v2).
    CyrillicFlip,
    /// Greek look-alikes for the Latin letters that have one, and genuine
    /// Greek paragraphs appended in the same way (v2).
    GreekFlip,
    /// An emoji between words (visible: the evaluation reports it apart).
    EmojiBetweenWords,
    /// Hyphens for the spaces between words (visible).
    HyphensBetweenWords,
    /// Letters in upper case (visible).
    UpperCase,
    /// Words in markdown bold (`**word**`) (visible).
    MarkdownBold,
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

    /// The tamperings canonical form version 2 adds (issue 28); the
    /// evaluation's attack columns run [`Tampering::ALL`].
    pub const ROUND_TWO: [Tampering; 11] = [
        Tampering::DoubledSpaces,
        Tampering::Tabs,
        Tampering::BrailleBlank,
        Tampering::DotBelow,
        Tampering::DotBelowComposed,
        Tampering::SmallCapitals,
        Tampering::LatinLookalikes,
        Tampering::Greek,
        Tampering::ReversedWords,
        Tampering::CyrillicFlip,
        Tampering::GreekFlip,
    ];

    /// Every tampering that leaves what a reader sees unchanged: version 1's
    /// and round two's, the evaluation's tampering columns.
    pub const MEANING_PRESERVING: [Tampering; 21] = {
        // ALL, then ROUND_TWO (a const loop: arrays cannot be concatenated in a const otherwise).
        let mut out = [Tampering::ZeroWidthSpace; 21];
        let mut i = 0;
        while i < out.len() {
            out[i] = if i < Tampering::ALL.len() {
                Tampering::ALL[i]
            } else {
                Tampering::ROUND_TWO[i - Tampering::ALL.len()]
            };
            i += 1;
        }
        out
    };

    /// Edits a reader sees (emoji or hyphens between words, case, markdown):
    /// canonicalisation does not undo them, and the evaluation reports them
    /// in a column of their own, without a claim.
    pub const VISIBLE: [Tampering; 4] = [
        Tampering::EmojiBetweenWords,
        Tampering::HyphensBetweenWords,
        Tampering::UpperCase,
        Tampering::MarkdownBold,
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
            Self::DoubledSpaces => "space2",
            Self::Tabs => "tab",
            Self::BrailleBlank => "braille",
            Self::DotBelow => "dot",
            Self::DotBelowComposed => "dot-nfc",
            Self::SmallCapitals => "smallcaps",
            Self::LatinLookalikes => "ipa",
            Self::Greek => "greek",
            Self::ReversedWords => "rlo",
            Self::CyrillicFlip => "cyrillic-flip",
            Self::GreekFlip => "greek-flip",
            Self::EmojiBetweenWords => "emoji-sep",
            Self::HyphensBetweenWords => "hyphen-sep",
            Self::UpperCase => "upper",
            Self::MarkdownBold => "bold",
        }
    }

    /// What the tampering appends to the text, whatever the rate: the
    /// paragraphs of another script that a flip adds (`tamper(text, t, 0.0,
    /// seed)` is the untampered text with them, the baseline to compare with).
    pub fn appends(self) -> bool {
        matches!(self, Self::CyrillicFlip | Self::GreekFlip)
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

/// Small capitals that look like the lowercase letter.
const SMALL_CAPITALS: [(char, char); 7] = [
    ('c', 'ᴄ'),
    ('o', 'ᴏ'),
    ('s', 'ꜱ'),
    ('u', 'ᴜ'),
    ('v', 'ᴠ'),
    ('w', 'ᴡ'),
    ('z', 'ᴢ'),
];

/// IPA and dotless Latin letters.
const LATIN_LOOKALIKES: [(char, char); 4] = [('a', 'ɑ'), ('g', 'ɡ'), ('i', 'ı'), ('j', 'ȷ')];

/// Greek letters a reader of Latin text reads as Latin ones.
const GREEK: [(char, char); 14] = [
    ('I', 'Ι'),
    ('K', 'Κ'),
    ('N', 'Ν'),
    ('E', 'Ε'),
    ('O', 'Ο'),
    ('P', 'Ρ'),
    ('T', 'Τ'),
    ('k', 'κ'),
    ('i', 'ι'),
    ('v', 'ν'),
    ('o', 'ο'),
    ('u', 'υ'),
    ('p', 'ρ'),
    ('x', 'χ'),
];

/// Cyrillic letters whose Unicode TS #39 prototype is the Latin letter.
const CYRILLIC: [(char, char); 23] = [
    ('a', 'а'),
    ('c', 'с'),
    ('d', 'ԁ'),
    ('e', 'е'),
    ('h', 'һ'),
    ('i', 'і'),
    ('j', 'ј'),
    ('o', 'о'),
    ('p', 'р'),
    ('s', 'ѕ'),
    ('x', 'х'),
    ('y', 'у'),
    ('A', 'А'),
    ('B', 'В'),
    ('C', 'С'),
    ('E', 'Е'),
    ('H', 'Н'),
    ('K', 'К'),
    ('M', 'М'),
    ('O', 'О'),
    ('P', 'Р'),
    ('T', 'Т'),
    ('X', 'Х'),
];

/// Genuine Russian prose, public domain (Tolstoy, *Anna Karenina*, I.1;
/// Pushkin, *The Captain's Daughter*, I).
const RUSSIAN: [&str; 3] = [
    "Все счастливые семьи похожи друг на друга, каждая несчастливая семья несчастлива по-своему. \
     Всё смешалось в доме Облонских. Жена узнала, что муж был в связи с бывшею в их доме \
     француженкою-гувернанткой, и объявила мужу, что не может жить с ним в одном доме.",
    "Положение это продолжалось уже третий день и мучительно чувствовалось и самими супругами, \
     и всеми членами семьи, и домочадцами. Все члены семьи и домочадцы чувствовали, что нет смысла \
     в их сожительстве и что на каждом постоялом дворе случайно сошедшиеся люди более связаны \
     между собой, чем они.",
    "Отец мой Андрей Петрович Гринёв в молодости своей служил при графе Минихе и вышел в отставку \
     премьер-майором в 17.. году. С тех пор жил он в своей Симбирской деревне, где и женился \
     на девице Авдотье Васильевне Ю., дочери бедного тамошнего дворянина.",
];

/// Greek prose (plain sentences about Greece).
const GREEK_PROSE: [&str; 3] = [
    "Η Ελλάδα είναι χώρα της νοτιοανατολικής Ευρώπης, στο νότιο άκρο της Βαλκανικής χερσονήσου. \
     Πρωτεύουσα και μεγαλύτερη πόλη της είναι η Αθήνα, όπου ζει σχεδόν το ένα τρίτο του πληθυσμού.",
    "Η χώρα έχει χιλιάδες νησιά, από τα οποία περίπου διακόσια κατοικούνται. Το κλίμα είναι \
     μεσογειακό, με ζεστά και ξηρά καλοκαίρια και ήπιους, βροχερούς χειμώνες.",
    "Η ελληνική γλώσσα γράφεται με το ελληνικό αλφάβητο εδώ και σχεδόν τρεις χιλιάδες χρόνια· \
     από αυτό προέρχονται το λατινικό και το κυριλλικό αλφάβητο.",
];

/// `text` with paragraphs of `prose` appended until their letters outside
/// `table`'s look-alikes outnumber the letters of `text` that `table` has no
/// look-alike for (the Latin letters a flip leaves).
fn append_prose(text: &str, table: &[(char, char)], prose: &[&str]) -> String {
    let left = text
        .chars()
        .filter(|&c| c.is_ascii_alphabetic() && !table.iter().any(|(l, _)| *l == c))
        .count();
    let own = |p: &str| {
        p.chars()
            .filter(|&c| c.is_alphabetic() && !table.iter().any(|(_, f)| *f == c))
            .count()
    };
    let mut out = text.to_string();
    let mut added = 0;
    for p in prose.iter().cycle().take(64) {
        if added > left {
            break;
        }
        out += "\n\n";
        out += p;
        added += own(p);
    }
    out
}

/// Space separators a space can be swapped for.
const SPACES: [char; 5] = ['\u{00A0}', '\u{2002}', '\u{2009}', '\u{202F}', '\u{3000}'];

/// `text` with `tampering` applied at `rate` (0 to 1) of its eligible places,
/// drawn from a ChaCha stream seeded with `seed`.
pub fn tamper(text: &str, tampering: Tampering, rate: f64, seed: u64) -> String {
    if let Some((table, prose)) = match tampering {
        Tampering::CyrillicFlip => Some((&CYRILLIC[..], &RUSSIAN[..])),
        Tampering::GreekFlip => Some((&GREEK[..], &GREEK_PROSE[..])),
        _ => None,
    } {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let swapped: String = text
            .chars()
            .map(|c| match table.iter().find(|(latin, _)| *latin == c) {
                Some(&(_, fake)) if rate >= 1.0 || rng.random::<f64>() < rate => fake,
                _ => c,
            })
            .collect();
        return append_prose(&swapped, table, prose);
    }
    if tampering == Tampering::DotBelowComposed {
        return tamper(text, Tampering::DotBelow, rate, seed).nfc().collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hit = move || rate >= 1.0 || rng.random::<f64>() < rate;
    if tampering == Tampering::ReversedWords {
        let mut out = String::with_capacity(text.len() * 2);
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String, hit: &mut dyn FnMut() -> bool| {
            if !word.is_empty() && hit() {
                out.push('\u{202E}');
                out.extend(word.chars().rev());
                out.push('\u{202C}');
            } else {
                out.push_str(word);
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_alphanumeric() {
                word.push(c);
            } else {
                flush(&mut word, &mut out, &mut hit);
                out.push(c);
            }
        }
        flush(&mut word, &mut out, &mut hit);
        return out;
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut prev: Option<char> = None;
    let mut bold = false;
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
            Tampering::DoubledSpaces
            | Tampering::Tabs
            | Tampering::BrailleBlank
            | Tampering::EmojiBetweenWords
            | Tampering::HyphensBetweenWords => {
                if c == ' ' && hit() {
                    out.push_str(match tampering {
                        Tampering::DoubledSpaces => "  ",
                        Tampering::Tabs => "\t",
                        Tampering::EmojiBetweenWords => " \u{1F449} ",
                        Tampering::HyphensBetweenWords => "-",
                        _ => "\u{2800}",
                    });
                } else {
                    out.push(c);
                }
            }
            Tampering::DotBelow | Tampering::DotBelowComposed => {
                out.push(c);
                if c.is_alphabetic() && hit() {
                    out.push('\u{0323}');
                }
            }
            Tampering::SmallCapitals | Tampering::LatinLookalikes | Tampering::Greek => {
                let table: &[(char, char)] = match tampering {
                    Tampering::SmallCapitals => &SMALL_CAPITALS,
                    Tampering::LatinLookalikes => &LATIN_LOOKALIKES,
                    _ => &GREEK,
                };
                out.push(match table.iter().find(|(latin, _)| *latin == c) {
                    Some(&(_, fake)) if hit() => fake,
                    _ => c,
                });
            }
            Tampering::UpperCase => {
                if c.is_lowercase() && hit() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
            }
            Tampering::MarkdownBold => {
                let word_start = c.is_alphanumeric() && !prev.is_some_and(char::is_alphanumeric);
                let word_end = c.is_alphanumeric() && !next.is_some_and(char::is_alphanumeric);
                if word_start {
                    bold = hit();
                    if bold {
                        out.push_str("**");
                    }
                }
                out.push(c);
                if word_end && bold {
                    out.push_str("**");
                    bold = false;
                }
            }
            Tampering::ReversedWords | Tampering::CyrillicFlip | Tampering::GreekFlip => out.push(c),
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
        for t in Tampering::ROUND_TWO {
            let a = tamper(text, t, 1.0, 7);
            assert_ne!(a, text, "{t}");
            assert_eq!(a, tamper(text, t, 1.0, 7), "{t}");
            // Canonical form v2 undoes each of them (a flip's paragraphs stay).
            let baseline = tamper(text, t, 0.0, 7);
            assert_eq!(baseline == text, !t.appends(), "{t}");
            for rate in [0.25, 1.0] {
                let c = tracemark_verifier::canonicalize(&tamper(text, t, rate, 7));
                assert_eq!(c.text(), baseline, "{t} at {rate}: {:?}", c.changes());
            }
        }
        for t in Tampering::VISIBLE {
            let a = tamper(text, t, 1.0, 7);
            assert_ne!(a, text, "{t}");
            assert_eq!(a, tamper(text, t, 1.0, 7), "{t}");
            assert_eq!(tamper(text, t, 0.0, 7), text, "{t}");
        }
        assert_eq!(
            tamper("a bc, d", Tampering::MarkdownBold, 1.0, 1),
            "**a** **bc**, **d**"
        );
        assert_eq!(
            Tampering::MEANING_PRESERVING.len(),
            Tampering::ALL.len() + Tampering::ROUND_TWO.len()
        );
        // A flip appends enough of the other script to outnumber the Latin
        // letters it leaves.
        let flipped = tamper(text, Tampering::CyrillicFlip, 1.0, 7);
        let latin = flipped.chars().filter(char::is_ascii_alphabetic).count();
        let cyrillic = flipped
            .chars()
            .filter(|&c| c.is_alphabetic() && !c.is_ascii() && !CYRILLIC.iter().any(|(_, f)| *f == c))
            .count();
        assert!(cyrillic > latin, "{cyrillic} {latin}");
        let half = tamper(text, Tampering::FullWidth, 0.5, 1);
        let changed = half.chars().filter(|c| !c.is_ascii()).count();
        let eligible = text.chars().filter(char::is_ascii_alphanumeric).count();
        assert!(changed > 0 && changed < eligible, "{changed} of {eligible}");
    }
}
