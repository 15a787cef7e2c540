//! Bindings of `tracemark_verifier::keyring`.

use pyo3::prelude::*;
use tracemark_verifier::{KeyResult, KeyTest, Keyring, KeyringDetection, KeyringDetector};

use crate::calls::{verify_detached, verify_ids_detached};
use crate::detect::{json_of, min_tokens_arg, options, to_py, PyDetection};
use crate::errors::{core_err, verifier_err, InvalidParameterError};
use crate::key::PyKey;
use crate::scheme::scheme_config;
use crate::tokenizer::tokenizer_arg;

/// A set of labelled keys (e.g. one per API-account cohort), for a
/// `KeyringDetector`.
///
/// `Keyring(entries)` takes `(label, key)` pairs, in the order results are
/// reported; `Keyring.derived(master, labels)` takes the keys
/// `master.derive(label)` (the CLI's `--derive-labels`).
///
/// >>> import tracemark as tm
/// >>> a, b = tm.Key.generate(), tm.Key.generate()
/// >>> tm.Keyring([("alice", a), ("bob", b)]).labels
/// ['alice', 'bob']
/// >>> len(tm.Keyring.derived(tm.Key.generate(), [f"cohort/{i}" for i in range(8)]))
/// 8
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
        let mut inner = Keyring::new();
        for label in labels {
            let key = master.inner.derive(&label).map_err(core_err)?;
            inner.push(label, key);
        }
        Ok(Self { inner })
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

/// The test of one key of a family: its own p-value (the one its verdict
/// stands on), the Holm-adjusted one, and whether the key is named.
#[pyclass(name = "KeyTest", module = "tracemark", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyKeyTest {
    /// log10 of the key's own p-value (the one its verdict stands on).
    log10_p: f64,
    /// log10 of the Holm-adjusted p-value.
    log10_p_adjusted: f64,
    /// Whether the adjusted p-value is below the family-wise alpha.
    detected: bool,
}

impl From<KeyTest> for PyKeyTest {
    fn from(t: KeyTest) -> Self {
        Self {
            log10_p: t.log10_p,
            log10_p_adjusted: t.log10_p_adjusted,
            detected: t.detected,
        }
    }
}

#[pymethods]
impl PyKeyTest {
    fn __repr__(&self) -> String {
        format!(
            "KeyTest(log10_p={}, log10_p_adjusted={}, detected={})",
            self.log10_p,
            self.log10_p_adjusted,
            if self.detected { "True" } else { "False" }
        )
    }
}

/// One key's result in a keyring detection: `tested` is None when the key's
/// detection was inconclusive.
#[pyclass(name = "KeyResult", module = "tracemark", frozen)]
#[derive(Clone)]
pub(crate) struct PyKeyResult {
    inner: KeyResult,
}

#[pymethods]
impl PyKeyResult {
    /// The key's label.
    #[getter]
    fn label(&self) -> String {
        self.inner.label.clone()
    }

    /// The key's public id.
    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id.to_string()
    }

    /// The key's test, None when inconclusive.
    #[getter]
    fn tested(&self) -> Option<PyKeyTest> {
        self.inner.tested.map(PyKeyTest::from)
    }

    /// Whether this key is named at the family-wise level.
    #[getter]
    fn detected(&self) -> bool {
        self.inner.detected()
    }

    /// log10 of the key's own p-value, None when inconclusive.
    #[getter]
    fn log10_p(&self) -> Option<f64> {
        self.inner.log10_p()
    }

    fn __repr__(&self) -> String {
        format!(
            "KeyResult(label='{}', key_id='{}', log10_p={:?}, detected={})",
            self.inner.label,
            self.inner.key_id,
            self.inner.log10_p(),
            if self.inner.detected() { "True" } else { "False" }
        )
    }
}

/// The result of testing one text against a keyring.
#[pyclass(name = "KeyringDetection", module = "tracemark", frozen)]
pub(crate) struct PyKeyringDetection {
    /// The result; its best detection has marks (for `detection_report`).
    inner: KeyringDetection,
}

impl PyKeyringDetection {
    /// The result as `to_dict` and `to_json` give it: the best detection
    /// without its marks.
    fn shown(&self) -> KeyringDetection {
        let mut shown = self.inner.clone();
        if let Some(d) = &mut shown.best_detection {
            d.marks = None;
        }
        shown
    }
}

#[pymethods]
impl PyKeyringDetection {
    /// Per key, in keyring order.
    #[getter]
    fn keys(&self) -> Vec<PyKeyResult> {
        self.inner
            .keys
            .iter()
            .map(|k| PyKeyResult { inner: k.clone() })
            .collect()
    }

    /// Index of the best-matching key (smallest p-value), if any was testable.
    #[getter]
    fn best(&self) -> Option<usize> {
        self.inner.best
    }

    /// The family-wise significance level.
    #[getter]
    fn alpha(&self) -> f64 {
        self.inner.alpha
    }

    /// The correction applied, in words.
    #[getter]
    fn correction(&self) -> String {
        self.inner.correction.clone()
    }

    /// The full report of the best-matching key.
    #[getter]
    fn best_detection(&self) -> Option<PyDetection> {
        self.inner.best_detection.as_ref().map(|d| PyDetection {
            inner: d.clone(),
            marks_shown: false,
        })
    }

    /// The keys named at the family-wise level.
    #[getter]
    fn detected(&self) -> Vec<PyKeyResult> {
        self.inner
            .keys
            .iter()
            .filter(|k| k.detected())
            .map(|k| PyKeyResult { inner: k.clone() })
            .collect()
    }

    /// Everything as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &json_of(&self.shown())?)
    }

    /// Everything as JSON.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.shown()).map_err(|e| InvalidParameterError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        let named: Vec<&str> = self
            .inner
            .keys
            .iter()
            .filter(|k| k.detected())
            .map(|k| k.label.as_str())
            .collect();
        format!("KeyringDetection(keys={}, detected={named:?})", self.inner.keys.len())
    }
}

/// Tests one text against every key of a keyring, with Holm's family-wise
/// correction: which keys (accounts, cohorts) the text carries.
///
/// `KeyringDetector(keyring, scheme, vocab_size, *, dedup="pair",
/// alpha=1e-6, min_tokens=10, canonicalize=True)`:
///
/// - `keyring`: the `Keyring` of labelled keys to test.
/// - `scheme`: the scheme exactly as generated, a `SchemeConfig` or a scheme
///   string.
/// - `vocab_size`: the model's vocabulary size.
/// - `dedup` (`--dedup`): "pair" (default), "context" or "none", as for `Detector`.
/// - `alpha` (`--alpha`): the family-wise significance level (default 1e-6).
/// - `min_tokens` (`--min-tokens`): fewer scored tokens make a key's test
///   inconclusive (default 10); `min_scored` is its old name, still accepted.
/// - `canonicalize`: test text in canonical form too (default True).
///
/// >>> import tracemark as tm
/// >>> master = tm.Key.from_bytes(bytes(range(32)))
/// >>> ring = tm.Keyring.derived(master, ["cohort/0", "cohort/1"])
/// >>> detector = tm.KeyringDetector(ring, "kgw:gamma=0.25,delta=2,context=lefthash:1", 1000, min_tokens=10)
/// >>> result = detector.detect_ids(None, [(37 * i + 11) % 1000 for i in range(60)])
/// >>> [k.label for k in result.keys], result.detected
/// (['cohort/0', 'cohort/1'], [])
#[pyclass(name = "KeyringDetector", module = "tracemark", frozen)]
pub(crate) struct PyKeyringDetector {
    inner: KeyringDetector,
}

#[pymethods]
impl PyKeyringDetector {
    /// See the class documentation for the keywords.
    #[new]
    #[pyo3(signature = (keyring, scheme, vocab_size, *, dedup = "pair", alpha = 1e-6, min_tokens = 10, canonicalize = true, min_scored = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        keyring: &PyKeyring,
        scheme: &Bound<'_, PyAny>,
        vocab_size: usize,
        dedup: &str,
        alpha: f64,
        min_tokens: usize,
        canonicalize: bool,
        min_scored: Option<usize>,
    ) -> PyResult<Self> {
        // Marks always: the best detection's report page shows every token.
        let opts = options(
            dedup,
            alpha,
            min_tokens_arg(min_tokens, min_scored)?,
            true,
            None,
            canonicalize,
        )?;
        let inner =
            KeyringDetector::new(&keyring.inner, &scheme_config(scheme)?, vocab_size, opts).map_err(verifier_err)?;
        Ok(Self { inner })
    }

    /// Tests the `completion` ids (after the `prompt` ids, None or empty for
    /// none) against every key.
    #[pyo3(signature = (prompt, completion))]
    fn detect_ids(
        &self,
        py: Python<'_>,
        prompt: Option<&Bound<'_, PyAny>>,
        completion: &Bound<'_, PyAny>,
    ) -> PyResult<PyKeyringDetection> {
        let inner = verify_ids_detached(py, prompt, completion, |p, c| self.inner.detect_ids(p, c))?;
        Ok(PyKeyringDetection { inner })
    }

    /// Tests a text (after the `prompt` text, or None) against every key;
    /// `tokenizer` is a `Tokenizer`, the model's transformers fast tokenizer,
    /// or a `tokenizers.Tokenizer`.
    #[pyo3(signature = (tokenizer, prompt, text))]
    fn detect_text(
        &self,
        py: Python<'_>,
        tokenizer: &Bound<'_, PyAny>,
        prompt: Option<&str>,
        text: &str,
    ) -> PyResult<PyKeyringDetection> {
        let tokenizer = tokenizer_arg(tokenizer)?;
        let inner = verify_detached(py, || self.inner.detect_text(&tokenizer, prompt, text))?;
        Ok(PyKeyringDetection { inner })
    }
}
