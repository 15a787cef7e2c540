//! Text: the canonical form of tampered text ([`canonical`]), the
//! tokenizer that turns text into the ids a scheme was applied to
//! ([`TextTokenizer`]), and the sentences the semantic layer scores
//! ([`sentences`]). Imports nothing else of the verifier but its errors.

pub mod canonical;
pub(crate) mod deadline;
mod fast_bpe;
pub mod sentences;
pub(crate) mod tokenizer;

pub use deadline::Deadline;
pub(crate) use tokenizer::sha256_hex;
pub use tokenizer::{Encoded, TextTokenizer, TokenizerInfo, MAX_UNCUT};
