//! Bindings of `tracemark_verifier::detect`, `text` and `window`: the
//! detector, its reports (plain and weighted) and its streams.

use numpy::PyReadonlyArray2;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};
use serde_json::Value;
use tracemark_core::{Key, Semantic, SemanticConfig};
use tracemark_verifier::weighted::WeightedDetection;
use tracemark_verifier::{
    forgery, CanonicalReport, Counts, Dedup, DetectOptions, Detection, DetectionStream, Detector, ForgeryReference,
    Outcome, TestReport, WindowOptions, WindowReport,
};

use crate::calls::{verify_detached, verify_ids_detached};
use crate::errors::{core_err, verifier_err, InvalidParameterError};
use crate::key::PyKey;
use crate::scheme::{extract_ids, scheme_config};
use crate::tokenizer::tokenizer_arg;

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

/// The test that was run: its name, the null distribution of the statistic,
/// the observed statistic, its expectation, and the z-score (informational only).
#[pyclass(name = "TestReport", module = "tracemark", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyTestReport {
    /// What the test is.
    name: String,
    /// The null distribution of the statistic.
    null_distribution: String,
    /// The observed statistic (green count, g-value count, or score sum).
    statistic: f64,
    /// Its expectation under the null hypothesis.
    expected: f64,
    /// `(statistic - expected) / sd`: informational only, never the test.
    z_score: f64,
}

impl From<&TestReport> for PyTestReport {
    fn from(t: &TestReport) -> Self {
        Self {
            name: t.name.clone(),
            null_distribution: t.null_distribution.clone(),
            statistic: t.statistic,
            expected: t.expected,
            z_score: t.z_score,
        }
    }
}

#[pymethods]
impl PyTestReport {
    fn __repr__(&self) -> String {
        format!(
            "TestReport(name='{}', statistic={}, expected={}, z_score={})",
            self.name, self.statistic, self.expected, self.z_score
        )
    }
}

/// Whether a detection was tested (`status == "tested"`: `test`, `p_value`
/// and `log10_p` are set) or not (`status == "inconclusive"`: `reason` says why).
#[pyclass(name = "Outcome", module = "tracemark", frozen)]
pub(crate) struct PyOutcome {
    inner: Outcome,
}

#[pymethods]
impl PyOutcome {
    /// "tested" or "inconclusive".
    #[getter]
    fn status(&self) -> PyResult<String> {
        let v = json_of(&self.inner)?;
        Ok(v["status"].as_str().unwrap_or_default().to_string())
    }

    /// The test, when tested.
    #[getter]
    fn test(&self) -> Option<PyTestReport> {
        self.inner.test().map(PyTestReport::from)
    }

    /// The whole text's exact p-value (0.0 if it underflows; see `log10_p`), when tested.
    #[getter]
    fn p_value(&self) -> Option<f64> {
        match &self.inner {
            Outcome::Tested { p_value, .. } => Some(*p_value),
            _ => None,
        }
    }

    /// log10 of the whole text's exact p-value, finite however small, when tested.
    #[getter]
    fn log10_p(&self) -> Option<f64> {
        self.inner.log10_p()
    }

    /// Why there was no test, when inconclusive.
    #[getter]
    fn reason(&self) -> Option<String> {
        match &self.inner {
            Outcome::Inconclusive { reason } => Some(reason.clone()),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        format!("Outcome({:?})", self.inner)
    }
}

/// Token counts of a detection.
#[pyclass(name = "Counts", module = "tracemark", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyCounts {
    /// Prompt tokens (context only, never scored).
    prompt: usize,
    /// Completion tokens seen.
    seen: usize,
    /// Tokens scored.
    scored: usize,
    /// Tokens dropped as repeats.
    skipped_duplicate: usize,
    /// Tokens without a seed (history shorter than the context width).
    skipped_short_context: usize,
    /// Tokens whose context was outside a scan's context filter.
    skipped_by_filter: usize,
}

impl From<&Counts> for PyCounts {
    fn from(c: &Counts) -> Self {
        Self {
            prompt: c.prompt,
            seen: c.seen,
            scored: c.scored,
            skipped_duplicate: c.skipped_duplicate,
            skipped_short_context: c.skipped_short_context,
            skipped_by_filter: c.skipped_by_filter,
        }
    }
}

#[pymethods]
impl PyCounts {
    fn __repr__(&self) -> String {
        format!(
            "Counts(prompt={}, seen={}, scored={}, skipped_duplicate={}, skipped_short_context={}, skipped_by_filter={})",
            self.prompt,
            self.seen,
            self.scored,
            self.skipped_duplicate,
            self.skipped_short_context,
            self.skipped_by_filter
        )
    }
}

/// The most significant window of a window search: completion tokens
/// `start..end` (byte `span` of a text input), its own and its corrected
/// p-value, and the family p-value of the whole text and the window
/// (`family_log10_p`, weighted Bonferroni over the 2 tests) on which the verdict
/// stands; `decides_verdict` when the window gave it.
#[pyclass(name = "WindowReport", module = "tracemark", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyWindowReport {
    /// First completion token of the window.
    start: usize,
    /// One past the last completion token of the window.
    end: usize,
    /// Byte range in the input text, when the input was text.
    span: Option<(usize, usize)>,
    /// Scored tokens in the window.
    scored: usize,
    /// The window's statistic.
    statistic: f64,
    /// log10 of the window's own exact p-value (not corrected).
    log10_p_uncorrected: f64,
    /// How many windows were examined.
    windows_examined: usize,
    /// The multiple-testing correction applied.
    correction: String,
    /// log10 of the corrected p-value.
    log10_p: f64,
    /// The corrected p-value (0.0 if it underflows).
    p_value: f64,
    /// log10 of the p-value the verdict stands on: the smaller of 5 times the whole text's p-value and 5/4 times the window's corrected p-value (SPEC §16 v3).
    family_log10_p: f64,
    /// The family correction in words.
    family_correction: &'static str,
    /// Whether the window, rather than the whole text, gave the family p-value.
    decides_verdict: bool,
    /// How many paragraph segments (runs of whole paragraphs) were examined beside the grid (SPEC §16 v4); 0 for ids and one-paragraph text.
    segments_examined: usize,
    /// Whether the window is a paragraph segment rather than a grid window.
    paragraphs: bool,
}

impl From<&WindowReport> for PyWindowReport {
    fn from(w: &WindowReport) -> Self {
        Self {
            start: w.start,
            end: w.end,
            span: w.span,
            scored: w.scored,
            statistic: w.statistic,
            log10_p_uncorrected: w.log10_p_uncorrected,
            windows_examined: w.windows_examined,
            correction: w.correction.clone(),
            log10_p: w.log10_p,
            p_value: w.p_value,
            family_log10_p: w.family_log10_p,
            family_correction: w.family_correction(),
            decides_verdict: w.decides_verdict,
            segments_examined: w.segments_examined,
            paragraphs: w.paragraphs,
        }
    }
}

#[pymethods]
impl PyWindowReport {
    fn __repr__(&self) -> String {
        format!(
            "WindowReport(start={}, end={}, log10_p={}, family_log10_p={}, decides_verdict={})",
            self.start,
            self.end,
            self.log10_p,
            self.family_log10_p,
            if self.decides_verdict { "True" } else { "False" }
        )
    }
}

/// Canonicalisation in a report: how many characters of each kind it
/// changed (`invisible`, `whitespace`, `compatibility`, `confusable`), the
/// distinct changes with counts (`characters`: `(kind, from, to, count)`,
/// code points as `U+XXXX`), the first changes with their byte spans in the
/// original text (`changes`: `(kind, start, end, from, to)`), the forms tested
/// (`forms`: `(form, sha256, tokens, log10_p)`, "as_given", "canonical" or
/// both, as `plan` says: SPEC §14.1), which form decided, and the family
/// p-value the verdict stands on (Bonferroni when both were tested).
#[pyclass(name = "CanonicalReport", module = "tracemark", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyCanonicalReport {
    /// The Unicode version of the data used.
    unicode_version: String,
    /// All changes.
    total: usize,
    /// Invisible or formatting characters removed.
    invisible: usize,
    /// Whitespace variants made plain.
    whitespace: usize,
    /// Compatibility forms folded (NFKC).
    compatibility: usize,
    /// Look-alike letters of another script mapped back.
    confusable: usize,
    /// The version of the canonical form (SPEC §14).
    canonical_version: u32,
    /// Blank-looking characters made spaces (v2).
    blank: usize,
    /// Runs of spaces and tabs inside a line made one space (v2).
    spacing: usize,
    /// Look-alike letters of the text's own script made ordinary (v2).
    lookalike: usize,
    /// Combining marks foreign to the text's orthography removed (v2).
    mark: usize,
    /// Runs reversed by a bidi override put in reading order (v2).
    bidi_override: usize,
    /// Of all changes, those ordinary software makes (a leading BOM, NFD).
    normalisation: usize,
    /// Which forms the changes called for (SPEC §14.1): "as_given",
    /// "canonical" or "both"; None in reports made before the plan.
    plan: Option<String>,
    /// `(kind, from, to, count)` per distinct change, most frequent first.
    characters: Vec<(String, String, String, usize)>,
    /// `(kind, start, end, from, to)` for the first changes.
    changes: Vec<PyChange>,
    /// `(form, sha256, tokens, log10_p)` per form tested.
    forms: Vec<(String, String, usize, Option<f64>)>,
    /// The form whose test is the report's outcome: "as_given" or "canonical".
    decided_by: String,
    /// log10 of the Bonferroni factor (the number of forms tested).
    correction_log10: f64,
    /// log10 of the family p-value the verdict stands on (None: inconclusive).
    family_log10_p: Option<f64>,
}

/// One change as Python sees it: `(kind, start, end, from, to)`.
type PyChange = (String, usize, usize, String, String);

fn py_change(k: &tracemark_verifier::canonical::Change) -> PyChange {
    (k.kind.to_string(), k.span.0, k.span.1, k.from.clone(), k.to.clone())
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl From<&CanonicalReport> for PyCanonicalReport {
    fn from(c: &CanonicalReport) -> Self {
        let s = &c.changes;
        Self {
            unicode_version: s.unicode_version.clone(),
            total: s.total,
            invisible: s.invisible,
            whitespace: s.whitespace,
            compatibility: s.compatibility,
            confusable: s.confusable,
            canonical_version: s.canonical_version,
            blank: s.blank,
            spacing: s.spacing,
            lookalike: s.lookalike,
            mark: s.mark,
            bidi_override: s.bidi_override,
            normalisation: s.normalisation,
            plan: c.plan.as_ref().map(snake),
            characters: s
                .characters
                .iter()
                .map(|k| (k.kind.to_string(), k.from.clone(), k.to.clone(), k.count))
                .collect(),
            changes: s.listed.iter().map(py_change).collect(),
            forms: c
                .forms
                .iter()
                .map(|f| (snake(&f.form), f.sha256.clone(), f.tokens, f.log10_p))
                .collect(),
            decided_by: snake(&c.decided_by),
            correction_log10: c.correction_log10,
            family_log10_p: c.family_log10_p,
        }
    }
}

#[pymethods]
impl PyCanonicalReport {
    fn __repr__(&self) -> String {
        format!(
            "CanonicalReport(total={}, invisible={}, whitespace={}, compatibility={}, confusable={}, decided_by='{}', family_log10_p={:?})",
            self.total, self.invisible, self.whitespace, self.compatibility, self.confusable, self.decided_by, self.family_log10_p
        )
    }
}

/// `text` in canonical form (invisible characters removed, whitespace
/// variants, compatibility forms and look-alike letters of another script
/// undone) and the changes made: `(kind, start, end, from, to)` with byte
/// spans into `text` and code points as `U+XXXX`.
#[pyfunction]
pub(crate) fn canonicalize(py: Python<'_>, text: &str) -> (String, Vec<PyChange>) {
    let c = py.detach(|| tracemark_verifier::canonicalize(text));
    (c.text().to_string(), c.changes().iter().map(py_change).collect())
}

/// The report of one detection. The fields of the Rust report are
/// attributes; `to_dict()` / `to_json()` give everything (the per-token marks
/// when the detector was built with `marks=True`).
///
/// What a reader reaches for first: `verdict` ("detected", "not_detected" or
/// "inconclusive"), `p_value` / `log10_p` (the p-value the verdict stands on),
/// `evidence` (the verdict and the strength of the evidence in one sentence),
/// `strength`, and `checklist` (what to check when a detection was expected).
///
/// >>> import tracemark as tm
/// >>> key = tm.Key.from_bytes(bytes(range(32)))
/// >>> report = tm.Detector(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 1000).detect_ids(None, [5] * 40)
/// >>> report.verdict, report.counts.scored, report.p_value
/// ('inconclusive', 1, None)
/// >>> report.checklist[0].startswith("key: id ")
/// True
#[pyclass(name = "Detection", module = "tracemark", frozen)]
pub(crate) struct PyDetection {
    /// The report. Its marks are there whenever the detector computed them
    /// (a `Detector` always does, for `detection_report`).
    pub(crate) inner: Detection,
    /// Whether `to_dict` and `to_json` include the marks (the detector's `marks=`).
    pub(crate) marks_shown: bool,
}

impl PyDetection {
    /// A report whose marks `to_dict` and `to_json` include.
    pub(crate) fn new(inner: Detection) -> Self {
        Self {
            inner,
            marks_shown: true,
        }
    }

    /// The report as `to_dict` and `to_json` give it: without the marks
    /// unless they were asked for.
    fn shown(&self) -> std::borrow::Cow<'_, Detection> {
        if self.marks_shown || self.inner.marks.is_none() {
            std::borrow::Cow::Borrowed(&self.inner)
        } else {
            let mut d = self.inner.clone();
            d.marks = None;
            std::borrow::Cow::Owned(d)
        }
    }
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

    /// The whole text's test and exact p-value, or why there was none.
    #[getter]
    fn outcome(&self) -> PyOutcome {
        PyOutcome {
            inner: self.inner.outcome.clone(),
        }
    }

    /// log10 of the p-value the verdict stands on: the family p-value of the
    /// whole text and the window when a window was searched, else the whole
    /// text's; None when inconclusive.
    #[getter]
    fn verdict_log10_p(&self) -> Option<f64> {
        self.inner.verdict_log10_p()
    }

    /// The significance level of the verdict.
    #[getter]
    fn alpha(&self) -> f64 {
        self.inner.alpha
    }

    /// Token counts.
    #[getter]
    fn counts(&self) -> PyCounts {
        PyCounts::from(&self.inner.counts)
    }

    /// The most significant window, when a window search was asked for.
    #[getter]
    fn window(&self) -> Option<PyWindowReport> {
        self.inner.window.as_ref().map(PyWindowReport::from)
    }

    /// The public id of the key tested (32 hex digits).
    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id.to_string()
    }

    /// The scheme string.
    #[getter]
    fn scheme(&self) -> String {
        self.inner.scheme.clone()
    }

    /// "none", "pair" or "context".
    #[getter]
    fn dedup(&self) -> String {
        self.inner.dedup.to_string()
    }

    /// The spec version of every keyed value.
    #[getter]
    fn spec(&self) -> String {
        self.inner.spec.clone()
    }

    /// The tool and version that computed the report.
    #[getter]
    fn tool(&self) -> String {
        self.inner.tool.clone()
    }

    /// SHA-256 of the input bytes, when known.
    #[getter]
    fn input_sha256(&self) -> Option<String> {
        self.inner.input_sha256.clone()
    }

    /// What canonicalisation changed and the tests of both forms of the text,
    /// when the input was text and canonicalisation was on.
    #[getter]
    fn canonical(&self) -> Option<PyCanonicalReport> {
        self.inner.canonical.as_ref().map(PyCanonicalReport::from)
    }

    /// The spoof-artifact test as a dict (None without a forgery reference,
    /// or when the text had no dense or no sparse observation).
    #[getter]
    fn forgery<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.forgery.as_ref().map(|f| to_py(py, &json_of(f)?)).transpose()
    }

    /// The semantic layer's exact test as a dict (SPEC §15.3: `scheme`,
    /// `key_id`, `counts`, per-sentence `sentences` with their byte spans
    /// into the text as given, `outcome`, `log10_p`, `p_value`); None unless
    /// `detect_text` was given `semantic=`.
    #[getter]
    fn semantic<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .semantic
            .as_ref()
            .map(|s| to_py(py, &json_of(s)?))
            .transpose()
    }

    /// The layered verdict as a dict (SPEC §15.4: `token_log10_p`,
    /// `semantic_log10_p`, the weights applied, `log10_p`, `decided_by`);
    /// None without a semantic layer. `verdict` and `log10_p` stand on it.
    #[getter]
    fn layered<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.layered.as_ref().map(|l| to_py(py, &json_of(l)?)).transpose()
    }

    /// Whether the watermark was detected and the spoof-artifact test fired.
    #[getter]
    fn looks_forged(&self) -> bool {
        self.inner.looks_forged()
    }

    /// The p-value the verdict stands on (`verdict_log10_p` as a number; 0.0
    /// when it underflows, see `log10_p`): the whole text's exact p-value
    /// (`outcome.p_value`), or the corrected family p-value when a window was
    /// searched or the canonical form was tested too. None when inconclusive.
    #[getter]
    fn p_value(&self) -> Option<f64> {
        let log10_p = self.inner.verdict_log10_p()?;
        match &self.inner.outcome {
            Outcome::Tested { p_value, .. } if self.inner.outcome.log10_p() == Some(log10_p) => Some(*p_value),
            _ => Some(10f64.powf(log10_p)),
        }
    }

    /// log10 of the p-value the verdict stands on, finite however small
    /// (the same as `verdict_log10_p`); None when inconclusive.
    #[getter]
    fn log10_p(&self) -> Option<f64> {
        self.inner.verdict_log10_p()
    }

    /// How strong the evidence is, whatever the verdict: "none" (at or below
    /// what unwatermarked text scores), "faint" (p above 0.05), "weak"
    /// (p from 1e-3 to 0.05), "moderate" (p from 1e-5 to 1e-3) or "strong";
    /// None when inconclusive. A text "not detected" at p = 3e-6 is "strong".
    #[getter]
    fn strength(&self) -> Option<String> {
        self.inner.strength().map(|s| snake(&s))
    }

    /// The evidence in one sentence, e.g. "a strong signal, about 1 in
    /// 290,000 (p = 3.4e-6), short of the 1e-6 level fixed before the test:
    /// not detected"; None when inconclusive (see `outcome.reason`).
    #[getter]
    fn evidence(&self) -> Option<String> {
        self.inner.evidence()
    }

    /// What to check when a detection was expected and did not come, one line
    /// per item: the key, where the scheme came from, the tokenizer, the
    /// prompt, and what a text of this length needs to be detected.
    #[getter]
    fn checklist(&self) -> Vec<String> {
        self.inner.checklist()
    }

    /// Whether the text is short for its test (reaching the significance
    /// level would need a share of watermarked tokens few texts show).
    #[getter]
    fn is_short(&self) -> bool {
        self.inner.is_short()
    }

    /// Why a window search that was asked for did not run (too few scored
    /// tokens for the shortest window), else None.
    #[getter]
    fn window_skipped(&self) -> Option<String> {
        self.inner.window_skipped.clone()
    }

    /// The whole report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &json_of(&self.shown())?)
    }

    /// The whole report as JSON.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.shown()).map_err(|e| InvalidParameterError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Detection(verdict={:?}, verdict_log10_p={:?}, scored={}, scheme='{}')",
            self.verdict().unwrap_or_default(),
            self.inner.verdict_log10_p(),
            self.inner.counts.scored,
            self.inner.scheme
        )
    }
}

/// The default of `min_tokens` (the CLI's `--min-tokens`), as in the
/// keyword signatures below.
const MIN_TOKENS: usize = 10;

/// The `min_tokens` keyword (the CLI's `--min-tokens`), or its old name
/// `min_scored`.
pub(crate) fn min_tokens_arg(min_tokens: usize, min_scored: Option<usize>) -> PyResult<usize> {
    let n = match min_scored {
        None => min_tokens,
        Some(n) if min_tokens == MIN_TOKENS || min_tokens == n => n,
        Some(n) => {
            return Err(InvalidParameterError::new_err(format!(
                "min_tokens={min_tokens} and min_scored={n}: min_scored is the old name of min_tokens; give one"
            )))
        }
    };
    if n == 0 {
        return Err(InvalidParameterError::new_err(
            "min_tokens must be at least 1 (fewer scored tokens give an inconclusive verdict; 10 is the default)",
        ));
    }
    Ok(n)
}

/// The window search of the `window` and `window_min` keywords (the CLI's
/// `--window` and `--window-min`): the shortest window in scored tokens, or
/// None for no search. `window=True` searches with `window_min` (32 unless
/// given); `window_min` alone also turns the search on; `window=N`, the old
/// spelling, is `window=True, window_min=N`.
pub(crate) fn window_arg(window: Option<&Bound<'_, PyAny>>, window_min: Option<usize>) -> PyResult<Option<usize>> {
    let shortest = match window {
        None => window_min,
        Some(w) => match w.cast::<PyBool>() {
            Ok(on) if on.is_true() => Some(window_min.unwrap_or(WindowOptions::default().min_scored)),
            Ok(_) => match window_min {
                None => None,
                Some(n) => {
                    return Err(InvalidParameterError::new_err(format!(
                        "window=False with window_min={n}: drop window_min, or search with window=True"
                    )))
                }
            },
            Err(_) => {
                let n: usize = w.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "window must be True, False or None (the shortest window is window_min), not {}",
                        w.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                    ))
                })?;
                match window_min {
                    Some(m) if m != n => {
                        return Err(InvalidParameterError::new_err(format!(
                            "window={n} and window_min={m}: window=N is the old spelling of window=True, window_min=N; give one"
                        )))
                    }
                    _ => Some(n),
                }
            }
        },
    };
    match shortest {
        Some(n) if n < 2 => Err(InvalidParameterError::new_err(format!(
            "window_min={n}: a window needs at least 2 scored tokens (the default, 32, is a good choice)"
        ))),
        _ => Ok(shortest),
    }
}

pub(crate) fn options(
    dedup: &str,
    alpha: f64,
    min_tokens: usize,
    marks: bool,
    window: Option<usize>,
    canonicalize: bool,
) -> PyResult<DetectOptions> {
    let dedup: Dedup = dedup.parse().map_err(verifier_err)?;
    Ok(DetectOptions {
        dedup,
        alpha,
        min_scored: min_tokens,
        marks,
        window: window.map(WindowOptions::with_min_scored),
        canonicalize,
    })
}

/// Tests token ids or text for one key's watermark, with exact p-values.
///
/// `Detector(key, scheme, vocab_size, *, dedup="pair", alpha=1e-6,
/// min_tokens=10, marks=False, window=None, window_min=None,
/// canonicalize=True, forgery_reference=None)`; the keywords are the CLI's
/// options of `tracemark detect`:
///
/// - `key`: the watermark key the text was generated under (`Key`; for an
///   account or cohort, `master.derive(label)`).
/// - `scheme`: the scheme exactly as generated, a `SchemeConfig` or a scheme
///   string such as "kgw:gamma=0.25,delta=2,context=lefthash:1".
/// - `vocab_size`: the model's vocabulary size (`model.config.vocab_size`).
/// - `dedup` (`--dedup`): which repeated observations are scored once:
///   "pair" (a repeated context and token, the default), "context" (a
///   repeated context) or "none".
/// - `alpha` (`--alpha`): the significance level of the verdict, fixed before
///   the test (default 1e-6).
/// - `min_tokens` (`--min-tokens`): fewer scored tokens than this give an
///   "inconclusive" verdict with a reason instead of a p-value (default 10).
///   `min_scored` is its old name, still accepted.
/// - `marks`: include the per-token marks in `Detection.to_dict()` /
///   `to_json()` (`detection_report` always gets them).
/// - `window` (`--window`): also search for the most significant window (a
///   watermarked span inside longer text); the verdict then stands on the
///   whole text and the window together (Bonferroni over the two).
///   `window=N` (the old spelling) is `window=True, window_min=N`.
/// - `window_min` (`--window-min`): the shortest window, in scored tokens
///   (default 32); giving it turns the search on.
/// - `canonicalize` (the CLI's `--no-canonicalize` turns it off): test text in
///   its canonical form (invisible characters removed, look-alike letters
///   undone) as well as given, Bonferroni-corrected (default True).
/// - `forgery_reference` (`--forgery-reference`): `(prompt_ids, ids)` pairs
///   of text of the same model (e.g. a sample of served answers); turns on
///   the spoof-artifact test (`Detection.forgery`, `Detection.looks_forged`).
///
/// Unknown keywords raise `TypeError`; bad values raise
/// `InvalidParameterError` saying how to fix them.
///
/// >>> import tracemark as tm
/// >>> key = tm.Key.from_bytes(bytes(range(32)))
/// >>> scheme = tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=1000)
/// >>> detector = tm.Detector(key, scheme.config, 1000, alpha=1e-6, min_tokens=10, window=True, window_min=32)
/// >>> ids = [(37 * i + 11) % 1000 for i in range(60)]    # unwatermarked ids
/// >>> report = detector.detect_ids([1, 2, 3], ids)       # prompt (context only), completion
/// >>> report.verdict, report.counts.scored, report.window.windows_examined > 0
/// ('not_detected', 60, True)
/// >>> tm.Detector(key, scheme.config, 1000, window=True).detect_ids(None, ids[:20]).window_skipped is not None
/// True
#[pyclass(name = "Detector", module = "tracemark", frozen)]
pub(crate) struct PyDetector {
    pub(crate) inner: Detector,
    /// Whether its reports show their marks (`marks=`); it computes them always.
    pub(crate) marks: bool,
    /// The key, for the semantic layer of `detect_text(..., semantic=)`,
    /// which is tested under the same key (zeroized on drop, never shown).
    key: Key,
}

#[pymethods]
impl PyDetector {
    /// See the class documentation for the keywords.
    #[new]
    #[pyo3(signature = (key, scheme, vocab_size, *, dedup = "pair", alpha = 1e-6, min_tokens = 10, marks = false, window = None, window_min = None, canonicalize = true, forgery_reference = None, min_scored = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        key: &PyKey,
        scheme: &Bound<'_, PyAny>,
        vocab_size: usize,
        dedup: &str,
        alpha: f64,
        min_tokens: usize,
        marks: bool,
        window: Option<&Bound<'_, PyAny>>,
        window_min: Option<usize>,
        canonicalize: bool,
        forgery_reference: Option<Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)>>,
        min_scored: Option<usize>,
    ) -> PyResult<Self> {
        // Marks always: a report page shows every token whatever `marks` says.
        let opts = options(
            dedup,
            alpha,
            min_tokens_arg(min_tokens, min_scored)?,
            true,
            window_arg(window, window_min)?,
            canonicalize,
        )?;
        let mut inner = Detector::new(&key.inner, &scheme_config(scheme)?, vocab_size, opts).map_err(verifier_err)?;
        if let Some(docs) = forgery_reference {
            let docs = docs
                .iter()
                .map(|(p, d)| Ok((extract_ids(p)?, extract_ids(d)?)))
                .collect::<PyResult<Vec<_>>>()?;
            let reference = ForgeryReference::from_ids(
                &inner,
                docs.iter().map(|(p, d)| (p.as_slice(), d.as_slice())),
                forgery::DENSE_AT,
                forgery::FORGERY_ALPHA,
            )
            .map_err(verifier_err)?;
            inner = inner
                .with_forgery_reference(std::sync::Arc::new(reference))
                .map_err(verifier_err)?;
        }
        Ok(Self {
            inner,
            marks,
            key: key.inner.clone(),
        })
    }

    /// Tests the `completion` ids; the `prompt` ids (None or empty for none)
    /// seed the first contexts and are never scored. Ids may be lists, 1-D
    /// numpy arrays or torch tensors, or one row held 2-D.
    #[pyo3(signature = (prompt, completion))]
    fn detect_ids(
        &self,
        py: Python<'_>,
        prompt: Option<&Bound<'_, PyAny>>,
        completion: &Bound<'_, PyAny>,
    ) -> PyResult<PyDetection> {
        let d = verify_ids_detached(py, prompt, completion, |p, c| self.inner.detect_ids(p, c))?;
        Ok(self.report(d))
    }

    /// Tests the `completion` ids with per-token `weights` in [0, 1] (one per
    /// completion token, e.g. `position_weights(scheme, logits)` of the model
    /// that wrote it): the weighted test and the unweighted report of the same
    /// observations.
    #[pyo3(signature = (prompt, completion, weights))]
    fn detect_weighted(
        &self,
        py: Python<'_>,
        prompt: Option<&Bound<'_, PyAny>>,
        completion: &Bound<'_, PyAny>,
        weights: Vec<f64>,
    ) -> PyResult<PyWeightedDetection> {
        let inner = verify_ids_detached(py, prompt, completion, |p, c| {
            self.inner.detect_weighted(p, c, &weights)
        })?;
        Ok(PyWeightedDetection {
            inner,
            marks_shown: self.marks,
        })
    }

    /// A streaming detection after the `prompt` ids (None for none): push ids
    /// as they are generated (`push`) and read the running report (`report`),
    /// which equals `detect_ids` on the ids so far.
    #[pyo3(signature = (prompt = None))]
    fn stream(slf: Bound<'_, Self>, prompt: Option<&Bound<'_, PyAny>>) -> PyResult<PyDetectionStream> {
        let prompt = prompt.map(extract_ids).transpose()?.unwrap_or_default();
        let py = slf.py();
        PyDetectionStream::open(slf.unbind(), py, prompt)
    }

    /// Tests a text through `tokenizer` (decode/re-encode path); the `prompt`
    /// text (or None) is context only. `tokenizer` is a `Tokenizer`, the
    /// model's transformers fast tokenizer, or a `tokenizers.Tokenizer`.
    ///
    /// With `semantic=` (a `Semantic` under this detector's key, or a
    /// semantic scheme string such as `"semantic:gamma=0.25,planes=8"`) and
    /// `embedder=` (an `Embedder`), the semantic layer is tested too (SPEC
    /// §15.3, on the canonical form's sentences) and the verdict is the
    /// layered one (SPEC §15.4): `Detection.semantic` and
    /// `Detection.layered` say how.
    #[pyo3(signature = (tokenizer, prompt, text, *, semantic = None, embedder = None))]
    fn detect_text(
        &self,
        py: Python<'_>,
        tokenizer: &Bound<'_, PyAny>,
        prompt: Option<&str>,
        text: &str,
        semantic: Option<&Bound<'_, PyAny>>,
        embedder: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDetection> {
        let tokenizer = tokenizer_arg(tokenizer)?;
        let layer = match (semantic, embedder) {
            (None, None) => None,
            (Some(s), Some(e)) => Some((self.semantic_scheme(s)?, e)),
            (Some(_), None) => {
                return Err(PyTypeError::new_err(
                    "semantic= needs embedder= (a tracemark.Embedder) to embed the sentences",
                ))
            }
            (None, Some(_)) => return Err(PyTypeError::new_err("embedder= is only used with semantic=")),
        };
        let mut d = verify_detached(py, || self.inner.detect_text(&tokenizer, prompt, text))?;
        if let Some((scheme, embedder)) = layer {
            let form = self.inner.semantic_form(text);
            let sentences: Vec<String> = form.scored_sentences(&scheme).into_iter().map(str::to_string).collect();
            let rows: Vec<Vec<f32>> = if sentences.is_empty() {
                Vec::new()
            } else {
                let e = embedder.call_method1("embed", (sentences,))?;
                let e: PyReadonlyArray2<'_, f32> = e.extract().map_err(|_| {
                    PyTypeError::new_err("embedder.embed must return a float32 array of shape (sentences, 384)")
                })?;
                e.as_array().rows().into_iter().map(|r| r.to_vec()).collect()
            };
            verify_detached(py, || {
                let s = form.detect(&scheme, &rows)?;
                d.add_semantic(s)
            })?;
        }
        Ok(self.report(d))
    }
}

impl PyDetector {
    /// The semantic scheme of `semantic=`: a scheme string, keyed with this
    /// detector's key, or a `Semantic`, whose key must be this detector's.
    fn semantic_scheme(&self, semantic: &Bound<'_, PyAny>) -> PyResult<Semantic> {
        let config: String = match semantic.extract::<String>() {
            Ok(s) => s,
            Err(_) => {
                let key_id: String = semantic.getattr("key_id")?.extract()?;
                if key_id != self.key.id().to_string() {
                    return Err(InvalidParameterError::new_err(format!(
                        "semantic= is keyed with key {key_id}, this detector with {}: the layers are tested under one key",
                        self.key.id()
                    )));
                }
                semantic.getattr("config")?.extract()?
            }
        };
        let config: SemanticConfig = config.parse().map_err(core_err)?;
        Semantic::new(&self.key, config).map_err(core_err)
    }
}

impl PyDetector {
    /// A report of this detector: its marks shown as `marks=` says.
    fn report(&self, inner: Detection) -> PyDetection {
        PyDetection {
            inner,
            marks_shown: self.marks,
        }
    }
}

/// A streaming detection: push token ids as they are generated and read the
/// running report at any point; it equals `Detector.detect_ids` on the
/// prompt and every id pushed so far.
#[pyclass(name = "DetectionStream", module = "tracemark")]
pub(crate) struct PyDetectionStream {
    detector: Py<PyDetector>,
    state: DetectionStream,
}

impl PyDetectionStream {
    /// A stream of `detector` after the `prompt` ids.
    pub(crate) fn open(detector: Py<PyDetector>, py: Python<'_>, prompt: Vec<u32>) -> PyResult<Self> {
        let state = detector.get().inner.stream(&prompt).map_err(verifier_err)?;
        let _ = py;
        Ok(Self { detector, state })
    }
}

#[pymethods]
impl PyDetectionStream {
    /// Adds completion ids (a list, numpy array or tensor of ints); on an id
    /// outside the vocabulary nothing is added.
    fn push(&mut self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let ids = extract_ids(ids)?;
        let detector = self.detector.clone_ref(py);
        let state = &mut self.state;
        py.detach(|| detector.get().inner.push(state, &ids))
            .map_err(verifier_err)
    }

    /// The report of the ids so far (`EmptyInputError` before the first).
    fn report(&self, py: Python<'_>) -> PyResult<PyDetection> {
        let d = self
            .detector
            .get()
            .inner
            .stream_report(&self.state)
            .map_err(verifier_err)?;
        let _ = py;
        Ok(self.detector.get().report(d))
    }

    /// Completion ids pushed so far.
    fn __len__(&self) -> usize {
        self.state.len()
    }

    /// Ids scored so far.
    #[getter]
    fn scored(&self) -> usize {
        self.state.scored()
    }

    fn __repr__(&self) -> String {
        format!(
            "DetectionStream(tokens={}, scored={})",
            self.state.len(),
            self.state.scored()
        )
    }
}

/// A weighted detection: the weighted test (exact for kgw and tournament, a
/// conservative Chernoff bound for gumbel) and the unweighted report of the
/// same observations (`unweighted`).
#[pyclass(name = "WeightedDetection", module = "tracemark", frozen)]
pub(crate) struct PyWeightedDetection {
    pub(crate) inner: WeightedDetection,
    /// Whether `to_json` and the unweighted report show the marks (the detector's `marks=`).
    pub(crate) marks_shown: bool,
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
            marks_shown: self.marks_shown,
        }
    }
    /// The whole report as JSON.
    fn to_json(&self) -> PyResult<String> {
        let shown = if self.marks_shown {
            std::borrow::Cow::Borrowed(&self.inner)
        } else {
            let mut w = self.inner.clone();
            w.unweighted.marks = None;
            std::borrow::Cow::Owned(w)
        };
        serde_json::to_string(&shown).map_err(|e| InvalidParameterError::new_err(e.to_string()))
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
