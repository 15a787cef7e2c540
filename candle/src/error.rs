//! The error type of tracemark-candle.

use core::fmt;

/// Anything that can fail while loading or running a model or its tokenizer.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The model runtime (candle) failed.
    Candle(candle_core::Error),
    /// The tokenizer failed.
    Tokenizer(String),
    /// tracemark-core rejected something (a scheme, a key, logits).
    Core(tracemark_core::Error),
    /// A file could not be read.
    Io {
        /// The path involved.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The model file lacks something we need.
    Model(String),
    /// A bad argument: ragged batches, too-long sequences, out-of-range token ids, ...
    Usage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Candle(e) => write!(f, "model runtime: {e}"),
            Self::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            Self::Core(e) => e.fmt(f),
            Self::Io { path, source } => write!(f, "{path}: {source}"),
            Self::Model(e) => write!(f, "model: {e}"),
            Self::Usage(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Candle(e) => Some(e),
            Self::Core(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(e)
    }
}

impl From<tracemark_core::Error> for Error {
    fn from(e: tracemark_core::Error) -> Self {
        Self::Core(e)
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// `Result` with tracemark-candle's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
