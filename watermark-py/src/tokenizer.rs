//! Bindings of `tracemark_verifier::text::tokenizer`: the `Tokenizer` class,
//! and the tokenizer argument every text function takes (a `Tokenizer`, or a
//! Hugging Face tokenizer read through its `tokenizer.json`).

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use tracemark_verifier::internal::sha256_hex;
use tracemark_verifier::TextTokenizer;

use crate::errors::verifier_err;
use crate::lock::{detach, DetachedMutex};
use crate::scheme::extract_ids;

/// A tokenizer in the Hugging Face `tokenizer.json` format: text in, the ids
/// the model generated out. Every text function (`Detector.detect_text`,
/// `scan_corpus`, `verify_receipt`, ...) takes one, or takes the model's
/// transformers tokenizer (or a `tokenizers.Tokenizer`) as it is.
///
/// Build one with:
///
/// - `Tokenizer.from_file(path)`: a `tokenizer.json` file (the model
///   repository's); `fingerprint` is the SHA-256 of the file.
/// - `Tokenizer.from_json(json)`: the contents of such a file, as a string.
/// - `Tokenizer.from_transformers(tok)`: a transformers fast tokenizer
///   (`AutoTokenizer.from_pretrained(...)`) or a `tokenizers.Tokenizer`,
///   through its JSON (`tok.backend_tokenizer.to_str()`), without the
///   truncation and padding a transformers call may have left on it. Passing
///   `tok` itself to a text function does the same (and keeps the last one
///   converted, so a loop over texts converts it once).
///
/// >>> import json, tracemark as tm
/// >>> spec = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
/// ...         "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
/// ...         "decoder": None, "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}, "unk_token": "a"}}
/// >>> tok = tm.Tokenizer.from_json(json.dumps(spec))
/// >>> tok.encode("b a b"), tok.vocab_size
/// ([1, 0, 1], 2)
/// >>> tok.fingerprint.startswith("sha256:")
/// True
#[pyclass(name = "Tokenizer", module = "tracemark", frozen)]
pub(crate) struct PyTokenizer {
    pub(crate) inner: Arc<TextTokenizer>,
}

#[pymethods]
impl PyTokenizer {
    /// Loads a `tokenizer.json`; `fingerprint` is the SHA-256 of the file.
    #[staticmethod]
    fn from_file(path: std::path::PathBuf) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(TextTokenizer::from_file(&path).map_err(verifier_err)?),
        })
    }

    /// Parses the contents of a `tokenizer.json`; `fingerprint` is the
    /// SHA-256 of `json`'s UTF-8 bytes, as `from_file` on a file holding them.
    #[staticmethod]
    fn from_json(py: Python<'_>, json: &str) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(
                py.detach(|| TextTokenizer::from_bytes(json.as_bytes()))
                    .map_err(verifier_err)?,
            ),
        })
    }

    /// The tokenizer of a transformers fast tokenizer (or of a
    /// `tokenizers.Tokenizer`), from its JSON without truncation or padding;
    /// `fingerprint` is the SHA-256 of that JSON. A slow transformers
    /// tokenizer raises `TypeError` saying how to load the fast one.
    #[staticmethod]
    fn from_transformers(tokenizer: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(t) = tokenizer.cast::<PyTokenizer>() {
            return Ok(Self {
                inner: t.get().inner.clone(),
            });
        }
        Ok(Self {
            inner: converted(tokenizer)?,
        })
    }

    /// Encodes text without adding special tokens.
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        Ok(py.detach(|| self.inner.encode(text)).map_err(verifier_err)?.ids)
    }

    /// Decodes ids to text.
    fn decode(&self, ids: &Bound<'_, PyAny>) -> PyResult<String> {
        self.inner.decode(&extract_ids(ids)?).map_err(verifier_err)
    }

    /// Vocabulary size, special tokens included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// `sha256:<hex>` of the `tokenizer.json` bytes it was built from.
    #[getter]
    fn fingerprint(&self) -> String {
        self.inner.info().fingerprint.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Tokenizer(fingerprint='{}', vocab_size={})",
            self.inner.info().fingerprint,
            self.inner.vocab_size()
        )
    }
}

/// The tokenizer argument of a text function: a `tracemark.Tokenizer`, a
/// transformers fast tokenizer, or a `tokenizers.Tokenizer`.
pub(crate) fn tokenizer_arg(tokenizer: &Bound<'_, PyAny>) -> PyResult<Arc<TextTokenizer>> {
    match tokenizer.cast::<PyTokenizer>() {
        Ok(t) => Ok(t.get().inner.clone()),
        Err(_) => converted(tokenizer),
    }
}

/// [`tokenizer_arg`] of an optional argument.
pub(crate) fn optional_tokenizer_arg(tokenizer: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<TextTokenizer>>> {
    tokenizer.map(tokenizer_arg).transpose()
}

/// The last Hugging Face tokenizer converted, by fingerprint: a loop that
/// passes the same transformers tokenizer to every call parses its JSON once.
static LAST_CONVERTED: DetachedMutex<Option<Arc<TextTokenizer>>> = DetachedMutex::new(None);

/// A Hugging Face tokenizer, through its JSON.
fn converted(tokenizer: &Bound<'_, PyAny>) -> PyResult<Arc<TextTokenizer>> {
    let json = hugging_face_json(tokenizer)?;
    detach(tokenizer.py(), |d| {
        let fingerprint = sha256_hex(json.as_bytes());
        let mut last = LAST_CONVERTED.lock(d);
        if let Some(t) = last.as_ref().filter(|t| t.info().fingerprint == fingerprint) {
            return Ok(t.clone());
        }
        let t = Arc::new(TextTokenizer::from_bytes(json.as_bytes())?);
        *last = Some(t.clone());
        Ok(t)
    })
    .map_err(verifier_err)
}

/// The `tokenizer.json` of a transformers fast tokenizer or a
/// `tokenizers.Tokenizer`, without truncation or padding (a transformers call
/// with `truncation=True` leaves it on its backend; detection must see every
/// token).
fn hugging_face_json(tokenizer: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = tokenizer.py();
    let backend = if tokenizer.hasattr(intern!(py, "backend_tokenizer"))? {
        tokenizer.getattr(intern!(py, "backend_tokenizer"))?
    } else if tokenizer.hasattr(intern!(py, "to_str"))? && tokenizer.hasattr(intern!(py, "no_truncation"))? {
        tokenizer.clone()
    } else if tokenizer.hasattr(intern!(py, "is_fast"))? {
        let name: String = tokenizer
            .getattr(intern!(py, "name_or_path"))
            .and_then(|n| n.extract())
            .unwrap_or_default();
        let name = if name.is_empty() {
            "<model name or path>".to_string()
        } else {
            name
        };
        return Err(PyTypeError::new_err(format!(
            "{} is a slow (pure-Python) transformers tokenizer, which has no tokenizer.json; \
             pass the fast one instead: AutoTokenizer.from_pretrained({name:?}) (without use_fast=False)",
            tokenizer.get_type().name()?
        )));
    } else {
        return Err(PyTypeError::new_err(format!(
            "tokenizer must be a tracemark.Tokenizer, a transformers fast tokenizer or a tokenizers.Tokenizer, not {}",
            tokenizer.get_type().name()?
        )));
    };
    let unset = |name: &Bound<'_, pyo3::types::PyString>| -> PyResult<bool> { Ok(backend.getattr(name)?.is_none()) };
    let backend = if unset(intern!(py, "truncation"))? && unset(intern!(py, "padding"))? {
        backend
    } else {
        let json = backend.call_method0(intern!(py, "to_str"))?;
        let copy = backend.get_type().call_method1(intern!(py, "from_str"), (json,))?;
        copy.call_method0(intern!(py, "no_truncation"))?;
        copy.call_method0(intern!(py, "no_padding"))?;
        copy
    };
    backend.call_method0(intern!(py, "to_str"))?.extract()
}
