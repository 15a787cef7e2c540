//! Bindings of `tracemark_core::key`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tracemark_core::Key;

use crate::errors::core_err;

/// A 32-byte secret watermark key. There is no default key: generate one,
/// load one, or wrap bytes you hold. The key never prints; `id` is public.
///
/// Constructors: `Key.generate()` (from the operating system's random number
/// generator), `Key.load(path)` (a key file of `save` or `tracemark keygen`),
/// `Key.from_bytes(data)` (exactly 32 bytes); `key.derive(label)` gives the
/// sub-key of an account or cohort.
///
/// >>> import tracemark as tm
/// >>> key = tm.Key.from_bytes(bytes(range(32)))
/// >>> len(key.id), key.derive("cohort/3") == key.derive("cohort/3") != key
/// (32, True)
/// >>> "secret" in repr(key) or key.secret_bytes().hex() in repr(key)
/// False
#[pyclass(name = "Key", module = "tracemark", frozen)]
pub(crate) struct PyKey {
    pub(crate) inner: Key,
}

#[pymethods]
impl PyKey {
    /// A fresh key from the operating system's random number generator.
    #[staticmethod]
    fn generate() -> PyResult<Self> {
        Ok(Self {
            inner: Key::generate().map_err(core_err)?,
        })
    }

    /// A key from exactly 32 bytes.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            inner: Key::from_slice(data).map_err(core_err)?,
        })
    }

    /// Reads a key file written by `save` (or `tracemark keygen`).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        Ok(Self {
            inner: Key::load(&path).map_err(core_err)?,
        })
    }

    /// Writes the key to a new file with mode 0600; never overwrites.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.inner.save(&path).map_err(core_err)
    }

    /// The public key id (32 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The sub-key for a label such as "cohort/3" or "tenant/acme".
    fn derive(&self, label: &str) -> PyResult<Self> {
        Ok(Self {
            inner: self.inner.derive(label).map_err(core_err)?,
        })
    }

    /// The 32 secret bytes. Handle with care: never log them.
    fn secret_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.secret_bytes())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyKey>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        let b = self.inner.id();
        u64::from_le_bytes([
            b.as_bytes()[0],
            b.as_bytes()[1],
            b.as_bytes()[2],
            b.as_bytes()[3],
            b.as_bytes()[4],
            b.as_bytes()[5],
            b.as_bytes()[6],
            b.as_bytes()[7],
        ])
    }

    fn __repr__(&self) -> String {
        format!("Key(id='{}')", self.inner.id())
    }
}
