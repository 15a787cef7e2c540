//! Model-assisted (entropy-weighted) scoring: the weights of positions from
//! the model's logits (the weighted detection's report is in `detect`).

use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use tracemark_verifier::weighted::position_weight;

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
