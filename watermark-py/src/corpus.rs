//! Bindings of `tracemark_verifier::corpus`.

use std::path::PathBuf;

use pyo3::prelude::*;
use tracemark_verifier::{context_keys, scan_path, ContextFilter, Scanner};

use crate::detect::{json_of, to_py, PyDetector, PyTokenizer};
use crate::errors::{verifier_err, TracemarkIOError};

/// Scans a JSONL corpus (one `{"text": ...}` or `{"ids": [...]}` document per
/// line) with a detector. Returns `(documents, summary)`: a list with one
/// dict per document line, and the summary with the aggregate test over all
/// documents (deduplicated across documents). With `reference` (a JSONL
/// corpus of your own watermarked outputs), only contexts seen there are
/// scored. Bad lines are reported, counted, and skipped. Releases the GIL.
#[pyfunction]
#[pyo3(signature = (detector, path, *, tokenizer = None, jobs = 0, reference = None))]
pub(crate) fn scan_corpus<'py>(
    py: Python<'py>,
    detector: &PyDetector,
    path: PathBuf,
    tokenizer: Option<&PyTokenizer>,
    jobs: usize,
    reference: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let tok = tokenizer.map(|t| &t.inner);
    let (docs, summary) = py.detach(|| -> Result<_, PyErr> {
        let filter: Option<ContextFilter> = match &reference {
            Some(p) => {
                let f =
                    std::fs::File::open(p).map_err(|e| TracemarkIOError::new_err(format!("{}: {e}", p.display())))?;
                Some(context_keys(&detector.inner, tok, std::io::BufReader::new(f)).map_err(verifier_err)?)
            }
            None => None,
        };
        let mut scanner = Scanner::new(&detector.inner, tok).jobs(jobs);
        if let Some(f) = &filter {
            scanner = scanner.filter(f);
        }
        let mut docs = Vec::new();
        let summary = scan_path(&scanner, &path, |d| docs.push(d.clone())).map_err(verifier_err)?;
        Ok((docs, summary))
    })?;
    Ok((to_py(py, &json_of(&docs)?)?, to_py(py, &json_of(&summary)?)?))
}
