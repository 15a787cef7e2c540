//! # tracemark-stats
//!
//! Exact tail probabilities in log space: the statistics every tracemark
//! verdict stands on, with no dependency on the rest of tracemark. Start at
//! [`ln_binomial_upper`] and [`ln_gamma_upper`] (and, for the tails of
//! foreign schemes' statistics, [`ln_gamma_upper_real`],
//! [`ln_weighted_gamma_upper`] and [`ln_normal_upper`]); [`log10`] and [`p_from_ln`]
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

/// `ln Γ(a)` for real `a > 0`: shifted up to `a >= 16`, then Stirling's
/// series (the [`stirlerr`] expansion, five terms: error below 1e-17 there).
fn ln_gamma(a: f64) -> f64 {
    let (mut a, mut product) = (a, 1.0f64);
    while a < 16.0 {
        product *= a;
        a += 1.0;
    }
    // ln Γ(a) = ln(a!) - ln a, and ln(a!) = stirlerr(a) + ln sqrt(2 pi a) + a ln a - a.
    let nn = a * a;
    const S: [f64; 5] = [1.0 / 12.0, 1.0 / 360.0, 1.0 / 1260.0, 1.0 / 1680.0, 1.0 / 1188.0];
    let series = (S[0] - (S[1] - (S[2] - (S[3] - S[4] / nn) / nn) / nn) / nn) / a;
    series + 0.5 * (2.0 * PI / a).ln() + a * a.ln() - a - product.ln()
}

/// `ln Q(shape, s) = ln P(G >= s)` for `G ~ Gamma(shape, 1)` with real
/// `shape > 0` (the regularized upper incomplete gamma function).
///
/// Below `s = shape + 1` the lower tail's power series is summed and its
/// complement taken (the upper tail holds at least about half the mass
/// there, so nothing cancels); above, Lentz's continued fraction gives the
/// upper tail itself, in log space, finite far below 1e-308. For an integer
/// shape [`ln_gamma_upper`] is exact by a finite sum and is to be preferred.
pub fn ln_gamma_upper_real(shape: f64, s: f64) -> f64 {
    assert!(
        shape > 0.0 && shape.is_finite(),
        "gamma shape must be positive and finite"
    );
    if s <= 0.0 {
        return 0.0;
    }
    let ln_prefactor = -s + shape * s.ln() - ln_gamma(shape);
    if s < shape + 1.0 {
        // P(shape, s) = e^-s s^shape / Γ(shape) * sum_k s^k / (shape (shape+1) ... (shape+k)).
        let (mut term, mut total, mut a) = (1.0 / shape, 1.0 / shape, shape);
        for _ in 0..1_000_000 {
            a += 1.0;
            term *= s / a;
            total += term;
            if term.abs() < total.abs() * 1e-17 {
                break;
            }
        }
        let lower = (ln_prefactor + total.ln()).exp().min(1.0);
        return (-lower).ln_1p();
    }
    // Q(shape, s) = e^-s s^shape / Γ(shape) * 1 / (s + 1 - shape - 1 (1 - shape) / (s + 3 - shape - ...)).
    const TINY: f64 = 1e-300;
    let mut b = s + 1.0 - shape;
    let (mut c, mut d) = (1.0 / TINY, 1.0 / b);
    let mut h = d;
    for i in 1..1_000_000 {
        let an = -f64::from(i) * (f64::from(i) - shape);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (ln_prefactor + h.ln()).min(0.0)
}

/// `ln P(Z >= z)` for a standard normal `Z`: `erfc(z / sqrt 2) / 2`, as
/// `Q(1/2, z^2 / 2) / 2` (the upper tail of [`ln_gamma_upper_real`]) above
/// 0 and its complement below, so it stays finite for any `z`. A normal tail
/// is never a tracemark test; the owners of some foreign watermarks report
/// one (transformers' KGW detector), and their p-value is reproduced with it.
pub fn ln_normal_upper(z: f64) -> f64 {
    assert!(!z.is_nan(), "z must not be NaN");
    let half_tail = ln_gamma_upper_real(0.5, 0.5 * z * z) - core::f64::consts::LN_2;
    if z >= 0.0 {
        half_tail
    } else {
        (-half_tail.exp()).ln_1p()
    }
}

/// `ln P(a G + b G' >= total)` for independent `G, G' ~ Gamma(n, 1)` and
/// weights `a, b >= 0` (not both 0): the exact tail of the sum of `n` scores
/// `a E + b E'` with `E, E'` independent Exponential(1).
///
/// With `lo = min(a, b) < hi = max(a, b)` and `p = lo / hi`, an Exponential
/// of mean `hi` is a Geometric(p) number of Exponentials of mean `lo`, so the
/// sum is `lo` times a Gamma(2n + J, 1) with `J ~ NegativeBinomial(n, p)`, and
/// the tail is the positive series `sum_j P(J = j) Q(2n + j, total / lo)`:
/// no cancellation, every term in log space (the negative-binomial mass as
/// `n / (n + j)` times a binomial point probability, `Q` accumulated upward
/// from [`ln_gamma_upper`] by Poisson point probabilities). The series stops
/// where the rest of the negative-binomial mass, bounded by a geometric series
/// and added whole, is below `e^-46` of the sum: the result is an upper bound
/// of the tail within a relative `1e-20`, never below it.
pub fn ln_weighted_gamma_upper(n: u64, a: f64, b: f64, total: f64) -> f64 {
    assert!(n >= 1, "gamma shape must be at least 1");
    assert!(
        a >= 0.0 && b >= 0.0 && a + b > 0.0,
        "weights must be non-negative, not both 0"
    );
    if total <= 0.0 {
        return 0.0;
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if lo == 0.0 {
        return ln_gamma_upper(n, total / hi);
    }
    if lo == hi {
        return ln_gamma_upper(2 * n, total / lo);
    }
    let p = lo / hi;
    let q = 1.0 - p;
    let x = total / lo;
    let nf = n as f64;
    let ln_nb = |j: u64| (nf / (nf + j as f64)).ln() + ln_dbinom(n, n + j, p);
    // Running log-sum-exp of the terms: sum = e^top * scaled.
    let mut ln_q = ln_gamma_upper(2 * n, x);
    let (mut top, mut scaled) = (f64::NEG_INFINITY, 0.0f64);
    let mut j = 0u64;
    loop {
        let term = ln_nb(j) + ln_q;
        if term > top {
            scaled = scaled * (top - term).exp() + 1.0;
            top = term;
        } else {
            scaled += (term - top).exp();
        }
        let ln_sum = top + scaled.ln();
        // P(J > j) <= P(J = j + 1) / (1 - r): the pmf ratio (n + i) q / (i + 1) falls with i.
        let ratio = (nf + j as f64 + 1.0) * q / (j as f64 + 2.0);
        if ratio < 1.0 {
            let ln_rest = ln_nb(j + 1) - (-ratio).ln_1p();
            if ln_rest < ln_sum - 46.0 {
                let (big, small) = if ln_rest > ln_sum {
                    (ln_rest, ln_sum)
                } else {
                    (ln_sum, ln_rest)
                };
                return (big + (small - big).exp().ln_1p()).min(0.0);
            }
        }
        // Q(k + 1, x) = Q(k, x) + P(Poisson(x) = k), k = 2n + j.
        let step = ln_dpois(2 * n + j, x);
        let (big, small) = if step > ln_q { (step, ln_q) } else { (ln_q, step) };
        ln_q = (big + (small - big).exp().ln_1p()).min(0.0);
        j += 1;
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
    fn ln_gamma_matches_factorials_and_half_integers() {
        let mut ln_fact = 0.0f64;
        for n in 1..200u32 {
            assert!(
                (ln_gamma(f64::from(n)) - ln_fact).abs() <= 1e-13 * ln_fact.abs().max(1.0),
                "{n}"
            );
            ln_fact += f64::from(n).ln();
        }
        // Γ(1/2) = sqrt(pi), Γ(7/2) = 15 sqrt(pi) / 8.
        assert!((ln_gamma(0.5) - 0.5 * PI.ln()).abs() < 1e-14);
        assert!((ln_gamma(3.5) - (15.0 / 8.0 * PI.sqrt()).ln()).abs() < 1e-14);
    }

    #[test]
    fn real_shape_gamma_tail_agrees_with_the_integer_one() {
        for n in [1u64, 2, 7, 30, 100, 1000] {
            for s in [0.01, 0.5, 1.0, 5.0, 29.0, 31.5, 120.0, 990.0, 1500.0, 20_000.0] {
                let (a, b) = (ln_gamma_upper_real(n as f64, s), ln_gamma_upper(n, s));
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "n={n} s={s}: {a} vs {b}");
            }
        }
        // Q(1/2, s) = erfc(sqrt(s)); erfc(1) = 0.157299207050285130658...
        assert!((ln_gamma_upper_real(0.5, 1.0) - 0.157_299_207_050_285_13f64.ln()).abs() < 1e-13);
    }

    #[test]
    fn normal_tail_matches_known_values() {
        // 1 - Phi(z) for z = 0, 1, 2.58..., 5, 40 and -1.
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_253_931_457_05),
            (2.581_988_897_471_611, 0.004_911_637_253_759_627),
            (5.0, 2.866_515_718_791_939e-7),
            (-1.0, 0.841_344_746_068_542_9),
        ] {
            let got = ln_normal_upper(z).exp();
            assert!((got - p).abs() <= 1e-13 * p, "z={z}: {got} vs {p}");
        }
        // ln(1 - Phi(40)) = -804.608442013754...: finite far below 1e-308.
        assert!((ln_normal_upper(40.0) + 804.608_442_013_753_8).abs() < 1e-9);
    }

    #[test]
    fn weighted_gamma_tail_of_one_token_is_closed_form() {
        // P(aE + bE' >= t) = (a e^(-t/a) - b e^(-t/b)) / (a - b) for a != b.
        for (a, b) in [(0.9f64, 0.1f64), (0.7, 0.3), (0.1, 0.9), (0.55, 0.45)] {
            for t in [0.01f64, 0.5, 1.0, 3.0, 10.0, 40.0] {
                let want = ((a * (-t / a).exp() - b * (-t / b).exp()) / (a - b)).ln();
                let got = ln_weighted_gamma_upper(1, a, b, t);
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "a={a} t={t}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn weighted_gamma_tail_reduces_to_gamma_at_the_edges() {
        for (n, t) in [(1u64, 0.5), (10, 25.0), (500, 700.0)] {
            assert_eq!(ln_weighted_gamma_upper(n, 1.0, 0.0, t), ln_gamma_upper(n, t));
            assert_eq!(ln_weighted_gamma_upper(n, 0.5, 0.5, t), ln_gamma_upper(2 * n, 2.0 * t));
            assert_eq!(ln_weighted_gamma_upper(n, 0.9, 0.1, 0.0), 0.0);
        }
        // Finite far below 1e-308.
        let deep = ln_weighted_gamma_upper(5000, 0.8, 0.2, 20_000.0);
        assert!(deep.is_finite() && log10(deep) < -1000.0, "{deep}");
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
