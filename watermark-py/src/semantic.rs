//! Bindings of `tracemark_core::semantic`: the keyed semantic scheme
//! (`docs/SPEC.md` §15.3), for generation's sentence-level rejection
//! (`tracemark.hf.generate_layered`) and for looking at regions.

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use tracemark_core::{Projection, Region, Semantic, SemanticConfig};

use crate::errors::core_err;
use crate::key::PyKey;

/// An embedding argument: a 1-D float32 numpy array (read in place) or a
/// sequence of floats (each rounded to float32, as the embedder's output is).
fn embedding(obj: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, f32>>() {
        return Ok(a.as_array().to_vec());
    }
    obj.extract::<Vec<f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "an embedding is a 1-D float32 array or a sequence of 384 floats \
             (one row of Embedder.embed), not {}",
            obj.get_type()
        ))
    })
}

/// Where an embedding falls under a key: `region` (the signs of the
/// projections, bit `j` for normal `j`), `margin` (the distance of the
/// centred embedding to the nearest hyperplane) and `projections` (the dot
/// products with the keyed integer normals; keyed values: do not publish
/// them).
#[pyclass(name = "Projection", module = "tracemark", frozen)]
pub(crate) struct PyProjection {
    inner: Projection,
}

#[pymethods]
impl PyProjection {
    /// The region's id, below `2 ** planes`.
    #[getter]
    fn region(&self) -> u32 {
        self.inner.region().id()
    }

    /// The distance to the nearest hyperplane (generation accepts a
    /// candidate only at a margin of at least the configuration's).
    #[getter]
    fn margin(&self) -> f64 {
        self.inner.margin()
    }

    /// The projections on the normals, in order.
    #[getter]
    fn projections(&self) -> Vec<f64> {
        self.inner.projections().to_vec()
    }

    fn __repr__(&self) -> String {
        format!(
            "Projection(region={}, margin={})",
            self.inner.region().id(),
            self.inner.margin()
        )
    }
}

/// The keyed semantic scheme of one key (`docs/SPEC.md` §15.3): keyed
/// hyperplanes through the public reference mean cut the sentence-embedding
/// space into `2 ** planes` regions, and a region is green (after the
/// previous scored sentence's region, with `chain=previous`) with
/// probability `gamma` over the key.
///
/// `Semantic(key, "semantic:gamma=0.25,planes=8,chain=previous")`; a bad
/// string raises `InvalidParameterError` saying how to fix it. Its repr
/// shows the configuration and the key id only.
///
/// >>> import numpy as np, tracemark as tm
/// >>> s = tm.Semantic(tm.Key.from_bytes(bytes(range(32))), "semantic:gamma=0.25,planes=8,chain=previous")
/// >>> s.config
/// 'semantic:gamma=0.25,planes=8,margin=0.002,min_words=5,chain=previous'
/// >>> e = np.full(384, 0.05, dtype=np.float32)  # an Embedder row in practice
/// >>> r = s.region(e)
/// >>> s.accepts_after(None, e) == (s.is_green_after(None, r) and s.project(e).margin >= s.margin)
/// True
#[pyclass(name = "Semantic", module = "tracemark", frozen)]
pub(crate) struct PySemantic {
    pub(crate) inner: Semantic,
}

#[pymethods]
impl PySemantic {
    #[new]
    fn new(key: &PyKey, scheme: &str) -> PyResult<Self> {
        let config: SemanticConfig = scheme.parse().map_err(core_err)?;
        Ok(Self {
            inner: Semantic::new(&key.inner, config).map_err(core_err)?,
        })
    }

    /// The scheme string, every parameter spelled out.
    #[getter]
    fn config(&self) -> String {
        self.inner.describe()
    }

    /// The public id of the key.
    #[getter]
    fn key_id(&self) -> String {
        self.inner.key_id().to_string()
    }

    /// The requested green share.
    #[getter]
    fn gamma(&self) -> f64 {
        self.inner.config().gamma()
    }

    /// The exact null probability of green, `G / 65536`.
    #[getter]
    fn effective_gamma(&self) -> f64 {
        self.inner.config().effective_gamma()
    }

    /// The number of hyperplanes.
    #[getter]
    fn planes(&self) -> u32 {
        self.inner.config().planes()
    }

    /// The number of regions, `2 ** planes`.
    #[getter]
    fn regions(&self) -> u32 {
        self.inner.config().regions()
    }

    /// The generation margin.
    #[getter]
    fn margin(&self) -> f64 {
        self.inner.config().margin()
    }

    /// The shortest scored sentence, in words.
    #[getter]
    fn min_words(&self) -> u32 {
        self.inner.config().min_words()
    }

    /// `"none"` (order-independent) or `"previous"` (chained on the previous
    /// scored sentence's region).
    #[getter]
    fn chain(&self) -> &'static str {
        self.inner.config().chain().as_str()
    }

    /// Whether a sentence is steered and scored (at least `min_words` words).
    fn is_scored(&self, sentence: &str) -> bool {
        self.inner.config().is_scored(sentence)
    }

    /// The projection of an embedding (384 finite values, else
    /// `InvalidParameterError`).
    fn project(&self, embedding: &Bound<'_, PyAny>) -> PyResult<PyProjection> {
        let e = self::embedding(embedding)?;
        Ok(PyProjection {
            inner: self.inner.project(&e).map_err(core_err)?,
        })
    }

    /// The region id of an embedding.
    fn region(&self, embedding: &Bound<'_, PyAny>) -> PyResult<u32> {
        let e = self::embedding(embedding)?;
        Ok(self.inner.region(&e).map_err(core_err)?.id())
    }

    /// Whether a region (an id) is green by its own keyed value
    /// (`chain=none`; for `chain=previous`, as the first scored sentence).
    fn is_green(&self, region: u32) -> bool {
        self.inner.is_green(Region::new(region))
    }

    /// Whether a scored sentence in `region` is green after `previous`, the
    /// region of the previous scored sentence (None for the first).
    #[pyo3(signature = (previous, region))]
    fn is_green_after(&self, previous: Option<u32>, region: u32) -> bool {
        self.inner
            .is_green_after(previous.map(Region::new), Region::new(region))
    }

    /// Whether generation accepts a candidate sentence's embedding: green
    /// after `previous` (None for the first scored sentence) and at least the
    /// margin from every hyperplane.
    #[pyo3(signature = (previous, embedding))]
    fn accepts_after(&self, previous: Option<u32>, embedding: &Bound<'_, PyAny>) -> PyResult<bool> {
        let e = self::embedding(embedding)?;
        self.inner
            .accepts_after(previous.map(Region::new), &e)
            .map_err(core_err)
    }

    /// `accepts_after(None, embedding)`.
    fn accepts(&self, embedding: &Bound<'_, PyAny>) -> PyResult<bool> {
        let e = self::embedding(embedding)?;
        self.inner.accepts(&e).map_err(core_err)
    }

    fn __repr__(&self) -> String {
        format!(
            "Semantic('{}', key_id='{}')",
            self.inner.describe(),
            self.inner.key_id()
        )
    }
}
