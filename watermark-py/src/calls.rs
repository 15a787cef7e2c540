//! The one shape of a binding that calls the verifier: extract the arguments
//! while attached to the interpreter, run the Rust work detached (so other
//! Python threads run meanwhile), and turn its error into a Python exception.

use pyo3::prelude::*;

use crate::errors::verifier_err;
use crate::scheme::extract_ids;

/// Runs verifier work `f` detached from the interpreter; its error becomes
/// the matching Python exception.
pub(crate) fn verify_detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> tracemark_verifier::Result<T> + Send,
{
    py.detach(f).map_err(verifier_err)
}

/// Extracts the `prompt` ids (None: none) and the `completion` ids while
/// attached, then runs `f` on them detached ([`verify_detached`]).
pub(crate) fn verify_ids_detached<T, F>(
    py: Python<'_>,
    prompt: Option<&Bound<'_, PyAny>>,
    completion: &Bound<'_, PyAny>,
    f: F,
) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&[u32], &[u32]) -> tracemark_verifier::Result<T> + Send,
{
    let prompt = prompt.map(extract_ids).transpose()?.unwrap_or_default();
    let completion = extract_ids(completion)?;
    verify_detached(py, || f(&prompt, &completion))
}
