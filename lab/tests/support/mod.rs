//! Shared by the lab's integration tests: the verifier's test helpers (a
//! seeded RNG, generation on flat logits, a word tokenizer) and the model path.

#![allow(dead_code, unreachable_pub, unused_imports)]

#[path = "../../../verifier/tests/support/mod.rs"]
mod verifier_support;

use std::path::PathBuf;

pub use verifier_support::*;

/// The SmolLM2 GGUF at `$TRACEMARK_MODEL`: a test fails, never skips, without it.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("TRACEMARK_MODEL")
        .map(PathBuf::from)
        .expect("set TRACEMARK_MODEL to the SmolLM2 GGUF (make test-rust does: python3 scripts/fetch.py model)");
    assert!(path.exists(), "no model at {}", path.display());
    path
}
