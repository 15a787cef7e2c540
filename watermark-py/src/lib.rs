//! `tracemark._native`: the private native module of the `tracemark` Python
//! package. Bindings only: every computation is in `tracemark-core` and
//! `tracemark-verifier`. Heavy work releases the GIL; every entry point
//! converts errors (and, defensively, panics) into Python exceptions that
//! subclass `ValueError`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod corpus;
mod detect;
mod errors;
mod key;
mod keyring;
mod scheme;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SPEC_VERSION", tracemark_core::SPEC_VERSION)?;
    errors::register(m)?;
    m.add_class::<key::PyKey>()?;
    m.add_class::<scheme::PyScheme>()?;
    m.add_class::<scheme::PyStep>()?;
    m.add_class::<scheme::PySeenContexts>()?;
    m.add_class::<detect::PyTokenizer>()?;
    m.add_class::<detect::PyDetector>()?;
    m.add_class::<detect::PyDetection>()?;
    m.add_class::<keyring::PyKeyring>()?;
    m.add_class::<keyring::PyKeyringDetector>()?;
    m.add_function(wrap_pyfunction!(corpus::scan_corpus, m)?)?;
    m.add_function(wrap_pyfunction!(scheme::mix, m)?)?;
    m.add_function(wrap_pyfunction!(scheme::value16, m)?)?;
    Ok(())
}
