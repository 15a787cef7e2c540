//! Bindings of `tracemark_verifier::keyring`.

use pyo3::prelude::*;
use tracemark_verifier::{Keyring, KeyringDetector};

use crate::detect::{json_of, options, to_py, PyTokenizer};
use crate::errors::{core_err, shield, verifier_err};
use crate::key::PyKey;
use crate::scheme::{extract_ids, parse_config};

/// A set of labelled keys (e.g. one per API-account cohort).
#[pyclass(name = "Keyring", module = "tracemark", frozen)]
pub(crate) struct PyKeyring {
    inner: Keyring,
}

#[pymethods]
impl PyKeyring {
    /// A keyring of (label, key) pairs.
    #[new]
    fn new(entries: Vec<(String, PyRef<'_, PyKey>)>) -> Self {
        let mut inner = Keyring::new();
        for (label, key) in entries {
            inner.push(label, key.inner.clone());
        }
        Self { inner }
    }

    /// The keys derived from `master` for each label.
    #[staticmethod]
    fn derived(master: &PyKey, labels: Vec<String>) -> PyResult<Self> {
        shield(|| {
            let mut inner = Keyring::new();
            for label in labels {
                let key = master.inner.derive(&label).map_err(core_err)?;
                inner.push(label, key);
            }
            Ok(Self { inner })
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The labels, in order.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.iter().map(|(l, _)| l.to_string()).collect()
    }
}

/// Tests one text against every key of a keyring, with Holm's family-wise correction.
#[pyclass(name = "KeyringDetector", module = "tracemark", frozen)]
pub(crate) struct PyKeyringDetector {
    inner: KeyringDetector,
}

#[pymethods]
impl PyKeyringDetector {
    /// `alpha` is the family-wise significance level.
    #[new]
    #[pyo3(signature = (keyring, scheme, vocab_size, *, dedup = "pair", alpha = 1e-6, min_scored = 10))]
    fn new(
        keyring: &PyKeyring,
        scheme: &str,
        vocab_size: usize,
        dedup: &str,
        alpha: f64,
        min_scored: usize,
    ) -> PyResult<Self> {
        shield(|| {
            let opts = options(dedup, alpha, min_scored, false, None)?;
            let inner =
                KeyringDetector::new(&keyring.inner, &parse_config(scheme)?, vocab_size, opts).map_err(verifier_err)?;
            Ok(Self { inner })
        })
    }

    /// Tests completion ids against every key; returns a dict with one entry per key.
    #[pyo3(signature = (ids, *, prompt = None))]
    fn detect_ids<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        prompt: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        shield(|| {
            let ids = extract_ids(ids)?;
            let prompt = prompt.map(extract_ids).transpose()?.unwrap_or_default();
            let r = py
                .detach(|| self.inner.detect_ids(&prompt, &ids))
                .map_err(verifier_err)?;
            to_py(py, &json_of(&r)?)
        })
    }

    /// Tests a text against every key.
    #[pyo3(signature = (tokenizer, text, *, prompt = None))]
    fn detect_text<'py>(
        &self,
        py: Python<'py>,
        tokenizer: &PyTokenizer,
        text: &str,
        prompt: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        shield(|| {
            let r = py
                .detach(|| self.inner.detect_text(&tokenizer.inner, prompt, text))
                .map_err(verifier_err)?;
            to_py(py, &json_of(&r)?)
        })
    }
}
