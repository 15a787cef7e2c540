//! Model-assisted scoring: weight each token by how much watermark it can carry.
//!
//! A token drawn where the model was nearly certain carries almost no
//! watermark: the bias cannot move a distribution that puts all its mass on
//! one token. The unweighted tests count such tokens like any other, which
//! dilutes the evidence of low-entropy answers (code, lists, set phrases).
//! Given the model's next-token distribution at each position (the verifier
//! runs the model, or is handed its logits), [`position_weight`] turns it
//! into a weight in `[0, 1]`, and [`Detector::detect_weighted`] tests the
//! weighted sum of the per-token scores.
//!
//! ## Why the test stays exact
//!
//! The weights come from the text and a model, never from the key. Under the
//! null hypothesis (the text does not depend on the key) the per-token scores
//! of distinct (seed, token) observations are independent draws of the
//! scheme's null (SPEC §10), whatever the weights; so conditionally on the
//! weights, `S = Σ wᵢ·scoreᵢ` has a known distribution. Weights are quantized
//! to [`LEVELS`] steps ([`quantize`]) and the quantized sum *is* the
//! statistic, so nothing is approximated:
//!
//! - **binomial nulls** (kgw: a green bit; tournament: g-values, each a fair
//!   bit): observations of one weight level `l` sum to a binomial, so `S` is
//!   `Σₗ l·Kₗ` with independent `Kₗ ~ Binomial(nₗ·trials, p)`. Its upper tail
//!   is computed exactly by convolution, after exponential tilting (the
//!   distribution is reweighted by `e^{θS}` so that the observed value sits at
//!   its centre, then the tilt is undone in log space), which keeps tails far
//!   below `1e-300` accurate ([`ln_weighted_binomial_upper`]);
//! - **exponential nulls** (gumbel: `-ln(1-u)` is Exponential(1)): a sum of
//!   differently scaled exponentials has no stable closed form, so the p-value
//!   is the Chernoff bound `min_t e^{-tS}·E[e^{tΣwᵢEᵢ}]`, which is never below
//!   the true tail ([`ln_weighted_exponential_upper`]): conservative, never a
//!   normal approximation.
//!
//! The unweighted report of the same observations comes with every weighted
//! one ([`WeightedDetection::unweighted`]), so a reader sees both.

use serde::{Deserialize, Serialize};
use tracemark_core::{Null, SchemeConfig};

use super::detection::{Detection, Verdict};
use super::detector::Detector;
use crate::error::{Error, Result};
use crate::stats::{ln_dbinom, log10, p_from_ln};

/// Weights are quantized to `0, 1/LEVELS, …, 1`.
pub const LEVELS: u32 = 16;

/// The weight level (`0..=LEVELS`) of a weight in `[0, 1]`.
pub fn quantize(weight: f64) -> u32 {
    (weight.clamp(0.0, 1.0) * f64::from(LEVELS)).round() as u32
}

/// The weight in `[0, 1]` of a position whose next-token logits (before the
/// watermark) are `logits`, for a text watermarked with `config`: the scheme's
/// own answer, [`SchemeConfig::token_weight`] (kgw: the log-likelihood-ratio
/// weight of a green bit from the spike entropy; tournament and gumbel: the
/// entropy over [`tracemark_core::ENTROPY_CAP`], capped at 1).
pub fn position_weight(config: &SchemeConfig, logits: &[f32]) -> f64 {
    config.token_weight(logits)
}

/// A distribution over integers `offset..offset+probs.len()`, in linear
/// space (after tilting, everything that matters is within a few hundred
/// orders of magnitude of its largest term).
struct Dist {
    offset: u64,
    probs: Vec<f64>,
}

impl Dist {
    /// Drops leading and trailing terms below `1e-40` of the largest.
    fn trim(&mut self) {
        let max = self.probs.iter().copied().fold(0.0, f64::max);
        let floor = max * 1e-40;
        let first = self.probs.iter().position(|&p| p > floor).unwrap_or(0);
        let last = self.probs.iter().rposition(|&p| p > floor).unwrap_or(0);
        self.probs.truncate(last + 1);
        self.probs.drain(..first);
        self.offset += first as u64;
    }

    /// The distribution of `self + step·K`, `K` distributed as `other`.
    fn add_scaled(&self, other: &Dist, step: u64) -> Dist {
        let len = (self.probs.len() as u64 - 1) + step * (other.probs.len() as u64 - 1) + 1;
        let mut out = vec![0.0; len as usize];
        for (j, &q) in other.probs.iter().enumerate() {
            if q == 0.0 {
                continue;
            }
            let shift = (step * j as u64) as usize;
            for (i, &p) in self.probs.iter().enumerate() {
                out[shift + i] += p * q;
            }
        }
        let mut d = Dist {
            offset: self.offset + step * other.offset,
            probs: out,
        };
        d.trim();
        d
    }
}

/// `ln P(S ≥ s)` for `S = Σₗ l·Kₗ`, `Kₗ ~ Binomial(trials[l], p)` independent
/// (`trials[l]`: Bernoulli draws at weight level `l`; level 0 contributes
/// nothing), computed exactly (see the module documentation).
pub fn ln_weighted_binomial_upper(s: u64, trials: &[u64], p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "binomial p must be in (0, 1)");
    let levels: Vec<(u64, u64)> = trials
        .iter()
        .enumerate()
        .filter(|&(l, &n)| l > 0 && n > 0)
        .map(|(l, &n)| (l as u64, n))
        .collect();
    let max: u64 = levels.iter().map(|&(l, n)| l * n).sum();
    if s == 0 {
        return 0.0;
    }
    if s > max {
        return f64::NEG_INFINITY;
    }
    let mean = |theta: f64| -> f64 {
        levels
            .iter()
            .map(|&(l, n)| {
                let e = p * (theta * l as f64).exp();
                l as f64 * n as f64 * e / (1.0 - p + e)
            })
            .sum()
    };
    // The tilt that centres the distribution on s (none when s is below the mean).
    let target = (s as f64).min(max as f64 - 0.5);
    let mut theta = 0.0;
    if mean(0.0) < target {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while mean(hi) < target && hi < 700.0 {
            hi *= 2.0;
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mean(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        theta = lo;
    }
    // ln of the tilt's normaliser, Σ ln E[e^{θ l K}], and the tilted distribution.
    let mut ln_mgf = 0.0;
    let mut dist = Dist {
        offset: 0,
        probs: vec![1.0],
    };
    for &(l, n) in &levels {
        let e = (theta * l as f64).exp();
        let pt = if e.is_finite() { p * e / (1.0 - p + p * e) } else { 1.0 };
        ln_mgf += n as f64 * (1.0 - p + p * e).ln();
        let pt = pt.min(1.0 - 1e-300);
        // Binomial(n, pt), over the range that holds all but ~1e-40 of it.
        let m = n as f64 * pt;
        let sd = (n as f64 * pt * (1.0 - pt)).sqrt();
        let lo = (m - 14.0 * sd - 2.0).floor().max(0.0) as u64;
        let hi = ((m + 14.0 * sd + 2.0).ceil() as u64).min(n);
        let probs = (lo..=hi).map(|k| ln_dbinom(k, n, pt).exp()).collect();
        let mut b = Dist { offset: lo, probs };
        b.trim();
        dist = dist.add_scaled(&b, l);
    }
    // P(S ≥ s) = Σ_{x ≥ s} P_θ(x)·e^{-θx}·M(θ).
    let mut tail = 0.0;
    for (i, &q) in dist.probs.iter().enumerate() {
        let x = dist.offset + i as u64;
        if x >= s && q > 0.0 {
            tail += q * (-theta * (x - s) as f64).exp();
        }
    }
    if tail <= 0.0 {
        return f64::NEG_INFINITY;
    }
    (tail.ln() - theta * s as f64 + ln_mgf).min(0.0)
}

/// An upper bound on `ln P(S ≥ s)` for `S = Σₗ (l/LEVELS)·Gₗ`,
/// `Gₗ ~ Gamma(count[l], 1)` independent: the Chernoff bound
/// `min_t [-t·s - Σₗ count[l]·ln(1 - t·l/LEVELS)]` (never below the true tail).
pub fn ln_weighted_exponential_upper(s: f64, count: &[u64]) -> f64 {
    let levels: Vec<(f64, f64)> = count
        .iter()
        .enumerate()
        .filter(|&(l, &n)| l > 0 && n > 0)
        .map(|(l, &n)| (l as f64 / f64::from(LEVELS), n as f64))
        .collect();
    let mean: f64 = levels.iter().map(|&(w, n)| w * n).sum();
    if levels.is_empty() || s <= mean {
        return 0.0;
    }
    let w_max = levels.iter().map(|&(w, _)| w).fold(0.0, f64::max);
    let f = |t: f64| -> f64 { -t * s - levels.iter().map(|&(w, n)| n * (-t * w).ln_1p()).sum::<f64>() };
    // f is convex on [0, 1/w_max); its derivative -s + Σ n·w/(1-t·w) increases from -s + mean < 0.
    let deriv = |t: f64| -> f64 { -s + levels.iter().map(|&(w, n)| n * w / (1.0 - t * w)).sum::<f64>() };
    let (mut lo, mut hi) = (0.0f64, 1.0 / w_max);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if deriv(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    f(lo).min(0.0)
}

/// The weighted test of one text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightedOutcome {
    /// The test, in words.
    pub test: String,
    /// Whether the p-value is exact (binomial nulls) or a conservative bound (exponential).
    pub exact: bool,
    /// The weighted sum `Σ wᵢ·scoreᵢ`, weights quantized to `1/LEVELS`.
    pub statistic: f64,
    /// Its expectation under the null.
    pub expected: f64,
    /// Scored observations with a non-zero weight.
    pub weighted: usize,
    /// The sum of the quantized weights (the effective number of tokens).
    pub weight_total: f64,
    /// The p-value (0 when it underflows; see `log10_p`).
    pub p_value: f64,
    /// `log10` of the p-value.
    pub log10_p: f64,
    /// The verdict at the detector's alpha (inconclusive below its minimum of scored tokens).
    pub verdict: Verdict,
}

/// A weighted detection: the weighted test and the usual unweighted report of
/// the same observations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightedDetection {
    /// The weighted test.
    pub weighted: WeightedOutcome,
    /// The unweighted detection of the same text.
    pub unweighted: Detection,
}

impl Detector {
    /// Tests `completion` (after `prompt`, context only) with per-token weights:
    /// `weights[i]` in `[0, 1]` is the weight of `completion[i]`, from the
    /// model's distribution at that position ([`position_weight`]). Repeated
    /// and context-less tokens are skipped as in [`Detector::detect_ids`].
    pub fn detect_weighted(&self, prompt: &[u32], completion: &[u32], weights: &[f64]) -> Result<WeightedDetection> {
        if completion.is_empty() {
            return Err(Error::EmptyInput);
        }
        if weights.len() != completion.len() {
            return Err(Error::InvalidOption {
                name: "weights",
                message: format!(
                    "{} weights for {} tokens: give one weight per completion token",
                    weights.len(),
                    completion.len()
                ),
            });
        }
        if let Some(i) = weights.iter().position(|w| !(0.0..=1.0).contains(w)) {
            return Err(Error::InvalidOption {
                name: "weights",
                message: format!("weight {} at token {i} is not in [0, 1]", weights[i]),
            });
        }
        let obs = self.observe(prompt, completion, self.options().marks)?;
        let mut sum = WeightedSum::new(self.scheme().contract().null);
        for o in &obs.scored {
            sum.add(weights[o.position as usize], o.score);
        }
        let weighted = sum.per_level[1..].iter().sum::<u64>() as usize;
        let WeightedTail {
            test,
            exact,
            statistic,
            expected,
            weight_total,
            ln_p,
        } = sum.tail()?;
        let verdict = if weighted < self.options().min_scored {
            Verdict::Inconclusive
        } else if ln_p < self.options().alpha.ln() {
            Verdict::Detected
        } else {
            Verdict::NotDetected
        };
        Ok(WeightedDetection {
            weighted: WeightedOutcome {
                test,
                exact,
                statistic,
                expected,
                weighted,
                weight_total,
                p_value: p_from_ln(ln_p),
                log10_p: log10(ln_p),
                verdict,
            },
            unweighted: self.report(obs),
        })
    }
}

/// A weighted sum `S = Σ w·score` being accumulated: the observations per
/// weight level, and the statistic (an integer for binomial nulls, whose
/// scores are integers, so that the tail is exact).
pub(crate) struct WeightedSum {
    null: Null,
    /// `per_level[l]`: observations of weight `l / LEVELS`.
    pub(crate) per_level: Vec<u64>,
    /// `Σ l·score` (binomial nulls).
    int_statistic: u64,
    /// `Σ (l / LEVELS)·score`.
    statistic: f64,
}

/// The test of a [`WeightedSum`].
pub(crate) struct WeightedTail {
    /// The test, in words.
    pub(crate) test: String,
    /// Whether the p-value is exact (else a conservative bound).
    pub(crate) exact: bool,
    /// The observed statistic.
    pub(crate) statistic: f64,
    /// Its null mean.
    pub(crate) expected: f64,
    /// The sum of the (quantized) weights.
    pub(crate) weight_total: f64,
    /// `ln` of the p-value.
    pub(crate) ln_p: f64,
}

impl WeightedSum {
    pub(crate) fn new(null: Null) -> Self {
        WeightedSum {
            null,
            per_level: vec![0; LEVELS as usize + 1],
            int_statistic: 0,
            statistic: 0.0,
        }
    }

    /// Adds one observation of `weight` (quantized) and `score`.
    pub(crate) fn add(&mut self, weight: f64, score: f64) {
        let l = quantize(weight);
        self.per_level[l as usize] += 1;
        self.statistic += f64::from(l) / f64::from(LEVELS) * score;
        if let Null::Binomial { .. } = self.null {
            self.int_statistic += u64::from(l) * score.round() as u64;
        }
    }

    /// The exact upper tail (binomial nulls) or the conservative Chernoff
    /// bound (exponential nulls) of the sum so far.
    pub(crate) fn tail(&self) -> Result<WeightedTail> {
        let per_level = &self.per_level;
        let weight_total: f64 = per_level
            .iter()
            .enumerate()
            .map(|(l, &n)| l as f64 * n as f64)
            .sum::<f64>()
            / f64::from(LEVELS);
        let (test, exact, expected, ln_p, statistic) = match self.null {
            Null::Binomial { trials, p } => {
                let draws: Vec<u64> = per_level.iter().map(|&n| n * u64::from(trials)).collect();
                (
                    format!(
                        "exact upper tail of the weighted sum Σ w·score, w in steps of 1/{LEVELS}, \
                         scores Binomial(trials={trials}, p={p}) under the null"
                    ),
                    true,
                    weight_total * f64::from(trials) * p,
                    ln_weighted_binomial_upper(self.int_statistic, &draws, p),
                    self.int_statistic as f64 / f64::from(LEVELS),
                )
            }
            Null::Exponential => (
                format!(
                    "Chernoff bound on the upper tail of the weighted sum Σ w·score, w in steps of \
                     1/{LEVELS}, scores Exponential(1) under the null (conservative)"
                ),
                false,
                weight_total,
                ln_weighted_exponential_upper(self.statistic, per_level),
                self.statistic,
            ),
            other => {
                return Err(Error::InvalidOption {
                    name: "weights",
                    message: format!("no weighted test for the null {other:?} yet"),
                })
            }
        };
        Ok(WeightedTail {
            test,
            exact,
            statistic,
            expected,
            weight_total,
            ln_p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ln_binomial_upper, ln_gamma_upper};

    #[test]
    fn one_level_is_the_binomial_tail() {
        for &(n, p) in &[(10u64, 0.25), (200, 0.25), (5000, 0.5), (300, 0.1)] {
            for k in [0, 1, n / 4, n / 3, n / 2, n * 3 / 4, n] {
                let mut trials = vec![0u64; LEVELS as usize + 1];
                trials[5] = n;
                let got = ln_weighted_binomial_upper(5 * k, &trials, p);
                let want = ln_binomial_upper(k, n, p);
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "n={n} p={p} k={k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn mixed_levels_match_brute_force() {
        // S = 1·K1 + 3·K3, K1 ~ Bin(7, p), K3 ~ Bin(4, p): sum the joint pmf directly.
        let p = 0.25;
        let mut trials = vec![0u64; LEVELS as usize + 1];
        trials[1] = 7;
        trials[3] = 4;
        for s in 0..=19u64 {
            let mut want = 0.0;
            for a in 0..=7u64 {
                for b in 0..=4u64 {
                    if a + 3 * b >= s {
                        want += ln_dbinom(a, 7, p).exp() * ln_dbinom(b, 4, p).exp();
                    }
                }
            }
            let got = ln_weighted_binomial_upper(s, &trials, p).exp();
            assert!((got - want).abs() <= 1e-12 * want.max(1e-300), "s={s}: {got} vs {want}");
        }
    }

    #[test]
    fn far_tails_stay_finite_and_ordered() {
        let mut trials = vec![0u64; LEVELS as usize + 1];
        trials[16] = 2000;
        trials[8] = 1000;
        let a = ln_weighted_binomial_upper(16 * 1500 + 8 * 700, &trials, 0.25);
        let b = ln_weighted_binomial_upper(16 * 1600 + 8 * 700, &trials, 0.25);
        assert!(a.is_finite() && b.is_finite() && b < a && a < -300.0 * std::f64::consts::LN_10);
    }

    #[test]
    fn exponential_bound_is_above_the_exact_gamma_tail() {
        let mut count = vec![0u64; LEVELS as usize + 1];
        count[16] = 200;
        for s in [150.0, 200.0, 230.0, 260.0, 320.0, 400.0] {
            let bound = ln_weighted_exponential_upper(s, &count);
            let exact = ln_gamma_upper(200, s);
            assert!(bound >= exact - 1e-9, "s={s}: bound {bound} below exact {exact}");
            // ... and not far above: within a factor ~sqrt(2πn) at these sizes.
            assert!(bound - exact < 4.0, "s={s}: bound {bound} vs exact {exact}");
        }
    }

    #[test]
    fn quantize_clamps_and_rounds() {
        assert_eq!(quantize(-1.0), 0);
        assert_eq!(quantize(0.0), 0);
        assert_eq!(quantize(0.5), 8);
        assert_eq!(quantize(1.0), LEVELS);
        assert_eq!(quantize(7.0), LEVELS);
    }

    #[test]
    fn kgw_weight_is_zero_when_certain_and_one_when_flat() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let kgw: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse()?;
        let mut certain = vec![-100.0f32; 1000];
        certain[3] = 10.0;
        assert!(position_weight(&kgw, &certain) < 1e-6);
        let flat = vec![0.0f32; 1000];
        assert!(position_weight(&kgw, &flat) > 0.99);
        let gumbel: SchemeConfig = "gumbel:temperature=1,context=lefthash:4".parse()?;
        assert!(position_weight(&gumbel, &certain) < 1e-6);
        assert!((position_weight(&gumbel, &flat) - 1.0).abs() < 1e-12);
        assert_eq!(position_weight(&kgw, &[f32::NEG_INFINITY; 4]), 0.0);
        Ok(())
    }
}
