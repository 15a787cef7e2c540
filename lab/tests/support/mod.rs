//! Shared by the lab's integration tests: the verifier's test helpers (a
//! seeded RNG, generation on flat logits, a word tokenizer) and the
//! real-model tests' model path (tracemark-candle's test support).

#![allow(dead_code, unreachable_pub, unused_imports)]

#[path = "../../../verifier/tests/support/mod.rs"]
mod verifier_support;

#[path = "../../../candle/tests/support/mod.rs"]
mod candle_support;

pub use candle_support::model_path;
pub use verifier_support::*;
