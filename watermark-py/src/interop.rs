//! Bindings of `tracemark_verifier::interop` (the keyed values and owners'
//! p-values of watermarks others deploy) and of the tails
//! `tracemark.interop` tests them with, for the Python readers of
//! transformers' KGW, SynthID-Text and vLLM's Gumbel watermarks.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use tracemark_verifier::interop::{hf_kgw, synthid, vllm};
use tracemark_verifier::stats;

use crate::errors::InvalidParameterError;

/// A float64 array handed to Python.
type F64Array<'py> = Bound<'py, PyArray1<f64>>;

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|e| InvalidParameterError::new_err(format!("{name}: a C-contiguous array, {e}")))
}

/// vLLM's Philox word (uint32) of every completion token (`ids`, int64),
/// under the owner's contexts: the `context_width` previous ids, -1 before
/// the first.
#[pyfunction]
pub(crate) fn vllm_words<'py>(
    py: Python<'py>,
    key: u64,
    context_width: usize,
    ids: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let ids = slice(&ids, "ids")?;
    let words = py.detach(|| vllm::words(key, context_width, ids));
    Ok(PyArray1::from_vec(py, words))
}

/// vLLM's float32 uniform `(m + 1) / (2^24 + 1)` of every word.
#[pyfunction]
pub(crate) fn vllm_uniforms<'py>(
    py: Python<'py>,
    words: PyReadonlyArray1<'py, u32>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let words = slice(&words, "words")?;
    let u: Vec<f32> = py.detach(|| words.iter().map(|&w| vllm::uniform(w)).collect());
    Ok(PyArray1::from_vec(py, u))
}

/// Per word: the owner's score `-ln(1 - u)` and the discrete-exact score
/// `-ln P(M >= m)` (both float64).
#[pyfunction]
pub(crate) fn vllm_scores<'py>(
    py: Python<'py>,
    words: PyReadonlyArray1<'py, u32>,
) -> PyResult<(F64Array<'py>, F64Array<'py>)> {
    let words = slice(&words, "words")?;
    let (owner, exact): (Vec<f64>, Vec<f64>) = py.detach(|| {
        words
            .iter()
            .map(|&w| (vllm::owner_score(w), vllm::exact_score(w)))
            .unzip()
    });
    Ok((PyArray1::from_vec(py, owner), PyArray1::from_vec(py, exact)))
}

/// vLLM's `derive_watermark_key(key, domain)`.
#[pyfunction]
pub(crate) fn vllm_derive_key(key: u64, domain: &[u8]) -> u64 {
    vllm::derive_key(key, domain)
}

/// vLLM's `GumbelWatermarkDetector` p-value of `score` over `n` tokens.
#[pyfunction]
pub(crate) fn vllm_owner_p_value(score: f64, n: u64) -> f64 {
    vllm::owner_p_value(score, n)
}

/// vLLM's `DualKeyGumbelWatermarkDetector` p-value of `score` over `n`
/// tokens with the owner's `alpha`.
#[pyfunction]
pub(crate) fn vllm_dual_key_owner_p_value(score: f64, n: u64, alpha: f64) -> PyResult<f64> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(InvalidParameterError::new_err(format!(
            "alpha must be in [0, 1], got {alpha}"
        )));
    }
    Ok(vllm::dual_key_owner_p_value(score, n, alpha))
}

/// `log10 P(a G + b G' >= total)` for independent `G, G' ~ Gamma(n, 1)`:
/// the exact tail of `n` scores `a E + b E'`, in log space.
#[pyfunction]
pub(crate) fn weighted_gamma_log10_upper(n: u64, a: f64, b: f64, total: f64) -> PyResult<f64> {
    if n == 0 || !(a >= 0.0 && b >= 0.0 && a + b > 0.0) || total.is_nan() {
        return Err(InvalidParameterError::new_err(format!(
            "need n >= 1, weights a, b >= 0 not both 0 and a number total; got n={n}, a={a}, b={b}, total={total}"
        )));
    }
    Ok(stats::log10(stats::ln_weighted_gamma_upper(n, a, b, total)))
}

/// SynthID's `accumulate_hash(current, data)` (uint64, two's complement of
/// the owner's int64).
#[pyfunction]
pub(crate) fn synthid_accumulate_hash(current: u64, data: Vec<i64>) -> u64 {
    synthid::accumulate_hash(current, &data)
}

/// SynthID's sampling-table index of every layer (`keys`) for the n-gram
/// ending at every completion token (`ids`, int64, zero-padded at the
/// start): uint64, shape `(len(ids), len(keys))`.
#[pyfunction]
pub(crate) fn synthid_table_indices<'py>(
    py: Python<'py>,
    keys: Vec<i64>,
    ngram_len: usize,
    table_size: u64,
    ids: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray2<u64>>> {
    if ngram_len == 0 || table_size == 0 || table_size > i64::MAX as u64 {
        return Err(InvalidParameterError::new_err(format!(
            "need ngram_len >= 1 and 1 <= table_size < 2^63; got {ngram_len}, {table_size}"
        )));
    }
    let ids = slice(&ids, "ids")?;
    let rows = ids.len();
    let flat = py.detach(|| synthid::table_indices(&keys, ngram_len, table_size, ids));
    PyArray1::from_vec(py, flat).reshape([rows, keys.len()])
}

/// SynthID's context hash of every n-gram inside `ids` (int64): uint64.
#[pyfunction]
pub(crate) fn synthid_context_hashes<'py>(
    py: Python<'py>,
    ngram_len: usize,
    ids: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let ids = slice(&ids, "ids")?;
    let hashes = py.detach(|| synthid::context_hashes(ngram_len, ids));
    Ok(PyArray1::from_vec(py, hashes))
}

/// transformers' `WatermarkDetector` z-score and normal-tail p-value of
/// `green` green tokens out of `total` at the nominal `gamma`; None when
/// `total` is 0.
#[pyfunction]
pub(crate) fn hf_kgw_owner_z_p(green: u64, total: u64, gamma: f64) -> PyResult<Option<(f64, f64)>> {
    if !(gamma > 0.0 && gamma < 1.0) || green > total {
        return Err(InvalidParameterError::new_err(format!(
            "need 0 < gamma < 1 and green <= total; got gamma={gamma}, {green} of {total}"
        )));
    }
    Ok(hf_kgw::owner_z_p(green, total, gamma))
}

/// Registers the functions on the native module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(vllm_words, m)?)?;
    m.add_function(wrap_pyfunction!(vllm_uniforms, m)?)?;
    m.add_function(wrap_pyfunction!(vllm_scores, m)?)?;
    m.add_function(wrap_pyfunction!(vllm_derive_key, m)?)?;
    m.add_function(wrap_pyfunction!(vllm_owner_p_value, m)?)?;
    m.add_function(wrap_pyfunction!(vllm_dual_key_owner_p_value, m)?)?;
    m.add_function(wrap_pyfunction!(weighted_gamma_log10_upper, m)?)?;
    m.add_function(wrap_pyfunction!(synthid_accumulate_hash, m)?)?;
    m.add_function(wrap_pyfunction!(synthid_table_indices, m)?)?;
    m.add_function(wrap_pyfunction!(synthid_context_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(hf_kgw_owner_z_p, m)?)?;
    Ok(())
}
