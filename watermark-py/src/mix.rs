//! Bindings of `tracemark_core::mix`, for the golden vectors.

use pyo3::prelude::*;

/// The per-token mix of SPEC §6: a uniform 32-bit word from a seed and a word.
#[pyfunction]
pub(crate) fn mix(seed: u64, word: u32) -> u32 {
    tracemark_core::mix::mix(seed, word)
}

/// `value16(seed, token)` of SPEC §7.
#[pyfunction]
pub(crate) fn value16(seed: u64, token: u32) -> u16 {
    tracemark_core::mix::value16(seed, token)
}
