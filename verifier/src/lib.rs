//! # tracemark-verifier
//!
//! Exact statistical detection of tracemark watermarks: the verdict a legal
//! team can stake a case on, and the engine of corpus and radioactivity tests.
//!
//! A [`Detector`] turns token ids (or text, through a [`TextTokenizer`]) into
//! observations, drops repeated ones ([`Dedup`]), and runs the exact test of
//! the scheme's null distribution: a binomial upper tail for `kgw` and
//! `tournament`, a gamma upper tail for `gumbel`. p-values are computed in
//! log space ([`stats`]), so `log10_p` is finite and accurate even at 1e-2000.
//! Every [`Detection`] names the scheme and parameters, spec version, key id,
//! tokenizer fingerprint, input hash, token counts, test, p-value and tool
//! version.
//!
//! ```
//! use tracemark_core::{Key, Scheme, SchemeConfig};
//! use tracemark_verifier::{DetectOptions, Detector, Verdict};
//!
//! let key = Key::generate()?;
//! let config: SchemeConfig = "kgw:gamma=0.25,delta=4,context=lefthash:1".parse()?;
//! let vocab = 1000;
//!
//! // Generate 200 tokens greedily from watermarked flat logits.
//! let scheme = config.build(&key, vocab)?;
//! let mut ids = vec![1u32];
//! for step in 0..200u32 {
//!     let mut logits: Vec<f32> = (0..vocab).map(|t| ((t as u32 * 7 + step * 13) % 17) as f32 * 0.1).collect();
//!     scheme.process(&ids, &mut logits)?;
//!     let next = (0..vocab).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
//!     ids.push(next as u32);
//! }
//!
//! let detector = Detector::new(&key, &config, vocab, DetectOptions::default())?;
//! let report = detector.detect_ids(&ids[..1], &ids[1..])?;
//! assert_eq!(report.verdict, Verdict::Detected);
//! assert!(report.outcome.log10_p().is_some_and(|l| l < -6.0));
//!
//! // Another key sees nothing.
//! let other = Detector::new(&Key::generate()?, &config, vocab, DetectOptions::default())?;
//! assert_ne!(other.detect_ids(&ids[..1], &ids[1..])?.verdict, Verdict::Detected);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Beyond single texts: [`WindowOptions`] finds the most significant span of a
//! long text (Bonferroni-corrected over the windows examined);
//! [`KeyringDetector`] tests many keys (one per API-account cohort, say) with
//! Holm's family-wise correction; [`Scanner`] scans a corpus (JSONL, or [`Document`]s in
//! memory) in parallel, with a verdict per document and one aggregate test deduplicated
//! across documents. (The false-positive rate of these tests over millions of
//! (document, key) pairs of human text is measured by `tracemark-lab`'s
//! calibration engine, `make calibrate`.)
//!
//! ## Where things are
//!
//! One folder per job, none importing a later one: [`text`] (canonical form,
//! [`TextTokenizer`]) → [`detect`] (observations, [`Detector`], windows,
//! streams, weighted and spoof-artifact tests) → [`corpus`] (scans,
//! radioactivity, keyrings, accounts) → `evidence` (HTML reports, terminal
//! rendering, signed receipts; the `evidence` feature). The exact tails are
//! the crate `tracemark-stats`, re-exported as [`stats`]; the command line is
//! the crate `tracemark-cli`; [`interop`] holds the keyed values of other
//! vendors' watermarks, which `tracemark.interop` reads. Without the `evidence` feature this crate
//! carries no template engine, signature code, CLI or HTTP stack.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod corpus;
pub mod detect;
mod error;
#[cfg(feature = "evidence")]
pub mod evidence;
pub mod interop;
pub mod serving;
#[cfg(test)]
mod test_rng;
pub mod text;

// The paths users import: every module and type at the root, as before the
// split into job folders.
pub use corpus::{accounts, distributed};
pub use corpus::{
    attribute, context_keys, probability_test, reading_mode, scan_path, Attribution, ContextFilter, DocResult,
    Document, KeyResult, KeyTest, Keyring, KeyringDetection, KeyringDetector, LogprobDoc, ReadingDoc, ScanSummary,
    Scanner,
};
pub use detect::{forgery, weighted};
pub use detect::{
    p_in_words, Counts, Dedup, DetectOptions, Detection, DetectionStream, Detector, ForgeryReference, ForgeryTest,
    Mark, Needed, Outcome, Strength, TestReport, TokenStatus, Verdict, WindowOptions, WindowReport, FORGERY_ALPHA,
};
pub use error::{Error, IoError, KeyFileKind, Result};
#[cfg(feature = "evidence")]
pub use evidence::{receipt, render, report};
pub use text::canonical;
pub use text::canonical::{canonicalize, Canonical, CanonicalReport, ChangeKind, ChangeSummary};
pub use text::sentences::{sentence_spans, sentences, SENTENCES_VERSION};
pub use text::{Encoded, TextTokenizer, TokenizerInfo};
/// Exact tail probabilities in log space: the crate `tracemark-stats`.
pub use tracemark_stats as stats;

/// What the other tracemark crates share with this one (the CLI, the wheel,
/// the model crate); not a stable API.
#[doc(hidden)]
pub mod internal {
    /// `sha256:<hex>` of some bytes, the digest form of every report.
    pub use crate::text::tokenizer::sha256_hex;
}

/// This tool and its version, as written into every report.
pub const TOOL: &str = concat!("tracemark ", env!("CARGO_PKG_VERSION"));
