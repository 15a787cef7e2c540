//! # tracemark-stats
//!
//! Exact tail probabilities in log space: the statistics every tracemark
//! verdict stands on, with no dependency on the rest of tracemark. Start at
//! [`ln_binomial_upper`] and [`ln_gamma_upper`]; [`log10`] and [`p_from_ln`]
//! turn their natural logarithms into what a report prints.
//!
//! Each p-value is the exact upper tail of the null distribution of a scheme's
//! statistic, computed as a natural logarithm so that it stays finite and
//! accurate far below the smallest `f64` (1e-308): `log10_p` of 1e-2000 is
//! `-2000.0`, not `-inf`.
//!
//! ```
//! use tracemark_stats::{ln_binomial_upper, log10};
//!
//! // 180 green tokens of 200 at gamma = 0.25: far below 1e-6.
//! let l = log10(ln_binomial_upper(180, 200, 0.25));
//! assert!(l < -60.0 && l.is_finite());
//! ```
//!
//! Point probabilities use Loader's saddle-point expansion (C. Loader, "Fast
//! and accurate computation of binomial probabilities", 2000; the method of
//! R's `dbinom`/`dpois`), which keeps full relative precision for any `n`.
//! Tails are summed from their largest term outward with a ratio recurrence,
//! and switch to the complement when the tail holds more than half the mass,
//! so no sum ever cancels. `tests/reference.rs` checks the results
//! against 60-digit values computed with mpmath: p to 1e-12 relative error
//! down to 1e-300, and `log10 p` to 1e-12 relative error below that.
//!
//! These tails are written by hand because general-purpose distribution
//! crates (`statrs` included) compute in linear space and underflow to 0 below
//! 1e-308, where watermark p-values routinely are. The binomial intervals and
//! ranges below are solved on the exact tails above, so that every interval
//! agrees with the tests it judges. Summaries of many p-values for
//! experiments (Kolmogorov-Smirnov, rates, means) live in `tracemark-lab`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::f64::consts::{LN_10, PI};

/// `ln(n!) - ln(sqrt(2 pi n) (n/e)^n)` for `n >= 0`.
fn stirlerr(n: f64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    // stirlerr(k) for k = 0..=15, from R's nmath/stirlerr.c.
    const TABLE: [f64; 16] = [
        0.0,
        0.081_061_466_795_327_26,
        0.041_340_695_955_409_3,
        0.027_677_925_684_998_34,
        0.020_790_672_103_765_093,
        0.016_644_691_189_821_193,
        0.013_876_128_823_070_748,
        0.011_896_709_945_891_77,
        0.010_411_265_261_972_096,
        0.009_255_462_182_712_733,
        0.008_330_563_433_362_87,
        0.007_573_675_487_951_841,
        0.006_942_840_107_209_53,
        0.006_408_994_188_004_207,
        0.005_951_370_112_758_847_5,
        0.005_554_733_551_962_801,
    ];
    if n <= 15.0 && n.fract() == 0.0 {
        return TABLE[n as usize];
    }
    let nn = n * n;
    if n > 500.0 {
        (S0 - S1 / nn) / n
    } else if n > 80.0 {
        (S0 - (S1 - S2 / nn) / nn) / n
    } else if n > 35.0 {
        (S0 - (S1 - (S2 - S3 / nn) / nn) / nn) / n
    } else {
        (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n
    }
}

/// `x ln(x / np) + np - x`, without cancellation when `x` is close to `np`.
fn bd0(x: f64, np: f64) -> f64 {
    if (x - np).abs() < 0.1 * (x + np) {
        let v = (x - np) / (x + np);
        let mut s = (x - np) * v;
        let mut ej = 2.0 * x * v;
        let v2 = v * v;
        for j in 1..1000 {
            ej *= v2;
            let s1 = s + ej / f64::from(2 * j + 1);
            if s1 == s {
                return s1;
            }
            s = s1;
        }
        s
    } else {
        x * (x / np).ln() + np - x
    }
}

/// `ln P(X = k)` for `X ~ Binomial(n, p)`, `0 < p < 1`.
pub fn ln_dbinom(k: u64, n: u64, p: f64) -> f64 {
    let q = 1.0 - p;
    if k == 0 {
        return n as f64 * (-p).ln_1p();
    }
    if k == n {
        return n as f64 * p.ln();
    }
    let (k, n) = (k as f64, n as f64);
    let lc = stirlerr(n) - stirlerr(k) - stirlerr(n - k) - bd0(k, n * p) - bd0(n - k, n * q);
    let lf = (2.0 * PI).ln() + k.ln() + (-k / n).ln_1p();
    lc - 0.5 * lf
}

/// `ln P(Y = j)` for `Y ~ Poisson(lambda)`, `lambda > 0`.
pub fn ln_dpois(j: u64, lambda: f64) -> f64 {
    if j == 0 {
        return -lambda;
    }
    let x = j as f64;
    -stirlerr(x) - bd0(x, lambda) - 0.5 * (2.0 * PI * x).ln()
}

/// Sums a geometric-like series of term ratios starting from 1, until terms
/// stop mattering. Returns `ln(1 + r1 + r1 r2 + ...)`.
fn ln_series(mut ratio: impl FnMut(u64) -> Option<f64>) -> f64 {
    let (mut sum, mut term) = (1.0f64, 1.0f64);
    let mut i = 0;
    while let Some(r) = ratio(i) {
        term *= r;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
        i += 1;
    }
    sum.ln()
}

/// `ln P(X >= k)` for `X ~ Binomial(n, p)`.
pub fn ln_binomial_upper(k: u64, n: u64, p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "binomial p must be in (0, 1)");
    if k == 0 {
        return 0.0;
    }
    if k > n {
        return f64::NEG_INFINITY;
    }
    let q = 1.0 - p;
    let odds = p / q;
    if k as f64 > n as f64 * p {
        // Sum upward from the largest term of the tail: t(j+1)/t(j) = (n-j)/(j+1) * p/q.
        ln_dbinom(k, n, p)
            + ln_series(|i| {
                let j = k + i;
                (j < n).then(|| (n - j) as f64 / (j + 1) as f64 * odds)
            })
    } else {
        // The tail holds at least about half the mass: 1 - P(X <= k-1), summed downward.
        let m = k - 1;
        let lower = ln_dbinom(m, n, p)
            + ln_series(|i| {
                let j = m.checked_sub(i)?;
                (j > 0).then(|| j as f64 / (n - j + 1) as f64 / odds)
            });
        (-lower.exp()).ln_1p()
    }
}

/// `ln P(G >= s)` for `G ~ Gamma(n, 1)` with integer shape `n >= 1`, i.e.
/// `ln P(Poisson(s) <= n - 1)`.
pub fn ln_gamma_upper(n: u64, s: f64) -> f64 {
    assert!(n >= 1, "gamma shape must be at least 1");
    if s <= 0.0 {
        return 0.0;
    }
    let m = n - 1;
    if s > m as f64 {
        // Sum downward from the largest term: P(j-1)/P(j) = j / s.
        ln_dpois(m, s)
            + ln_series(|i| {
                let j = m.checked_sub(i)?;
                (j > 0).then(|| j as f64 / s)
            })
    } else {
        // 1 - P(Poisson >= n), summed upward: P(j+1)/P(j) = s / (j+1).
        let upper = ln_dpois(n, s) + ln_series(|i| Some(s / (n + i + 1) as f64));
        (-upper.exp()).ln_1p()
    }
}

/// Natural log to base-10 log.
pub fn log10(ln_p: f64) -> f64 {
    ln_p / LN_10
}

/// The p-value itself from its log (0 when it underflows `f64`).
pub fn p_from_ln(ln_p: f64) -> f64 {
    ln_p.exp()
}

/// Holm's step-down adjusted p-values (family-wise error control for any
/// dependence between the tests), in the order of the input.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let m = p.len() as f64;
    let mut adjusted = vec![1.0; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank as f64) * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// [`holm_adjust`] in log space: adjusted `ln p`, for p-values too small for `f64`.
pub fn holm_adjust_ln(ln_p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..ln_p.len()).collect();
    order.sort_by(|&a, &b| ln_p[a].total_cmp(&ln_p[b]).then(a.cmp(&b)));
    let m = ln_p.len() as f64;
    let mut adjusted = vec![0.0; ln_p.len()];
    let mut running = f64::NEG_INFINITY;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank as f64).ln() + ln_p[i]).min(0.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The central range of Binomial(n, p) holding at least `coverage` of its
/// mass, split evenly between the tails: the smallest `lo` with
/// `P(X <= lo) > (1 - coverage) / 2` and the smallest `hi` with
/// `P(X > hi) <= (1 - coverage) / 2`. A count outside `lo..=hi` rejects
/// "the rate is p" at level `1 - coverage` (exact, two-sided): e.g. how many
/// of n independent exact tests may fall below alpha (`p = alpha`).
/// Computed from the exact tails in log space.
///
/// # Panics
/// If `p` is not in (0, 1) or `coverage` not in (0, 1).
pub fn binomial_central_range(n: u64, p: f64, coverage: f64) -> (u64, u64) {
    assert!(coverage > 0.0 && coverage < 1.0, "coverage must be in (0, 1)");
    let tail = (1.0 - coverage) / 2.0;
    // P(X > k) = P(X >= k + 1).
    let above = |k: u64| ln_binomial_upper(k + 1, n, p).exp();
    let lo = (0..=n).find(|&k| above(k) < 1.0 - tail).unwrap_or(n);
    let hi = (0..=n).find(|&k| above(k) <= tail).unwrap_or(n);
    (lo, hi)
}

/// The critical count of the exact binomial test at level `alpha`: the
/// smallest `k` with `P(Binomial(n, p) >= k) < alpha`, or `None` when no count
/// up to `n` is that unlikely. (The upper tail falls with `k`: bisection.)
pub fn binomial_critical(n: u64, p: f64, alpha: f64) -> Option<u64> {
    let ln_alpha = alpha.ln();
    let (mut lo, mut hi) = (0u64, n + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ln_binomial_upper(mid, n, p) < ln_alpha {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo <= n).then_some(lo)
}

/// The exact (Clopper–Pearson) `confidence` interval of a binomial
/// proportion after `k` successes in `n` trials: the `p` at which
/// `P(X >= k) = (1 - confidence) / 2` and the `p` at which
/// `P(X <= k) = (1 - confidence) / 2`, solved by bisection on the verifier's
/// own exact binomial tails ([`ln_binomial_upper`]). (`statrs`' incomplete-beta
/// quantile, the usual route, did not return on some intervals of the 10-million-test
/// calibration; bisection on the exact tails always ends.)
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let ln_tail = ((1.0 - confidence) / 2.0).ln();
    // The p in (0, 1) where `rising(p)` (increasing in p) crosses `target`.
    let solve = |target: f64, rising: &dyn Fn(f64) -> f64| {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if rising(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    let lo = if k == 0 {
        0.0
    } else {
        solve(ln_tail, &|p| ln_binomial_upper(k, n, p))
    };
    let hi = if k >= n {
        1.0
    } else {
        // ln P(X <= k) falls with p: bisect on its negation.
        solve(-ln_tail, &|p| -(-ln_binomial_upper(k + 1, n, p).exp_m1()).ln())
    };
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_binomial_upper(k: u64, n: u64, p: f64) -> f64 {
        (k..=n).map(|j| ln_dbinom(j, n, p).exp()).sum::<f64>().ln()
    }

    #[test]
    fn dbinom_sums_to_one() {
        for (n, p) in [(1u64, 0.5), (10, 0.25), (200, 0.1), (1000, 0.9)] {
            let total: f64 = (0..=n).map(|k| ln_dbinom(k, n, p).exp()).sum();
            assert!((total - 1.0).abs() < 1e-12, "n={n} p={p}: {total}");
        }
    }

    #[test]
    fn tails_agree_with_brute_force_sums() {
        for (n, p) in [(1u64, 0.25), (37, 0.25), (200, 0.5), (1000, 0.1)] {
            for k in 0..=n {
                let a = ln_binomial_upper(k, n, p);
                let b = brute_binomial_upper(k, n, p);
                if b > -700.0 {
                    assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "n={n} k={k}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn gamma_tail_of_shape_one_is_exponential() {
        for s in [0.0, 0.1, 1.0, 5.0, 100.0, 5000.0] {
            assert!((ln_gamma_upper(1, s) - (-s)).abs() < 1e-12, "{s}");
        }
    }

    #[test]
    fn binomial_critical_is_the_first_count_below_alpha() {
        for (n, p, alpha) in [(0, 0.25, 0.01), (10, 0.25, 1e-6), (200, 0.25, 1e-3), (6000, 0.5, 1e-4)] {
            let linear = (0..=n).find(|&k| ln_binomial_upper(k, n, p) < f64::ln(alpha));
            assert_eq!(binomial_critical(n, p, alpha), linear, "n={n} p={p} alpha={alpha}");
        }
    }

    #[test]
    fn holm_matches_hand_computation() {
        let adj = holm_adjust(&[0.01, 0.04, 0.03, 0.5]);
        assert_eq!(adj, vec![0.04, 0.09, 0.09, 0.5]);
        let ln: Vec<f64> = [0.01f64, 0.04, 0.03, 0.5].iter().map(|p| p.ln()).collect();
        for (a, b) in holm_adjust_ln(&ln).iter().zip(&adj) {
            assert!((a.exp() - b).abs() < 1e-12);
        }
    }

    /// The central range from summing the pmf from both ends (the
    /// distillation report's former implementation).
    fn brute_central_range(n: u64, p: f64, tail: f64) -> (u64, u64) {
        let pmf: Vec<f64> = (0..=n).map(|k| ln_dbinom(k, n, p).exp()).collect();
        let (mut lo, mut below) = (0, 0.0);
        while lo < n && below + pmf[lo as usize] <= tail {
            below += pmf[lo as usize];
            lo += 1;
        }
        let (mut hi, mut above) = (n, 0.0);
        while hi > 0 && above + pmf[hi as usize] <= tail {
            above += pmf[hi as usize];
            hi -= 1;
        }
        (lo, hi)
    }

    #[test]
    fn central_range_matches_pmf_sums() {
        for (n, p) in [
            (1000u64, 1e-2),
            (1000, 1e-3),
            (3000, 0.01),
            (3000, 0.05),
            (24, 0.5),
            (10, 0.3),
        ] {
            assert_eq!(
                binomial_central_range(n, p, 0.99),
                brute_central_range(n, p, 0.005),
                "n={n} p={p}"
            );
        }
        // Binomial(1000, 0.01): mean 10, the 99% range is 3..=19.
        assert_eq!(binomial_central_range(1000, 0.01, 0.99), (3, 19));
    }
}
