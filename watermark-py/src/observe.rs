//! Bindings of `tracemark_verifier::distributed`: a corpus scan split across
//! workers (`tracemark.spark`). Workers turn JSONL lines into per-document
//! results and observations (numpy columns); the driver tests the totals.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use tracemark_verifier::distributed::{self, ObservedDocument};
use tracemark_verifier::{ContextFilter, Counts, Scanner};

use crate::detect::{PyDetection, PyDetector};
use crate::errors::{verifier_err, InvalidParameterError};
use crate::tokenizer::optional_tokenizer_arg;

/// The context keys of a reference corpus (our own watermarked outputs):
/// a scan with it scores only observations at those contexts.
///
/// `ContextFilter(keys)`: a uint64 numpy array of context keys, repeats
/// allowed (e.g. the union of `reference_context_keys` over the reference
/// corpus); `tracemark.spark` builds one per scan.
#[pyclass(name = "ContextFilter", module = "tracemark", frozen)]
pub(crate) struct PyContextFilter {
    inner: ContextFilter,
}

#[pymethods]
impl PyContextFilter {
    /// A filter of the `keys` (uint64, repeats allowed), e.g. the union of
    /// `reference_context_keys` over a reference corpus.
    #[new]
    fn new(keys: PyReadonlyArray1<'_, u64>) -> PyResult<Self> {
        let mut inner = ContextFilter::new();
        for &k in keys
            .as_slice()
            .map_err(|e| InvalidParameterError::new_err(e.to_string()))?
        {
            inner.insert(k);
        }
        Ok(Self { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("ContextFilter({} contexts)", self.inner.len())
    }
}

/// The lines and raw bytes of a batch (`None` reads as a blank line).
fn owned_lines(
    lines: &PyReadonlyArray1<'_, i64>,
    values: &[Option<Bound<'_, PyBytes>>],
) -> PyResult<Vec<(usize, Vec<u8>)>> {
    let lines = lines
        .as_slice()
        .map_err(|e| InvalidParameterError::new_err(e.to_string()))?;
    if lines.len() != values.len() {
        return Err(InvalidParameterError::new_err(format!(
            "{} line numbers for {} lines: give one per line",
            lines.len(),
            values.len()
        )));
    }
    lines
        .iter()
        .zip(values)
        .map(|(&n, v)| {
            Ok((
                line_number(n)?,
                v.as_ref().map_or_else(Vec::new, |b| b.as_bytes().to_vec()),
            ))
        })
        .collect()
}

fn verdict_name(d: &ObservedDocument) -> Option<String> {
    d.result
        .verdict
        .and_then(|v| serde_json::to_value(v).ok())
        .and_then(|v| v.as_str().map(str::to_string))
}

/// The documents of a batch of lines (`(line number, bytes)`), scanned as
/// `tracemark scan` scans them; blank lines give none. Releases the GIL.
fn observe_batch<'a>(
    py: Python<'_>,
    detector: &PyDetector,
    tokenizer: Option<&Bound<'_, PyAny>>,
    context_filter: Option<&PyContextFilter>,
    batch: impl Iterator<Item = (usize, &'a [u8])> + Send,
) -> PyResult<Vec<ObservedDocument>> {
    let tokenizer = optional_tokenizer_arg(tokenizer)?;
    let tok = tokenizer.as_deref();
    Ok(py.detach(|| {
        let mut scanner = Scanner::new(&detector.inner, tok);
        if let Some(f) = context_filter {
            scanner = scanner.filter(&f.inner);
        }
        batch
            .filter_map(|(n, bytes)| distributed::observe_line(&scanner, n, bytes))
            .collect()
    }))
}

/// A 1-based line number from Python.
fn line_number(n: i64) -> PyResult<usize> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| InvalidParameterError::new_err(format!("{n} is not a 1-based line number")))
}

/// The columns of `observe_lines` and `observe_arrow` that are numbers:
/// `line`, `tokens`, `scored`, `canonical_changes`, `enters`, the counts, and
/// `n_observations`.
fn number_columns<'py>(py: Python<'py>, out: &Bound<'py, PyDict>, docs: &[ObservedDocument]) -> PyResult<()> {
    let column = |f: &dyn Fn(&ObservedDocument) -> usize| -> Vec<i64> { docs.iter().map(|d| f(d) as i64).collect() };
    let counts = |f: &dyn Fn(&Counts) -> usize| -> Vec<i64> {
        docs.iter()
            .map(|d| d.contribution.as_ref().map_or(0, |c| f(&c.counts) as i64))
            .collect()
    };
    out.set_item("line", PyArray1::from_vec(py, column(&|d| d.result.line)))?;
    out.set_item("tokens", PyArray1::from_vec(py, column(&|d| d.result.tokens)))?;
    out.set_item("scored", PyArray1::from_vec(py, column(&|d| d.result.scored)))?;
    out.set_item(
        "canonical_changes",
        PyArray1::from_vec(py, column(&|d| d.result.canonical_changes)),
    )?;
    out.set_item(
        "enters",
        PyArray1::from_vec(py, docs.iter().map(|d| d.contribution.is_some()).collect()),
    )?;
    out.set_item("prompt", PyArray1::from_vec(py, counts(&|c| c.prompt)))?;
    out.set_item("seen", PyArray1::from_vec(py, counts(&|c| c.seen)))?;
    out.set_item(
        "skipped_duplicate",
        PyArray1::from_vec(py, counts(&|c| c.skipped_duplicate)),
    )?;
    out.set_item(
        "skipped_short_context",
        PyArray1::from_vec(py, counts(&|c| c.skipped_short_context)),
    )?;
    out.set_item(
        "skipped_by_filter",
        PyArray1::from_vec(py, counts(&|c| c.skipped_by_filter)),
    )?;
    out.set_item(
        "n_observations",
        PyArray1::from_vec(
            py,
            column(&|d| d.contribution.as_ref().map_or(0, |c| c.observations.len())),
        ),
    )?;
    Ok(())
}

/// The documents' observations, in order: `obs_offsets` (document i's are
/// `obs_offsets[i]:obs_offsets[i+1]`), `position`, `context_key`, `seed`,
/// `token`, `score`.
fn observation_columns<'py>(py: Python<'py>, out: &Bound<'py, PyDict>, docs: &[ObservedDocument]) -> PyResult<()> {
    let observations = || {
        docs.iter()
            .flat_map(|d| d.contribution.iter().flat_map(|c| &c.observations))
    };
    let mut offsets = Vec::with_capacity(docs.len() + 1);
    offsets.push(0i64);
    for d in docs {
        let n = d.contribution.as_ref().map_or(0, |c| c.observations.len());
        offsets.push(offsets[offsets.len() - 1] + n as i64);
    }
    out.set_item("obs_offsets", PyArray1::from_vec(py, offsets))?;
    out.set_item(
        "position",
        PyArray1::from_vec(py, observations().map(|o| o.position).collect()),
    )?;
    out.set_item(
        "context_key",
        PyArray1::from_vec(py, observations().map(|o| o.context_key).collect()),
    )?;
    out.set_item("seed", PyArray1::from_vec(py, observations().map(|o| o.seed).collect()))?;
    out.set_item(
        "token",
        PyArray1::from_vec(py, observations().map(|o| o.token).collect()),
    )?;
    out.set_item(
        "score",
        PyArray1::from_vec(py, observations().map(|o| o.score).collect()),
    )?;
    Ok(())
}

/// A named column of text (None: null).
type TextColumn = (&'static str, Vec<Option<String>>);

/// The columns of `observe_lines` and `observe_arrow` that are text: `id`
/// (as JSON), `verdict`, `error` and `json` (the line `tracemark scan` writes).
fn text_columns(docs: &[ObservedDocument]) -> PyResult<[TextColumn; 4]> {
    let json = docs
        .iter()
        .map(|d| serde_json::to_string(&d.result).map(Some))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidParameterError::new_err(e.to_string()))?;
    Ok([
        (
            "id",
            docs.iter()
                .map(|d| d.result.id.as_ref().map(serde_json::Value::to_string))
                .collect(),
        ),
        ("verdict", docs.iter().map(verdict_name).collect()),
        ("error", docs.iter().map(|d| d.result.error.clone()).collect()),
        ("json", json),
    ])
}

/// Arrow offsets (int32 or int64) as byte positions; a negative one becomes
/// `usize::MAX`, which the bounds check refuses.
fn byte_offsets<T: Copy + Into<i64>>(offsets: &[T]) -> Vec<usize> {
    offsets
        .iter()
        .map(|&x| usize::try_from(x.into()).unwrap_or(usize::MAX))
        .collect()
}

/// Scans a batch of JSONL lines exactly as `scan_corpus` (and `tracemark
/// scan`) scans them: `lines` are their 1-based line numbers in the corpus,
/// `values` their bytes (with or without the newline). Blank lines are
/// skipped. Returns columns, one entry per document: `line`, `id` (the
/// document's id as JSON, or None), `verdict`, `log10_p`, `tokens`,
/// `scored`, `canonical_changes`, `error`, `json` (the line `tracemark scan`
/// writes), `enters` (whether it adds to the aggregate) and its counts
/// `prompt`, `seen`, `skipped_duplicate` (within the document),
/// `skipped_short_context`, `skipped_by_filter`, and `n_observations`; and
/// one entry per scored observation after the within-document
/// deduplication, documents in order: `obs_offsets` (document i's are
/// `obs_offsets[i]:obs_offsets[i+1]`), `position`, `context_key`, `seed`,
/// `token`, `score`. Releases the GIL. `observe_arrow` does the same on a
/// batch's Arrow buffers, without a Python object per line.
#[pyfunction]
#[pyo3(signature = (detector, lines, values, *, tokenizer = None, context_filter = None))]
pub(crate) fn observe_lines<'py>(
    py: Python<'py>,
    detector: &PyDetector,
    lines: PyReadonlyArray1<'py, i64>,
    values: Vec<Option<Bound<'py, PyBytes>>>,
    tokenizer: Option<&Bound<'py, PyAny>>,
    context_filter: Option<&PyContextFilter>,
) -> PyResult<Bound<'py, PyDict>> {
    let batch = owned_lines(&lines, &values)?;
    drop(values);
    let docs = observe_batch(
        py,
        detector,
        tokenizer,
        context_filter,
        batch.iter().map(|(n, b)| (*n, b.as_slice())),
    )?;
    let out = PyDict::new(py);
    number_columns(py, &out, &docs)?;
    for (name, column) in text_columns(&docs)? {
        out.set_item(name, column)?;
    }
    out.set_item("log10_p", docs.iter().map(|d| d.result.log10_p).collect::<Vec<_>>())?;
    observation_columns(py, &out, &docs)?;
    Ok(out)
}

/// An Arrow validity bitmap (least significant bit first) of `valid`, or
/// None when every entry is valid.
fn validity(py: Python<'_>, valid: impl Iterator<Item = bool>) -> Option<Bound<'_, PyArray1<u8>>> {
    let mut bits = Vec::new();
    let mut all = true;
    for (i, v) in valid.enumerate() {
        if i % 8 == 0 {
            bits.push(0u8);
        }
        if v {
            bits[i / 8] |= 1 << (i % 8);
        } else {
            all = false;
        }
    }
    (!all).then(|| PyArray1::from_vec(py, bits))
}

/// An Arrow string or binary column of `values` (None: null) as its buffers:
/// `(validity bitmap or None, int32 offsets, data)`, numpy arrays that
/// `pyarrow.Array.from_buffers` takes as they are.
fn arrow_strings<'py, S: AsRef<[u8]>>(py: Python<'py>, values: &[Option<S>]) -> PyResult<Bound<'py, PyTuple>> {
    let mut offsets = Vec::with_capacity(values.len() + 1);
    let mut data = Vec::new();
    offsets.push(0i32);
    for v in values {
        if let Some(v) = v {
            data.extend_from_slice(v.as_ref());
        }
        offsets.push(i32::try_from(data.len()).map_err(|_| {
            InvalidParameterError::new_err("more than 2 GiB of results in one Arrow batch: make the batches smaller")
        })?);
    }
    let valid = validity(py, values.iter().map(Option::is_some));
    PyTuple::new(
        py,
        [
            valid.map_or_else(|| py.None().into_bound(py), Bound::into_any),
            PyArray1::from_vec(py, offsets).into_any(),
            PyArray1::from_vec(py, data).into_any(),
        ],
    )
}

/// `observe_lines` on one Arrow batch of lines, from its buffers, with no
/// Python object per line either way (`tracemark.spark`'s executors): the
/// lines are `data[offsets[i]:offsets[i + 1]]` (`offsets` int32 or int64,
/// `data` uint8: the `value` column's buffers, as numpy views), null where
/// `valid` (bool, optional) is False (read as a blank line), numbered by
/// `lines`. The same columns as `observe_lines`, except that `id`,
/// `verdict`, `error` and `json` are Arrow string columns and `log10_p` an
/// Arrow float64 column, given by their buffers: `(validity bitmap or None,
/// int32 offsets, data)` and `(validity bitmap or None, float64 values)`.
/// With `buckets` > 0 the observations are not returned; the batch's are
/// deduplicated by pair and packed into buckets instead (`pair_buckets`):
/// `bucket` (int32, the non-empty buckets) and `pairs` (their blobs, an
/// Arrow binary column's buffers). Releases the GIL.
#[pyfunction]
#[pyo3(signature = (detector, lines, offsets, data, *, valid = None, tokenizer = None, context_filter = None, buckets = 0))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(crate) fn observe_arrow<'py>(
    py: Python<'py>,
    detector: &PyDetector,
    lines: PyReadonlyArray1<'py, i64>,
    offsets: &Bound<'py, PyAny>,
    data: PyReadonlyArray1<'py, u8>,
    valid: Option<PyReadonlyArray1<'py, bool>>,
    tokenizer: Option<&Bound<'py, PyAny>>,
    context_filter: Option<&PyContextFilter>,
    buckets: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let layout = |e: numpy::AsSliceError| InvalidParameterError::new_err(e.to_string());
    let lines = lines.as_slice().map_err(layout)?;
    let data = data.as_slice().map_err(layout)?;
    let bounds: Vec<usize> = if let Ok(o) = offsets.extract::<PyReadonlyArray1<'_, i32>>() {
        byte_offsets(o.as_slice().map_err(layout)?)
    } else if let Ok(o) = offsets.extract::<PyReadonlyArray1<'_, i64>>() {
        byte_offsets(o.as_slice().map_err(layout)?)
    } else {
        return Err(InvalidParameterError::new_err(
            "offsets must be a 1-D int32 or int64 numpy array",
        ));
    };
    let valid = match &valid {
        Some(v) => Some(v.as_slice().map_err(layout)?),
        None => None,
    };
    if bounds.len() != lines.len() + 1 || valid.is_some_and(|v| v.len() != lines.len()) {
        return Err(InvalidParameterError::new_err(format!(
            "{} line numbers, {} offsets and {} validity entries: give n, n + 1 and n",
            lines.len(),
            bounds.len(),
            valid.map_or(lines.len(), <[bool]>::len)
        )));
    }
    let mut batch = Vec::with_capacity(lines.len());
    for (i, &n) in lines.iter().enumerate() {
        let (from, to) = (bounds[i], bounds[i + 1]);
        if from > to || to > data.len() {
            return Err(InvalidParameterError::new_err(format!(
                "offsets {from}..{to} of line {i} are not inside the {} bytes of data",
                data.len()
            )));
        }
        let bytes = if valid.is_none_or(|v| v[i]) {
            &data[from..to]
        } else {
            &[][..]
        };
        batch.push((line_number(n)?, bytes));
    }
    let docs = observe_batch(py, detector, tokenizer, context_filter, batch.into_iter())?;
    let out = PyDict::new(py);
    number_columns(py, &out, &docs)?;
    for (name, column) in text_columns(&docs)? {
        out.set_item(name, arrow_strings(py, &column)?)?;
    }
    let p: Vec<f64> = docs.iter().map(|d| d.result.log10_p.unwrap_or(0.0)).collect();
    out.set_item(
        "log10_p",
        PyTuple::new(
            py,
            [
                validity(py, docs.iter().map(|d| d.result.log10_p.is_some()))
                    .map_or_else(|| py.None().into_bound(py), Bound::into_any),
                PyArray1::from_vec(py, p).into_any(),
            ],
        )?,
    )?;
    if buckets == 0 {
        observation_columns(py, &out, &docs)?;
        return Ok(out);
    }
    let blobs = py.detach(|| {
        let mut packed = distributed::PairBuckets::new(buckets);
        for o in docs
            .iter()
            .flat_map(|d| d.contribution.iter().flat_map(|c| &c.observations))
        {
            packed.add(o.seed, o.token, o.score);
        }
        packed.into_blobs()
    });
    let (kept, kept_blobs): (Vec<i32>, Vec<Option<&[u8]>>) = blobs
        .iter()
        .enumerate()
        .filter(|(_, blob)| !blob.is_empty())
        .map(|(b, blob)| (b as i32, Some(blob.as_slice())))
        .unzip();
    out.set_item("bucket", PyArray1::from_vec(py, kept))?;
    out.set_item("pairs", arrow_strings(py, &kept_blobs)?)?;
    Ok(out)
}

/// The context keys (uint64, with repeats) of a batch of lines of a
/// reference corpus (our own watermarked outputs), as `scan_corpus`'s
/// `reference` collects them; `lines` are their 1-based line numbers.
/// Raises the typed error of the first line that is not a document.
/// Releases the GIL.
#[pyfunction]
#[pyo3(signature = (detector, lines, values, *, tokenizer = None))]
pub(crate) fn reference_context_keys<'py>(
    py: Python<'py>,
    detector: &PyDetector,
    lines: PyReadonlyArray1<'py, i64>,
    values: Vec<Option<Bound<'py, PyBytes>>>,
    tokenizer: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let batch = owned_lines(&lines, &values)?;
    drop(values);
    let tokenizer = optional_tokenizer_arg(tokenizer)?;
    let tok = tokenizer.as_deref();
    let keys = py
        .detach(|| -> tracemark_verifier::Result<Vec<u64>> {
            let mut keys = Vec::new();
            for (n, bytes) in &batch {
                keys.extend(distributed::reference_context_keys(&detector.inner, tok, *n, bytes)?);
            }
            Ok(keys)
        })
        .map_err(verifier_err)?;
    Ok(PyArray1::from_vec(py, keys))
}

/// The aggregate test of a corpus from its totals, field for field the
/// `aggregate` of `scan_corpus` on the whole corpus: the counts over every
/// document that entered it after the deduplication across documents
/// (`scored` observations kept), and `total`, the sum of their scores (in
/// corpus order unless `total_is_order_free`). `tokenizer` and
/// `input_sha256` are recorded in the report. Refuses a detector with a
/// window search.
#[pyfunction]
#[pyo3(signature = (detector, *, prompt, seen, scored, skipped_duplicate, skipped_short_context, skipped_by_filter, total, tokenizer = None, input_sha256 = None))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(crate) fn corpus_test(
    detector: &PyDetector,
    prompt: usize,
    seen: usize,
    scored: usize,
    skipped_duplicate: usize,
    skipped_short_context: usize,
    skipped_by_filter: usize,
    total: f64,
    tokenizer: Option<&Bound<'_, PyAny>>,
    input_sha256: Option<String>,
) -> PyResult<PyDetection> {
    let tokenizer = optional_tokenizer_arg(tokenizer)?;
    let mut counts = Counts::default();
    counts.prompt = prompt;
    counts.seen = seen;
    counts.scored = scored;
    counts.skipped_duplicate = skipped_duplicate;
    counts.skipped_short_context = skipped_short_context;
    counts.skipped_by_filter = skipped_by_filter;
    let inner = distributed::corpus_report(
        &detector.inner,
        counts,
        total,
        tokenizer.as_deref().map(|t| t.info()),
        input_sha256,
    )
    .map_err(verifier_err)?;
    Ok(PyDetection::new(inner))
}

/// Whether the corpus total of scores is the same in any order of addition
/// (integer scores: kgw, tournament); else add them in corpus order with
/// `sum_in_order` to reproduce the scan's total to the last bit.
#[pyfunction]
pub(crate) fn total_is_order_free(detector: &PyDetector) -> bool {
    distributed::total_is_order_free(&detector.inner)
}

/// `start` plus `scores` (float64), added one by one from left to right (the
/// scan's order); resumable chunk by chunk, starting the corpus at -0.0.
#[pyfunction]
pub(crate) fn sum_in_order(start: f64, scores: PyReadonlyArray1<'_, f64>) -> PyResult<f64> {
    match scores.as_slice() {
        Ok(s) => Ok(distributed::sum_in_order(start, s)),
        Err(_) => Ok(scores.as_array().iter().fold(start, |acc, &s| acc + s)),
    }
}

/// `pair` deduplication across documents, step 1 (`tracemark.spark`, totals
/// whose order does not matter): one copy of each `(seed, token)` pair among
/// a worker's observations (`seeds` uint64, `tokens` uint32, `scores`
/// float64), split by the pair's bucket into `buckets` blobs (bytes) of
/// packed observations. Step 2 is `merge_pair_bucket`. Releases the GIL.
#[pyfunction]
pub(crate) fn pair_buckets<'py>(
    py: Python<'py>,
    seeds: PyReadonlyArray1<'py, u64>,
    tokens: PyReadonlyArray1<'py, u32>,
    scores: PyReadonlyArray1<'py, f64>,
    buckets: usize,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let slice = |e: numpy::AsSliceError| InvalidParameterError::new_err(e.to_string());
    let (s, t, v) = (
        seeds.as_slice().map_err(slice)?,
        tokens.as_slice().map_err(slice)?,
        scores.as_slice().map_err(slice)?,
    );
    if s.len() != t.len() || s.len() != v.len() || buckets == 0 {
        return Err(InvalidParameterError::new_err(format!(
            "{} seeds, {} tokens and {} scores into {buckets} buckets: give equal lengths and at least one bucket",
            s.len(),
            t.len(),
            v.len()
        )));
    }
    let blobs = py.detach(|| distributed::pair_buckets(s, t, v, buckets));
    Ok(blobs.iter().map(|b| PyBytes::new(py, b)).collect())
}

/// `pair` deduplication across documents, step 2: the distinct pairs among
/// one bucket's blobs from every worker (`pair_buckets`), as `(count, sum of
/// their scores)`. Releases the GIL.
#[pyfunction]
pub(crate) fn merge_pair_bucket(py: Python<'_>, blobs: Vec<Vec<u8>>) -> PyResult<(u64, f64)> {
    py.detach(|| distributed::merge_pair_bucket(blobs.iter().map(Vec::as_slice)))
        .map_err(verifier_err)
}
