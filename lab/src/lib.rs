//! # tracemark-lab: the experiment harness
//!
//! The experiments behind tracemark's published numbers, as a library that the
//! thin binaries of `examples/` drive: SmolLM2-135M-Instruct (GGUF) runs on the
//! CPU through [`tracemark_candle`], tracemark watermarks what it writes through
//! the core's public [`Scheme`](tracemark_core::Scheme) API, and
//! [`tracemark_verifier`] detects it.
//!
//! - [`eval`] (`make eval`): the arms, the records of their cached
//!   generations, the attacks of the robustness tables.
//! - [`plot`]: SVG line charts for the reports.
//! - [`error`]: the one error type of the harness and its binaries.
//! - The run set-up, re-exported here: the cache directory ([`cache_dir`]),
//!   the model file ([`model_path`]), the keys of full and quick runs
//!   ([`stored_key`], [`quick_test_key`]), the evaluation prompts
//!   ([`prompts`]), report dates ([`today`]) and I/O errors that name their
//!   path ([`io`]).
//!
//! ```
//! use tracemark_lab::eval;
//!
//! // The published evaluation compares ten arms, the first unwatermarked.
//! let arms = eval::arms();
//! assert_eq!(arms.len(), 10);
//! assert!(arms[0].scheme.is_none());
//! // A text metric of the quality table: unique bigrams over all bigrams.
//! assert_eq!(eval::distinct_n(&[1, 2, 1, 2], 2), 2.0 / 3.0);
//! // The evaluation prompts ship with the crate.
//! assert!(tracemark_lab::prompts().len() >= 100);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod eval;
pub mod plot;
mod setup;

pub use error::{Error, Result};
pub use setup::{cache_dir, io, model_path, prompts, quick_test_key, stored_key, today};
