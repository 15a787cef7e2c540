//! Bindings of `tracemark_verifier::report` (the HTML report and its sealed JSON).

use pyo3::prelude::*;
use tracemark_verifier::report::{self, Report, Subject};
use tracemark_verifier::sha256_hex;

use crate::detect::PyDetection;
use crate::errors::{verifier_err, InvalidParameterError};

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
