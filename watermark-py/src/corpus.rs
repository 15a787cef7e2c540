//! Bindings of `tracemark_verifier::corpus`.

use std::path::PathBuf;

use pyo3::prelude::*;
use tracemark_verifier::{context_keys, scan_path, ContextFilter, DocResult, Scanner};

use crate::detect::{json_of, to_py, PyDetector};
use crate::errors::{verifier_err, EmptyInputError, InvalidParameterError, TracemarkIOError};
use crate::tokenizer::optional_tokenizer_arg;

/// What the verifier says of a text line scanned without a tokenizer; the
/// CLI's option in it becomes this function's keyword.
const NO_TOKENIZER: (&str, &str) = ("(--tokenizer)", "(pass tokenizer= to scan_corpus)");

/// Scans a JSONL corpus (one `{"text": ...}` or `{"ids": [...]}` document per
/// line) with a detector. Returns `(documents, summary)`: a list with one
/// dict per document line, and the summary with the aggregate test over all
/// documents (deduplicated across documents). `tokenizer` (needed for text
/// documents) is a `Tokenizer`, the model's transformers fast tokenizer, or
/// a `tokenizers.Tokenizer`. With `reference` (a JSONL corpus of your own
/// watermarked outputs), only contexts seen there are scored. `jobs` is the
/// number of threads (0: one per core). Bad lines are reported, counted, and
/// skipped; when no line could be tested at all, it raises instead
/// (`InvalidParameterError` for text without a tokenizer, else
/// `EmptyInputError` with the first lines' errors). Releases the GIL.
#[pyfunction]
#[pyo3(signature = (detector, path, *, tokenizer = None, jobs = 0, reference = None))]
pub(crate) fn scan_corpus<'py>(
    py: Python<'py>,
    detector: &PyDetector,
    path: PathBuf,
    tokenizer: Option<&Bound<'py, PyAny>>,
    jobs: usize,
    reference: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let tokenizer = optional_tokenizer_arg(tokenizer)?;
    let tok = tokenizer.as_deref();
    let (mut docs, summary) = py.detach(|| -> Result<_, PyErr> {
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
    if tok.is_none() {
        for e in docs.iter_mut().filter_map(|d| d.error.as_mut()) {
            *e = e.replace(NO_TOKENIZER.0, NO_TOKENIZER.1);
        }
    }
    if summary.documents > 0 && summary.errors == summary.documents {
        return Err(nothing_tested(&path, &docs, tok.is_none()));
    }
    Ok((to_py(py, &json_of(&docs)?)?, to_py(py, &json_of(&summary)?)?))
}

/// The error of a scan in which every document failed.
fn nothing_tested(path: &std::path::Path, docs: &[DocResult], no_tokenizer: bool) -> PyErr {
    let errors: Vec<(usize, &str)> = docs
        .iter()
        .filter_map(|d| d.error.as_deref().map(|e| (d.line, e)))
        .collect();
    if no_tokenizer && errors.iter().any(|(_, e)| e.contains(NO_TOKENIZER.1)) {
        return InvalidParameterError::new_err(format!(
            "no document of {} could be tested: they are text, and text needs the model's tokenizer: \
             scan_corpus(detector, path, tokenizer=tokenizer) (a tracemark.Tokenizer, or the transformers tokenizer itself)",
            path.display()
        ));
    }
    let first: Vec<String> = errors.iter().take(3).map(|(n, e)| format!("line {n}: {e}")).collect();
    EmptyInputError::new_err(format!(
        "no document of {} could be tested ({} of {} lines failed); {}",
        path.display(),
        errors.len(),
        docs.len(),
        first.join("; ")
    ))
}
