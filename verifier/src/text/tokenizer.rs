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

use crate::error::{Error, Result};

/// A tokenizer loaded from a `tokenizer.json`.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    info: TokenizerInfo,
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
        Ok(Self {
            inner,
            info: TokenizerInfo {
                fingerprint: sha256_hex(bytes),
                vocab_size,
            },
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

    /// Decodes ids to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer { message: e.to_string() })
    }
}

/// Reads bytes as UTF-8 text, naming `source` in the error.
pub fn utf8(bytes: &[u8], source: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::InvalidUtf8 {
        source: source.to_string(),
        valid_up_to: e.utf8_error().valid_up_to(),
    })
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
