//! `keygen`, `key-id` and `derive`.

use std::path::Path;

use tracemark_core::Key;

use crate::exit::{Exit, Failure};
use crate::input::load_key;

fn key_failure(path: &Path) -> impl FnOnce(tracemark_core::Error) -> Failure + '_ {
    move |error| Failure::Key {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes a new key to `out` and prints its id.
pub(crate) fn keygen(out: &Path) -> Result<Exit, Failure> {
    let key = Key::generate().map_err(key_failure(out))?;
    key.save(out).map_err(key_failure(out))?;
    println!("{}", key.id());
    Ok(Exit::Success)
}

/// Prints the id of the key in `key`.
pub(crate) fn key_id(key: &Path) -> Result<Exit, Failure> {
    println!("{}", load_key(key)?.id());
    Ok(Exit::Success)
}

/// Derives the sub-key for `label` from `key`, writes it to `out` and prints its id.
pub(crate) fn derive(key: &Path, label: &str, out: &Path) -> Result<Exit, Failure> {
    let child = load_key(key)?.derive(label).map_err(key_failure(key))?;
    child.save(out).map_err(key_failure(out))?;
    println!("{}", child.id());
    Ok(Exit::Success)
}
