//! Bindings of `tracemark_core::scheme` and the schemes: logits processors over
//! numpy float32 arrays, in place and without copying.

use std::sync::Mutex;

use numpy::{
    PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use tracemark_core::{Scheme, SchemeConfig, SeenContexts, Step};

use crate::errors::{core_err, shield, LogitsLayoutError, TokenOutOfRangeError};
use crate::key::PyKey;

/// Parses a scheme string such as `kgw:gamma=0.25,delta=2,context=lefthash:1`.
pub(crate) fn parse_config(spec: &str) -> PyResult<SchemeConfig> {
    spec.parse().map_err(core_err)
}

fn id_from_i64(v: i64) -> PyResult<u32> {
    u32::try_from(v).map_err(|_| TokenOutOfRangeError::new_err(format!("{v} is not a token id")))
}

/// Token ids from a list/tuple of ints or a 1-D integer numpy array (any int dtype).
pub(crate) fn extract_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i64>>() {
        return a.as_array().iter().map(|&v| id_from_i64(v)).collect();
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, u32>>() {
        return Ok(a.as_array().to_vec());
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i32>>() {
        return a.as_array().iter().map(|&v| id_from_i64(i64::from(v))).collect();
    }
    let seq: Vec<i64> = obj.extract().map_err(|_| {
        TokenOutOfRangeError::new_err("token ids must be a sequence of ints or a 1-D integer numpy array")
    })?;
    seq.into_iter().map(id_from_i64).collect()
}

/// Histories from a 2-D integer numpy array (one row per sequence) or a list of sequences.
fn extract_histories(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u32>>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, i64>>() {
        return a
            .as_array()
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| id_from_i64(v)).collect())
            .collect();
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, i32>>() {
        return a
            .as_array()
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| id_from_i64(i64::from(v))).collect())
            .collect();
    }
    let rows: Vec<Bound<'_, PyAny>> = obj.extract().map_err(|_| {
        TokenOutOfRangeError::new_err("histories must be a 2-D integer array or a list of id sequences")
    })?;
    rows.iter().map(extract_ids).collect()
}

fn layout_error(obj: &Bound<'_, PyAny>, dims: usize) -> PyErr {
    let dtype = obj
        .getattr("dtype")
        .map(|d| d.to_string())
        .unwrap_or_else(|_| obj.get_type().to_string());
    LogitsLayoutError::new_err(format!(
        "logits must be a C-contiguous {dims}-D numpy float32 array, got {dtype}; nothing was copied or changed \
         (convert with np.ascontiguousarray(x, dtype=np.float32) and write the result back)"
    ))
}

/// What one processing call did.
#[pyclass(name = "Step", module = "tracemark", frozen)]
#[derive(Clone)]
pub(crate) struct PyStep {
    step: Step,
}

#[pymethods]
impl PyStep {
    /// "watermarked", "skipped_short_context" or "skipped_repeated_context".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.step {
            Step::Watermarked { .. } => "watermarked",
            Step::SkippedShortContext => "skipped_short_context",
            _ => "skipped_repeated_context",
        }
    }

    /// Whether the row was changed.
    #[getter]
    fn watermarked(&self) -> bool {
        self.step.is_watermarked()
    }

    /// The context key of a watermarked step.
    #[getter]
    fn context_key(&self) -> Option<u64> {
        match self.step {
            Step::Watermarked { context_key } => Some(context_key),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        format!("Step('{}')", self.kind())
    }
}

/// Per-sequence memory of watermarked contexts, to skip repeated contexts.
#[pyclass(name = "SeenContexts", module = "tracemark", frozen)]
pub(crate) struct PySeenContexts {
    inner: Mutex<SeenContexts>,
}

impl PySeenContexts {
    fn with<T>(&self, f: impl FnOnce(&mut SeenContexts) -> T) -> T {
        // A panic while holding the lock cannot leave the set inconsistent: recover it.
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[pymethods]
impl PySeenContexts {
    #[new]
    fn new() -> Self {
        Self {
            inner: Mutex::new(SeenContexts::new()),
        }
    }

    fn __len__(&self) -> usize {
        self.with(|s| s.len())
    }

    /// Forgets every context (start of a new sequence).
    fn clear(&self) {
        self.with(SeenContexts::clear);
    }
}

/// A keyed watermark scheme for one vocabulary: processes logits at
/// generation time and yields the keyed values the detector tests.
#[pyclass(name = "Scheme", module = "tracemark", frozen)]
pub(crate) struct PyScheme {
    pub(crate) inner: Box<dyn Scheme>,
}

#[pymethods]
impl PyScheme {
    /// `scheme` is a scheme string, e.g. "kgw:gamma=0.25,delta=2,context=lefthash:1",
    /// "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4" or
    /// "gumbel:temperature=1,context=lefthash:4".
    #[new]
    fn new(key: &PyKey, scheme: &str, vocab_size: usize) -> PyResult<Self> {
        shield(|| {
            Ok(Self {
                inner: parse_config(scheme)?.build(&key.inner, vocab_size).map_err(core_err)?,
            })
        })
    }

    /// The scheme string, with every parameter.
    #[getter]
    fn config(&self) -> String {
        self.inner.config().to_string()
    }

    /// "kgw", "tournament" or "gumbel".
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.config().kind().name()
    }

    /// The bias `delta` of a kgw scheme (None for the other schemes).
    #[getter]
    fn delta(&self) -> Option<f32> {
        match self.inner.config() {
            SchemeConfig::Kgw(c) => Some(c.delta()),
            _ => None,
        }
    }

    /// The public id of the key.
    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    /// The vocabulary size.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// Watermarks one C-contiguous float32 logits row in place, after
    /// `history` (every earlier token, prompt included). With `memory`,
    /// contexts already watermarked in this sequence are skipped. On error the
    /// row is unchanged.
    #[pyo3(signature = (history, logits, memory = None))]
    fn process(
        &self,
        py: Python<'_>,
        history: &Bound<'_, PyAny>,
        logits: &Bound<'_, PyAny>,
        memory: Option<&PySeenContexts>,
    ) -> PyResult<PyStep> {
        shield(|| {
            let history = extract_ids(history)?;
            let mut arr = logits
                .extract::<PyReadwriteArray1<'_, f32>>()
                .map_err(|_| layout_error(logits, 1))?;
            let row = arr.as_slice_mut().map_err(|_| layout_error(logits, 1))?;
            let scheme = self.inner.as_ref();
            let step = match memory {
                Some(m) => m.with(|mem| py.detach(|| scheme.process_with_memory(&history, row, mem))),
                None => py.detach(|| scheme.process(&history, row)),
            };
            Ok(PyStep {
                step: step.map_err(core_err)?,
            })
        })
    }

    /// Watermarks a batch in place: row `i` of the C-contiguous float32
    /// `logits` (batch, vocab) follows `histories[i]` (a 2-D integer array, or
    /// a list of id sequences). Rows run in parallel; the GIL is released.
    #[pyo3(signature = (histories, logits, memories = None))]
    fn process_batch(
        &self,
        py: Python<'_>,
        histories: &Bound<'_, PyAny>,
        logits: &Bound<'_, PyAny>,
        memories: Option<Vec<Bound<'_, PySeenContexts>>>,
    ) -> PyResult<Vec<PyStep>> {
        shield(|| {
            let histories = extract_histories(histories)?;
            let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
            let mut arr = logits
                .extract::<PyReadwriteArray2<'_, f32>>()
                .map_err(|_| layout_error(logits, 2))?;
            if !arr.is_c_contiguous() {
                return Err(layout_error(logits, 2));
            }
            let view = arr.as_array_mut();
            let scheme = self.inner.as_ref();
            let steps = match memories {
                None => py.detach(|| scheme.process_batch(&refs, view)),
                Some(ms) => {
                    let mut owned: Vec<SeenContexts> = ms.iter().map(|m| m.get().with(std::mem::take)).collect();
                    let r = py.detach(|| scheme.process_batch_with_memory(&refs, view, &mut owned));
                    for (m, s) in ms.iter().zip(owned) {
                        m.get().with(|slot| *slot = s);
                    }
                    r
                }
            };
            Ok(steps
                .map_err(core_err)?
                .into_iter()
                .map(|step| PyStep { step })
                .collect())
        })
    }

    /// The green list after `history`, as a boolean array over the vocabulary
    /// (kgw only), for applying the bias on another device. `None` when the
    /// history is shorter than the context width.
    fn green_mask<'py>(
        &self,
        py: Python<'py>,
        history: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyArray1<bool>>>> {
        shield(|| {
            let history = extract_ids(history)?;
            let scheme = self.inner.as_ref();
            let mask = py
                .detach(|| tracemark_core::green_mask(scheme, &history))
                .map_err(core_err)?;
            Ok(mask.map(|m| PyArray1::from_vec(py, m)))
        })
    }

    /// The observation of `token` after `history`: (context_key, seed, value),
    /// or None when the history is too short.
    fn observe(&self, history: &Bound<'_, PyAny>, token: i64) -> PyResult<Option<(u64, u64, u32)>> {
        shield(|| {
            let history = extract_ids(history)?;
            let o = self.inner.observe(&history, id_from_i64(token)?).map_err(core_err)?;
            Ok(o.map(|o| (o.context_key, o.seed, o.value)))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Scheme('{}', key_id='{}', vocab_size={})",
            self.inner.config(),
            self.inner.key_id(),
            self.inner.vocab_size()
        )
    }
}

/// The SipHash-2-4 PRF and the per-token mix, for the golden vectors.
#[pyfunction]
pub(crate) fn mix(seed: u64, word: u32) -> u32 {
    tracemark_core::mix(seed, word)
}

/// `value16(seed, token)` of SPEC §7.
#[pyfunction]
pub(crate) fn value16(seed: u64, token: u32) -> u16 {
    tracemark_core::value16(seed, token)
}
