//! Shared by the real-model tests.

#![allow(unreachable_pub)]

use std::path::PathBuf;

/// The SmolLM2 GGUF at `$TRACEMARK_MODEL`: a test fails, never skips, without it.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("TRACEMARK_MODEL")
        .map(PathBuf::from)
        .expect("set TRACEMARK_MODEL to the SmolLM2 GGUF (make test-rust does: python3 scripts/fetch.py model)");
    assert!(path.exists(), "no model at {}", path.display());
    path
}
