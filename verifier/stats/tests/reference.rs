//! The exact tails against 60-digit references (testdata/stats/reference.json,
//! written by testdata/stats/gen_reference.py with mpmath).

use serde_json::Value;
use tracemark_stats::{
    ln_binomial_upper, ln_gamma_upper, ln_gamma_upper_real, ln_normal_upper, ln_weighted_gamma_upper, log10,
};

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/stats/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference.json")).expect("JSON")
}

/// What docs/verifier.md promises: p to 1e-12 relative error down to 1e-300,
/// and finite, with log10 p to 1e-12 relative error, far below.
///
/// Above 1e-300 the check is on `ln p`: `|d ln p| <= 1e-12` bounds the
/// relative error of p itself (`|dp / p| = |exp(d ln p) - 1|`). The
/// reference's own rounding to `f64` and the product with `ln 10` cost at most
/// about 2e-13 at `ln p = -690`, inside the tolerance; the measured worst case
/// is 5.4e-13 (Binomial n=10000 k=6000 p=0.5).
const RELATIVE: f64 = 1e-12;

fn check(got_ln: f64, want_log10: f64, what: &str) {
    let got = log10(got_ln);
    assert!(got.is_finite(), "{what}: log10 p = {got}");
    if want_log10 >= -300.0 {
        let d_ln = (got_ln - want_log10 * core::f64::consts::LN_10).abs();
        assert!(
            d_ln <= RELATIVE,
            "{what}: log10 p {got} vs {want_log10} (relative error of p {d_ln:e})"
        );
    } else {
        let rel = (got - want_log10).abs() / want_log10.abs();
        assert!(
            rel <= RELATIVE,
            "{what}: log10 p {got} vs {want_log10} (relative error of log10 p {rel:e})"
        );
    }
}

#[test]
fn binomial_upper_tail_matches_reference() {
    let r = reference();
    let cases = r["binomial_upper"].as_array().expect("cases");
    assert!(cases.len() > 400);
    let mut beyond_2000 = 0;
    for c in cases {
        let (n, k, p) = (
            c["n"].as_u64().expect("n"),
            c["k"].as_u64().expect("k"),
            c["p"].as_f64().expect("p"),
        );
        let want: f64 = c["log10_p"].as_str().expect("str").parse().expect("number");
        beyond_2000 += usize::from(want < -2000.0);
        check(ln_binomial_upper(k, n, p), want, &format!("Binomial n={n} k={k} p={p}"));
    }
    assert!(beyond_2000 > 10, "the reference must reach far below 1e-2000");
}

#[test]
fn gamma_upper_tail_matches_reference() {
    let r = reference();
    let cases = r["gamma_upper"].as_array().expect("cases");
    assert!(cases.len() > 100);
    for c in cases {
        let (n, s) = (c["n"].as_u64().expect("n"), c["s"].as_f64().expect("s"));
        let want: f64 = c["log10_p"].as_str().expect("str").parse().expect("number");
        check(ln_gamma_upper(n, s), want, &format!("Gamma n={n} s={s}"));
    }
}

/// The tails of foreign schemes' statistics (tracemark.interop's readers):
/// the same promise, 1e-12 relative error of p (`|d ln p|`) down to 1e-300
/// and of `log10 p` below.
const FOREIGN_RELATIVE: f64 = RELATIVE;

fn check_foreign(got_ln: f64, want_log10: f64, what: &str) {
    let got = log10(got_ln);
    assert!(got.is_finite(), "{what}: log10 p = {got}");
    let err = if want_log10 >= -300.0 {
        (got_ln - want_log10 * core::f64::consts::LN_10).abs()
    } else {
        (got - want_log10).abs() / want_log10.abs()
    };
    assert!(
        err <= FOREIGN_RELATIVE,
        "{what}: log10 p {got} vs {want_log10} (error {err:e})"
    );
}

#[test]
fn real_shape_gamma_upper_tail_matches_reference() {
    let r = reference();
    let cases = r["gamma_upper_real"].as_array().expect("cases");
    assert!(cases.len() > 50);
    for c in cases {
        let (a, s) = (c["shape"].as_f64().expect("shape"), c["s"].as_f64().expect("s"));
        let want: f64 = c["log10_p"].as_str().expect("str").parse().expect("number");
        check_foreign(ln_gamma_upper_real(a, s), want, &format!("Gamma shape={a} s={s}"));
    }
}

#[test]
fn weighted_gamma_upper_tail_matches_reference() {
    let r = reference();
    let cases = r["weighted_gamma_upper"].as_array().expect("cases");
    assert!(cases.len() > 50);
    for c in cases {
        let n = c["n"].as_u64().expect("n");
        let (a, b) = (c["a"].as_f64().expect("a"), c["b"].as_f64().expect("b"));
        let total = c["total"].as_f64().expect("total");
        let want: f64 = c["log10_p"].as_str().expect("str").parse().expect("number");
        check_foreign(
            ln_weighted_gamma_upper(n, a, b, total),
            want,
            &format!("{a} G + {b} G', n={n}, total={total}"),
        );
    }
}

#[test]
fn normal_upper_tail_matches_reference() {
    let r = reference();
    for c in r["normal_upper"].as_array().expect("cases") {
        let z = c["z"].as_f64().expect("z");
        let want: f64 = c["log10_p"].as_str().expect("str").parse().expect("number");
        check_foreign(ln_normal_upper(z), want, &format!("normal z={z}"));
    }
}
