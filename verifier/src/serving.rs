//! Serving manifests: the scheme (and tokenizer) a key was served with,
//! kept beside the key file, so that a test uses the scheme that was served
//! and says so, and a different scheme is flagged (SPEC §2.5).
//!
//! Testing the same text under several schemes until one gives a small
//! p-value ("scheme shopping") breaks the test's guarantee: the level holds
//! for one scheme fixed before the test. The manifest fixes it: `tracemark
//! keygen --scheme ...` writes `KEY.serving.json` beside the key, with a MAC
//! under the key, and `detect`, `scan`, `radioactivity`, `report` and
//! `serve` take the scheme from it when `--scheme` is not given, and warn
//! when it is given and differs.
//!
//! ```
//! use tracemark_core::{Key, SchemeConfig};
//! use tracemark_verifier::serving::{resolve_scheme, ServingManifest};
//!
//! let key = Key::generate()?;
//! let served: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse()?;
//! let manifest = ServingManifest::new(&key, &served, None);
//! let json = manifest.to_json();
//! let back = ServingManifest::from_json(&json, &key, "demo.key.serving.json")?;
//! assert_eq!(back.scheme()?, served);
//!
//! // A scheme given by hand that was never served is tested, and flagged.
//! let other: SchemeConfig = "kgw:gamma=0.5,delta=2,context=lefthash:1".parse()?;
//! let (scheme, source) = resolve_scheme(Some(&other), Some(&back))?;
//! assert_eq!(scheme, other);
//! assert!(source.warning.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracemark_core::{Key, SchemeConfig};

use crate::error::{Error, Result};

/// The format tag of a serving manifest.
pub const MANIFEST_FORMAT: &str = "tracemark-serving/1";

/// A manifest is one short JSON object; anything longer is not one.
const MANIFEST_MAX_LEN: u64 = 4096;

/// What a key was served with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServingManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The public id of the key it belongs to.
    pub key_id: String,
    /// The scheme string the key was served with (canonical form).
    pub scheme: String,
    /// The fingerprint of the tokenizer of the served model, when recorded.
    pub tokenizer: Option<String>,
    /// `Key::serving_mac(scheme, tokenizer or "")` in lowercase hex.
    pub mac: String,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    tracemark_core::internal::push_hex(&mut s, bytes);
    s
}

impl ServingManifest {
    /// The manifest of `key` served with `scheme` (and the tokenizer with
    /// fingerprint `tokenizer`, when known).
    pub fn new(key: &Key, scheme: &SchemeConfig, tokenizer: Option<&str>) -> Self {
        let scheme = scheme.to_string();
        let mac = hex(&key.serving_mac(&scheme, tokenizer.unwrap_or("")));
        ServingManifest {
            format: MANIFEST_FORMAT.to_string(),
            key_id: key.id().to_string(),
            scheme,
            tokenizer: tokenizer.map(str::to_string),
            mac,
        }
    }

    /// Where the manifest of the key file `key_path` lives: the same path with
    /// `.serving.json` appended.
    pub fn path_for(key_path: &Path) -> PathBuf {
        let mut p = key_path.as_os_str().to_owned();
        p.push(".serving.json");
        PathBuf::from(p)
    }

    /// The manifest as one line of JSON (with its final newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses and checks a manifest: the format, the key id and the MAC under
    /// `key`. `path` names it in errors.
    pub fn from_json(text: &str, key: &Key, path: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidManifest {
            path: path.to_string(),
            reason,
        };
        let m: ServingManifest =
            serde_json::from_str(text.trim_end()).map_err(|e| bad(format!("not a serving manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!("format {:?}, expected {MANIFEST_FORMAT:?}", m.format)));
        }
        if m.key_id != key.id().to_string() {
            return Err(bad(format!(
                "it belongs to key {}, not to this key ({}): a manifest names the key it was written for",
                m.key_id,
                key.id()
            )));
        }
        let expected = hex(&key.serving_mac(&m.scheme, m.tokenizer.as_deref().unwrap_or("")));
        if m.mac.to_ascii_lowercase() != expected {
            return Err(bad(
                "its MAC does not match: the manifest was edited after the key's holder wrote it".into(),
            ));
        }
        m.scheme()?;
        Ok(m)
    }

    /// The manifest beside the key file `key_path`, checked; `None` when there is none.
    pub fn load_beside(key_path: &Path, key: &Key) -> Result<Option<Self>> {
        use std::io::Read as _;
        let path = Self::path_for(key_path);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut text = String::new();
        file.take(MANIFEST_MAX_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(&path, e))?;
        if text.len() as u64 > MANIFEST_MAX_LEN {
            return Err(Error::InvalidManifest {
                path: path.display().to_string(),
                reason: "too long to be a serving manifest".into(),
            });
        }
        Self::from_json(&text, key, &path.display().to_string()).map(Some)
    }

    /// Writes the manifest beside the key file `key_path` (a new file; never
    /// overwrites). Returns its path.
    pub fn save_beside(&self, key_path: &Path) -> Result<PathBuf> {
        let path = Self::path_for(key_path);
        tracemark_core::internal::write_new_file(&path, self.to_json().as_bytes(), 0o644)?;
        Ok(path)
    }

    /// The served scheme, parsed.
    pub fn scheme(&self) -> Result<SchemeConfig> {
        self.scheme.parse().map_err(Error::Core)
    }
}

/// Where the scheme of a test came from, and whether it is the one served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SchemeSource {
    /// In words: `"the key's serving manifest"`, `"--scheme (the key has no
    /// serving manifest)"`, ...
    pub origin: String,
    /// The scheme the key's serving manifest records, when there is one.
    pub served: Option<String>,
    /// The tokenizer fingerprint the manifest records, when it records one.
    pub served_tokenizer: Option<String>,
    /// Set when the scheme tested is not the one served (or the tokenizer
    /// differs): the warning, in words.
    pub warning: Option<String>,
}

impl SchemeSource {
    /// The source of a scheme given by a caller that has no manifest to check
    /// it against (a receipt, an API request).
    pub fn given(origin: &str) -> Self {
        SchemeSource {
            origin: origin.to_string(),
            served: None,
            served_tokenizer: None,
            warning: None,
        }
    }

    /// Adds a warning when `tokenizer` (the fingerprint of the tokenizer used)
    /// is not the one the manifest records.
    pub fn check_tokenizer(&mut self, tokenizer: Option<&str>) {
        if let (Some(served), Some(used)) = (&self.served_tokenizer, tokenizer) {
            if served != used {
                let w = format!(
                    "the tokenizer given ({used}) is not the one the key was served with ({served}): \
                     text re-encoded with another tokenizer does not show the watermark"
                );
                self.warning = Some(match self.warning.take() {
                    Some(prev) => format!("{prev}; {w}"),
                    None => w,
                });
            }
        }
    }
}

/// The scheme to test: the one given, else the manifest's; and where it came
/// from, with a warning when the given scheme differs from the served one.
/// An error when neither is known.
pub fn resolve_scheme(
    given: Option<&SchemeConfig>,
    manifest: Option<&ServingManifest>,
) -> Result<(SchemeConfig, SchemeSource)> {
    let served = manifest.map(ServingManifest::scheme).transpose()?;
    let served_tokenizer = manifest.and_then(|m| m.tokenizer.clone());
    let source = |origin: &str, warning: Option<String>| SchemeSource {
        origin: origin.to_string(),
        served: served.as_ref().map(ToString::to_string),
        served_tokenizer: served_tokenizer.clone(),
        warning,
    };
    match (given, &served) {
        (None, Some(s)) => Ok((s.clone(), source("the key's serving manifest", None))),
        (Some(g), Some(s)) if g == s => Ok((
            g.clone(),
            source("--scheme, the same as the key's serving manifest", None),
        )),
        (Some(g), Some(s)) => Ok((
            g.clone(),
            source(
                "--scheme, NOT the scheme the key was served with",
                Some(format!(
                    "the scheme tested ({g}) is not the one this key was served with ({s}, from its serving manifest); \
                     a p-value under a scheme that was never served, or the best of several schemes tried, does not \
                     hold at its stated level"
                )),
            ),
        )),
        (Some(g), None) => Ok((g.clone(), source("--scheme (the key has no serving manifest)", None))),
        (None, None) => Err(Error::InvalidOption {
            name: "--scheme",
            message: "no scheme: give --scheme (exactly as generated), or write a serving manifest beside the key \
                      (`tracemark keygen --scheme ...` or `tracemark serving --key KEY --scheme ...`)"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_bytes(core::array::from_fn(|i| i as u8))
    }

    #[test]
    fn golden_manifest() {
        let scheme: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("test input");
        let m = ServingManifest::new(&key(), &scheme, None);
        assert_eq!(m.scheme, "kgw:gamma=0.25,delta=2,context=lefthash:1");
        // The MAC itself is pinned by SPEC §2.5's golden vectors (testdata/vectors/keys.json).
        assert_eq!(m.mac.len(), 32);
        let back = ServingManifest::from_json(&m.to_json(), &key(), "m").expect("test input");
        assert_eq!(back, m);
    }

    #[test]
    fn edited_or_moved_manifests_fail() {
        let scheme: SchemeConfig = "gumbel:temperature=0.7,context=lefthash:4".parse().expect("test input");
        let m = ServingManifest::new(&key(), &scheme, Some("sha256:abc"));
        let edited = m.to_json().replace("lefthash:4", "lefthash:2");
        assert_ne!(edited, m.to_json());
        assert!(matches!(
            ServingManifest::from_json(&edited, &key(), "m"),
            Err(Error::InvalidManifest { .. })
        ));
        let other = Key::from_bytes([7; 32]);
        let err = ServingManifest::from_json(&m.to_json(), &other, "m").expect_err("an error");
        assert!(err.to_string().contains("belongs to key"), "{err}");
    }

    #[test]
    fn resolution() {
        let served: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("test input");
        let m = ServingManifest::new(&key(), &served, Some("sha256:abc"));
        let (s, src) = resolve_scheme(None, Some(&m)).expect("test input");
        assert_eq!(s, served);
        assert!(src.warning.is_none());
        let mut src = resolve_scheme(Some(&served), Some(&m)).expect("test input").1;
        src.check_tokenizer(Some("sha256:def"));
        assert!(src.warning.expect("test input").contains("tokenizer"));
        assert!(resolve_scheme(None, None).is_err());
    }
}
