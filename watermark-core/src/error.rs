//! The one error type of `tracemark-core`.

use core::fmt;

/// Everything that can go wrong in `tracemark-core`.
///
/// Every variant names what was wrong and, where there is one, how to fix it.
/// No variant ever carries key material.
///
/// Whenever a processing call returns an error, the logits it was given are
/// left exactly as they were.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A configuration parameter is out of range.
    InvalidParameter {
        /// The parameter's name (`gamma`, `delta`, `width`, ...).
        name: &'static str,
        /// The rejected value, as given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A logit is NaN or `+inf`. (`-inf` marks a banned token and is accepted.)
    NonFiniteLogit {
        /// The batch row (0 for single-row calls).
        row: usize,
        /// The position inside the row.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// The logits row is empty.
    EmptyLogits,
    /// The logits row does not have the vocabulary size the processor was built for.
    VocabMismatch {
        /// The processor's vocabulary size.
        expected: usize,
        /// The row's length.
        found: usize,
    },
    /// A token id does not fit the vocabulary (often: the wrong tokenizer).
    TokenOutOfRange {
        /// The offending token id.
        token: u32,
        /// The vocabulary size it was checked against.
        vocab_size: usize,
    },
    /// A batch call got a different number of contexts than logits rows.
    BatchMismatch {
        /// Rows in the logits matrix.
        rows: usize,
        /// Contexts given.
        contexts: usize,
    },
    /// A batch call got a logits matrix whose rows are not contiguous in memory.
    NotContiguous,
    /// Every logit in the row is `-inf`: there is no token to choose.
    NoSelectableToken {
        /// The batch row (0 for single-row calls).
        row: usize,
    },
    /// [`Scheme::bias`](crate::Scheme::bias) was asked of a scheme that decides
    /// the sampling distribution itself (it needs the logits: process them).
    NotABiasScheme {
        /// The scheme string.
        scheme: String,
    },
    /// A key file could not be parsed, or a key had the wrong length.
    InvalidKey {
        /// What was wrong.
        reason: String,
    },
    /// A key-derivation label is not acceptable.
    InvalidLabel {
        /// The rejected label.
        label: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// Refused to overwrite an existing key file.
    KeyFileExists {
        /// The path that already exists.
        path: String,
    },
    /// An I/O operation failed.
    Io {
        /// The path involved.
        path: String,
        /// The kind of failure.
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// The operating system's random number generator failed.
    Rng {
        /// The failure as reported by the OS.
        message: String,
    },
}

impl Error {
    pub(crate) fn param(name: &'static str, value: impl fmt::Display, expected: &'static str) -> Self {
        Self::InvalidParameter {
            name,
            value: value.to_string(),
            expected,
        }
    }

    pub(crate) fn io(path: &std::path::Path, err: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// The same error, attributed to batch row `row`.
    pub(crate) fn in_row(self, row: usize) -> Self {
        match self {
            Self::NonFiniteLogit { index, value, .. } => Self::NonFiniteLogit { row, index, value },
            Self::NoSelectableToken { .. } => Self::NoSelectableToken { row },
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidParameter { name, value, expected } => {
                write!(f, "invalid {name} = {value}: expected {expected}")
            }
            Self::NonFiniteLogit { row, index, value } => write!(
                f,
                "logit {value} at row {row}, index {index}: logits must be finite or -inf \
                 (a banned token); check the model output for NaN/+inf before watermarking"
            ),
            Self::EmptyLogits => f.write_str("empty logits row: expected one logit per vocabulary entry"),
            Self::VocabMismatch { expected, found } => write!(
                f,
                "logits row has {found} entries but the processor was built for a vocabulary of \
                 {expected}: build it with the model's vocabulary size"
            ),
            Self::TokenOutOfRange { token, vocab_size } => write!(
                f,
                "token id {token} is outside the vocabulary of size {vocab_size}: \
                 is this the tokenizer the text was generated with?"
            ),
            Self::BatchMismatch { rows, contexts } => write!(
                f,
                "batch has {rows} logits rows but {contexts} contexts: pass one context per row"
            ),
            Self::NotContiguous => f.write_str("logits rows must be contiguous (C order / standard layout)"),
            Self::NoSelectableToken { row } => {
                write!(f, "every logit in row {row} is -inf: no token can be selected")
            }
            Self::NotABiasScheme { scheme } => write!(
                f,
                "{scheme} decides the sampling distribution from the logits, so it has no bias to \
                 add on its own: process the logits row instead"
            ),
            Self::InvalidKey { reason } => write!(f, "invalid key: {reason}"),
            Self::InvalidLabel { label, reason } => {
                write!(f, "invalid derivation label {label:?}: {reason}")
            }
            Self::KeyFileExists { path } => write!(
                f,
                "refusing to overwrite existing key file {path}: choose another path or remove it first"
            ),
            Self::Io { path, message, .. } => write!(f, "{path}: {message}"),
            Self::Rng { message } => write!(f, "the OS random number generator failed: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
