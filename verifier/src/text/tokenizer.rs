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

use super::Deadline;
use crate::error::{Error, Result};

/// A tokenizer loaded from a `tokenizer.json`.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    info: TokenizerInfo,
    /// Whether [`encode_until`](TextTokenizer::encode_until) may encode a
    /// long text in chunks ([`chunkable`]).
    chunkable: bool,
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
        let chunkable = serde_json::from_slice(bytes).is_ok_and(|json| chunkable(&json));
        Ok(Self {
            inner,
            info: TokenizerInfo {
                fingerprint: sha256_hex(bytes),
                vocab_size,
            },
            chunkable,
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

    /// Encodes `text` without adding special tokens.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
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
    /// [`Error::DeadlineExceeded`] once `deadline` has passed. A long text
    /// (over 128 KiB) is encoded in chunks of 64 KiB, the deadline checked
    /// between them, when the tokenizer is one whose encoding of the chunks
    /// is provably that of the whole (GPT-2's and DeepSeek V3's
    /// pre-tokenizers); else it is checked before and after the one call to
    /// the tokenizer. The ids and spans are
    /// those [`encode`](Self::encode) gives.
    pub fn encode_until(&self, text: &str, deadline: Deadline) -> Result<Encoded> {
        deadline.check()?;
        if !deadline.is_set() || !self.chunkable || text.len() <= 2 * CHUNK {
            let enc = self.encode(text)?;
            deadline.check()?;
            return Ok(enc);
        }
        let mut out = Encoded::default();
        for (start, end) in chunks(text) {
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
/// text in, in bytes (a chunk ends at the first cut after it): tens of
/// milliseconds of a core.
pub(crate) const CHUNK: usize = 1 << 16;

/// The chunks of `text`, as byte ranges: each ends at the first cut after
/// [`CHUNK`] bytes, a cut being a space between two ASCII letters
/// (`word| word`); the last one ends with the text.
fn chunks(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() / CHUNK + 1);
    let mut start = 0;
    let mut p = CHUNK;
    while p + 1 < b.len() {
        if b[p] == b' ' && b[p - 1].is_ascii_alphabetic() && b[p + 1].is_ascii_alphabetic() {
            out.push((start, p));
            start = p;
            p += CHUNK;
        } else {
            p += 1;
        }
    }
    out.push((start, b.len()));
    out
}

/// The pre-tokenizer of GPT-2 and the models that kept it (SmolLM2, Llama
/// 3's predecessors): the byte-level regex
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
const GPT2: &str = r#"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#;

/// DeepSeek V3's pre-tokenizer: digits in threes, CJK runs, then its regex
/// of words, punctuation and spaces, then bytes.
const DEEPSEEK: &str = r##"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{N}{1,3}"},"behavior":"Isolated","invert":false},{"type":"Split","pattern":{"Regex":"[一-龥぀-ゟ゠-ヿ]+"},"behavior":"Isolated","invert":false},{"type":"Split","pattern":{"Regex":"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}"##;

/// Whether a tokenizer encodes a text cut at a space between two ASCII
/// letters (`word| word`) as the concatenation of its two parts' encodings,
/// so that [`TextTokenizer::encode_until`] may encode in chunks.
///
/// A tokenizer splits the text at its added tokens, normalizes, cuts it into
/// pieces (the pre-tokenizer) and encodes each piece alone (the model). It
/// is so when:
/// - the normalizer does nothing, there is no truncation or padding, and the
///   post-processor changes nothing without special tokens (none, a
///   template, byte-level offsets left untrimmed);
/// - no added token holds whitespace or strips it, so none spans a cut or
///   moves one;
/// - the pre-tokenizer is [`GPT2`]'s or [`DEEPSEEK`]'s. In both, no
///   alternative that takes a letter takes a space after it (a space only
///   leads a piece: ` ?\p{L}+`, `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+`),
///   so the piece holding the letter before a cut ends at the cut, in the
///   whole text and in the first part alike (no lookahead reaches past it:
///   `(?!\S)` follows only whitespace); the next search starts at the cut in
///   both, with no anchor or lookbehind to see what lies before; and the
///   splits of digits and CJK runs that come first never span a space.
///
/// Any other tokenizer is encoded whole.
fn chunkable(json: &serde_json::Value) -> bool {
    let normalizer = &json["normalizer"];
    let no_normalizer = normalizer.is_null()
        || normalizer["type"] == "Sequence" && normalizer["normalizers"].as_array().is_some_and(Vec::is_empty);
    let post = &json["post_processor"];
    // Byte-level offsets trimmed keep the first token's space with
    // add_prefix_space: the first token of a chunk would keep its own.
    let post_ok = post.is_null()
        || post["type"] == "ByteLevel" && post["trim_offsets"] == false
        || post["type"] == "TemplateProcessing";
    let added_ok = json["added_tokens"].as_array().is_some_and(|tokens| {
        tokens.iter().all(|t| {
            t["content"]
                .as_str()
                .is_some_and(|c| !c.chars().any(char::is_whitespace))
                && t["lstrip"] != true
                && t["rstrip"] != true
        })
    });
    let known = |s: &str| serde_json::from_str::<serde_json::Value>(s).is_ok_and(|v| v == json["pre_tokenizer"]);
    no_normalizer
        && post_ok
        && added_ok
        && json["truncation"].is_null()
        && json["padding"].is_null()
        && (known(GPT2) || known(DEEPSEEK))
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
    fn chunks_cut_between_words_and_cover_the_text() {
        let text = long_text();
        let chunks = chunks(&text);
        assert!(chunks.len() >= 4, "{}", chunks.len());
        assert_eq!(chunks[0].0, 0);
        assert_eq!(chunks[chunks.len() - 1].1, text.len());
        let b = text.as_bytes();
        for w in chunks.windows(2) {
            let p = w[0].1;
            assert_eq!(p, w[1].0);
            assert!(b[p] == b' ' && b[p - 1].is_ascii_alphabetic() && b[p + 1].is_ascii_alphabetic());
        }
        assert_eq!(super::chunks("short"), vec![(0, 5)]);
    }

    /// GPT-2's and DeepSeek V3's pre-tokenizers encode a long text in chunks
    /// to exactly the ids and spans of the whole.
    #[test]
    fn chunked_encoding_is_the_whole_encoding() {
        let text = long_text();
        let later = Deadline::after(Duration::from_secs(3600));
        for (pre, post) in [(GPT2, TEMPLATE), (DEEPSEEK, BYTE_LEVEL_UNTRIMMED), (GPT2, "null")] {
            let t = tokenizer(pre, post);
            assert!(t.chunkable, "{pre} {post}");
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
        assert!(!tokenizer(GPT2, trimmed).chunkable);
        let whitespace = r#"{"type":"Whitespace"}"#;
        assert!(!tokenizer(whitespace, "null").chunkable);
        let mut json: serde_json::Value = serde_json::from_str(&byte_level_json(GPT2, "null")).expect("json");
        json["normalizer"] = serde_json::json!({"type": "Lowercase"});
        assert!(!chunkable(&json));
    }

    #[test]
    fn a_deadline_stops_encoding() {
        let t = tokenizer(DEEPSEEK, BYTE_LEVEL_UNTRIMMED);
        let past = Deadline::at(Instant::now());
        assert_eq!(t.encode_until("short", past), Err(Error::DeadlineExceeded));
        assert_eq!(t.encode_until("short", Deadline::NONE), t.encode("short"));
    }

    /// The real tokenizer (`TRACEMARK_TOKENIZER`, DeepSeek V3's, `make
    /// test-rust`) on the human-text corpus (`TRACEMARK_HUMAN_TEXT`) joined
    /// into one long text: chunks give the whole's ids and spans.
    #[test]
    #[ignore = "needs TRACEMARK_TOKENIZER and TRACEMARK_HUMAN_TEXT (make test-rust runs it)"]
    fn chunked_encoding_is_the_whole_encoding_on_human_text() {
        let path = std::env::var("TRACEMARK_TOKENIZER").expect("set TRACEMARK_TOKENIZER (scripts/fetch.py tokenizer)");
        let t = TextTokenizer::from_file(path).expect("the tokenizer");
        assert!(t.chunkable, "the tokenizer's pre-tokenizer is no longer DeepSeek V3's");
        let path =
            std::env::var("TRACEMARK_HUMAN_TEXT").expect("set TRACEMARK_HUMAN_TEXT (scripts/fetch.py human-text)");
        let corpus = std::fs::read_to_string(path).expect("the human-text corpus");
        let mut text = String::new();
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let doc: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            text.push_str(doc["text"].as_str().expect("text"));
            text.push('\n');
            if text.len() > 40 * CHUNK {
                break;
            }
        }
        assert!(chunks(&text).len() >= 20);
        let later = Deadline::after(Duration::from_secs(3600));
        assert_eq!(
            t.encode_until(&text, later).expect("encode_until"),
            t.encode(&text).expect("encode")
        );
    }
}
