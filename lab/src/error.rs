//! The error type of the harness and its binaries.

use core::fmt;

/// Anything that can fail while running the model or the harness.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The model, its tokenizer or a student failed.
    Candle(tracemark_candle::Error),
    /// tracemark-core rejected something.
    Core(tracemark_core::Error),
    /// tracemark-verifier rejected something.
    Verifier(tracemark_verifier::Error),
    /// A file could not be read or written.
    Io {
        /// The path involved.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Bad command-line usage or data.
    Usage(String),
    /// A generation a cached-only run needs is not in the cache (its name).
    NotCached(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Candle(e) => e.fmt(f),
            Self::Core(e) => e.fmt(f),
            Self::Verifier(e) => e.fmt(f),
            Self::Io { path, source } => write!(f, "{path}: {source}"),
            Self::Usage(e) => f.write_str(e),
            Self::NotCached(name) => write!(f, "{name} is not generated yet (run without --cached-only)"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Candle(e) => Some(e),
            Self::Core(e) => Some(e),
            Self::Verifier(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            Self::Usage(_) | Self::NotCached(_) => None,
        }
    }
}

impl From<tracemark_candle::Error> for Error {
    fn from(e: tracemark_candle::Error) -> Self {
        Self::Candle(e)
    }
}

impl From<tracemark_core::Error> for Error {
    fn from(e: tracemark_core::Error) -> Self {
        Self::Core(e)
    }
}

impl From<tracemark_verifier::Error> for Error {
    fn from(e: tracemark_verifier::Error) -> Self {
        Self::Verifier(e)
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

/// `Result` with the harness' [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
