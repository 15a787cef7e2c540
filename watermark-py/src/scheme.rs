//! Bindings of `tracemark_core::scheme` and the schemes: logits processors over
//! numpy float32 arrays, in place and without copying.

use numpy::{
    PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use tracemark_core::{Context, GumbelConfig, KgwConfig, Scheme, SchemeConfig, SeenContexts, Step, TournamentConfig};

use crate::contract::PyContract;
use crate::errors::{core_err, InvalidParameterError, LogitsLayoutError, TokenOutOfRangeError, TracemarkError};
use crate::key::PyKey;
use crate::lock::{detach, DetachedMutex};

/// The last `width` ids of each row of `ids` (all of a shorter row: the
/// same number for every row), appended to `flat`; that number, or None when
/// `ids` does not have `batch` rows. Raises on an id that is not a token id.
fn tail_windows<T: Copy + Into<i64>>(
    ids: numpy::ndarray::ArrayView2<'_, T>,
    batch: usize,
    width: usize,
    flat: &mut Vec<u32>,
) -> PyResult<Option<usize>> {
    if ids.nrows() != batch {
        return Ok(None);
    }
    let from = ids.ncols().saturating_sub(width);
    for row in ids.rows() {
        for &v in row.iter().skip(from) {
            flat.push(id_from_i64(v.into())?);
        }
    }
    Ok(Some(ids.ncols() - from))
}

/// The scheme configuration of a `scheme` argument: a `SchemeConfig`, or a
/// scheme string such as `kgw:gamma=0.25,delta=2,context=lefthash:1`.
pub(crate) fn scheme_config(scheme: &Bound<'_, PyAny>) -> PyResult<SchemeConfig> {
    if let Ok(c) = scheme.cast::<PySchemeConfig>() {
        return Ok(c.get().inner.clone());
    }
    match scheme.extract::<String>() {
        Ok(s) => s.parse().map_err(core_err),
        Err(_) => Err(PyTypeError::new_err(format!(
            "scheme must be a SchemeConfig or a scheme string such as \
             'kgw:gamma=0.25,delta=2,context=lefthash:1', not {}",
            scheme.get_type()
        ))),
    }
}

fn parse_context(context: &str) -> PyResult<Context> {
    context.parse().map_err(core_err)
}

fn id_from_i64(v: i64) -> PyResult<u32> {
    u32::try_from(v).map_err(|_| TokenOutOfRangeError::new_err(format!("{v} is not a token id")))
}

/// Token ids from a list/tuple of ints, a 1-D integer numpy array (any int
/// dtype), or one row held as 2-D (a `[1, n]` numpy array, a `[[...]]` list,
/// or a torch tensor of either shape, which is what `generate` returns).
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
    if let Ok(rows) = obj.extract::<Vec<Vec<i64>>>() {
        // (An empty list extracts as zero rows too: it is an empty sequence of ids, below.)
        if !rows.is_empty() {
            return match <[Vec<i64>; 1]>::try_from(rows) {
                Ok([row]) => row.into_iter().map(id_from_i64).collect(),
                Err(rows) => Err(TokenOutOfRangeError::new_err(format!(
                    "token ids held as 2-D must be one row (shape [1, n]); got {} rows: pass one sequence, e.g. ids[0]",
                    rows.len()
                ))),
            };
        }
    }
    if !obj.is_instance_of::<PyList>() && !obj.is_instance_of::<PyTuple>() && obj.hasattr("tolist")? {
        // numpy arrays of other shapes or dtypes, torch tensors (on any device: `tolist` copies to the host).
        return extract_ids(&obj.call_method0("tolist")?);
    }
    let seq: Vec<i64> = obj.extract().map_err(|_| {
        TokenOutOfRangeError::new_err(
            "token ids must be a sequence of ints, a 1-D integer numpy array or torch tensor, or one row of a 2-D one",
        )
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

/// A batch of logits rows: a C-contiguous 2-D float32 numpy array, borrowed for writing.
fn logits_2d<'py>(logits: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArray2<'py, f32>> {
    let arr = logits
        .extract::<PyReadwriteArray2<'py, f32>>()
        .map_err(|_| layout_error(logits, 2))?;
    if !arr.is_c_contiguous() {
        return Err(layout_error(logits, 2));
    }
    Ok(arr)
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
    fn kind(&self) -> PyResult<&'static str> {
        match self.step {
            Step::Watermarked { .. } => Ok("watermarked"),
            Step::SkippedShortContext => Ok("skipped_short_context"),
            Step::SkippedRepeatedContext => Ok("skipped_repeated_context"),
            other => Err(TracemarkError::new_err(format!(
                "step {other:?} is not known to this version of the Python bindings"
            ))),
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
        format!("Step({:?})", self.step)
    }
}

/// Per-sequence memory of watermarked contexts, to skip repeated contexts.
/// One memory may be shared between threads: calls that use it take turns
/// (with the GIL released while they wait).
///
/// `SeenContexts()` takes no argument: one per generated sequence, passed to
/// `Scheme.process(history, row, memory)` (or one per row to
/// `process_batch`); `clear()` starts a new sequence.
///
/// >>> import numpy as np, tracemark as tm
/// >>> key = tm.Key.from_bytes(bytes(range(32)))
/// >>> scheme = tm.Scheme.gumbel(key, temperature=1.0, context="lefthash:1", vocab_size=100)
/// >>> memory = tm.SeenContexts()
/// >>> scheme.process([5], np.zeros(100, dtype=np.float32), memory).watermarked
/// True
/// >>> scheme.process([5], np.zeros(100, dtype=np.float32), memory).watermarked, len(memory)  # context 5 again
/// (False, 1)
#[pyclass(name = "SeenContexts", module = "tracemark", frozen)]
pub(crate) struct PySeenContexts {
    inner: DetachedMutex<SeenContexts>,
}

#[pymethods]
impl PySeenContexts {
    #[new]
    fn new() -> Self {
        Self {
            inner: DetachedMutex::new(SeenContexts::new()),
        }
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        detach(py, |d| self.inner.lock(d).len())
    }

    /// Forgets every context (start of a new sequence).
    fn clear(&self, py: Python<'_>) {
        detach(py, |d| self.inner.lock(d).clear());
    }
}

/// A scheme and all its parameters, without a key: what a detector must know
/// besides the key. Built from a scheme string (`SchemeConfig("kgw:...")`) or
/// with keywords; `str()` gives the scheme string.
///
/// - `SchemeConfig.kgw(*, gamma, delta, context)`: green-list bias
///   (Kirchenbauer et al.); `gamma` the green fraction (e.g. 0.25), `delta`
///   the bias added to green logits (e.g. 2), `context` the seeding mode and
///   width ("lefthash:1", "selfhash:4", ...).
/// - `SchemeConfig.tournament(*, layers, top_k, temperature, context,
///   leaves=2)`: tournament sampling (SynthID-Text) over the `top_k` most
///   likely tokens; `leaves=2` is distortion-free.
/// - `SchemeConfig.gumbel(*, temperature, context)`: Gumbel / exponential-
///   minimum sampling (Aaronson).
///
/// Keywords only; an unknown one raises `TypeError`, a bad value
/// `InvalidParameterError` naming the fix.
///
/// >>> import tracemark as tm
/// >>> config = tm.SchemeConfig.kgw(gamma=0.25, delta=2, context="lefthash:1")
/// >>> str(config), config == tm.SchemeConfig("kgw:gamma=0.25,delta=2,context=lefthash:1")
/// ('kgw:gamma=0.25,delta=2,context=lefthash:1', True)
/// >>> str(tm.SchemeConfig.tournament(layers=30, top_k=40, temperature=1.0, context="lefthash:4"))
/// 'tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4'
#[pyclass(name = "SchemeConfig", module = "tracemark", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PySchemeConfig {
    pub(crate) inner: SchemeConfig,
}

fn kgw_config(gamma: f64, delta: f32, context: &str) -> PyResult<SchemeConfig> {
    Ok(SchemeConfig::Kgw(
        KgwConfig::new(gamma, delta, parse_context(context)?).map_err(core_err)?,
    ))
}

fn tournament_config(
    layers: usize,
    top_k: usize,
    temperature: f32,
    leaves: usize,
    context: &str,
) -> PyResult<SchemeConfig> {
    let config = TournamentConfig::new(layers, top_k, temperature, parse_context(context)?)
        .and_then(|c| c.with_leaves(leaves))
        .map_err(core_err)?;
    Ok(SchemeConfig::Tournament(config))
}

fn gumbel_config(temperature: f32, context: &str) -> PyResult<SchemeConfig> {
    Ok(SchemeConfig::Gumbel(
        GumbelConfig::new(temperature, parse_context(context)?).map_err(core_err)?,
    ))
}

#[pymethods]
impl PySchemeConfig {
    /// Parses a scheme string, e.g. "kgw:gamma=0.25,delta=2,context=lefthash:1".
    #[new]
    fn new(scheme: &str) -> PyResult<Self> {
        Ok(Self {
            inner: scheme.parse().map_err(core_err)?,
        })
    }

    /// Green-list bias (Kirchenbauer et al. 2023): `gamma` the green fraction,
    /// `delta` the bias, `context` e.g. "lefthash:1".
    #[staticmethod]
    #[pyo3(signature = (*, gamma, delta, context))]
    fn kgw(gamma: f64, delta: f32, context: &str) -> PyResult<Self> {
        Ok(Self {
            inner: kgw_config(gamma, delta, context)?,
        })
    }

    /// Tournament sampling (SynthID-Text): `layers` over the `top_k` most
    /// likely tokens at `temperature`, `leaves` candidates per match (2 is
    /// distortion-free).
    #[staticmethod]
    #[pyo3(signature = (*, layers, top_k, temperature, context, leaves = 2))]
    fn tournament(layers: usize, top_k: usize, temperature: f32, context: &str, leaves: usize) -> PyResult<Self> {
        Ok(Self {
            inner: tournament_config(layers, top_k, temperature, leaves, context)?,
        })
    }

    /// Gumbel / exponential-minimum sampling (Aaronson) at `temperature`.
    #[staticmethod]
    #[pyo3(signature = (*, temperature, context))]
    fn gumbel(temperature: f32, context: &str) -> PyResult<Self> {
        Ok(Self {
            inner: gumbel_config(temperature, context)?,
        })
    }

    /// The scheme's contract.
    #[getter]
    fn contract(&self) -> PyContract {
        self.inner.contract().into()
    }

    /// The context mode and width, e.g. "lefthash:1".
    #[getter]
    fn context(&self) -> String {
        self.inner.context().to_string()
    }

    /// Builds the keyed scheme for a vocabulary of `vocab_size` tokens.
    fn build(&self, key: &PyKey, vocab_size: usize) -> PyResult<PyScheme> {
        PyScheme::build(key, &self.inner, vocab_size)
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("SchemeConfig('{}')", self.inner)
    }
}

/// A keyed watermark scheme for one vocabulary: processes logits at
/// generation time and yields the keyed values the detector tests.
///
/// `Scheme(key, scheme, vocab_size)`: the watermark `key`, a `SchemeConfig`
/// or scheme string, and the model's vocabulary size (the width of a logits
/// row). Or with keywords: `Scheme.kgw(key, *, gamma, delta, context,
/// vocab_size)`, `Scheme.tournament(key, *, layers, top_k, temperature,
/// context, vocab_size, leaves=2)`, `Scheme.gumbel(key, *, temperature,
/// context, vocab_size)` (the parameters of `SchemeConfig`'s constructors).
///
/// >>> import numpy as np, tracemark as tm
/// >>> key = tm.Key.from_bytes(bytes(range(32)))
/// >>> scheme = tm.Scheme(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 1000)
/// >>> scheme.describe() == tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=1000).describe()
/// True
/// >>> logits = np.zeros(1000, dtype=np.float32)
/// >>> scheme.process([5, 7], logits).watermarked, sorted(set(logits.tolist()))  # green tokens got +2
/// (True, [0.0, 2.0])
#[pyclass(name = "Scheme", module = "tracemark", frozen)]
pub(crate) struct PyScheme {
    pub(crate) inner: Box<dyn Scheme>,
    config: SchemeConfig,
}

impl PyScheme {
    fn build(key: &PyKey, config: &SchemeConfig, vocab_size: usize) -> PyResult<Self> {
        Ok(Self {
            inner: config.build(&key.inner, vocab_size).map_err(core_err)?,
            config: config.clone(),
        })
    }
}

/// Checks that every memory of a batch is a different object: each row is its own sequence.
fn distinct(memories: &[&DetachedMutex<SeenContexts>]) -> PyResult<()> {
    let mut addresses: Vec<usize> = memories.iter().map(|m| m.address()).collect();
    addresses.sort_unstable();
    if addresses.windows(2).any(|w| w[0] == w[1]) {
        return Err(InvalidParameterError::new_err(
            "the same SeenContexts is given for two rows: give each row (sequence) its own memory",
        ));
    }
    Ok(())
}

/// Runs `f` on the memories of a batch (one per row, all different), with
/// the GIL released and every memory locked.
fn with_memories<R: Send>(
    py: Python<'_>,
    memories: &[Bound<'_, PySeenContexts>],
    f: impl FnOnce(&mut [SeenContexts]) -> R + Send,
) -> PyResult<R> {
    let locks: Vec<&DetachedMutex<SeenContexts>> = memories.iter().map(|m| &m.get().inner).collect();
    distinct(&locks)?;
    Ok(detach(py, |d| {
        // Lock in address order, so that two batches sharing memories
        // in another order cannot wait for each other.
        let mut order: Vec<usize> = (0..locks.len()).collect();
        order.sort_unstable_by_key(|&i| locks[i].address());
        let mut guards: Vec<_> = order.iter().map(|&i| (i, locks[i].lock(d))).collect();
        guards.sort_unstable_by_key(|(i, _)| *i);
        let mut owned: Vec<SeenContexts> = guards.iter_mut().map(|(_, g)| std::mem::take(&mut **g)).collect();
        let r = f(&mut owned);
        for ((_, g), s) in guards.iter_mut().zip(owned) {
            **g = s;
        }
        r
    }))
}

/// The per-row seed material of a batch: context keys, anchor ranks, and
/// whether each row is watermarked.
type RowSeeds<'py> = (
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<bool>>,
);

#[pymethods]
impl PyScheme {
    /// `scheme` is a `SchemeConfig` or a scheme string, e.g.
    /// "kgw:gamma=0.25,delta=2,context=lefthash:1",
    /// "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4" or
    /// "gumbel:temperature=1,context=lefthash:4".
    #[new]
    fn new(key: &PyKey, scheme: &Bound<'_, PyAny>, vocab_size: usize) -> PyResult<Self> {
        Self::build(key, &scheme_config(scheme)?, vocab_size)
    }

    /// A keyed kgw scheme; see `SchemeConfig.kgw`.
    #[staticmethod]
    #[pyo3(signature = (key, *, gamma, delta, context, vocab_size))]
    fn kgw(key: &PyKey, gamma: f64, delta: f32, context: &str, vocab_size: usize) -> PyResult<Self> {
        Self::build(key, &kgw_config(gamma, delta, context)?, vocab_size)
    }

    /// A keyed tournament scheme; see `SchemeConfig.tournament`.
    #[staticmethod]
    #[pyo3(signature = (key, *, layers, top_k, temperature, context, vocab_size, leaves = 2))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn tournament(
        key: &PyKey,
        layers: usize,
        top_k: usize,
        temperature: f32,
        context: &str,
        vocab_size: usize,
        leaves: usize,
    ) -> PyResult<Self> {
        Self::build(
            key,
            &tournament_config(layers, top_k, temperature, leaves, context)?,
            vocab_size,
        )
    }

    /// A keyed gumbel scheme; see `SchemeConfig.gumbel`.
    #[staticmethod]
    #[pyo3(signature = (key, *, temperature, context, vocab_size))]
    fn gumbel(key: &PyKey, temperature: f32, context: &str, vocab_size: usize) -> PyResult<Self> {
        Self::build(key, &gumbel_config(temperature, context)?, vocab_size)
    }

    /// The scheme string, with every parameter (what `Detection.scheme` reports).
    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The scheme's configuration, without the key (for a `Detector`).
    #[getter]
    fn config(&self) -> PySchemeConfig {
        PySchemeConfig {
            inner: self.config.clone(),
        }
    }

    /// What the scheme states about detection and generation.
    #[getter]
    fn contract(&self) -> PyContract {
        self.inner.contract().into()
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

    /// The score of an observation with keyed value `value` (the third item of
    /// `observe`); under the null hypothesis it has the contract's null distribution.
    fn score(&self, value: u32) -> f64 {
        self.inner.score(value)
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
        let history = extract_ids(history)?;
        let mut arr = logits
            .extract::<PyReadwriteArray1<'_, f32>>()
            .map_err(|_| layout_error(logits, 1))?;
        let row = arr.as_slice_mut().map_err(|_| layout_error(logits, 1))?;
        let scheme = self.inner.as_ref();
        let memory = memory.map(|m| &m.inner);
        let step = detach(py, |d| match memory {
            Some(m) => scheme.process_with_memory(&history, row, &mut m.lock(d)),
            None => scheme.process(&history, row),
        });
        Ok(PyStep {
            step: step.map_err(core_err)?,
        })
    }

    /// Watermarks a batch in place: row `i` of the C-contiguous float32
    /// `logits` (batch, vocab) follows `histories[i]` (a 2-D integer array, or
    /// a list of id sequences), with `memories[i]` if given (one per row, all
    /// different). Rows run in parallel; the GIL is released.
    #[pyo3(signature = (histories, logits, memories = None))]
    fn process_batch(
        &self,
        py: Python<'_>,
        histories: &Bound<'_, PyAny>,
        logits: &Bound<'_, PyAny>,
        memories: Option<Vec<Bound<'_, PySeenContexts>>>,
    ) -> PyResult<Vec<PyStep>> {
        let histories = extract_histories(histories)?;
        let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
        let mut arr = logits_2d(logits)?;
        let view = arr.as_array_mut();
        let scheme = self.inner.as_ref();
        let steps = match &memories {
            None => detach(py, |_| scheme.process_batch(&refs, view)),
            Some(ms) => with_memories(py, ms, |owned| scheme.process_batch_with_memory(&refs, view, owned))?,
        };
        Ok(steps
            .map_err(core_err)?
            .into_iter()
            .map(|step| PyStep { step })
            .collect())
    }

    /// The decode step of a serving loop with the least work on the Python
    /// side: `process_batch` on the rows' context windows, where `ids` is the
    /// whole (batch, n) int64 or int32 array of the sequences so far (prompt
    /// included: `input_ids.numpy()`, not sliced; only the last context-width
    /// ids of each row are read) and `logits` the C-contiguous float32
    /// (batch, vocab) rows, changed in place. Returns the number of rows
    /// watermarked, or None, changing nothing, when the arrays do not have
    /// that layout or `vocab` is not the scheme's (the caller then takes its
    /// general path). The GIL is released.
    fn process_tail(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        logits: &Bound<'_, PyAny>,
    ) -> PyResult<Option<usize>> {
        let Ok(mut arr) = logits.extract::<PyReadwriteArray2<'_, f32>>() else {
            return Ok(None);
        };
        let (batch, vocab) = (arr.shape()[0], arr.shape()[1]);
        if !arr.is_c_contiguous() || vocab != self.inner.vocab_size() {
            return Ok(None);
        }
        // Every row's window (its last `width` ids, all of a shorter row: the same length for every
        // row of a 2-D array) in one buffer.
        let width = self.config.context().width();
        let mut flat = Vec::with_capacity(batch * width);
        let taken = if let Ok(a) = ids.extract::<PyReadonlyArray2<'_, i64>>() {
            tail_windows(a.as_array(), batch, width, &mut flat)?
        } else if let Ok(a) = ids.extract::<PyReadonlyArray2<'_, i32>>() {
            tail_windows(a.as_array(), batch, width, &mut flat)?
        } else {
            None
        };
        let Some(taken) = taken else {
            return Ok(None);
        };
        let refs: Vec<&[u32]> = if taken == 0 {
            vec![&[]; batch]
        } else {
            flat.chunks(taken).collect()
        };
        let view = arr.as_array_mut();
        let scheme = self.inner.as_ref();
        let steps = detach(py, |_| scheme.process_batch(&refs, view)).map_err(core_err)?;
        Ok(Some(steps.iter().filter(|s| s.is_watermarked()).count()))
    }

    /// The bias a `Generation.BIAS` scheme adds to the row that follows
    /// `history` (float32, one value per vocabulary entry), for adding it
    /// elsewhere, e.g. on an accelerator: `logits += bias`. None when the
    /// history is shorter than the context width. Raises
    /// `NotABiasSchemeError` for schemes that decide the distribution
    /// themselves (they need the logits: process them).
    fn bias<'py>(&self, py: Python<'py>, history: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyArray1<f32>>>> {
        let history = extract_ids(history)?;
        let scheme = self.inner.as_ref();
        let bias = detach(py, |_| scheme.bias(&history)).map_err(core_err)?;
        Ok(bias.map(|b| PyArray1::from_vec(py, b)))
    }

    /// What the device path (`tracemark.device`) needs per row, computed
    /// here from each history (only its last `context` width tokens matter):
    /// `(context_keys uint64, anchor_ranks uint32, watermark bool)`, one entry
    /// per row. A row is not watermarked when its history is shorter than the
    /// context width or, with `memories` (one per row, all different), when
    /// its context was already watermarked in that sequence (the context is
    /// recorded otherwise, as `process_batch` records it). Eight or so bytes a
    /// row: never a logits row.
    #[pyo3(signature = (histories, memories = None))]
    fn row_seeds<'py>(
        &self,
        py: Python<'py>,
        histories: &Bound<'py, PyAny>,
        memories: Option<Vec<Bound<'py, PySeenContexts>>>,
    ) -> PyResult<RowSeeds<'py>> {
        let histories = extract_histories(histories)?;
        if let Some(ms) = &memories {
            if ms.len() != histories.len() {
                return Err(InvalidParameterError::new_err(format!(
                    "{} memories for {} histories: give one per row",
                    ms.len(),
                    histories.len()
                )));
            }
        }
        let vocab = self.inner.vocab_size();
        if let Some(&t) = histories.iter().flatten().find(|&&t| t as usize >= vocab) {
            return Err(TokenOutOfRangeError::new_err(format!(
                "token {t} is out of range for a vocabulary of {vocab}"
            )));
        }
        let seeder = self.inner.seeder();
        let plan_all = |memories: Option<&mut [SeenContexts]>| {
            let n = histories.len();
            let (mut keys, mut ranks, mut on) = (vec![0u64; n], vec![u32::MAX; n], vec![false; n]);
            let mut memories = memories;
            for (i, h) in histories.iter().enumerate() {
                let memory = memories.as_deref_mut().map(|m| &mut m[i]);
                if let (_, Some(cs)) = tracemark_core::internal::plan(seeder, h, memory) {
                    keys[i] = cs.key;
                    ranks[i] = cs.anchor_rank();
                    on[i] = true;
                }
            }
            (keys, ranks, on)
        };
        let (keys, ranks, on) = match &memories {
            None => plan_all(None),
            Some(ms) => with_memories(py, ms, |owned| plan_all(Some(owned)))?,
        };
        Ok((
            PyArray1::from_vec(py, keys),
            PyArray1::from_vec(py, ranks),
            PyArray1::from_vec(py, on),
        ))
    }

    /// For benchmarks: the core's own time per `process_batch` call on these
    /// rows (seconds, the median of `reps` calls timed inside Rust, the GIL
    /// released), so that a Python path can be compared with the core in one
    /// process. The rows are processed in place `reps` times.
    #[pyo3(signature = (histories, logits, reps = 100))]
    fn time_process_batch(
        &self,
        py: Python<'_>,
        histories: &Bound<'_, PyAny>,
        logits: &Bound<'_, PyAny>,
        reps: usize,
    ) -> PyResult<f64> {
        let histories = extract_histories(histories)?;
        let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
        let mut arr = logits_2d(logits)?;
        let mut view = arr.as_array_mut();
        let scheme = self.inner.as_ref();
        let times = detach(py, |_| {
            (0..reps.max(1))
                .map(|_| {
                    let t = std::time::Instant::now();
                    let r = scheme.process_batch(&refs, view.view_mut());
                    (t.elapsed().as_secs_f64(), r)
                })
                .collect::<Vec<_>>()
        });
        let mut secs = Vec::with_capacity(times.len());
        for (t, r) in times {
            r.map_err(core_err)?;
            secs.push(t);
        }
        secs.sort_by(f64::total_cmp);
        Ok(secs[secs.len() / 2])
    }

    /// The scheme's parameters for the device path, as plain values: `kind`,
    /// `vocab_size`, `context_mode` ("lefthash", "minhash", "selfhash"),
    /// `context_width`, `rank_seed` (keyed: `rank(t) = mix(rank_seed, t)`),
    /// and per kind `green_threshold` and `delta` (kgw); `layers`, `top_k`,
    /// `temperature` and `leaves` (tournament); `temperature` (gumbel). Keyed
    /// values derived from the key, never the key itself.
    fn device_params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        use pyo3::types::PyDict;
        let d = PyDict::new(py);
        let context = self.config.context();
        // The context string is "<mode>:<width>" (SPEC §5).
        let text = context.to_string();
        let mode = text.split(':').next().unwrap_or_default();
        d.set_item("kind", self.config.kind().name())?;
        d.set_item("vocab_size", self.inner.vocab_size())?;
        d.set_item("context_mode", mode)?;
        d.set_item("context_width", context.width())?;
        d.set_item("rank_seed", self.inner.seeder().rank_seed())?;
        match &self.config {
            SchemeConfig::Kgw(c) => {
                d.set_item("green_threshold", c.green_threshold())?;
                d.set_item("delta", c.delta())?;
            }
            SchemeConfig::Tournament(c) => {
                d.set_item("layers", c.layers())?;
                d.set_item("top_k", c.top_k())?;
                d.set_item("temperature", c.temperature())?;
                d.set_item("leaves", c.leaves())?;
            }
            SchemeConfig::Gumbel(c) => {
                d.set_item("temperature", c.temperature())?;
            }
            other => {
                return Err(TracemarkError::new_err(format!(
                    "scheme {other} has no device path in this version"
                )))
            }
        }
        Ok(d)
    }

    /// Self-hash only: the value of every token under its own anchored seed
    /// (uint32, one per vocabulary entry; a token whose rank is below the
    /// context anchor's takes it). None for the other modes.
    fn self_values<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<u32>>> {
        let seeder = self.inner.seeder();
        if seeder.context().mode() != tracemark_core::ContextMode::SelfHash {
            return None;
        }
        let scheme = self.inner.as_ref();
        let table: Vec<u32> = detach(py, |_| {
            (0..scheme.vocab_size() as u32)
                .map(|t| scheme.value(seeder.anchor_seed(t), t))
                .collect()
        });
        Some(PyArray1::from_vec(py, table))
    }

    /// The observation of `token` after `history`: (context_key, seed, value),
    /// or None when the history is too short.
    fn observe(&self, history: &Bound<'_, PyAny>, token: i64) -> PyResult<Option<(u64, u64, u32)>> {
        let history = extract_ids(history)?;
        let o = self.inner.observe(&history, id_from_i64(token)?).map_err(core_err)?;
        Ok(o.map(|o| (o.context_key, o.seed, o.value)))
    }

    fn __repr__(&self) -> String {
        format!(
            "Scheme('{}', key_id='{}', vocab_size={})",
            self.inner.describe(),
            self.inner.key_id(),
            self.inner.vocab_size()
        )
    }
}
