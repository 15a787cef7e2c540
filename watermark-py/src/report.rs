//! Bindings of streaming detection (`Detector::stream`) and of
//! `tracemark_verifier::report` (the HTML report and its sealed JSON).

use pyo3::prelude::*;
use tracemark_verifier::report::{self, Report, Subject};
use tracemark_verifier::{sha256_hex, DetectionStream};

use crate::detect::{PyDetection, PyDetector};
use crate::errors::{verifier_err, InvalidParameterError};
use crate::scheme::extract_ids;

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
        Ok(PyDetection { inner: d })
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

/// The HTML report of a detection and its sealed JSON: `(html, json)`.
///
/// `text` is the input the detection was made on (its tokens are then marked
/// in the page; give the detector `marks=True`); `name` names the input;
/// `command` says how to reproduce the report.
#[pyfunction]
#[pyo3(signature = (detection, *, text = None, name = "text", command = None))]
pub(crate) fn detection_report(
    py: Python<'_>,
    detection: &PyDetection,
    text: Option<String>,
    name: &str,
    command: Option<String>,
) -> PyResult<(String, String)> {
    let d = detection.inner.clone();
    let subject = match (&text, &d.input_sha256) {
        (Some(t), _) => Subject::of_bytes(name, t.as_bytes()),
        (None, Some(sha)) => Subject::of_digest(name, sha.clone(), 0),
        (None, None) => {
            let ids: Vec<u8> = d.marks.iter().flatten().flat_map(|m| m.token.to_le_bytes()).collect();
            Subject::of_digest(name, sha256_hex(&ids), ids.len())
        }
    };
    let command = command.unwrap_or_else(|| "tracemark.detection_report(...) in Python".to_string());
    py.detach(move || {
        let mut r = Report::detection(d, text, subject, command);
        r.seal().map_err(verifier_err)?;
        let json = serde_json::to_string_pretty(&r).map_err(|e| InvalidParameterError::new_err(e.to_string()))?;
        Ok((report::html(&r).map_err(verifier_err)?, json))
    })
}
