//! The run set-up shared by the experiments: the cache directory, the model
//! file, the keys of full and quick runs, the evaluation prompts, report dates,
//! and I/O errors that name their path.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The key stored at `path`, or a fresh one from the OS RNG saved there
/// (mode 0600): the full runs keep one key across reruns and resumed caches.
pub fn stored_key(path: &std::path::Path) -> Result<tracemark_core::Key> {
    if path.exists() {
        return Ok(tracemark_core::Key::load(path)?);
    }
    let key = tracemark_core::Key::generate()?;
    key.save(path)?;
    Ok(key)
}

/// The key of the `--quick` runs inside `make test`: fixed, so that the
/// checks are reproducible test fixtures rather than draws that depend on a
/// freshly generated key. Never use it for anything else; the full runs
/// generate a key with the OS RNG.
pub fn quick_test_key(label: &str) -> tracemark_core::Key {
    let mut rng = tracemark_candle::Rng::new(0x7e57);
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let salt = label
            .bytes()
            .fold(i as u64, |h, b| h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b));
        chunk.copy_from_slice(&(rng.next_u64() ^ salt).to_le_bytes());
    }
    tracemark_core::Key::from_bytes(bytes)
}

/// `r`, with an I/O error naming `path`.
pub fn io<T>(path: &std::path::Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(path, e))
}

/// The cache directory and the model file, as the demo finds them.
pub use tracemark_candle::paths::cache_dir;

/// The model file: `$TRACEMARK_MODEL`, or where `scripts/fetch.py model` puts it.
pub fn model_path() -> Result<PathBuf> {
    Ok(tracemark_candle::paths::model_path()?)
}

/// The prompts of the evaluation set (`lab/data/prompts.txt`, one per line).
pub fn prompts() -> Vec<&'static str> {
    include_str!("../data/prompts.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Today's date as `YYYY-MM-DD` (UTC), from the system clock, for report names.
pub fn today() -> String {
    tracemark_verifier::receipt::Timestamp::now().as_str()[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_key_is_created_once_then_reloaded() -> std::result::Result<(), String> {
        let dir = std::env::temp_dir().join(format!("tracemark-stored-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("run.key");
        let first = stored_key(&path).map_err(|e| e.to_string())?;
        let again = stored_key(&path).map_err(|e| e.to_string())?;
        assert_eq!(first.id(), again.id());
        let other = stored_key(&dir.join("other.key")).map_err(|e| e.to_string())?;
        assert_ne!(first.id(), other.id());
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())
    }
}
