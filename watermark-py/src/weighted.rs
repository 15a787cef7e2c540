//! Model-assisted (entropy-weighted) scoring: the weights of positions from
//! the model's logits, and the weighted detection's report.

use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use tracemark_verifier::weighted::{position_weight, WeightedDetection};

use crate::detect::{json_of, PyDetection};
use crate::errors::InvalidParameterError;
use crate::scheme::scheme_config;

/// The weight in [0, 1] of each position, from the model's next-token logits
/// before the watermark (a 2-D float32 array, one row per position, or one
/// 1-D row), for text watermarked with `scheme` (see the Rust
/// `tracemark_verifier::weighted::position_weight`).
#[pyfunction]
pub(crate) fn position_weights(
    py: Python<'_>,
    scheme: &Bound<'_, PyAny>,
    logits: &Bound<'_, PyAny>,
) -> PyResult<Vec<f64>> {
    let config = scheme_config(scheme)?;
    if let Ok(a) = logits.extract::<PyReadonlyArray2<'_, f32>>() {
        let a = a.as_array();
        return Ok(py.detach(|| {
            a.rows()
                .into_iter()
                .map(|r| match r.as_slice() {
                    Some(s) => position_weight(&config, s),
                    None => position_weight(&config, &r.to_vec()),
                })
                .collect()
        }));
    }
    if let Ok(a) = logits.extract::<PyReadonlyArray1<'_, f32>>() {
        let row = a.as_array().to_vec();
        return Ok(vec![position_weight(&config, &row)]);
    }
    Err(PyTypeError::new_err("logits must be a 1-D or 2-D float32 numpy array"))
}

/// A weighted detection: the weighted test (exact for kgw and tournament, a
/// conservative Chernoff bound for gumbel) and the unweighted report of the
/// same observations (`unweighted`).
#[pyclass(name = "WeightedDetection", module = "tracemark", frozen)]
pub(crate) struct PyWeightedDetection {
    pub(crate) inner: WeightedDetection,
}

#[pymethods]
impl PyWeightedDetection {
    /// "detected", "not_detected" or "inconclusive" (the weighted test's).
    #[getter]
    fn verdict(&self) -> PyResult<String> {
        Ok(json_of(&self.inner.weighted.verdict)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
    /// Whether the weighted test detected the watermark at the detector's alpha.
    #[getter]
    fn detected(&self) -> bool {
        self.inner.weighted.verdict == tracemark_verifier::Verdict::Detected
    }
    /// log10 of the weighted test's p-value.
    #[getter]
    fn log10_p(&self) -> f64 {
        self.inner.weighted.log10_p
    }
    /// The weighted test's p-value (0 when it underflows; see `log10_p`).
    #[getter]
    fn p_value(&self) -> f64 {
        self.inner.weighted.p_value
    }
    /// Whether the p-value is exact (binomial nulls) or a conservative bound.
    #[getter]
    fn exact(&self) -> bool {
        self.inner.weighted.exact
    }
    /// The test, in words.
    #[getter]
    fn test(&self) -> String {
        self.inner.weighted.test.clone()
    }
    /// The weighted sum of the scores.
    #[getter]
    fn statistic(&self) -> f64 {
        self.inner.weighted.statistic
    }
    /// Its expectation under the null.
    #[getter]
    fn expected(&self) -> f64 {
        self.inner.weighted.expected
    }
    /// Scored tokens with a non-zero weight.
    #[getter]
    fn weighted(&self) -> usize {
        self.inner.weighted.weighted
    }
    /// The sum of the quantized weights.
    #[getter]
    fn weight_total(&self) -> f64 {
        self.inner.weighted.weight_total
    }
    /// The unweighted detection of the same text.
    #[getter]
    fn unweighted(&self) -> PyDetection {
        PyDetection {
            inner: self.inner.unweighted.clone(),
        }
    }
    /// The whole report as JSON.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| InvalidParameterError::new_err(e.to_string()))
    }
    fn __repr__(&self) -> String {
        format!(
            "WeightedDetection(verdict={:?}, log10_p={:.3}, weighted={}, exact={})",
            self.inner.weighted.verdict,
            self.inner.weighted.log10_p,
            self.inner.weighted.weighted,
            self.inner.weighted.exact
        )
    }
}
