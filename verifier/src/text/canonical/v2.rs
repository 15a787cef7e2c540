//! The rules canonical form version 2 adds to version 1 (SPEC §14): bidi
//! overrides resolved into reading order, blank-looking characters and runs
//! of horizontal whitespace made one space, letters of another script read
//! as a reader reads them (Greek), look-alike letters of the Latin script
//! itself, and combining marks the text's orthography does not use.
//!
//! Each stage takes and returns traced characters, so that every output
//! character still knows the bytes of the original text it came from.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::GeneralCategory;
use unicode_script::Script;
use unicode_segmentation::UnicodeSegmentation;

use super::{push_change, Change, ChangeKind, Traced};
use crate::error::Result;
use crate::text::Deadline;

// ---------------------------------------------------------------------------
// Bidi overrides.

/// Left-to-right and right-to-left override, embeddings, pop.
const LRE: char = '\u{202A}';
const RLE: char = '\u{202B}';
const PDF: char = '\u{202C}';
const LRO: char = '\u{202D}';
const RLO: char = '\u{202E}';

/// Whether `c` ends a paragraph for the bidi algorithm (class B), which
/// closes every open embedding and override.
fn paragraph_end(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{1C}'..='\u{1E}' | '\u{85}' | '\u{2029}')
}

/// Scripts written right to left.
fn right_to_left(c: char) -> bool {
    matches!(
        super::script_of(c),
        Script::Arabic
            | Script::Hebrew
            | Script::Syriac
            | Script::Thaana
            | Script::Nko
            | Script::Samaritan
            | Script::Mandaic
            | Script::Adlam
            | Script::Hanifi_Rohingya
    )
}

/// Whether `c` attaches to the character before it (a combining mark, a
/// joiner or a variation selector), so that reversing keeps them together.
fn extends(c: char) -> bool {
    matches!(
        super::category_of(c),
        GeneralCategory::NonspacingMark | GeneralCategory::SpacingMark | GeneralCategory::EnclosingMark
    ) || matches!(c, '\u{200D}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// The mirrored glyph of a paired bracket (BidiMirroring.txt, the pairs a
/// reversed run of prose can hold): displayed right to left, `(` shows as `)`.
fn mirror(c: char) -> char {
    const PAIRS: [(char, char); 9] = [
        ('(', ')'),
        ('[', ']'),
        ('{', '}'),
        ('<', '>'),
        ('«', '»'),
        ('‹', '›'),
        ('⁅', '⁆'),
        ('〈', '〉'),
        ('⟨', '⟩'),
    ];
    for (open, close) in PAIRS {
        if c == open {
            return close;
        }
        if c == close {
            return open;
        }
    }
    c
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opener {
    Root,
    Embedding,
    Override { rtl: bool },
}

/// One unit a reversal moves as a whole: a character with the marks that
/// extend it, or a nested run already resolved (`block`).
struct Unit {
    block: bool,
    chars: Vec<Traced>,
}

struct Frame {
    opener: Opener,
    control: Option<Traced>,
    /// Units in logical order.
    units: Vec<Unit>,
}

impl Frame {
    fn push(&mut self, t: Traced) {
        match self.units.last_mut() {
            Some(last) if extends(t.c) && !last.block => last.chars.push(t),
            _ => self.push_unit(vec![t]),
        }
    }

    fn push_unit(&mut self, chars: Vec<Traced>) {
        self.units.push(Unit { block: false, chars });
    }
}

/// Closes `frame` (by `closer`, a PDF, or by the end of the paragraph) into
/// its parent.
fn close(frame: Frame, closer: Option<Traced>, parent: &mut Frame, changes: &mut Vec<Change>) {
    // A run not reversed still moves as one block within an enclosing
    // override (its level is higher); its controls go to the invisible stage.
    let transparent = |parent: &mut Frame, frame: Frame| {
        let mut chars: Vec<Traced> = frame.control.into_iter().collect();
        chars.extend(frame.units.into_iter().flat_map(|u| u.chars));
        chars.extend(closer);
        if !chars.is_empty() {
            parent.units.push(Unit { block: true, chars });
        }
    };
    let (Opener::Override { rtl }, Some(control)) = (frame.opener, frame.control) else {
        return transparent(parent, frame);
    };
    let (mut ltr_count, mut rtl_count) = (0usize, 0usize);
    for t in frame.units.iter().flat_map(|u| &u.chars) {
        if right_to_left(t.c) {
            rtl_count += 1;
        } else if t.c.is_alphanumeric() {
            ltr_count += 1;
        }
    }
    // An override shows its run in the forced direction; a reader reads the
    // letters in their own. Where the two differ, the reader sees the run
    // reversed.
    let reversed = if rtl {
        ltr_count > rtl_count
    } else {
        rtl_count > ltr_count
    };
    if !reversed {
        return transparent(parent, frame);
    }
    let mut from: Vec<Traced> = vec![control];
    from.extend(frame.units.iter().flat_map(|u| u.chars.iter().copied()));
    from.extend(closer);
    let block: Vec<Traced> = frame
        .units
        .iter()
        .rev()
        .flat_map(|unit| {
            let mirrored = !unit.block && unit.chars.len() == 1;
            unit.chars.iter().map(move |t| Traced {
                c: if mirrored { mirror(t.c) } else { t.c },
                ..*t
            })
        })
        .collect();
    let end = from.iter().map(|t| t.end).max().unwrap_or(control.end);
    let original: String = from.iter().map(|t| t.c).collect();
    let display: String = block.iter().map(|t| t.c).collect();
    push_change(
        changes,
        ChangeKind::BidiOverride,
        control.start,
        end,
        &original,
        &display,
    );
    parent.units.push(Unit {
        block: true,
        chars: block,
    });
}

/// Resolves the bidi overrides (U+202D, U+202E … U+202C, or the end of the
/// paragraph) whose run a reader reads reversed: the run is put in the
/// order a reader reads it and its two controls are dropped. Embeddings,
/// other overrides and stray pops are left for the invisible stage.
pub(super) fn resolve_overrides(chars: &[Traced], changes: &mut Vec<Change>) -> Vec<Traced> {
    if !chars.iter().any(|t| matches!(t.c, LRO | RLO)) {
        return chars.to_vec();
    }
    let mut stack = vec![Frame {
        opener: Opener::Root,
        control: None,
        units: Vec::new(),
    }];
    let close_top = |stack: &mut Vec<Frame>, closer: Option<Traced>, changes: &mut Vec<Change>| {
        if let Some(frame) = stack.pop() {
            if let Some(parent) = stack.last_mut() {
                close(frame, closer, parent, changes);
            }
        }
    };
    for &t in chars {
        match t.c {
            LRO | RLO | LRE | RLE => stack.push(Frame {
                opener: match t.c {
                    LRO => Opener::Override { rtl: false },
                    RLO => Opener::Override { rtl: true },
                    _ => Opener::Embedding,
                },
                control: Some(t),
                units: Vec::new(),
            }),
            PDF if stack.len() > 1 => close_top(&mut stack, Some(t), changes),
            c if paragraph_end(c) => {
                while stack.len() > 1 {
                    close_top(&mut stack, None, changes);
                }
                stack[0].push_unit(vec![t]);
            }
            _ => {
                if let Some(top) = stack.last_mut() {
                    top.push(t);
                }
            }
        }
    }
    while stack.len() > 1 {
        close_top(&mut stack, None, changes);
    }
    stack
        .pop()
        .map(|root| root.units.into_iter().flat_map(|u| u.chars).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Whitespace.

/// Blank-looking characters: visible code points with an empty glyph, used
/// as spaces (U+2800 braille blank, the Hangul fillers U+3164 and U+FFA0,
/// and the jamo fillers U+115F and U+1160 outside a conjoining jamo
/// sequence).
pub(super) fn blank(c: char) -> bool {
    matches!(c, '\u{2800}' | '\u{3164}' | '\u{FFA0}' | '\u{115F}' | '\u{1160}')
}

/// Conjoining Hangul jamo, among which U+115F and U+1160 are fillers of a
/// syllable, not blanks.
fn jamo(c: char) -> bool {
    matches!(c, '\u{1100}'..='\u{11FF}' | '\u{A960}'..='\u{A97F}' | '\u{D7B0}'..='\u{D7FF}')
}

/// Whether the blank-looking character at `i` is used as a blank (a jamo
/// filler next to another jamo is part of a syllable).
pub(super) fn used_as_blank(chars: &[Traced], i: usize) -> bool {
    let c = chars[i].c;
    if !blank(c) {
        return false;
    }
    if matches!(c, '\u{115F}' | '\u{1160}') {
        let before = i.checked_sub(1).is_some_and(|j| jamo(chars[j].c) && !blank(chars[j].c));
        let after = chars.get(i + 1).is_some_and(|t| jamo(t.c) && !blank(t.c));
        return !(before || after);
    }
    true
}

/// Horizontal whitespace: space, tab, the other space separators (Zs) and
/// blank-looking characters.
fn horizontal(c: char) -> bool {
    c == '\t' || super::category_of(c) == GeneralCategory::SpaceSeparator || blank(c)
}

/// Makes each run of horizontal whitespace inside a line one space; keeps
/// indentation (a run at the start of a line) as it is, but for space
/// variants and blanks made spaces one for one.
pub(super) fn collapse_spacing(chars: Vec<Traced>, changes: &mut Vec<Change>) -> Vec<Traced> {
    let mut out = Vec::with_capacity(chars.len());
    let mut line_start = true;
    let mut i = 0;
    let single_kind = |c: char| {
        if blank(c) {
            ChangeKind::Blank
        } else if c == '\t' {
            ChangeKind::Spacing
        } else {
            ChangeKind::Whitespace
        }
    };
    while i < chars.len() {
        let t = chars[i];
        if !horizontal(t.c) {
            line_start = paragraph_end(t.c) || matches!(t.c, '\u{2028}');
            out.push(t);
            i += 1;
            continue;
        }
        let end = chars[i..]
            .iter()
            .position(|t| !horizontal(t.c))
            .map_or(chars.len(), |n| i + n);
        let run = &chars[i..end];
        if line_start {
            for &t in run {
                if t.c == ' ' || t.c == '\t' {
                    out.push(t);
                } else {
                    push_change(changes, single_kind(t.c), t.start, t.end, &t.c.to_string(), " ");
                    out.push(Traced { c: ' ', ..t });
                }
            }
        } else if run.len() == 1 {
            if t.c != ' ' {
                push_change(changes, single_kind(t.c), t.start, t.end, &t.c.to_string(), " ");
            }
            out.push(Traced { c: ' ', ..t });
        } else {
            let (start, stop) = (run[0].start, run[run.len() - 1].end);
            let from: String = run.iter().map(|t| t.c).collect();
            push_change(changes, ChangeKind::Spacing, start, stop, &from, " ");
            out.push(Traced {
                c: ' ',
                start,
                end: stop,
            });
        }
        i = end;
    }
    out
}

// ---------------------------------------------------------------------------
// Letters: Greek read as Latin, look-alikes inside Latin, combining marks.

/// Letters of another script that a reader of Latin text reads as a Latin
/// letter, mapped to that letter: Greek (TS #39 maps `Ι` and Cyrillic `І` to
/// the prototype `l`, `κ` and Cyrillic `к` to `ĸ`, and leaves `χ`), where the
/// letter reads as one. Greek letters not listed here stay as they are in
/// Latin text.
pub(super) const READS_AS: [(char, char); 32] = [
    ('Α', 'A'),
    ('Β', 'B'),
    ('Ε', 'E'),
    ('Ζ', 'Z'),
    ('Η', 'H'),
    ('Ι', 'I'),
    ('Κ', 'K'),
    ('Μ', 'M'),
    ('Ν', 'N'),
    ('Ο', 'O'),
    ('Ρ', 'P'),
    ('Τ', 'T'),
    ('Υ', 'Y'),
    ('Χ', 'X'),
    ('Ϲ', 'C'),
    ('Ϳ', 'J'),
    ('α', 'a'),
    ('γ', 'y'),
    ('ι', 'i'),
    ('κ', 'k'),
    ('ν', 'v'),
    ('ο', 'o'),
    ('ρ', 'p'),
    ('υ', 'u'),
    ('χ', 'x'),
    ('ϲ', 'c'),
    ('ϳ', 'j'),
    ('ϒ', 'Y'),
    ('І', 'I'),
    ('Ӏ', 'I'),
    ('ꓲ', 'I'),
    ('к', 'k'),
];

/// What a letter of another script reads as in text of `dominant` script,
/// when the table has it; `Some(None)` for a Greek letter the table leaves
/// alone.
pub(super) fn reads_as(c: char, dominant: Script) -> Option<Option<char>> {
    if dominant != Script::Latin {
        return None;
    }
    if let Some(&(_, latin)) = READS_AS.iter().find(|(g, _)| *g == c) {
        return Some(Some(latin));
    }
    (super::script_of(c) == Script::Greek).then_some(None)
}

/// Small capitals, read as the lowercase letter.
const SMALL_CAPITALS: [(char, char); 25] = [
    ('ᴀ', 'a'),
    ('ʙ', 'b'),
    ('ᴄ', 'c'),
    ('ᴅ', 'd'),
    ('ᴇ', 'e'),
    ('ꜰ', 'f'),
    ('ɢ', 'g'),
    ('ʜ', 'h'),
    ('ɪ', 'i'),
    ('ᴊ', 'j'),
    ('ᴋ', 'k'),
    ('ʟ', 'l'),
    ('ᴍ', 'm'),
    ('ɴ', 'n'),
    ('ᴏ', 'o'),
    ('ᴘ', 'p'),
    ('ꞯ', 'q'),
    ('ʀ', 'r'),
    ('ꜱ', 's'),
    ('ᴛ', 't'),
    ('ᴜ', 'u'),
    ('ᴠ', 'v'),
    ('ᴡ', 'w'),
    ('ʏ', 'y'),
    ('ᴢ', 'z'),
];

/// The letters of European orthographies (Latin-1 Supplement and Latin
/// Extended-A, Pinyin's tone letters, Romanian comma-below letters).
fn european(c: char) -> bool {
    matches!(c, '\u{00C0}'..='\u{00FF}' | '\u{0100}'..='\u{017F}' | '\u{01CD}'..='\u{01DC}' | '\u{0218}'..='\u{021B}')
        && !matches!(c, '\u{00D7}' | '\u{00F7}')
}

/// The letters only Vietnamese writes (horned `ơ ư` and Latin Extended
/// Additional's Vietnamese block).
fn vietnamese(c: char) -> bool {
    matches!(
        c,
        '\u{01A0}' | '\u{01A1}' | '\u{01AF}' | '\u{01B0}' | '\u{1EA0}'..='\u{1EF9}'
    )
}

/// Whether `c` shows a line is Vietnamese: a Vietnamese-only letter that is
/// one still without a dot below (a dot below on `a e i o u y`, or on `ê`,
/// is also what an attack writes).
fn vietnamese_evidence(c: char) -> bool {
    if !vietnamese(c) {
        return false;
    }
    let without: String = core::iter::once(c).nfd().filter(|&m| m != '\u{0323}').nfc().collect();
    let mut it = without.chars();
    matches!((it.next(), it.next()), (Some(d), None) if vietnamese(d))
}

/// Whether `c` shows a line is Turkish or Azerbaijani (where `ı` is a letter).
fn turkish_evidence(c: char) -> bool {
    matches!(c, 'ğ' | 'Ğ' | 'ş' | 'Ş' | 'İ' | 'ə' | 'Ə')
}

/// Per-line language evidence.
#[derive(Clone, Copy, Default)]
pub(super) struct Evidence {
    vietnamese: bool,
    turkish: bool,
}

/// The evidence of each line of `chars` (lines end at `\n`), indexed by line.
pub(super) fn evidence(chars: &[Traced]) -> Vec<Evidence> {
    let mut lines = vec![Evidence::default()];
    for t in chars {
        if t.c == '\n' {
            lines.push(Evidence::default());
            continue;
        }
        if let Some(e) = lines.last_mut() {
            e.vietnamese |= vietnamese_evidence(t.c);
            e.turkish |= turkish_evidence(t.c);
        }
    }
    lines
}

/// The ordinary letter a look-alike letter of the Latin script stands for:
/// small capitals, and letters outside the orthographies above whose TS #39
/// prototype is one ASCII letter (`ɑ ɡ ȷ ɩ ʋ`); `ı` unless the line is
/// Turkish.
pub(super) fn latin_lookalike(c: char, line: Evidence) -> Option<char> {
    if c.is_ascii() || super::script_of(c) != Script::Latin || !c.is_alphabetic() {
        return None;
    }
    if let Some(&(_, plain)) = SMALL_CAPITALS.iter().find(|(s, _)| *s == c) {
        return Some(plain);
    }
    if c == 'ı' {
        return (!line.turkish).then_some('i');
    }
    if european(c) || vietnamese(c) {
        return None;
    }
    let proto = super::prototype(c);
    let mut it = proto.chars();
    match (it.next(), it.next()) {
        (Some(p), None) if p.is_ascii_alphabetic() => Some(p),
        _ => None,
    }
}

/// Whether `c` is a letter the line's orthography writes.
fn written(c: char, line: Evidence) -> bool {
    c.is_ascii_alphabetic() || european(c) || line.vietnamese && vietnamese(c)
}

/// A Latin letter with the combining marks the line's orthography does not
/// put on it removed, or `None` when it keeps them all. The letter is
/// decomposed (NFD); its marks are kept one by one, in canonical order,
/// while the letter they compose with the base is one the line writes
/// (`written`); the rest are dropped and the letter recomposed (NFC).
pub(super) fn strip_marks(cluster: &str, line: Evidence) -> Option<String> {
    let mut chars = cluster.chars();
    let first = chars.next()?;
    if first.is_ascii() && cluster.len() == 1 || super::script_of(first) != Script::Latin || !first.is_alphabetic() {
        return None;
    }
    let nfd: Vec<char> = cluster.nfd().collect();
    let (&base, marks) = nfd.split_first()?;
    if marks.is_empty()
        || marks
            .iter()
            .any(|m| super::category_of(*m) != GeneralCategory::NonspacingMark)
    {
        return None;
    }
    let mut kept = base.to_string();
    for &m in marks {
        let trial: String = kept.chars().chain(core::iter::once(m)).nfc().collect();
        let mut it = trial.chars();
        if matches!((it.next(), it.next()), (Some(c), None) if written(c, line)) {
            kept.push(m);
        }
    }
    let out: String = kept.nfc().collect();
    (out != cluster.nfc().collect::<String>()).then_some(out)
}

/// Applies [`strip_marks`] to each grapheme cluster of `chars` whose first
/// character is read as Latin (`latin`, per character).
pub(super) fn strip_foreign_marks(
    chars: Vec<Traced>,
    latin: &[bool],
    changes: &mut Vec<Change>,
    deadline: Deadline,
) -> Result<Vec<Traced>> {
    let lines = evidence(&chars);
    let stage: String = chars.iter().map(|t| t.c).collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut next = 0;
    let mut line = 0;
    for (k, cluster) in stage.graphemes(true).enumerate() {
        deadline.every(k)?;
        let n = cluster.chars().count();
        let sources = &chars[next..next + n];
        next += n;
        let evidence = lines.get(line).copied().unwrap_or_default();
        line += cluster.matches('\n').count();
        let read_as_latin = latin.get(next - n).copied().unwrap_or(false);
        match read_as_latin.then(|| strip_marks(cluster, evidence)).flatten() {
            Some(stripped) => {
                let (start, end) = (sources[0].start, sources[n - 1].end);
                push_change(changes, ChangeKind::Mark, start, end, cluster, &stripped);
                out.extend(stripped.chars().map(|c| Traced { c, start, end }));
            }
            None => out.extend_from_slice(sources),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The script a letter is read in: its word's, else its sentence's.

/// Latin letters a reader of a Cyrillic word reads as Cyrillic ones (the
/// Russian alphabet's look-alikes of ASCII letters).
const CYRILLIC_FROM_LATIN: [(char, char); 18] = [
    ('a', 'а'),
    ('c', 'с'),
    ('e', 'е'),
    ('o', 'о'),
    ('p', 'р'),
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

/// Latin letters a reader of a Greek word reads as Greek ones.
const GREEK_FROM_LATIN: [(char, char); 22] = [
    ('a', 'α'),
    ('i', 'ι'),
    ('k', 'κ'),
    ('o', 'ο'),
    ('p', 'ρ'),
    ('u', 'υ'),
    ('v', 'ν'),
    ('x', 'χ'),
    ('A', 'Α'),
    ('B', 'Β'),
    ('E', 'Ε'),
    ('H', 'Η'),
    ('I', 'Ι'),
    ('K', 'Κ'),
    ('M', 'Μ'),
    ('N', 'Ν'),
    ('O', 'Ο'),
    ('P', 'Ρ'),
    ('T', 'Τ'),
    ('X', 'Χ'),
    ('Y', 'Υ'),
    ('Z', 'Ζ'),
];

/// The Cyrillic or Greek letter an ASCII letter reads as in a word of
/// `script`, when it reads as one.
pub(super) fn latin_reads_as(c: char, script: Script) -> Option<char> {
    let table: &[(char, char)] = match script {
        Script::Cyrillic => &CYRILLIC_FROM_LATIN,
        Script::Greek => &GREEK_FROM_LATIN,
        _ => return None,
    };
    table.iter().find(|(l, _)| *l == c).map(|&(_, r)| r)
}

/// How a letter counts toward the script of its word, sentence and text:
/// for its own script and *unambiguously* when it is not a look-alike of
/// another script's letter; else (a Cyrillic `а`, whose TS #39 prototype is
/// Latin; an ASCII `a`, which reads as a Cyrillic or Greek letter) for the
/// script of its prototype, ambiguously. `None` for characters that are not
/// letters of a specific script.
pub(super) fn vote(c: char) -> Option<(Script, bool)> {
    if !c.is_alphabetic() {
        return None;
    }
    let own = super::script_of(c);
    if !super::specific(own) {
        return None;
    }
    if c.is_ascii() {
        let ambiguous = latin_reads_as(c, Script::Cyrillic).is_some() || latin_reads_as(c, Script::Greek).is_some();
        return Some((own, !ambiguous));
    }
    let proto = super::prototype(c);
    match proto
        .chars()
        .map(super::script_of)
        .find(|&s| super::specific(s) && !super::same_writing(s, own))
    {
        Some(other) if ordinary(&proto) => Some((other, false)),
        _ => Some((own, true)),
    }
}

/// Whether every letter of `s` is an ordinary letter of an alphabet (ASCII,
/// a European Latin letter, basic Greek U+0386–U+03CE or basic Cyrillic
/// U+0400–U+045F) and no combining mark is left over. A Cyrillic `и`, whose
/// TS #39 prototype is the small capital `ᴎ`, or a Greek `θ` (`O` and an
/// overlaid stroke), is no look-alike of a letter anyone writes in Latin text.
pub(super) fn ordinary(s: &str) -> bool {
    s.chars().all(|c| {
        if c.is_alphabetic() {
            c.is_ascii_alphabetic() || european(c) || matches!(c, '\u{0386}'..='\u{03CE}' | '\u{0400}'..='\u{045F}')
        } else {
            !extends(c)
        }
    })
}

/// Letters counted per script.
#[derive(Default)]
struct Tally(Vec<(Script, usize)>);

impl Tally {
    fn add(&mut self, script: Script) {
        match self.0.iter_mut().find(|(s, _)| *s == script) {
            Some((_, n)) => *n += 1,
            None => self.0.push((script, 1)),
        }
    }

    /// The script with the most letters (the first counted among equals).
    fn most(&self) -> Option<Script> {
        let mut best: Option<(Script, usize)> = None;
        for &(s, n) in &self.0 {
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((s, n));
            }
        }
        best.map(|(s, _)| s)
    }
}

/// Which characters of `chars` belong to a link: a run of characters other
/// than white space that holds `://`, begins with `www.` (any case), or holds
/// an `@` followed later in the run by a `.` (an e-mail address). Letters of
/// links do not vote for the script of their sentence or text (SPEC §14,
/// stage 4): the address in a Russian translator's footer is Latin, the
/// footer is not.
fn links(chars: &[char]) -> Vec<bool> {
    let mut out = vec![false; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let end = chars[i..]
            .iter()
            .position(|c| c.is_whitespace())
            .map_or(chars.len(), |n| i + n);
        let run = &chars[i..end];
        let scheme = run.windows(3).any(|w| w == [':', '/', '/']);
        let web = run.len() >= 4 && run[..4].iter().map(|c| c.to_ascii_lowercase()).eq("www.".chars());
        let mail = run
            .iter()
            .position(|&c| c == '@')
            .is_some_and(|at| run[at..].contains(&'.'));
        if scheme || web || mail {
            out[i..end].iter_mut().for_each(|b| *b = true);
        }
        i = end;
    }
    out
}

/// Whether every letter of `word` can be read in `script`: it is a letter of
/// that script, a look-alike whose prototype lies in it (`vote`'s
/// ambiguous script), or an ASCII letter that reads as one of its letters
/// (stage 4c's tables). A Russian word of look-alikes with one `П` in it
/// (`ПАРАМЕТР`: `П` is a look-alike of Greek `Π`, not of a Latin letter)
/// cannot be read as Latin.
fn readable_in(word: &[char], script: Script) -> bool {
    word.iter().all(|&c| match vote(c) {
        Some((s, _)) => s == script || super::script_of(c) == script || latin_reads_as(c, script).is_some(),
        None => true,
    })
}

/// The script of most letters of `word` by their own script.
fn own_most(word: &[char]) -> Option<Script> {
    let mut tally = Tally::default();
    for &c in word {
        if vote(c).is_some() {
            tally.add(super::script_of(c));
        }
    }
    tally.most()
}

/// The script of the most unambiguous letters among `chars`.
fn unambiguous_most(chars: impl Iterator<Item = char>) -> Option<Script> {
    let mut tally = Tally::default();
    for (script, unambiguous) in chars.filter_map(vote) {
        if unambiguous {
            tally.add(script);
        }
    }
    tally.most()
}

/// The script of the whole text: of the most unambiguous letters, or, when
/// no letter is unambiguous, of the most look-alikes' prototypes.
fn text_script(chars: &[Traced], links: &[bool], deadline: Deadline) -> Result<Option<Script>> {
    let (mut unambiguous, mut by_prototype) = (Tally::default(), Tally::default());
    for (i, t) in chars.iter().enumerate() {
        deadline.every(i)?;
        if links[i] {
            continue;
        }
        match vote(t.c) {
            Some((script, true)) => unambiguous.add(script),
            Some((script, false)) => by_prototype.add(script),
            None => {}
        }
    }
    Ok(unambiguous.most().or_else(|| by_prototype.most()))
}

/// Whether `c` belongs to a word: a letter or a combining mark.
fn in_word(c: char) -> bool {
    c.is_alphabetic()
        || matches!(
            super::category_of(c),
            GeneralCategory::NonspacingMark | GeneralCategory::SpacingMark | GeneralCategory::EnclosingMark
        )
}

/// The script a character is read in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Reading {
    /// Its word's script: that of the most unambiguous letters of the word
    /// (`None` outside words and in words of look-alikes only).
    pub(super) word: Option<Script>,
    /// The script it is read in: its word's, else its sentence's (that of
    /// the most unambiguous letters of the sentence), else the text's.
    pub(super) script: Option<Script>,
}

/// The reading of each character of `chars` (SPEC §14, stage 4). Sentences
/// are Unicode's (UAX #29, which also ends one at every line break); words
/// are maximal runs of letters and combining marks.
pub(super) fn readings(chars: &[Traced], deadline: Deadline) -> Result<Vec<Reading>> {
    let plain: Vec<char> = chars.iter().map(|t| t.c).collect();
    let links = links(&plain);
    let text = text_script(chars, &links, deadline)?;
    let stage: String = plain.iter().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut checked = 0;
    for sentence in stage.split_sentence_bounds() {
        // A sentence is short, or a check every thousand characters or so.
        if out.len() >= checked + super::super::deadline::CHECK_EVERY {
            deadline.check()?;
            checked = out.len();
        }
        let cs: Vec<char> = sentence.chars().collect();
        let in_link = &links[out.len()..out.len() + cs.len()];
        let sentence_script = unambiguous_most(cs.iter().zip(in_link).filter(|(_, &l)| !l).map(|(&c, _)| c)).or(text);
        let mut i = 0;
        while i < cs.len() {
            if !in_word(cs[i]) {
                out.push(Reading {
                    word: None,
                    script: sentence_script,
                });
                i += 1;
                continue;
            }
            let end = cs[i..].iter().position(|&c| !in_word(c)).map_or(cs.len(), |n| i + n);
            let word = unambiguous_most(cs[i..end].iter().copied());
            // A word of look-alikes only is read in its sentence's script
            // when all of it can be; else in its own letters' script.
            let script = word.or(match sentence_script {
                Some(s) if !readable_in(&cs[i..end], s) => own_most(&cs[i..end]),
                other => other,
            });
            let reading = Reading { word, script };
            out.extend(core::iter::repeat_n(reading, end - i));
            i = end;
        }
    }
    Ok(out)
}
