//! Bindings of `tracemark_candle::embed`: the `Embedder` class, sentence
//! embeddings by all-MiniLM-L6-v2 through candle's BERT, in this process.

use std::path::PathBuf;

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use tracemark_candle::embed::{embedder_dir, Embedder};

use crate::errors::candle_err;

/// A sentence embedder: a sentence-transformers BERT model folder
/// (all-MiniLM-L6-v2, which `python3 scripts/fetch.py embedder` fetches),
/// run by tracemark's Rust code through candle, mean-pooled and normalised to
/// unit length as sentence-transformers does (the tests pin a cosine of at
/// least 0.9999 with sentence-transformers on the same sentences).
///
/// `Embedder()` loads the folder at `$TRACEMARK_EMBEDDER`, or the one
/// `scripts/fetch.py embedder` put in the cache; `Embedder(path)` loads
/// `path`. A missing folder raises `TracemarkIOError`, a folder that is not
/// a mean-pooled BERT model `ModelError`.
///
/// For example (it needs the model, so it is not a doctest), `v =
/// tm.Embedder().embed(["A cat sits on the mat.", "A kitten rests on a
/// rug."])` is a float32 array of shape `(2, 384)`, and `v[0] @ v[1]` (the
/// cosine) is about 0.8.
#[pyclass(name = "Embedder", module = "tracemark", frozen)]
pub(crate) struct PyEmbedder {
    inner: Embedder,
}

#[pymethods]
impl PyEmbedder {
    #[new]
    #[pyo3(signature = (path=None))]
    fn new(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        let inner = py
            .detach(|| {
                let dir = match path {
                    Some(p) => p,
                    None => embedder_dir()?,
                };
                Embedder::load(&dir)
            })
            .map_err(candle_err)?;
        Ok(Self { inner })
    }

    /// The embeddings of `sentences` (a sequence of strings, not one string):
    /// float32, shape `(len(sentences), dim)`, one unit-length row per
    /// sentence in the order given.
    fn embed<'py>(&self, py: Python<'py>, sentences: Vec<String>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let rows = sentences.len();
        let embeddings = py.detach(|| self.inner.embed(&sentences)).map_err(candle_err)?;
        let dim = embeddings.dim();
        PyArray1::from_vec(py, embeddings.into_vec()).reshape([rows, dim])
    }

    /// The number of word pieces of `sentence` the model sees, `[CLS]` and
    /// `[SEP]` included, after truncation to `max_tokens`.
    fn token_count(&self, sentence: &str) -> PyResult<usize> {
        self.inner.token_count(sentence).map_err(candle_err)
    }

    /// The dimension of the embeddings (384).
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The most word pieces of a sentence the model sees (256); the rest of a
    /// longer sentence is cut off.
    #[getter]
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    /// Whether embeddings are normalised to unit length.
    #[getter]
    fn normalizes(&self) -> bool {
        self.inner.normalizes()
    }

    /// `sha256:` and the SHA-256 of the weights file: which weights made an
    /// embedding.
    #[getter]
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }

    fn __repr__(&self) -> String {
        format!(
            "Embedder(dim={}, max_tokens={}, fingerprint='{}')",
            self.inner.dim(),
            self.inner.max_tokens(),
            self.inner.fingerprint()
        )
    }
}
