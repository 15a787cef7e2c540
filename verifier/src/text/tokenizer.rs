//! Text input: a `tokenizer.json` (Hugging Face `tokenizers` format) turns
//! text into the ids the scheme was applied to.
//!
//! Detection on text re-encodes it, and a model's generated ids do not always
//! come back as the same ids (a tokenizer has many ways to spell a string and
//! the model may pick a non-canonical one); positions that re-encode
//! differently are scored under different contexts and carry no signal.
//! `docs/verifier.md` measures how much signal that costs.

use std::path::Path;

use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use super::fast_bpe::{FastBpe, Pre};
use super::Deadline;
use crate::error::{Error, Result};

/// A tokenizer loaded from a `tokenizer.json`.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    info: TokenizerInfo,
    /// The punctuation after a letter that [`encode_until`](TextTokenizer::encode_until)
    /// may cut a long text at, when it may cut at all ([`cut_points`]).
    cuts: Option<Vec<char>>,
    /// The fast path, for the byte-level BPE tokenizers it knows
    /// ([`fast_pre_tokenizer`]).
    fast: Option<FastBpe>,
}

impl core::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "TextTokenizer({}, vocab {})",
            self.info.fingerprint, self.info.vocab_size
        )
    }
}

/// Ids and byte offsets of an encoded text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Byte range of each token in the text.
    pub spans: Vec<(usize, usize)>,
}

impl Encoded {
    pub(crate) fn with_capacity(tokens: usize) -> Self {
        Self {
            ids: Vec::with_capacity(tokens),
            spans: Vec::with_capacity(tokens),
        }
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Tokenizer { message } => Error::Tokenizer {
                message: format!("{}: {message}", path.display()),
            },
            other => other,
        })
    }

    /// Wraps a tokenizer built in memory (e.g. from a model file). It is
    /// serialised to its `tokenizer.json` form and parsed back, so that
    /// detection uses exactly what that JSON describes and the fingerprint
    /// stays the SHA-256 of it: the same fingerprint as
    /// [`from_file`](Self::from_file) on the file `tokenizer.save(path, false)`
    /// writes.
    pub fn from_tokenizer(tokenizer: &tokenizers::Tokenizer) -> Result<Self> {
        let json = tokenizer.to_string(false).map_err(|e| Error::Tokenizer {
            message: format!("cannot serialise the tokenizer: {e}"),
        })?;
        Self::from_bytes(json.as_bytes())
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
        let vocab_size = inner.get_vocab_size(true);
        let json: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
        let cuts = json.as_ref().and_then(cut_points);
        let fast = json
            .as_ref()
            .filter(|_| matches!(inner.get_model(), tokenizers::models::ModelWrapper::BPE(_)))
            .and_then(|json| {
                let pre = fast_pre_tokenizer(json)?;
                let added = json["added_tokens"].as_array()?;
                Some(FastBpe::new(pre, added.iter().filter_map(|t| t["content"].as_str())))
            });
        Ok(Self {
            inner,
            info: TokenizerInfo {
                fingerprint: sha256_hex(bytes),
                vocab_size,
            },
            cuts,
            fast,
        })
    }

    /// Fingerprint and vocabulary size.
    pub fn info(&self) -> &TokenizerInfo {
        &self.info
    }

    /// The vocabulary size (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.info.vocab_size
    }

    /// Encodes `text` without adding special tokens: the ids and spans
    /// `tokenizers` gives, through the fast path where this tokenizer has
    /// one (`fast_bpe`).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        match (&self.fast, self.inner.get_model()) {
            (Some(fast), tokenizers::models::ModelWrapper::BPE(model)) => {
                fast.encode(text, model, self.cuts.as_deref(), |t| self.encode_reference(t))
            }
            _ => self.encode_reference(text),
        }
    }

    /// Whether [`encode`](Self::encode) has a fast path for this tokenizer.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Encodes `text` with `tokenizers` alone (what [`encode`](Self::encode)
    /// is checked against).
    pub fn encode_reference(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            spans: enc.get_offsets().to_vec(),
        })
    }

    /// [`encode`](Self::encode), stopped with
    /// [`Error::DeadlineExceeded`] once `deadline` has passed. Under a
    /// deadline the tokenizer is given at most [`MAX_UNCUT`] bytes in one
    /// call, the deadline checked between calls: a long text (over 128 KiB)
    /// is encoded in chunks of about 64 KiB cut where the encoding of the
    /// chunks is provably that of the whole (`cut_points` in this module: GPT-2's, Llama
    /// 3's and DeepSeek V3's pre-tokenizers; a space between two letters,
    /// or sentence punctuation after a letter). A text with a stretch of
    /// more than [`MAX_UNCUT`] bytes and no cut point in it, or longer
    /// than that for a tokenizer that is not cut, is refused with
    /// [`Error::UncutRun`] before any is encoded. The ids and spans are
    /// those [`encode`](Self::encode) gives; without a deadline the text is
    /// encoded whole.
    pub fn encode_until(&self, text: &str, deadline: Deadline) -> Result<Encoded> {
        deadline.check()?;
        if !deadline.is_set() {
            return self.encode(text);
        }
        let pieces = match &self.cuts {
            Some(punct) if text.len() > 2 * CHUNK => chunks(text, CHUNK, punct),
            _ => vec![(0, text.len())],
        };
        if let Some(&(start, end)) = pieces.iter().find(|(start, end)| end - start > MAX_UNCUT) {
            return Err(Error::UncutRun {
                start,
                end,
                limit: MAX_UNCUT,
                tokenizer_cuts: self.cuts.is_some(),
            });
        }
        self.encode_pieces(text, &pieces, deadline)
    }

    /// The encodings of `text`'s `pieces` (byte ranges that cover it in
    /// order) joined, the deadline checked after each.
    fn encode_pieces(&self, text: &str, pieces: &[(usize, usize)], deadline: Deadline) -> Result<Encoded> {
        let mut out = Encoded::default();
        for &(start, end) in pieces {
            let enc = self.encode(&text[start..end])?;
            out.ids.extend_from_slice(&enc.ids);
            out.spans.extend(enc.spans.iter().map(|&(a, b)| (a + start, b + start)));
            deadline.check()?;
        }
        Ok(out)
    }

    /// Decodes ids to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer { message: e.to_string() })
    }
}

/// The size of the chunks [`TextTokenizer::encode_until`] encodes a long
/// text in, in bytes: tens of milliseconds of a core.
pub(crate) const CHUNK: usize = 1 << 16;

/// The most bytes [`TextTokenizer::encode_until`] gives the tokenizer in
/// one call under a deadline, so that work stops within a second of its
/// deadline: a real byte-level BPE encodes a mebibyte in 0.5 to 2.3 s of an
/// idle core whatever the text (prose, one long word, digits, CJK, combining
/// marks; `benches/tokenizer-cost.py`, docs/verifier.md), so 256 KiB takes
/// at most about 0.6 s.
pub const MAX_UNCUT: usize = 1 << 18;

/// The letters a cut may follow: ASCII letters, the CJK ideographs,
/// hiragana, katakana and Hangul syllables of Unicode 1.1 and 2.0 (all
/// `\p{L}`, in every regex engine's tables, and none a combining mark).
fn cut_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || ('\u{4E00}'..='\u{9FA5}').contains(&c)
        || ('\u{3041}'..='\u{3096}').contains(&c)
        || ('\u{30A1}'..='\u{30FA}').contains(&c)
        || ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// The sentence punctuation (all `\p{P}`) a cut may come before, after a
/// [`cut_letter`]: ASCII, CJK and fullwidth.
const CUT_PUNCT: [char; 13] = ['.', ',', '!', '?', ';', ':', '、', '。', '，', '！', '？', '：', '；'];

/// Whether byte `p` of a text is a cut: the char before it is a
/// [`cut_letter`], and the char at it is punctuation in `punct`, or a space
/// followed by a [`cut_letter`] (`word| word`, `文|。`).
pub(crate) fn is_cut(prev: char, at: char, next: Option<char>, punct: &[char]) -> bool {
    cut_letter(prev) && (punct.contains(&at) || at == ' ' && next.is_some_and(cut_letter))
}

/// The chunks of `text`, as byte ranges that cover it in order: each ends at
/// the last cut at most `size` bytes from its start, or, when there is none,
/// at the first cut after; the last one ends with the text. A chunk is
/// longer than `size` only where the text has a stretch of more than `size`
/// bytes without a cut.
fn chunks(text: &str, size: usize, punct: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(text.len() / size + 1);
    let mut start = 0;
    let mut last_cut = None;
    let mut chars = text.char_indices().peekable();
    let mut prev = None;
    while let Some((p, at)) = chars.next() {
        let next = chars.peek().map(|&(_, c)| c);
        if prev.is_some_and(|prev| is_cut(prev, at, next, punct)) {
            if p - start > size {
                if let Some(cut) = last_cut.take() {
                    out.push((start, cut));
                    start = cut;
                }
            }
            if p - start > size {
                out.push((start, p));
                start = p;
            } else {
                last_cut = Some(p);
            }
        }
        prev = Some(at);
    }
    if text.len() - start > size {
        if let Some(cut) = last_cut {
            out.push((start, cut));
            start = cut;
        }
    }
    out.push((start, text.len()));
    out
}

/// The pre-tokenizer of GPT-2 and the models that kept it (SmolLM2, Llama
/// 3's predecessors): the byte-level regex
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
const GPT2: &str = r#"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#;

/// DeepSeek V3's pre-tokenizer: digits in threes, CJK runs, then its regex
/// of words, punctuation and spaces, then bytes.
const DEEPSEEK: &str = r##"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{N}{1,3}"},"behavior":"Isolated","invert":false},{"type":"Split","pattern":{"Regex":"[一-龥぀-ゟ゠-ヿ]+"},"behavior":"Isolated","invert":false},{"type":"Split","pattern":{"Regex":"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}"##;

/// Llama 3's pre-tokenizer (tiktoken's cl100k regex, then bytes):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
const LLAMA3: &str = r##"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}"##;

/// The punctuation a tokenizer may be cut before, after a letter, when it
/// encodes a text cut at a cut point ([`is_cut`]: `word| word`, `文|。`,
/// `end|.`) as the concatenation of its two parts' encodings, so that
/// [`TextTokenizer::encode_until`] may encode in chunks; `None` when it may
/// not be cut at all.
///
/// A tokenizer splits the text at its added tokens, normalizes, cuts it into
/// pieces (the pre-tokenizer) and encodes each piece alone (the model). It
/// may be cut when:
/// - the normalizer does nothing, there is no truncation or padding, and the
///   post-processor changes nothing without special tokens (none, a
///   template, byte-level offsets left untrimmed, or a sequence of these);
/// - no added token holds whitespace or strips it, so none spans a space
///   cut or moves one; the punctuation cuts leave out any punctuation an
///   added token holds, so none spans those either (an added token that is
///   one word ends before a cut in the part as in the whole);
/// - the pre-tokenizer is [`GPT2`]'s, [`LLAMA3`]'s or [`DEEPSEEK`]'s. In
///   all three, no alternative that takes a letter takes a space or
///   punctuation after it (a space or punctuation only leads a piece:
///   ` ?\p{L}+`, `[^\r\n\p{L}\p{N}]?\p{L}+`,
///   `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+`, `[!-/...][A-Za-z]+`, and the
///   contractions end with a letter), so the piece holding the letter before
///   a cut ends at the cut, in the whole text and in the first part alike
///   (no lookahead reaches past it: `(?!\S)` follows only whitespace); the
///   next search starts at the cut in both, with no anchor or lookbehind to
///   see what lies before; and DeepSeek's splits of digits and CJK runs that
///   come first never span a cut (a cut is next to a space or punctuation,
///   neither a digit nor in its CJK ranges).
///
/// Any other tokenizer is encoded whole.
fn cut_points(json: &serde_json::Value) -> Option<Vec<char>> {
    let known = [GPT2, LLAMA3, DEEPSEEK].iter().any(|p| pre_tokenizer_is(json, p));
    (plain_pipeline(json) && known).then(|| {
        let held = |p: &char| {
            json["added_tokens"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["content"].as_str().is_some_and(|c| c.contains(*p)))
        };
        CUT_PUNCT.iter().filter(|p| !held(p)).copied().collect()
    })
}

/// What both [`cut_points`] and [`fast_pre_tokenizer`] ask of the rest of
/// the pipeline: no normalizer, a post-processor that changes nothing
/// without special tokens ([`post_processor_ok`]), no truncation or
/// padding, and no added token that holds whitespace or strips it.
fn plain_pipeline(json: &serde_json::Value) -> bool {
    let normalizer = &json["normalizer"];
    let no_normalizer = normalizer.is_null()
        || normalizer["type"] == "Sequence" && normalizer["normalizers"].as_array().is_some_and(Vec::is_empty);
    let added_ok = json["added_tokens"].as_array().is_some_and(|added| {
        added.iter().all(|t| {
            t["content"]
                .as_str()
                .is_some_and(|c| !c.chars().any(char::is_whitespace))
                && t["lstrip"] != true
                && t["rstrip"] != true
        })
    });
    no_normalizer
        && added_ok
        && post_processor_ok(&json["post_processor"])
        && json["truncation"].is_null()
        && json["padding"].is_null()
}

/// Whether the tokenizer's pre-tokenizer is the one `expected` describes.
fn pre_tokenizer_is(json: &serde_json::Value, expected: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(expected).is_ok_and(|v| v == json["pre_tokenizer"])
}

/// SmolLM2's pre-tokenizer: each digit alone, then GPT-2's byte-level regex.
const DIGITS_GPT2: &str = r#"{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}"#;

/// The pre-tokenizer of a tokenizer the fast path of [`TextTokenizer::encode`]
/// knows: GPT-2's, SmolLM2's or DeepSeek V3's, in a [`plain_pipeline`] with a
/// BPE model without dropout and no empty added token.
fn fast_pre_tokenizer(json: &serde_json::Value) -> Option<Pre> {
    let model = &json["model"];
    let bpe = model["type"] == "BPE" && model["dropout"].is_null() && model["byte_fallback"] != true;
    let no_empty_added = json["added_tokens"]
        .as_array()
        .is_some_and(|added| added.iter().all(|t| t["content"] != ""));
    if !(plain_pipeline(json) && bpe && no_empty_added) {
        return None;
    }
    [
        (GPT2, Pre::Gpt2),
        (DIGITS_GPT2, Pre::DigitsGpt2),
        (DEEPSEEK, Pre::DeepSeek),
    ]
    .into_iter()
    .find_map(|(p, pre)| pre_tokenizer_is(json, p).then_some(pre))
}

/// Whether a post-processor changes nothing a cut could see, without special
/// tokens: none, a template, byte-level offsets left untrimmed (trimmed,
/// they keep the first token's space with add_prefix_space: the first token
/// of a chunk would keep its own), or a sequence of these (Llama 3.1's).
fn post_processor_ok(post: &serde_json::Value) -> bool {
    post.is_null()
        || post["type"] == "ByteLevel" && post["trim_offsets"] == false
        || post["type"] == "TemplateProcessing"
        || post["type"] == "Sequence"
            && post["processors"]
                .as_array()
                .is_some_and(|p| p.iter().all(post_processor_ok))
}

/// Facts about the tokenizer that turned text into ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenizerInfo {
    /// SHA-256 of the tokenizer file, `sha256:<hex>`.
    pub fingerprint: String,
    /// Vocabulary size (special tokens included).
    pub vocab_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// GPT-2's printable stand-in for each byte (its byte-level alphabet).
    fn byte_alphabet() -> Vec<char> {
        let mut n = 0;
        (0u32..256)
            .map(|b| {
                if (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b) {
                    char::from_u32(b).unwrap_or('?')
                } else {
                    n += 1;
                    char::from_u32(255 + n).unwrap_or('?')
                }
            })
            .collect()
    }

    /// A byte-level BPE tokenizer.json with a few merges, the pre-tokenizer
    /// `pre` and the post-processor `post`.
    fn byte_level_json(pre: &str, post: &str) -> String {
        byte_level_json_with(pre, post, &[])
    }

    /// [`byte_level_json`] with tokens for the strings in `joined` too, each
    /// merged byte by byte from its first.
    fn byte_level_json_with(pre: &str, post: &str, joined: &[String]) -> String {
        let alphabet = byte_alphabet();
        let space = alphabet[usize::from(b' ')];
        let mut vocab: Vec<String> = alphabet.iter().map(char::to_string).collect();
        let mut merges = Vec::new();
        for (a, b) in [
            (space.to_string(), "t".to_string()),
            ("h".into(), "e".into()),
            (format!("{space}t"), "he".into()),
            ("o".into(), "r".into()),
            ("i".into(), "n".into()),
            ("in".into(), "g".into()),
            (space.to_string(), "w".into()),
            (format!("{space}w"), "or".into()),
            ("\u{10a}".into(), "\u{10a}".into()),
        ] {
            vocab.push(format!("{a}{b}"));
            merges.push(format!("{a} {b}"));
        }
        for j in joined {
            let bytes: Vec<String> = j.bytes().map(|b| alphabet[usize::from(b)].to_string()).collect();
            let mut left = bytes[0].clone();
            for b in &bytes[1..] {
                let merge = format!("{left} {b}");
                left.push_str(b);
                if !vocab.contains(&left) {
                    vocab.push(left.clone());
                    merges.push(merge);
                }
            }
        }
        let vocab: serde_json::Map<String, serde_json::Value> =
            vocab.into_iter().enumerate().map(|(i, t)| (t, i.into())).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": vocab.len(), "content": "<|endoftext|>", "single_word": false,
                              "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": serde_json::from_str::<serde_json::Value>(pre).expect("pre-tokenizer"),
            "post_processor": serde_json::from_str::<serde_json::Value>(post).expect("post-processor"),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab, "merges": merges}
        });
        json.to_string()
    }

    const TEMPLATE: &str = r#"{"type":"TemplateProcessing","single":[{"Sequence":{"id":"A","type_id":0}}],"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],"special_tokens":{}}"#;
    /// Llama 3.1's post-processor: untrimmed byte-level offsets, then its template.
    const LLAMA31_POST: &str = r#"{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},{"type":"TemplateProcessing","single":[{"Sequence":{"id":"A","type_id":0}}],"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],"special_tokens":{}}]}"#;
    const BYTE_LEVEL_UNTRIMMED: &str =
        r#"{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}"#;

    /// A long text of everything a pre-tokenizer treats apart: words,
    /// contractions, digits, punctuation, runs of spaces and newlines, tabs,
    /// accents, Cyrillic, CJK, emoji and an added token.
    fn long_text() -> String {
        let parts = [
            "the",
            "worth",
            "ring",
            "isn't",
            "it's",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\t",
            "1234567",
            "3.14",
            "!!",
            "...",
            "\"quoted\"",
            "café",
            "naïve",
            "Привет",
            "日本語",
            "👍🏽",
            "<|endoftext|>",
            "x1y",
            "A",
            "--",
            "end.\n",
        ];
        let mut state = 0x2545_f491_u64;
        let mut out = String::new();
        while out.len() < 5 * CHUNK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let part = parts[(state % parts.len() as u64) as usize];
            out.push_str(part);
            // Mostly one space between parts, as in prose.
            if !state.is_multiple_of(3) {
                out.push(' ');
            }
        }
        out
    }

    fn tokenizer(pre: &str, post: &str) -> TextTokenizer {
        TextTokenizer::from_bytes(byte_level_json(pre, post).as_bytes()).expect("a tokenizer")
    }

    #[test]
    fn chunks_cut_at_cut_points_and_cover_the_text() {
        let text = long_text();
        let chunks = chunks(&text, CHUNK, &CUT_PUNCT);
        assert!(chunks.len() >= 4, "{}", chunks.len());
        assert_eq!(chunks[0].0, 0);
        assert_eq!(chunks[chunks.len() - 1].1, text.len());
        for w in chunks.windows(2) {
            let p = w[0].1;
            assert_eq!(p, w[1].0);
            let prev = text[..p].chars().next_back().expect("a char before");
            let mut after = text[p..].chars();
            let at = after.next().expect("a char at");
            assert!(is_cut(prev, at, after.next(), &CUT_PUNCT), "{:?}", &text[p - 8..p + 8]);
        }
        // Each at most CHUNK bytes (this text has a cut every few bytes).
        assert!(chunks.iter().all(|(a, b)| b - a <= CHUNK));
        assert_eq!(super::chunks("short", CHUNK, &CUT_PUNCT), vec![(0, 5)]);
        // A stretch with no cut is one chunk, whatever its length; cuts on
        // either side still cut.
        let run = format!("{} {} {}", "ab ".repeat(100), "x".repeat(1000), "cd ".repeat(100));
        let c = super::chunks(&run, 64, &CUT_PUNCT);
        assert!(c.iter().any(|&(a, b)| b - a > 1000), "{c:?}");
        assert_eq!(c.iter().filter(|&&(a, b)| b - a > 64).count(), 1, "{c:?}");
        // CJK: after an ideograph or kana, at sentence punctuation.
        let cjk = "日本語の文章です。句読点で切れる、はず。".repeat(50);
        let c = super::chunks(&cjk, 100, &CUT_PUNCT);
        assert!(c.len() > 10 && c.iter().all(|&(a, b)| b - a <= 100), "{c:?}");
        assert!(c[1..].iter().all(|&(a, _)| cjk[a..].starts_with(['。', '、'])));
    }

    /// Tokens that join bytes across every kind of cut, so that a cut inside
    /// a piece would change the ids: `n.`, `s,`, `語。`, `。日`, `x ab`, ...
    fn spanning_merges() -> Vec<String> {
        [
            "n.",
            "s,",
            "語。",
            "。日",
            "です。",
            "、は",
            "x ab",
            "가 나",
            ". ",
            "!!",
            "e\u{301}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// GPT-2's, Llama 3's and DeepSeek V3's pre-tokenizers encode random
    /// texts of every kind of character cut at their cut points into chunks
    /// of a few bytes to exactly the ids and spans of the whole.
    #[test]
    fn chunked_encoding_is_the_whole_encoding_at_every_cut() {
        let parts = [
            "n",
            "the",
            "ab",
            "x",
            "s",
            "語",
            "日本",
            "です",
            "は",
            "。",
            "、",
            "，",
            "！",
            "？",
            ".",
            ",",
            "!",
            "?",
            ";",
            ":",
            " ",
            "  ",
            "\n",
            "\t",
            "'s",
            "'",
            "1",
            "234",
            "ー",
            "・",
            "가",
            "나",
            "\u{301}",
            "é",
            "Привет",
            ".com",
            "<|endoftext|>",
            "👍",
        ];
        let mut next = crate::test_rng::xorshift(0x9e37_79b9);
        let tokenizers = [
            (GPT2, TEMPLATE),
            (GPT2, "null"),
            (LLAMA3, LLAMA31_POST),
            (LLAMA3, "null"),
            (DEEPSEEK, BYTE_LEVEL_UNTRIMMED),
        ]
        .map(|(pre, post)| {
            let t = TextTokenizer::from_bytes(byte_level_json_with(pre, post, &spanning_merges()).as_bytes())
                .expect("a tokenizer");
            assert!(t.cuts.is_some(), "{pre} {post}");
            t
        });
        let mut cut = 0;
        for _ in 0..400 {
            let text: String = (0..60).map(|_| parts[next(parts.len())]).collect();
            let size = 1 + next(24);
            for t in &tokenizers {
                let pieces = chunks(&text, size, t.cuts.as_deref().expect("cuts"));
                cut += pieces.len() - 1;
                assert_eq!(
                    t.encode_pieces(&text, &pieces, Deadline::NONE).expect("pieces"),
                    t.encode(&text).expect("whole"),
                    "{text:?} cut at {pieces:?}"
                );
            }
        }
        assert!(cut > 10_000, "{cut}");
    }

    /// The fast path gives `tokenizers`' ids and spans, for each pre-tokenizer
    /// it knows, on random mixes of every ASCII class (letters, digits,
    /// punctuation, each whitespace byte, control bytes, contractions, runs),
    /// an added token, and non-ASCII pieces that send their stretch to
    /// `tokenizers` (cut out where the tokenizer may be cut, the whole text
    /// where it may not).
    #[test]
    fn the_fast_path_is_tokenizers() {
        let parts = [
            "the",
            "The",
            "worth",
            "ing",
            "a",
            "I",
            " ",
            "  ",
            "   ",
            "\t",
            "\n",
            "\r",
            "\r\n",
            "\n\n",
            " \n",
            "\u{b}",
            "\u{c}",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "\u{0}",
            ".",
            ",",
            "!",
            "?",
            ";",
            ":",
            "'",
            "\"",
            "(",
            ")",
            "-",
            "--",
            "...",
            "$",
            "+",
            "<",
            ">",
            "=",
            "^",
            "`",
            "|",
            "~",
            "_",
            "@",
            "#",
            "%",
            "&",
            "*",
            "/",
            "\\",
            "[",
            "]",
            "{",
            "}",
            "'s",
            "'t",
            "'re",
            "'ve",
            "'m",
            "'ll",
            "'d",
            "'r",
            "'l",
            "'v",
            "0",
            "7",
            "12",
            "123",
            "4567",
            "3.14",
            "1,000",
            "x2",
            "<|endoftext|>",
            "<|end",
            "é",
            "日本語",
            "。",
            "、",
            "Привет",
            "\u{301}",
            "ー",
            "👍",
        ];
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let configs = [
            (GPT2, TEMPLATE, Pre::Gpt2, true),
            (GPT2, "null", Pre::Gpt2, true),
            (DEEPSEEK, BYTE_LEVEL_UNTRIMMED, Pre::DeepSeek, true),
            (DIGITS_GPT2, "null", Pre::DigitsGpt2, false),
        ];
        // Tokens for every pair of bytes of different classes and some
        // longer runs, so that a piece boundary in the wrong place changes
        // the ids.
        let bytes = [
            "a", "T", " ", "\t", "\n", "\r", "\u{b}", ".", "'", "-", "(", "1", "\u{1}", "<", "s",
        ];
        let mut merges = spanning_merges();
        for a in bytes {
            for b in bytes {
                merges.push(format!("{a}{b}"));
            }
        }
        for run in [
            "   ", "\n\n\n", ".\n\n", " .\n", " \n\n", "\t\n ", "'re", "'ll", "...", "123", " 12", "a.\n",
        ] {
            merges.push(run.to_string());
        }
        for (pre, post, kind, cut) in configs {
            let t =
                TextTokenizer::from_bytes(byte_level_json_with(pre, post, &merges).as_bytes()).expect("a tokenizer");
            assert_eq!(
                t.fast.as_ref().map(|f| format!("{f:?}")),
                Some(format!("FastBpe({kind:?})"))
            );
            assert_eq!(t.cuts.is_some(), cut, "{pre}");
            let (mut ascii, mut mixed) = (0, 0);
            for round in 0..3000 {
                // Two in three texts are ASCII only.
                let limit = if round % 3 == 0 { parts.len() } else { parts.len() - 9 };
                let text: String = (0..1 + next(50)).map(|_| parts[next(limit)]).collect();
                if text.is_ascii() {
                    ascii += 1;
                } else {
                    mixed += 1;
                }
                assert_eq!(
                    t.encode(&text).expect("fast"),
                    t.encode_reference(&text).expect("tokenizers"),
                    "{kind:?} {text:?}"
                );
            }
            assert!(ascii > 1500 && mixed > 500, "{ascii} {mixed}");
        }
        // Other tokenizers have no fast path.
        assert!(!tokenizer(LLAMA3, "null").has_fast_path());
        assert!(!tokenizer(r#"{"type":"Whitespace"}"#, "null").has_fast_path());
    }

    /// GPT-2's and DeepSeek V3's pre-tokenizers encode a long text in chunks
    /// to exactly the ids and spans of the whole, through `encode_until`.
    #[test]
    fn chunked_encoding_is_the_whole_encoding() {
        let text = long_text();
        let later = Deadline::after(Duration::from_secs(3600));
        for (pre, post) in [
            (GPT2, TEMPLATE),
            (DEEPSEEK, BYTE_LEVEL_UNTRIMMED),
            (GPT2, "null"),
            (LLAMA3, LLAMA31_POST),
        ] {
            let t = tokenizer(pre, post);
            assert!(t.cuts.is_some(), "{pre} {post}");
            let whole = t.encode(&text).expect("encode");
            assert!(whole.ids.len() > 10_000);
            assert_eq!(
                t.encode_until(&text, later).expect("encode_until"),
                whole,
                "{pre} {post}"
            );
        }
        // Others are encoded whole: a trimming post-processor, a normalizer,
        // another pre-tokenizer.
        let trimmed = r#"{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"#;
        assert!(tokenizer(GPT2, trimmed).cuts.is_none());
        let whitespace = r#"{"type":"Whitespace"}"#;
        assert!(tokenizer(whitespace, "null").cuts.is_none());
        let mut json: serde_json::Value = serde_json::from_str(&byte_level_json(GPT2, "null")).expect("json");
        json["normalizer"] = serde_json::json!({"type": "Lowercase"});
        assert!(cut_points(&json).is_none());
        // An added token that holds punctuation keeps the cuts before it out.
        let mut json: serde_json::Value = serde_json::from_str(&byte_level_json(GPT2, "null")).expect("json");
        json["added_tokens"][0]["content"] = "<。end.>".into();
        let punct = cut_points(&json).expect("cuts");
        assert!(!punct.contains(&'。') && !punct.contains(&'.') && punct.contains(&'、'));
    }

    #[test]
    fn a_deadline_stops_encoding() {
        let t = tokenizer(DEEPSEEK, BYTE_LEVEL_UNTRIMMED);
        let past = Deadline::at(Instant::now());
        assert_eq!(t.encode_until("short", past), Err(Error::DeadlineExceeded));
        assert_eq!(t.encode_until("short", Deadline::NONE), t.encode("short"));
    }

    /// Under a deadline, a stretch of more than MAX_UNCUT bytes with no cut
    /// point is refused before any is encoded; without one it is encoded.
    #[test]
    fn an_uncut_run_is_refused_under_a_deadline() {
        let later = Deadline::after(Duration::from_secs(3600));
        let t = tokenizer(GPT2, "null");
        let word = format!("{} {} end", "so it goes. ".repeat(20_000), "a".repeat(MAX_UNCUT + 1));
        match t.encode_until(&word, later) {
            Err(Error::UncutRun {
                start,
                end,
                limit,
                tokenizer_cuts: true,
            }) => {
                assert_eq!(limit, MAX_UNCUT);
                assert!(end - start > MAX_UNCUT);
                assert!(word[start..end].contains(&"a".repeat(MAX_UNCUT)));
            }
            other => panic!("{other:?}"),
        }
        // The same length of CJK prose with its punctuation is encoded.
        let cjk = "日本語の文章です。句読点で切れる、はず。".repeat(MAX_UNCUT / 30);
        assert!(cjk.len() > MAX_UNCUT);
        assert_eq!(t.encode_until(&cjk, later), t.encode(&cjk));
        // A tokenizer that is not cut takes at most MAX_UNCUT bytes.
        let whole = tokenizer(r#"{"type":"Whitespace"}"#, "null");
        let prose = "so it goes. ".repeat(MAX_UNCUT / 12 + 1);
        assert!(matches!(
            whole.encode_until(&prose, later),
            Err(Error::UncutRun {
                start: 0,
                tokenizer_cuts: false,
                ..
            })
        ));
        assert!(whole.encode_until(&prose[..MAX_UNCUT], later).is_ok());
        assert_eq!(whole.encode_until(&prose, Deadline::NONE), whole.encode(&prose));
    }

    /// The texts of a JSONL corpus whose `category` is in `categories` (all
    /// when empty), joined by newlines until `bytes`.
    fn joined(path: &str, categories: &[&str], bytes: usize) -> String {
        let corpus = std::fs::read_to_string(path).expect("the corpus");
        let mut text = String::new();
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let doc: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            if !categories.is_empty() && !categories.iter().any(|c| doc["category"] == *c) {
                continue;
            }
            text.push_str(doc["text"].as_str().expect("text"));
            text.push('\n');
            if text.len() > bytes {
                break;
            }
        }
        text
    }

    /// The real tokenizer (`TRACEMARK_TOKENIZER`, DeepSeek V3's, `make
    /// test-rust`) on the human-text corpus (`TRACEMARK_HUMAN_TEXT`) and on
    /// the Japanese and Russian of the multilingual one
    /// (`TRACEMARK_HUMAN_TEXT_MULTILINGUAL`), each joined into one long text:
    /// chunks give the whole's ids and spans, and Japanese is cut at its
    /// punctuation into chunks of at most 64 KiB.
    #[test]
    #[ignore = "needs TRACEMARK_TOKENIZER, TRACEMARK_HUMAN_TEXT and TRACEMARK_HUMAN_TEXT_MULTILINGUAL (make test-rust runs it)"]
    fn chunked_encoding_is_the_whole_encoding_on_human_text() {
        let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name} (scripts/fetch.py)"));
        let t = TextTokenizer::from_file(env("TRACEMARK_TOKENIZER")).expect("the tokenizer");
        let punct = t
            .cuts
            .clone()
            .expect("the tokenizer's pre-tokenizer is no longer DeepSeek V3's");
        let later = Deadline::after(Duration::from_secs(3600));
        let english = joined(&env("TRACEMARK_HUMAN_TEXT"), &[], 40 * CHUNK);
        let multilingual = env("TRACEMARK_HUMAN_TEXT_MULTILINGUAL");
        let japanese = joined(&multilingual, &["ja"], 20 * CHUNK);
        let russian = joined(&multilingual, &["ru"], 20 * CHUNK);
        for (name, text) in [("English", &english), ("Japanese", &japanese), ("Russian", &russian)] {
            let pieces = chunks(text, CHUNK, &punct);
            assert!(pieces.len() >= 20, "{name}: {} chunks", pieces.len());
            assert!(
                pieces.iter().all(|(a, b)| b - a <= CHUNK),
                "{name}: a chunk over {CHUNK} bytes"
            );
            assert_eq!(
                t.encode_until(text, later).expect("encode_until"),
                t.encode(text).expect("encode"),
                "{name}"
            );
        }
        // Japanese man pages are cut inside their Japanese, not only at the
        // spaces of their option lists.
        let pieces = chunks(&japanese, CHUNK, &punct);
        let at_cjk = pieces[1..]
            .iter()
            .filter(|&&(a, _)| japanese[a..].starts_with(['。', '、']))
            .count();
        assert!(at_cjk > 0, "no Japanese chunk ends at 。 or 、");
    }
}
