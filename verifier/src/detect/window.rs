//! Windowed detection: the most significant contiguous span of a longer text
//! (a watermarked paragraph pasted into human text).
//!
//! Windows are runs of consecutive scored observations. Their lengths form a
//! geometric grid (factor sqrt(2), from `min_scored` up to all observations),
//! and windows of length `L` start every `max(1, L / 4)` observations (plus one
//! flush with the end): any span of `S >= min_scored` observations contains an
//! examined window of at least `S / (5/4 * sqrt 2)`, about 57% of it. Every examined
//! window gets its exact p-value; the reported p-value is the smallest one
//! multiplied by the number of windows examined (Bonferroni), which bounds the
//! family-wise false-positive rate whatever the dependence between windows.
//!
//! The verdict of a detection with a window search stands on a family of two
//! tests, the whole text and the window search: its p-value is the smaller of
//! the two, times 2 (Bonferroni), so a significant window decides the verdict
//! and the family-wise false-positive rate stays at most alpha.

use serde::{Deserialize, Serialize};

use super::observe::{Scored, Scorer};
use crate::error::{Error, Result};
use crate::stats;

/// Options of the window search.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowOptions {
    /// The shortest window, in scored tokens.
    pub min_scored: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        Self { min_scored: 32 }
    }
}

impl WindowOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.min_scored < 2 {
            return Err(Error::InvalidOption {
                name: "window min_scored",
                message: "a window needs at least 2 scored tokens (32 is a good default)".into(),
            });
        }
        Ok(())
    }
}

/// The most significant window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WindowReport {
    /// First completion token of the window.
    pub start: usize,
    /// One past the last completion token of the window.
    pub end: usize,
    /// Byte range in the input text, when the input was text.
    pub span: Option<(usize, usize)>,
    /// Scored tokens in the window.
    pub scored: usize,
    /// The window's statistic.
    pub statistic: f64,
    /// `log10` of the window's own exact p-value (not corrected).
    pub log10_p_uncorrected: f64,
    /// How many windows were examined.
    pub windows_examined: usize,
    /// The multiple-testing correction applied.
    pub correction: String,
    /// `log10` of the corrected p-value.
    pub log10_p: f64,
    /// The corrected p-value (0 if it underflows `f64`).
    pub p_value: f64,
    /// `log10` of the p-value the verdict stands on when a window is
    /// searched: the smaller of the whole text's p-value and the window's
    /// corrected p-value, times 2 (Bonferroni over the two tests, valid
    /// whatever their dependence).
    pub family_log10_p: f64,
    /// Whether the window, rather than the whole text, gave the family p-value.
    pub decides_verdict: bool,
}

impl WindowReport {
    /// The family p-value in natural log.
    pub(crate) fn family_ln_p(&self) -> f64 {
        self.family_log10_p * core::f64::consts::LN_10
    }

    /// The family correction in words.
    pub fn family_correction(&self) -> &'static str {
        "Bonferroni over 2 tests (the whole text and the window search)"
    }
}

/// Searches the windows of `scored`; `None` if there are fewer than `min_scored`
/// observations. `whole_ln_p` is the whole text's p-value, which forms the
/// verdict's family with the window search.
pub(crate) fn search(
    scorer: &Scorer,
    scored: &[Scored],
    options: &WindowOptions,
    whole_ln_p: f64,
) -> Option<WindowReport> {
    let n = scored.len();
    if n < options.min_scored {
        return None;
    }
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for s in scored {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + s.score);
    }
    let mut lengths = Vec::new();
    let mut len = options.min_scored as f64;
    while (len.round() as usize) < n {
        let l = len.round() as usize;
        if lengths.last() != Some(&l) {
            lengths.push(l);
        }
        len *= core::f64::consts::SQRT_2;
    }
    lengths.push(n);

    let mut examined = 0usize;
    // (ln p, start, length, total)
    let mut best: Option<(f64, usize, usize, f64)> = None;
    for &l in &lengths {
        let stride = (l / 4).max(1);
        let mut starts: Vec<usize> = (0..=n - l).step_by(stride).collect();
        if starts.last() != Some(&(n - l)) {
            starts.push(n - l);
        }
        for s in starts {
            examined += 1;
            let total = prefix[s + l] - prefix[s];
            let tail = scorer.test(l as u64, total);
            // Windows at or below their expectation cannot be the most significant
            // unless every window is; skip their exact tails (about half of them).
            if total <= tail.expected && best.is_some() {
                continue;
            }
            if best.is_none_or(|(b, ..)| tail.ln_p < b) {
                best = Some((tail.ln_p, s, l, total));
            }
        }
    }
    let (ln_p, s, l, total) = best?;
    let corrected = ((examined as f64).ln() + ln_p).min(0.0);
    let family = (core::f64::consts::LN_2 + corrected.min(whole_ln_p)).min(0.0);
    Some(WindowReport {
        start: scored[s].position as usize,
        end: scored[s + l - 1].position as usize + 1,
        span: None,
        scored: l,
        statistic: total,
        log10_p_uncorrected: stats::log10(ln_p),
        windows_examined: examined,
        correction: format!("Bonferroni over {examined} windows"),
        log10_p: stats::log10(corrected),
        p_value: stats::p_from_ln(corrected),
        family_log10_p: stats::log10(family),
        decides_verdict: corrected < whole_ln_p,
    })
}
