//! The spoof-artifact test: does a detected watermark look forged?
//!
//! A spoofer (Jovanović et al., ICML 2024) learns which tokens are green from
//! harvested watermarked answers, so it only knows the keyed values of
//! (seed, token) pairs that are common in the model's text; elsewhere it
//! writes like the unwatermarked model. Its forgery is therefore watermarked
//! where the harvest was dense and not elsewhere (Gloaguen et al., ICML 2025),
//! while a genuine answer is watermarked wherever the model had a choice.
//!
//! The verifier holds a *reference*: text of the same model (for example a
//! sample of the answers it served, or unwatermarked answers it generated) and
//! counts, under the key, how often each (seed, token) pair occurs there. Each
//! scored observation of a suspect text is *dense* when its pair occurs at
//! least [`ForgeryReference::dense_at`] times in the reference, else *sparse*;
//! it is a *hit* when its score exceeds the median of the scheme's null
//! distribution (green for kgw, value above one half for gumbel). The test is
//! one-sided Fisher's exact test of "dense observations are hits more often
//! than sparse ones", conditional on the totals: its p-value is exact when
//! hits are exchangeable across observations — always so for unwatermarked
//! text — and its false-alarm rate on genuine answers is measured in
//! `make spoof` (a genuine watermark is, if anything, weaker at the common,
//! low-entropy pairs, which makes the one-sided test conservative there).
//!
//! ```
//! use std::sync::Arc;
//! use tracemark_core::{Key, SchemeConfig};
//! use tracemark_verifier::{forgery, DetectOptions, Detector, ForgeryReference};
//!
//! let key = Key::from_bytes([7; 32]); // in practice: Key::load(path)
//! let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse()?;
//! let detector = Detector::new(&key, &config, 1000, DetectOptions::default())?;
//! // Reference text of the model, as (prompt ids, completion ids).
//! let reference: Vec<(Vec<u32>, Vec<u32>)> = vec![(vec![1], (2..200).collect()); 2];
//! let r = ForgeryReference::from_ids(
//!     &detector,
//!     reference.iter().map(|(p, d)| (p.as_slice(), d.as_slice())),
//!     forgery::DENSE_AT,
//!     forgery::FORGERY_ALPHA,
//! )?;
//! let detector = detector.with_forgery_reference(Arc::new(r))?;
//! let d = detector.detect_ids(&[1], &(100..300).collect::<Vec<u32>>())?;
//! // Half of the text is dense in the reference; an unwatermarked text is neither detected nor forged.
//! let f = d.forgery.as_ref().expect("dense and sparse observations");
//! assert_eq!(f.dense + f.sparse, 200);
//! assert!(!d.looks_forged());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use statrs::function::factorial::ln_binomial;
use tracemark_core::{KeyId, Null, Scheme};

use super::observe::{Observations, Scored};
use crate::error::{Error, Result};
use crate::stats;

/// The default significance level at which a detection is said to look forged.
pub const FORGERY_ALPHA: f64 = 1e-3;

/// The default number of reference occurrences from which a pair is dense.
pub const DENSE_AT: u32 = 2;

/// Counts of (seed, token) pairs in reference text of the model, under one key and scheme.
#[derive(Clone, Debug)]
pub struct ForgeryReference {
    counts: HashMap<(u64, u32), u32>,
    scheme: String,
    key_id: KeyId,
    documents: usize,
    observations: u64,
    dense_at: u32,
    alpha: f64,
}

impl ForgeryReference {
    /// An empty reference for `scheme` under the key `key_id`: see
    /// [`ForgeryReference::from_ids`].
    pub(crate) fn empty(scheme: String, key_id: KeyId, dense_at: u32, alpha: f64) -> Result<Self> {
        if dense_at == 0 {
            return Err(Error::InvalidOption {
                name: "dense_at",
                message: "must be at least 1".into(),
            });
        }
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::InvalidOption {
                name: "forgery alpha",
                message: format!("must be in (0, 1), got {alpha}"),
            });
        }
        Ok(Self {
            counts: HashMap::new(),
            scheme,
            key_id,
            documents: 0,
            observations: 0,
            dense_at,
            alpha,
        })
    }

    /// Counts the pairs of one document's observations.
    pub(crate) fn count(&mut self, obs: &Observations) {
        for s in &obs.scored {
            *self.counts.entry((s.seed, s.token)).or_default() += 1;
        }
        self.observations += obs.scored.len() as u64;
        self.documents += 1;
    }

    /// Occurrences of a pair from which it counts as dense.
    pub fn dense_at(&self) -> u32 {
        self.dense_at
    }

    /// Reference documents counted.
    pub fn documents(&self) -> usize {
        self.documents
    }

    /// Observations counted.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// Whether this reference was counted under `scheme` and its key.
    pub(crate) fn check(&self, scheme: &dyn Scheme) -> Result<()> {
        if scheme.describe() != self.scheme || scheme.key_id() != self.key_id {
            return Err(Error::InvalidOption {
                name: "forgery reference",
                message: format!(
                    "counted under {} and key {}, not the detector's {} and key {}",
                    self.scheme,
                    self.key_id,
                    scheme.describe(),
                    scheme.key_id()
                ),
            });
        }
        Ok(())
    }

    /// The test of one document's scored observations (`None` when there is
    /// nothing to compare: no dense or no sparse observation, or no hit).
    pub(crate) fn test(&self, scored: &[Scored], null: Null) -> Option<ForgeryTest> {
        let median = null_median(null)?;
        let (mut dense, mut dense_hits, mut sparse, mut sparse_hits) = (0u64, 0u64, 0u64, 0u64);
        for s in scored {
            let hit = u64::from(s.score > median);
            if self.counts.get(&(s.seed, s.token)).copied().unwrap_or(0) >= self.dense_at {
                dense += 1;
                dense_hits += hit;
            } else {
                sparse += 1;
                sparse_hits += hit;
            }
        }
        if dense == 0 || sparse == 0 || dense_hits + sparse_hits == 0 {
            return None;
        }
        let ln_p = fisher_upper_ln(dense + sparse, dense_hits + sparse_hits, dense, dense_hits);
        Some(ForgeryTest {
            dense: dense as usize,
            dense_hits: dense_hits as usize,
            sparse: sparse as usize,
            sparse_hits: sparse_hits as usize,
            p_value: stats::p_from_ln(ln_p),
            log10_p: stats::log10(ln_p),
            alpha: self.alpha,
            artifact: ln_p <= self.alpha.ln(),
            reference_documents: self.documents,
            dense_at: self.dense_at,
        })
    }
}

/// The spoof-artifact test of one text ([`crate::forgery`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ForgeryTest {
    /// Scored observations whose (seed, token) pair is dense in the reference.
    pub dense: usize,
    /// ... of which hits.
    pub dense_hits: usize,
    /// Scored observations whose pair is rare or absent in the reference.
    pub sparse: usize,
    /// ... of which hits.
    pub sparse_hits: usize,
    /// One-sided Fisher exact p-value of "dense observations are hits more often".
    pub p_value: f64,
    /// Its `log10`.
    pub log10_p: f64,
    /// The level at which the artifact is called.
    pub alpha: f64,
    /// Whether `p_value <= alpha`: the watermark's evidence sits where a
    /// spoofer could have learned it.
    pub artifact: bool,
    /// Documents in the reference.
    pub reference_documents: usize,
    /// Occurrences from which a pair counts as dense.
    pub dense_at: u32,
}

/// The median of one observation's null score: scores above it are hits
/// (`None` for a null distribution this test does not know).
fn null_median(null: Null) -> Option<f64> {
    Some(match null {
        Null::Binomial { trials, p } => {
            let mut cdf = 0.0;
            for k in 0..=u64::from(trials) {
                cdf += stats::ln_dbinom(k, u64::from(trials), p).exp();
                if cdf >= 0.5 {
                    return Some(k as f64);
                }
            }
            f64::from(trials)
        }
        Null::Exponential => std::f64::consts::LN_2,
        _ => return None,
    })
}

/// `ln P(X >= x)` for `X ~ Hypergeometric(population n, successes k, draws d)`.
pub(crate) fn fisher_upper_ln(n: u64, k: u64, d: u64, x: u64) -> f64 {
    let lo = x.max((d + k).saturating_sub(n));
    let hi = d.min(k);
    if lo > hi {
        return f64::NEG_INFINITY;
    }
    let denom = ln_binomial(n, d);
    let terms: Vec<f64> = (lo..=hi)
        .map(|j| ln_binomial(k, j) + ln_binomial(n - k, d - j) - denom)
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
    ln.min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_tail_matches_a_hand_computed_table() {
        // Population 10, 4 successes, 5 draws: P(X >= 3) = (C(4,3)C(6,2) + C(4,4)C(6,1)) / C(10,5) = 66/252.
        let p = fisher_upper_ln(10, 4, 5, 3).exp();
        assert!((p - 66.0 / 252.0).abs() < 1e-12, "{p}");
        assert!((fisher_upper_ln(10, 4, 5, 0).exp() - 1.0).abs() < 1e-12);
        assert_eq!(fisher_upper_ln(10, 4, 5, 5), f64::NEG_INFINITY);
    }

    #[test]
    fn null_medians() {
        assert_eq!(null_median(Null::Binomial { trials: 1, p: 0.25 }), Some(0.0));
        assert_eq!(null_median(Null::Binomial { trials: 30, p: 0.5 }), Some(15.0));
        assert_eq!(null_median(Null::Exponential), Some(std::f64::consts::LN_2));
    }
}
