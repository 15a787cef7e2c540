//! # tracemark-lab: the experiment harness
//!
//! The experiments behind tracemark's published numbers, as a library that the
//! thin binaries of `examples/` drive (they parse flags into a typed options
//! struct, call [`eval::run`] or [`distill::run`], and map the error to the
//! exit code). SmolLM2-135M-Instruct (GGUF) runs on the CPU through
//! [`tracemark_candle`], tracemark watermarks what it writes through the
//! core's public [`Scheme`](tracemark_core::Scheme) API, and
//! [`tracemark_verifier`] detects it.
//!
//! | module | what | make target |
//! |---|---|---|
//! | [`eval`] | the arms, generation of all arms with cached records, attacks, analysis, the report's tables and plots | `make eval` (`QUICK=1`: `make eval-quick`, part of `make test`) |
//! | [`distill`] | the distillation experiment: plan, harvest, training mixtures, students, attribution, controls, quick checks, report | `make distill` (`QUICK=1`: `make distill-quick`, part of `make test`) |
//! | [`campaign`] | student-level account attribution: window-cohort keys (group testing) on a simulated harvesting campaign with a stand-in n-gram teacher, recall per actor and false accusations over repetitions | `make campaign` (`QUICK=1`: `make campaign-quick`, part of `make test`) |
//! | [`spoof`] | watermark stealing: harvests, the attacker's knowledge, spoofed and scrubbed answers, cohort keys and the spoof-artifact test | `make spoof` (`QUICK=1`: `make spoof-quick`, part of `make test`) |
//! | [`accounts`] | tokens needed to name the account a SmolLM2 answer was served to, among 1, 24,000 and 1,000,000 account keys; the scan's time and memory | `make accounts` |
//! | [`calibration`] | the false-positive rate of the exact tests on human text over millions of (document, key) tests, and a battery on the keyed values | `make calibrate` |
//! | [`tamper`] | the tamperings canonical text undoes (zero-width characters, homoglyphs, full-width forms...), as attacks | `make eval`, the canonical-text tests |
//! | [`summary`] | summaries of many tests for reports: Kolmogorov-Smirnov, rates, means, medians | all |
//! | [`plot`] | SVG line charts for the reports | all |
//! | [`error`] | the one error type of the harness and its binaries | all, with `make demo` and `make calibrate` |
//!
//! The run set-up is re-exported here: the cache directory ([`cache_dir`]),
//! the model file ([`model_path`]), the keys of full and quick runs
//! ([`stored_key`], [`quick_test_key`]), the evaluation prompts
//! ([`prompts`], from `lab/data/prompts.txt`), report dates ([`today`]) and
//! I/O errors that name their path ([`io`]).
//!
//! ```
//! use tracemark_lab::{distill, eval};
//!
//! // The published evaluation compares twelve arms, the first unwatermarked.
//! let arms = eval::arms();
//! assert_eq!(arms.len(), 12);
//! assert!(arms[0].scheme.is_none());
//! // A text metric of the quality table: unique bigrams over all bigrams.
//! assert_eq!(eval::distinct_n(&[1, 2, 1, 2], 2), 2.0 / 3.0);
//! // The evaluation prompts ship with the crate.
//! assert!(tracemark_lab::prompts().len() >= 100);
//!
//! // A distillation run is sized by its plan: the quick one checks the pipeline in minutes.
//! let quick = distill::Plan::new(true);
//! assert!(quick.harvest_prompts < distill::Plan::new(false).harvest_prompts);
//! // A student's training set: half watermarked answers, half plain, by tokens (each ends with `eos`).
//! let marked = distill::Harvested { prompt_ids: vec![1], cohort: Some(1), ids: vec![7; 9] };
//! let plain = distill::Harvested { prompt_ids: vec![1], cohort: None, ids: vec![8; 9] };
//! let data = distill::mixture(&[&marked], &[&plain], 0.5, 20, 0);
//! assert_eq!(data.len(), 2);
//! ```
//!
//! A whole run needs the model (`python3 scripts/fetch.py model`):
//!
//! ```no_run
//! let options = tracemark_lab::eval::Options { quick: true, ..Default::default() };
//! tracemark_lab::eval::run(&options)?;
//! # Ok::<(), tracemark_lab::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accounts;
pub mod calibration;
pub mod campaign;
pub mod distill;
pub mod error;
pub mod eval;
pub mod plot;
mod setup;
pub mod spoof;
pub mod students;
pub mod summary;
pub mod tamper;

pub use error::{Error, Result};
pub use setup::{cache_dir, io, model_path, prompts, quick_test_key, stored_key, today};
