//! Python exceptions (all subclass `ValueError` through `TracemarkError`), and
//! the conversion of every Rust error into one. (A Rust panic is a bug, never
//! an error of the input: PyO3 raises it as `pyo3_runtime.PanicException`.)

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pyo3::create_exception!(
    tracemark,
    TracemarkError,
    PyValueError,
    "Base class of every tracemark error (a ValueError)."
);
pyo3::create_exception!(
    tracemark,
    InvalidParameterError,
    TracemarkError,
    "A scheme or option parameter is out of range."
);
pyo3::create_exception!(
    tracemark,
    NonFiniteLogitError,
    TracemarkError,
    "A logit is NaN or +inf."
);
pyo3::create_exception!(
    tracemark,
    VocabMismatchError,
    TracemarkError,
    "A logits row does not match the vocabulary size."
);
pyo3::create_exception!(
    tracemark,
    TokenOutOfRangeError,
    TracemarkError,
    "A token id is outside the vocabulary (wrong tokenizer?)."
);
pyo3::create_exception!(
    tracemark,
    LogitsLayoutError,
    TracemarkError,
    "Logits must be C-contiguous float32 arrays."
);
pyo3::create_exception!(
    tracemark,
    NotABiasSchemeError,
    TracemarkError,
    "The scheme decides the sampling distribution from the logits: it has no bias to add on its own."
);
pyo3::create_exception!(
    tracemark,
    InvalidKeyError,
    TracemarkError,
    "A key or key file is malformed or corrupted."
);
pyo3::create_exception!(
    tracemark,
    KeyFileExistsError,
    TracemarkError,
    "Refused to overwrite an existing key file."
);
pyo3::create_exception!(tracemark, EmptyInputError, TracemarkError, "There is no token to test.");
pyo3::create_exception!(
    tracemark,
    TokenizerError,
    TracemarkError,
    "The tokenizer could not be loaded or failed."
);
pyo3::create_exception!(
    tracemark,
    TracemarkIOError,
    TracemarkError,
    "A file could not be read or written."
);
pyo3::create_exception!(
    tracemark,
    MalformedReceiptError,
    TracemarkError,
    "A provenance receipt is not well formed (a bad signature is a verification result, not this error)."
);
pyo3::create_exception!(
    tracemark,
    ModelError,
    TracemarkError,
    "A model folder lacks something tracemark needs, or the model runtime failed."
);

/// Registers the exception classes on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, ty) in [
        ("TracemarkError", py.get_type::<TracemarkError>()),
        ("InvalidParameterError", py.get_type::<InvalidParameterError>()),
        ("NonFiniteLogitError", py.get_type::<NonFiniteLogitError>()),
        ("VocabMismatchError", py.get_type::<VocabMismatchError>()),
        ("TokenOutOfRangeError", py.get_type::<TokenOutOfRangeError>()),
        ("LogitsLayoutError", py.get_type::<LogitsLayoutError>()),
        ("NotABiasSchemeError", py.get_type::<NotABiasSchemeError>()),
        ("InvalidKeyError", py.get_type::<InvalidKeyError>()),
        ("KeyFileExistsError", py.get_type::<KeyFileExistsError>()),
        ("EmptyInputError", py.get_type::<EmptyInputError>()),
        ("TokenizerError", py.get_type::<TokenizerError>()),
        ("TracemarkIOError", py.get_type::<TracemarkIOError>()),
        ("MalformedReceiptError", py.get_type::<MalformedReceiptError>()),
        ("ModelError", py.get_type::<ModelError>()),
    ] {
        m.add(name, ty)?;
    }
    Ok(())
}

/// The Python exception of a core error.
pub(crate) fn core_err(e: tracemark_core::Error) -> PyErr {
    use tracemark_core::Error as E;
    let msg = e.to_string();
    match e {
        E::InvalidParameter { .. } | E::InvalidLabel { .. } => InvalidParameterError::new_err(msg),
        E::NonFiniteLogit { .. } | E::NoSelectableToken { .. } => NonFiniteLogitError::new_err(msg),
        E::VocabMismatch { .. } | E::EmptyLogits | E::BatchMismatch { .. } => VocabMismatchError::new_err(msg),
        E::TokenOutOfRange { .. } => TokenOutOfRangeError::new_err(msg),
        E::NotContiguous => LogitsLayoutError::new_err(msg),
        E::NotABiasScheme { .. } => NotABiasSchemeError::new_err(msg),
        E::InvalidKey { .. } | E::Rng { .. } => InvalidKeyError::new_err(msg),
        E::KeyFileExists { .. } => KeyFileExistsError::new_err(msg),
        E::Io { .. } => TracemarkIOError::new_err(msg),
        _ => TracemarkError::new_err(msg),
    }
}

/// The Python exception of a verifier error.
pub(crate) fn verifier_err(e: tracemark_verifier::Error) -> PyErr {
    use tracemark_verifier::Error as E;
    let msg = e.to_string();
    match e {
        E::Core(c) => core_err(c),
        E::EmptyInput => EmptyInputError::new_err(msg),
        E::WrongTokenizer { .. } => TokenOutOfRangeError::new_err(msg),
        E::Tokenizer { .. } | E::InvalidUtf8 { .. } => TokenizerError::new_err(msg),
        E::Io { .. } => TracemarkIOError::new_err(msg),
        E::InvalidOption { .. } | E::UnsupportedScheme { .. } => InvalidParameterError::new_err(msg),
        E::WrongKeyFile { .. } | E::InvalidKeyFile { .. } => InvalidKeyError::new_err(msg),
        E::MalformedReceipt { .. } => MalformedReceiptError::new_err(msg),
        _ => TracemarkError::new_err(msg),
    }
}

/// The Python exception of a tracemark-candle error (the sentence embedder's).
pub(crate) fn candle_err(e: tracemark_candle::Error) -> PyErr {
    use tracemark_candle::Error as E;
    let msg = e.to_string();
    match e {
        E::Core(c) => core_err(c),
        E::Io { .. } => TracemarkIOError::new_err(msg),
        E::Tokenizer(_) => TokenizerError::new_err(msg),
        E::Usage(_) => InvalidParameterError::new_err(msg),
        E::Candle(_) | E::Model(_) => ModelError::new_err(msg),
        _ => TracemarkError::new_err(msg),
    }
}
