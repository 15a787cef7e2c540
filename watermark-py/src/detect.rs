//! Bindings of `tracemark_verifier::detect`, `text` and `window`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;
use tracemark_verifier::{Dedup, DetectOptions, Detection, Detector, TextTokenizer, WindowOptions};

use crate::errors::{shield, verifier_err, InvalidParameterError};
use crate::key::PyKey;
use crate::scheme::{extract_ids, parse_config};

/// A JSON value as Python objects (dicts, lists, str, int, float, bool, None).
pub(crate) fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(to_py(py, x)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => {
            let dict = PyDict::new(py);
            for (k, x) in o {
                dict.set_item(k, to_py(py, x)?)?;
            }
            dict.into_any()
        }
    })
}

pub(crate) fn json_of<T: serde::Serialize>(value: &T) -> PyResult<Value> {
    serde_json::to_value(value).map_err(|e| InvalidParameterError::new_err(e.to_string()))
}

/// A tokenizer loaded from a `tokenizer.json` (Hugging Face format).
#[pyclass(name = "Tokenizer", module = "tracemark", frozen)]
pub(crate) struct PyTokenizer {
    pub(crate) inner: TextTokenizer,
}

#[pymethods]
impl PyTokenizer {
    /// Loads a `tokenizer.json`.
    #[staticmethod]
    fn from_file(path: std::path::PathBuf) -> PyResult<Self> {
        shield(|| {
            Ok(Self {
                inner: TextTokenizer::from_file(&path).map_err(verifier_err)?,
            })
        })
    }

    /// Encodes text without adding special tokens.
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        shield(|| Ok(py.detach(|| self.inner.encode(text)).map_err(verifier_err)?.ids))
    }

    /// Decodes ids to text.
    fn decode(&self, ids: &Bound<'_, PyAny>) -> PyResult<String> {
        shield(|| self.inner.decode(&extract_ids(ids)?).map_err(verifier_err))
    }

    /// Vocabulary size, special tokens included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// `sha256:<hex>` of the tokenizer file.
    #[getter]
    fn fingerprint(&self) -> String {
        self.inner.info().fingerprint.clone()
    }
}

/// The report of one detection. `to_dict()` / `to_json()` give everything;
/// the common fields are attributes.
#[pyclass(name = "Detection", module = "tracemark", frozen)]
pub(crate) struct PyDetection {
    pub(crate) inner: Detection,
}

#[pymethods]
impl PyDetection {
    /// "detected", "not_detected" or "inconclusive".
    #[getter]
    fn verdict(&self) -> PyResult<String> {
        Ok(json_of(&self.inner.verdict)?.as_str().unwrap_or_default().to_string())
    }

    /// Whether the watermark was detected at `alpha`.
    #[getter]
    fn detected(&self) -> bool {
        self.inner.verdict == tracemark_verifier::Verdict::Detected
    }

    /// The exact p-value (0.0 if it underflows; see `log10_p`), None if inconclusive.
    #[getter]
    fn p_value(&self) -> Option<f64> {
        self.inner.p_value
    }

    /// log10 of the exact p-value, finite however small.
    #[getter]
    fn log10_p(&self) -> Option<f64> {
        self.inner.log10_p
    }

    /// The z-score (informational only).
    #[getter]
    fn z_score(&self) -> Option<f64> {
        self.inner.test.as_ref().map(|t| t.z_score)
    }

    /// Tokens scored.
    #[getter]
    fn scored(&self) -> usize {
        self.inner.counts.scored
    }

    /// The public id of the key tested.
    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id.clone()
    }

    /// The scheme string.
    #[getter]
    fn scheme(&self) -> String {
        self.inner.scheme.to_string()
    }

    /// The whole report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &json_of(&self.inner)?)
    }

    /// The whole report as JSON.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| InvalidParameterError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Detection(verdict={:?}, log10_p={:?}, scored={}, scheme='{}')",
            self.verdict().unwrap_or_default(),
            self.inner.log10_p,
            self.inner.counts.scored,
            self.inner.scheme
        )
    }
}

pub(crate) fn options(
    dedup: &str,
    alpha: f64,
    min_scored: usize,
    marks: bool,
    window: Option<usize>,
) -> PyResult<DetectOptions> {
    let dedup: Dedup = dedup.parse().map_err(verifier_err)?;
    Ok(DetectOptions {
        dedup,
        alpha,
        min_scored,
        marks,
        window: window.map(|min_scored| WindowOptions { min_scored }),
    })
}

/// Tests token ids or text for one key's watermark, with exact p-values.
#[pyclass(name = "Detector", module = "tracemark", frozen)]
pub(crate) struct PyDetector {
    pub(crate) inner: Detector,
}

#[pymethods]
impl PyDetector {
    /// `scheme` exactly as generated; `dedup` is "pair" (default), "context" or
    /// "none"; `window` is the shortest window (in scored tokens) of a search
    /// for the most significant span, or None for no search.
    #[new]
    #[pyo3(signature = (key, scheme, vocab_size, *, dedup = "pair", alpha = 1e-6, min_scored = 10, marks = false, window = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        key: &PyKey,
        scheme: &str,
        vocab_size: usize,
        dedup: &str,
        alpha: f64,
        min_scored: usize,
        marks: bool,
        window: Option<usize>,
    ) -> PyResult<Self> {
        shield(|| {
            let opts = options(dedup, alpha, min_scored, marks, window)?;
            Ok(Self {
                inner: Detector::new(&key.inner, &parse_config(scheme)?, vocab_size, opts).map_err(verifier_err)?,
            })
        })
    }

    /// Tests completion ids; `prompt` ids seed the first contexts and are never scored.
    #[pyo3(signature = (ids, *, prompt = None))]
    fn detect_ids(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        prompt: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDetection> {
        shield(|| {
            let ids = extract_ids(ids)?;
            let prompt = prompt.map(extract_ids).transpose()?.unwrap_or_default();
            let d = py
                .detach(|| self.inner.detect_ids(&prompt, &ids))
                .map_err(verifier_err)?;
            Ok(PyDetection { inner: d })
        })
    }

    /// Tests a text through `tokenizer` (decode/re-encode path); `prompt` text is context only.
    #[pyo3(signature = (tokenizer, text, *, prompt = None))]
    fn detect_text(
        &self,
        py: Python<'_>,
        tokenizer: &PyTokenizer,
        text: &str,
        prompt: Option<&str>,
    ) -> PyResult<PyDetection> {
        shield(|| {
            let d = py
                .detach(|| self.inner.detect_text(&tokenizer.inner, prompt, text))
                .map_err(verifier_err)?;
            Ok(PyDetection { inner: d })
        })
    }
}
