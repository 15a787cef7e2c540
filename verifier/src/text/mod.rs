//! Text: the canonical form of tampered text ([`canonical`]) and the
//! tokenizer that turns text into the ids a scheme was applied to
//! ([`TextTokenizer`]). Imports nothing else of the verifier but its errors.

pub mod canonical;
mod tokenizer;

pub use tokenizer::{sha256_hex, utf8, Encoded, TextTokenizer, TokenizerInfo};
