//! Bindings of `tracemark_verifier::report` (the HTML report and its sealed JSON).

use std::ffi::CString;

use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use tracemark_verifier::internal::sha256_hex;
use tracemark_verifier::report::{self, Report, Subject};

use crate::detect::PyDetection;
use crate::errors::{verifier_err, InvalidParameterError};

/// The HTML report of a detection and its sealed JSON: `(html, json)`.
///
/// `text` is the input the detection was made on: its tokens are marked in
/// the page (a `Detector`'s reports always carry the per-token marks, whatever
/// its `marks=`); `name` names the input; `command` says how to reproduce the
/// report. Given `text`, a detection without marks (the aggregate of a
/// corpus) or made on ids gives a page with the text unmarked, and a
/// `UserWarning` says so.
///
/// >>> import tracemark as tm
/// >>> key = tm.Key.from_bytes(bytes(range(32)))
/// >>> detection = tm.Detector(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 1000).detect_ids(None, list(range(40)))
/// >>> html, sealed = tm.detection_report(detection, name="ids.json")
/// >>> html.startswith("<!DOCTYPE html>"), '"marks"' in sealed
/// (True, True)
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
    if let Some(why) = unmarked(&d, text.is_some()) {
        let message = CString::new(format!("detection_report: {why}")).unwrap_or_default();
        PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)?;
    }
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

/// Why the page of `d` will show no marked tokens, when it has tokens to
/// show: no marks at all, or marks without positions in the `text` given.
fn unmarked(d: &tracemark_verifier::Detection, text_given: bool) -> Option<&'static str> {
    match &d.marks {
        None if text_given => Some(
            "this detection has no per-token marks (a corpus aggregate), so the page shows `text` without marked \
             tokens; report a Detector's detect_text of it instead",
        ),
        Some(marks) if text_given && !marks.is_empty() && marks.iter().all(|m| m.span.is_none()) => Some(
            "the detection was made on token ids, whose marks have no positions in `text`: the page shows the text \
             unmarked; detect with detect_text(tokenizer, prompt, text) to mark its tokens",
        ),
        _ => None,
    }
}
