//! Reading keys, inputs and token ids.

use std::io::Read;
use std::path::Path;

use tracemark_core::Key;
use tracemark_verifier::utf8;

use crate::exit::Failure;

/// Loads a key file.
pub(crate) fn load_key(path: &Path) -> Result<Key, Failure> {
    Key::load(path).map_err(|error| Failure::Key {
        path: path.to_path_buf(),
        error,
    })
}

/// `standard input` for `-`, else the path.
pub(crate) fn source_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// The bytes of a file, or of standard input for `-`.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let r = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    r.map_err(|error| Failure::Read {
        source: path.display().to_string(),
        error,
    })?;
    Ok(bytes)
}

/// Token ids: a JSON array, or whitespace-separated numbers.
pub(crate) fn parse_ids(bytes: &[u8], source: &str) -> Result<Vec<u32>, Failure> {
    let text = utf8(bytes, source)?;
    let trimmed = text.trim();
    let ids = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<u32>>(trimmed).map_err(|e| e.to_string())
    } else {
        trimmed
            .split_whitespace()
            .map(|t| t.parse::<u32>().map_err(|_| format!("{t:?} is not a token id")))
            .collect()
    };
    ids.map_err(|message| Failure::Malformed {
        source: source.to_string(),
        message,
    })
}
