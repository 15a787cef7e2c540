//! # tracemark-candle: tracemark inside a candle decoder
//!
//! Everything a Rust program needs to run a Llama-architecture model
//! (SmolLM2 and kin, GGUF weights, CPU) through candle with a tracemark
//! watermark in its sampling loop, and to test a suspect model for
//! radioactivity afterwards:
//!
//! - [`Llama`]: the forward pass on candle's primitives, with a KV cache,
//!   returning the last position's logits or every position's
//!   ([`Llama::forward`]); [`Llama::log_probs`] and [`Llama::nll`] for
//!   perplexity.
//! - [`gguf_tokenizer`]: the model's own tokenizer rebuilt from the GGUF
//!   vocabulary and merges (a `tokenizers::Tokenizer`, which
//!   `tracemark_verifier::TextTokenizer` can wrap for detection on text).
//! - [`generate()`]: batched sampling where each [`Arm`] carries any
//!   [`Scheme`](tracemark_core::Scheme) (or none), with the repeated-context
//!   memory, per-token log-probs under the unwatermarked model, and timings.
//! - [`ReadingModel`] / [`reading_doc`]: a suspect model's next-token
//!   predictions on our watermarked texts, as the
//!   [`ReadingDoc`](tracemark_verifier::ReadingDoc)s that
//!   [`tracemark_verifier::reading_mode`] scores. Implemented by [`Llama`]
//!   (and, in `tracemark-lab`, by the distillation experiments' students).
//! - [`Embedder`]: sentence embeddings from a sentence-transformers BERT
//!   model (all-MiniLM-L6-v2) through candle-transformers' BERT, mean-pooled
//!   and normalised as sentence-transformers does ([`embed`]), for the
//!   semantic layer.
//! - [`generate_layered`]: the semantic layer's sentence-level rejection
//!   sampling on top of an [`Arm`]'s token layer ([`layered`]).
//!
//! ## Generating watermarked text
//!
//! ```no_run
//! use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, Arm, Llama, LoadOptions, Rng, Sampling};
//! use tracemark_core::{Key, SchemeConfig};
//!
//! let path = std::path::Path::new("SmolLM2-135M-Instruct.Q4_1.gguf");
//! let model = Llama::load(path, LoadOptions::default())?;
//! let tok = gguf_tokenizer::from_gguf(path)?;
//!
//! // The key stays on the server; the scheme is built once per key and vocabulary.
//! let key = Key::generate()?;
//! let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse()?;
//! let scheme = config.build(&key, model.config().vocab_size)?;
//!
//! let prompt = gguf_tokenizer::encode(&tok, &chat_prompt("Tell me about lighthouses."))?;
//! let stop = [gguf_tokenizer::token_id(&tok, "<|im_end|>")?];
//! let arm = Arm { scheme: Some(scheme.as_ref()), steer: None, skip_repeated: false, sampling: Sampling::default() };
//! let (generations, _timing) = generate(&model, &prompt, &[arm], 150, &stop, &mut [Rng::new(1)])?;
//! println!("{}", gguf_tokenizer::decode(&tok, &generations[0].ids)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The text is then verified from its characters alone with
//! `tracemark_verifier::Detector::detect_text`, through
//! `TextTokenizer::from_tokenizer(&tok)`; `tests/model.rs` does exactly this
//! on the real SmolLM2 file.
//!
//! Numerics: the forward pass is checked against candle-transformers'
//! `quantized_llama` (within 1e-2 in the logits), and all-position logits
//! against position-by-position decoding.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod embed;
pub mod error;
pub mod generate;
pub mod gguf_tokenizer;
pub mod layered;
pub mod model;
pub mod paths;
pub mod reading;

pub use embed::{Embedder, Embeddings};
pub use error::{Error, Result};
pub use generate::{generate, generate_each, sample, Arm, Generation, Rng, Sampling, Steer, Timing};
pub use layered::{generate_layered, Layer, Layered, LayeredStats};
pub use model::{set_threads, KvCache, Llama, LlamaConfig, LoadOptions};
pub use reading::{reading_doc, ReadingModel};

/// The system message SmolLM2-Instruct was trained with.
pub const SMOLLM2_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// SmolLM2's chat template (ChatML with its system message) around one user
/// message, ready for the assistant's answer.
pub fn chat_prompt(user: &str) -> String {
    format!(
        "<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}
