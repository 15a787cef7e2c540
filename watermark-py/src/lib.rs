//! `tracemark._native`: the private native module of the `tracemark` Python
//! package. Bindings only: every computation is in `tracemark-core`,
//! `tracemark-verifier` and (the sentence embedder) `tracemark-candle`.
//! Heavy work releases the GIL; locks are only taken while detached (module
//! `lock`); every error becomes a Python exception that subclasses
//! `ValueError`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod calls;
mod contract;
mod corpus;
mod detect;
mod embed;
mod errors;
mod interop;
mod key;
mod keyring;
mod lock;
mod mix;
mod observe;
mod receipt;
mod report;
mod scheme;
mod semantic;
mod sentences;
mod tokenizer;
mod weighted;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SPEC_VERSION", tracemark_core::SPEC_VERSION)?;
    errors::register(m)?;
    m.add_class::<key::PyKey>()?;
    m.add_class::<contract::PyContract>()?;
    m.add_class::<contract::PyGeneration>()?;
    m.add_class::<contract::PyNull>()?;
    m.add_class::<scheme::PySchemeConfig>()?;
    m.add_class::<scheme::PyScheme>()?;
    m.add_class::<scheme::PyStep>()?;
    m.add_class::<scheme::PySeenContexts>()?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<detect::PyDetector>()?;
    m.add_class::<detect::PyDetection>()?;
    m.add_class::<detect::PyOutcome>()?;
    m.add_class::<detect::PyTestReport>()?;
    m.add_class::<detect::PyCounts>()?;
    m.add_class::<detect::PyWindowReport>()?;
    m.add_class::<detect::PyCanonicalReport>()?;
    m.add_class::<keyring::PyKeyring>()?;
    m.add_class::<keyring::PyKeyringDetector>()?;
    m.add_class::<keyring::PyKeyringDetection>()?;
    m.add_class::<keyring::PyKeyResult>()?;
    m.add_class::<keyring::PyKeyTest>()?;
    m.add_class::<receipt::PySigningKey>()?;
    m.add_class::<receipt::PyVerifyingKey>()?;
    m.add_class::<receipt::PyReceipt>()?;
    m.add_class::<receipt::PyReceiptCheck>()?;
    m.add_function(wrap_pyfunction!(receipt::sign_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(receipt::verify_receipt, m)?)?;
    m.add_class::<detect::PyDetectionStream>()?;
    m.add_function(wrap_pyfunction!(report::detection_report, m)?)?;
    m.add_function(wrap_pyfunction!(corpus::scan_corpus, m)?)?;
    m.add_class::<observe::PyContextFilter>()?;
    m.add_function(wrap_pyfunction!(observe::observe_lines, m)?)?;
    m.add_function(wrap_pyfunction!(observe::observe_arrow, m)?)?;
    m.add_function(wrap_pyfunction!(observe::reference_context_keys, m)?)?;
    m.add_function(wrap_pyfunction!(observe::corpus_test, m)?)?;
    m.add_function(wrap_pyfunction!(observe::total_is_order_free, m)?)?;
    m.add_function(wrap_pyfunction!(observe::sum_in_order, m)?)?;
    m.add_function(wrap_pyfunction!(observe::pair_buckets, m)?)?;
    m.add_function(wrap_pyfunction!(observe::merge_pair_bucket, m)?)?;
    m.add_function(wrap_pyfunction!(detect::canonicalize, m)?)?;
    m.add_function(wrap_pyfunction!(mix::mix, m)?)?;
    m.add_function(wrap_pyfunction!(mix::value16, m)?)?;
    m.add_class::<detect::PyWeightedDetection>()?;
    m.add("SENTENCES_VERSION", tracemark_verifier::SENTENCES_VERSION)?;
    m.add_function(wrap_pyfunction!(sentences::sentences, m)?)?;
    m.add_function(wrap_pyfunction!(sentences::sentence_spans, m)?)?;
    m.add_class::<embed::PyEmbedder>()?;
    m.add_class::<semantic::PySemantic>()?;
    m.add_class::<semantic::PyProjection>()?;
    m.add_function(wrap_pyfunction!(weighted::position_weights, m)?)?;
    interop::register(m)?;
    Ok(())
}
