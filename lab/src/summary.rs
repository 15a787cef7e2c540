//! Summaries of many tests for the experiments' reports: how uniform a set of
//! p-values is (Kolmogorov-Smirnov), detection and false-positive rates,
//! means and medians. Never a verdict: the verdicts' exact tails are in
//! `tracemark-stats`.
//!
//! `statrs` has no Kolmogorov distribution: [`ks_uniform`]'s critical value is
//! its asymptotic 0.999 quantile (1.9495, rounded to 1.95, over sqrt(n);
//! Smirnov 1948), a check on many p-values, never a verdict.

/// The Kolmogorov-Smirnov distance of p-values from the uniform
/// distribution, and its critical value at level 1e-3 (the Kolmogorov
/// distribution's asymptotic 0.999 quantile 1.9495, rounded: `1.95 / sqrt(n)`): p-values of
/// a calibrated exact test pass when the distance is below it.
pub fn ks_uniform(p: &[f64]) -> (f64, f64) {
    (ks_distance(p), ks_critical(p.len()))
}

/// The Kolmogorov-Smirnov critical distance at level 1e-3 for `n` values
/// (see [`ks_uniform`]).
pub fn ks_critical(n: usize) -> f64 {
    1.95 / (n as f64).sqrt()
}

fn ks_distance(p: &[f64]) -> f64 {
    let mut v = p.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| ((i as f64 + 1.0) / n - x).max(x - i as f64 / n))
        .fold(0.0, f64::max)
}

/// The share of tests with `log10 p < log10(alpha)`: the detection rate (on
/// marked inputs) or the false-positive rate (on unmarked ones) at level
/// `alpha`. NaN for no tests.
pub fn rate_below(log10_p: &[f64], alpha: f64) -> f64 {
    if log10_p.is_empty() {
        return f64::NAN;
    }
    log10_p.iter().filter(|&&l| l < alpha.log10()).count() as f64 / log10_p.len() as f64
}

/// Mean and standard error of the mean (NaN for no data, SE 0 for one value).
pub fn mean_se(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The median (NaN for no data).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_and_summaries() {
        let (d, crit) = ks_uniform(&[0.1, 0.3, 0.5, 0.7, 0.9]);
        assert!((d - 0.1).abs() < 1e-12 && (crit - 1.95 / 5f64.sqrt()).abs() < 1e-12);
        assert_eq!(ks_uniform(&[1e-9; 4]).0, 1.0 - 1e-9);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(rate_below(&[-7.0, -2.0, -0.5], 1e-6), 1.0 / 3.0);
        assert!(rate_below(&[], 0.01).is_nan() && median(&[]).is_nan());
        let (m, se) = mean_se(&[1.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (se - 1.0).abs() < 1e-12);
    }
}
