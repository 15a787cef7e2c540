//! The one error type of `tracemark-verifier`.

use core::fmt;

/// Everything that can go wrong while verifying.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An error from `tracemark-core` (bad key, bad parameters, token out of range, ...).
    Core(tracemark_core::Error),
    /// The input holds no token to test.
    EmptyInput,
    /// The input is not valid UTF-8.
    InvalidUtf8 {
        /// Where the input is, for the message.
        source: String,
        /// Bytes before the first invalid sequence.
        valid_up_to: usize,
    },
    /// A token id is outside the tokenizer's or scheme's vocabulary.
    WrongTokenizer {
        /// The offending id.
        token: u32,
        /// Its position in the input ids.
        position: usize,
        /// The vocabulary size it was checked against.
        vocab_size: usize,
    },
    /// The work passed its [`Deadline`](crate::text::Deadline) and stopped.
    DeadlineExceeded,
    /// Under a [`Deadline`](crate::text::Deadline), the text holds a stretch
    /// the tokenizer would have to encode in one call that could not be
    /// stopped in time: more than `limit` bytes
    /// ([`MAX_UNCUT`](crate::text::MAX_UNCUT)) with no point it may be cut
    /// at ([`TextTokenizer::encode_until`](crate::text::TextTokenizer::encode_until)).
    /// Refused before any of it is encoded.
    UncutRun {
        /// Byte offset where the stretch starts.
        start: usize,
        /// Byte offset where it ends.
        end: usize,
        /// The most bytes encoded in one call under a deadline.
        limit: usize,
        /// Whether the tokenizer may be cut at all (false: its pre-tokenizer
        /// is not one proven safe to cut, and every text is one stretch).
        tokenizer_cuts: bool,
    },
    /// The tokenizer could not be loaded or failed on the input.
    Tokenizer {
        /// What failed.
        message: String,
    },
    /// A file could not be read or written.
    Io {
        /// The path involved.
        path: String,
        /// The operating system's error (also [`std::error::Error::source`]).
        source: IoError,
    },
    /// A corpus line is not a valid document.
    BadDocument {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// The scheme states a null distribution this verifier has no exact test for.
    UnsupportedScheme {
        /// The scheme string.
        scheme: String,
        /// What is missing.
        reason: String,
    },
    /// An option is out of range.
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// What was wrong and how to fix it.
        message: String,
    },
    /// A key file of another kind than the one asked for: a watermark key
    /// given as a receipt signing key, a secret signing key given as a
    /// public verifying key, ...
    WrongKeyFile {
        /// The key file (or `signing key` / `verifying key` for text in memory).
        path: String,
        /// The kind asked for.
        expected: KeyFileKind,
        /// The kind the file is.
        found: KeyFileKind,
    },
    /// A key's serving manifest is malformed, belongs to another key, or was
    /// edited after it was written.
    InvalidManifest {
        /// The manifest file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A receipt signing or verifying key file is malformed or corrupted.
    InvalidKeyFile {
        /// The key file (or `signing key` / `verifying key` for text in memory).
        path: String,
        /// The kind of key file it should be.
        kind: KeyFileKind,
        /// What was wrong.
        reason: String,
    },
    /// A provenance receipt is not well formed (its signature is not checked
    /// here: a well-formed receipt with a bad signature is a verification result).
    MalformedReceipt {
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Core(e) => e.fmt(f),
            Self::EmptyInput => f.write_str("the input is empty: there is no token to test"),
            Self::InvalidUtf8 { source, valid_up_to } => {
                write!(
                    f,
                    "{source} is not valid UTF-8 (first invalid byte at offset {valid_up_to})"
                )
            }
            Self::WrongTokenizer {
                token,
                position,
                vocab_size,
            } => write!(
                f,
                "token id {token} at position {position} is outside the vocabulary of size {vocab_size}: \
                 the ids were not produced by this tokenizer/model"
            ),
            Self::DeadlineExceeded => f.write_str("the deadline passed before the work was done"),
            Self::UncutRun {
                start,
                end,
                limit,
                tokenizer_cuts,
            } => {
                let kib = limit / 1024;
                if *tokenizer_cuts {
                    write!(
                        f,
                        "bytes {start}..{end} of the text hold no point the tokenizer may stop at (a space \
                         between two letters, or punctuation after a letter) for more than {kib} KiB, the most \
                         it encodes at once under a time limit: break the text there, or check it without a \
                         time limit"
                    )
                } else {
                    write!(
                        f,
                        "the text is {end} bytes; this tokenizer is not one proven safe to encode in parts, \
                         and under a time limit at most {kib} KiB is encoded at once: send a shorter text, \
                         or check it without a time limit"
                    )
                }
            }
            Self::Tokenizer { message } => write!(f, "tokenizer: {message}"),
            Self::Io { path, source } => write!(f, "{path}: {source}"),
            Self::BadDocument { line, message } => write!(f, "line {line}: {message}"),
            Self::InvalidOption { name, message } => write!(f, "invalid {name}: {message}"),
            Self::UnsupportedScheme { scheme, reason } => write!(f, "cannot test {scheme}: {reason}"),
            Self::WrongKeyFile { path, expected, found } => {
                write!(f, "{path} is a {found}, not a {expected}")
            }
            Self::InvalidKeyFile { path, kind, reason } => write!(f, "{path}: invalid {kind}: {reason}"),
            Self::InvalidManifest { path, reason } => write!(f, "{path}: invalid serving manifest: {reason}"),
            Self::MalformedReceipt { reason } => write!(f, "malformed receipt: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Core(e) => Some(e),
            Self::Io { source, .. } => Some(source.get_ref()),
            _ => None,
        }
    }
}

impl From<tracemark_core::Error> for Error {
    fn from(e: tracemark_core::Error) -> Self {
        Self::Core(e)
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, e: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source: IoError::from(e),
        }
    }
}

/// An operating-system I/O error inside [`Error::Io`], shared so that
/// [`Error`] stays `Clone`; two compare equal when their kind and message do.
#[derive(Clone, Debug)]
pub struct IoError(std::sync::Arc<std::io::Error>);

impl IoError {
    /// The error itself.
    pub fn get_ref(&self) -> &std::io::Error {
        &self.0
    }

    /// Its kind.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> Self {
        Self(std::sync::Arc::new(e))
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

// The key files' first words, from the core that defines the watermark key file.
pub(crate) use tracemark_core::internal::{
    KEY_FILE_MAGIC as WATERMARK_KEY_MAGIC, SIGNING_KEY_MAGIC, VERIFYING_KEY_MAGIC,
};

/// The kinds of key file, told apart by their first word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyFileKind {
    /// A secret watermark key (`tracemark-key-v1`, SPEC §2.3).
    Watermark,
    /// A secret receipt signing key (`tracemark-signing-key-v1`, SPEC §12.1).
    Signing,
    /// A public receipt verifying key (`tracemark-verifying-key-v1`, SPEC §12.1).
    Verifying,
}

impl KeyFileKind {
    pub(crate) fn magic(self) -> &'static str {
        match self {
            Self::Watermark => WATERMARK_KEY_MAGIC,
            Self::Signing => SIGNING_KEY_MAGIC,
            Self::Verifying => VERIFYING_KEY_MAGIC,
        }
    }

    /// The kind a key file's text says it is, if any.
    #[cfg(feature = "evidence")]
    pub(crate) fn of(text: &str) -> Option<Self> {
        [Self::Watermark, Self::Signing, Self::Verifying]
            .into_iter()
            .find(|k| text.strip_prefix(k.magic()).is_some_and(|rest| rest.starts_with(':')))
    }
}

impl fmt::Display for KeyFileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Watermark => "watermark key file",
            Self::Signing => "secret receipt signing key file",
            Self::Verifying => "public receipt verifying key file",
        };
        write!(f, "{what} ({})", self.magic())
    }
}
