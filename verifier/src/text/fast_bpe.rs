//! The fast path of [`TextTokenizer::encode`](super::TextTokenizer::encode)
//! for the byte-level BPE tokenizers whose pre-tokenizer it knows (GPT-2's,
//! SmolLM2's digits then GPT-2's, DeepSeek V3's): their pieces of ASCII text
//! are found by hand-written scanners over the bytes, and each piece's ids
//! come from a cache keyed by its bytes (the tokenizer's own BPE model
//! computes them the first time). Nothing is allocated per token.
//!
//! It gives exactly what `tokenizers` gives, ids and spans:
//! - a stretch with a byte that is not ASCII, or that begins one of the
//!   tokenizer's added tokens, is given to `tokenizers` itself, cut out of the
//!   text at the cut points of [`cut_points`](super::tokenizer) (where the
//!   encoding of a text is the encodings of its parts joined); a tokenizer
//!   that may not be cut takes the fast path only for a text with no such
//!   byte at all;
//! - on the rest (ASCII, no added token), each scanner below is the
//!   pre-tokenizer's regex written out for the ASCII classes, alternative by
//!   alternative, with the backtracking each one needs; the tests check them
//!   against `tokenizers` on random ASCII strings of every class, on the
//!   human-text corpus and on the tampering corpus, for the real tokenizers.

use std::sync::Mutex;

use rustc_hash::FxHashMap;
use tokenizers::models::bpe::BPE;
use tokenizers::Model;

use super::tokenizer::{is_cut, Encoded};
use crate::error::{Error, Result};

/// The pre-tokenizers this path knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pre {
    /// GPT-2's byte-level regex on the whole text.
    Gpt2,
    /// Each digit alone, then GPT-2's regex (SmolLM2).
    DigitsGpt2,
    /// Digits in threes, CJK runs, DeepSeek V3's regex.
    DeepSeek,
}

/// Words of at most this many bytes are cached.
const CACHED_WORD: usize = 48;
/// The cache holds at most this many words per shard (16 shards: about
/// 3 MB in all when full); once full, further words are computed each time.
const SHARD_WORDS: usize = 1 << 12;
const SHARDS: usize = 16;

/// Piece bytes to their (id, length in bytes) pairs, flattened.
type WordCache = FxHashMap<Box<[u8]>, Box<[u32]>>;

/// The fast path of one tokenizer.
pub(crate) struct FastBpe {
    pre: Pre,
    /// Bytes that send their stretch to `tokenizers`: every byte above
    /// 0x7f and the first byte of each added token written in ASCII.
    slow: [bool; 256],
    /// Each byte's character in the byte-level alphabet.
    alphabet: [char; 256],
    /// The word cache, in shards that lock apart.
    shards: Box<[Mutex<WordCache>]>,
}

impl core::fmt::Debug for FastBpe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FastBpe({:?})", self.pre)
    }
}

/// GPT-2's printable stand-in for each byte.
fn byte_alphabet() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0;
    for (b, slot) in out.iter_mut().enumerate() {
        let b = b as u32;
        *slot = if (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    out
}

impl FastBpe {
    /// The fast path for a tokenizer with pre-tokenizer `pre` and these
    /// added tokens' contents.
    pub(crate) fn new<'a>(pre: Pre, added: impl IntoIterator<Item = &'a str>) -> Self {
        let mut slow = [false; 256];
        slow[0x80..].fill(true);
        for content in added {
            if let Some(&b) = content.as_bytes().first() {
                slow[usize::from(b)] = true;
            }
        }
        Self {
            pre,
            slow,
            alphabet: byte_alphabet(),
            shards: (0..SHARDS).map(|_| Mutex::new(FxHashMap::default())).collect(),
        }
    }

    /// `text` encoded as `tokenizers` encodes it; `slow` is `tokenizers`
    /// itself, `cuts` the tokenizer's cut punctuation when it may be cut.
    pub(crate) fn encode(
        &self,
        text: &str,
        model: &BPE,
        cuts: Option<&[char]>,
        slow: impl Fn(&str) -> Result<Encoded>,
    ) -> Result<Encoded> {
        let bytes = text.as_bytes();
        let next_slow = |from: usize| {
            bytes[from..]
                .iter()
                .position(|&b| self.slow[usize::from(b)])
                .map(|i| from + i)
        };
        let Some(first) = next_slow(0) else {
            let mut out = Encoded::with_capacity(text.len() / 3);
            self.encode_ascii(bytes, 0, model, &mut out)?;
            return Ok(out);
        };
        let Some(punct) = cuts else {
            return slow(text);
        };
        let mut out = Encoded::with_capacity(text.len() / 3);
        // `done`: encoded up to here; `pending`: a stretch for tokenizers not
        // yet encoded, grown while the next one starts where it ends.
        let mut done = 0;
        let mut pending: Option<(usize, usize)> = None;
        let mut at = Some(first);
        while let Some(b) = at {
            let start = cut_before(text, b, done, punct);
            let end = cut_after(text, b, punct);
            match pending {
                Some((s, e)) if e == start => pending = Some((s, end)),
                _ => {
                    if let Some((s, e)) = pending {
                        append(&mut out, slow(&text[s..e])?, s);
                        self.encode_ascii(&bytes[e..start], e, model, &mut out)?;
                    } else {
                        self.encode_ascii(&bytes[done..start], done, model, &mut out)?;
                    }
                    pending = Some((start, end));
                }
            }
            done = end;
            at = if end < bytes.len() { next_slow(end) } else { None };
        }
        if let Some((s, e)) = pending {
            append(&mut out, slow(&text[s..e])?, s);
        }
        self.encode_ascii(&bytes[done..], done, model, &mut out)?;
        Ok(out)
    }

    /// ASCII `text` (no added token in it) at byte `base` of the whole.
    fn encode_ascii(&self, text: &[u8], base: usize, model: &BPE, out: &mut Encoded) -> Result<()> {
        let mut err = None;
        let mut piece = |a: usize, b: usize| {
            if err.is_none() {
                if let Err(e) = self.piece(&text[a..b], base + a, model, out) {
                    err = Some(e);
                }
            }
        };
        match self.pre {
            Pre::Gpt2 => gpt2(text, 0, text.len(), &mut piece),
            Pre::DigitsGpt2 => split_digits(text, 1, &mut |a, b, digits| {
                if digits {
                    piece(a, b);
                } else {
                    gpt2(text, a, b, &mut piece);
                }
            }),
            Pre::DeepSeek => split_digits(text, 3, &mut |a, b, digits| {
                if digits {
                    piece(a, b);
                } else {
                    deepseek(text, a, b, &mut piece);
                }
            }),
        }
        err.map_or(Ok(()), Err)
    }

    /// One piece's ids and spans, from the cache or the model.
    fn piece(&self, word: &[u8], base: usize, model: &BPE, out: &mut Encoded) -> Result<()> {
        let push = |out: &mut Encoded, pairs: &[u32]| {
            let mut at = base;
            for pair in pairs.chunks_exact(2) {
                let len = pair[1] as usize;
                out.ids.push(pair[0]);
                out.spans.push((at, at + len));
                at += len;
            }
        };
        let shard = (word.len() ^ usize::from(word[0]) ^ (usize::from(word[word.len() - 1]) * 7)) % SHARDS;
        let cached = word.len() <= CACHED_WORD;
        if cached {
            let map = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pairs) = map.get(word) {
                push(out, pairs);
                return Ok(());
            }
        }
        let chars: String = word.iter().map(|&b| self.alphabet[usize::from(b)]).collect();
        let tokens = model
            .tokenize(&chars)
            .map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        let pairs: Box<[u32]> = tokens
            .iter()
            .flat_map(|t| [t.id, t.value.chars().count() as u32])
            .collect();
        push(out, &pairs);
        if cached {
            let mut map = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
            if map.len() < SHARD_WORDS {
                map.insert(word.into(), pairs);
            }
        }
        Ok(())
    }
}

/// `part`'s ids and spans after `out`'s, its spans moved by `base`.
fn append(out: &mut Encoded, part: Encoded, base: usize) {
    out.ids.extend_from_slice(&part.ids);
    out.spans.extend(part.spans.iter().map(|&(a, b)| (a + base, b + base)));
}

/// The last cut point at or before byte `b` (a char boundary), not before
/// `floor` (itself a cut point or the start).
fn cut_before(text: &str, b: usize, floor: usize, punct: &[char]) -> usize {
    let mut p = b;
    while p > floor {
        let mut before = text[..p].chars();
        let Some(prev) = before.next_back() else { break };
        let mut after = text[p..].chars();
        let (Some(at), next) = (after.next(), after.next()) else {
            p -= prev.len_utf8();
            continue;
        };
        if is_cut(prev, at, next, punct) {
            return p;
        }
        p -= prev.len_utf8();
    }
    floor
}

/// The first cut point after the char at byte `b`, or the end.
fn cut_after(text: &str, b: usize, punct: &[char]) -> usize {
    let mut chars = text[b..].char_indices().map(|(i, c)| (b + i, c)).peekable();
    let Some((_, mut prev)) = chars.next() else {
        return text.len();
    };
    while let Some((p, at)) = chars.next() {
        let next = chars.peek().map(|&(_, c)| c);
        if is_cut(prev, at, next, punct) {
            return p;
        }
        prev = at;
    }
    text.len()
}

const fn letter(c: u8) -> bool {
    c.is_ascii_alphabetic()
}

const fn digit(c: u8) -> bool {
    c.is_ascii_digit()
}

/// `\p{P}` or `\p{S}`: every ASCII graphic that is not a letter or digit.
const fn punct(c: u8) -> bool {
    c.is_ascii_punctuation()
}

/// `\s` (Unicode White_Space) in ASCII: tab, line feed, vertical tab, form
/// feed, carriage return, space.
const fn space(c: u8) -> bool {
    matches!(c, b'\t'..=b'\r' | b' ')
}

/// GPT-2's `[^\s\p{L}\p{N}]` in ASCII: punctuation and control bytes.
const fn other(c: u8) -> bool {
    !space(c) && !letter(c) && !digit(c)
}

const fn newline(c: u8) -> bool {
    c == b'\r' || c == b'\n'
}

/// The end of the run of bytes from `i` that satisfy `f`, before `end`.
fn run(s: &[u8], mut i: usize, end: usize, f: impl Fn(u8) -> bool) -> usize {
    while i < end && f(s[i]) {
        i += 1;
    }
    i
}

/// `s[a..b]` split into runs of digits, each cut into groups of `group`
/// from its start (`\p{N}{1,n}` isolated, or the Digits pre-tokenizer with
/// individual digits), and the stretches between; `f(start, end, digits)`.
fn split_digits(s: &[u8], group: usize, f: &mut impl FnMut(usize, usize, bool)) {
    let mut i = 0;
    let mut gap = 0;
    while i < s.len() {
        if digit(s[i]) {
            if gap < i {
                f(gap, i, false);
            }
            let end = run(s, i, s.len(), digit);
            while i < end {
                let e = (i + group).min(end);
                f(i, e, true);
                i = e;
            }
            gap = i;
        } else {
            i += 1;
        }
    }
    if gap < s.len() {
        f(gap, s.len(), false);
    }
}

/// The end of a whitespace match at `i` (a space byte) before `end`:
/// `\s+(?!\S)`, else `\s+`.
fn spaces(s: &[u8], i: usize, end: usize) -> usize {
    let j = run(s, i, end, space);
    if j == end || j - i == 1 {
        j
    } else {
        j - 1
    }
}

/// GPT-2's regex on `s[a..b]`:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
/// Every byte is in some match, so the pieces are the matches.
fn gpt2(s: &[u8], a: usize, b: usize, piece: &mut impl FnMut(usize, usize)) {
    let at = |i: usize| if i < b { Some(s[i]) } else { None };
    let mut i = a;
    while i < b {
        let c = s[i];
        let end = if c == b'\'' && matches!(at(i + 1), Some(b's' | b't' | b'm' | b'd')) {
            i + 2
        } else if c == b'\''
            && matches!(
                (at(i + 1), at(i + 2)),
                (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l'))
            )
        {
            i + 3
        } else if space(c) && !(c == b' ' && at(i + 1).is_some_and(|n| !space(n))) {
            spaces(s, i, b)
        } else {
            // An optional space, then a run of one class.
            let from = if c == b' ' { i + 1 } else { i };
            let class: fn(u8) -> bool = if letter(s[from]) {
                letter
            } else if digit(s[from]) {
                digit
            } else {
                other
            };
            run(s, from, b, class)
        };
        piece(i, end);
        i = end;
    }
}

/// DeepSeek V3's regex on `s[a..b]` (no digits in it):
/// `[!-/:-@[-`{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
/// isolated: the matches and the stretches between them (control bytes not
/// before a letter) are the pieces.
fn deepseek(s: &[u8], a: usize, b: usize, piece: &mut impl FnMut(usize, usize)) {
    let at = |i: usize| if i < b { Some(s[i]) } else { None };
    let mut gap = a;
    let mut i = a;
    while i < b {
        let c = s[i];
        let next_letter = at(i + 1).is_some_and(letter);
        let end = if punct(c) && next_letter {
            Some(run(s, i + 1, b, letter))
        } else if letter(c) {
            Some(run(s, i, b, letter))
        } else if !newline(c) && next_letter {
            // [^\r\n\p{L}\p{P}\p{S}] then letters (c is no letter or punctuation here).
            Some(run(s, i + 1, b, letter))
        } else if c == b' ' && at(i + 1).is_some_and(punct) || punct(c) {
            let from = if c == b' ' { i + 1 } else { i };
            Some(run(s, run(s, from, b, punct), b, newline))
        } else if space(c) {
            let j = run(s, i, b, space);
            Some(match (i..j).rev().find(|&k| newline(s[k])) {
                Some(k) => k + 1,
                None => spaces(s, i, b),
            })
        } else {
            None
        };
        match end {
            Some(end) => {
                if gap < i {
                    piece(gap, i);
                }
                piece(i, end);
                i = end;
                gap = end;
            }
            None => i += 1,
        }
    }
    if gap < b {
        piece(gap, b);
    }
}
