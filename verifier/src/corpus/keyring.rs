//! Keyrings: one text tested against many keys (e.g. one derived key per
//! API-account cohort), with family-wise error control.
//!
//! Each key gets its exact p-value. Holm's step-down procedure adjusts them so
//! that the probability of naming *any* wrong key is at most `alpha`, whatever
//! the dependence between the tests; the best match is the key with the
//! smallest p-value. The correction is the one of every attribution
//! ([`attribute_keys`](super::attribute_keys)); [`KeyringDetection`] is its view
//! for a keyring.

use serde::{Deserialize, Serialize};
use tracemark_core::{Key, KeyId, SchemeConfig};

use super::attribution::{self, AttributedKey, KeyAttribution, KeyOutcome};
use crate::detect::{DetectOptions, Detection, Detector};
use crate::error::{Error, Result};
use crate::text::TextTokenizer;

/// A set of labelled keys.
#[derive(Clone, Default)]
pub struct Keyring {
    entries: Vec<(String, Key)>,
}

impl core::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(label, key)| (label, key.id())))
            .finish()
    }
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under `label`.
    pub fn push(&mut self, label: impl Into<String>, key: Key) {
        self.entries.push((label.into(), key));
    }

    /// The keys derived from `master` for each label (SPEC §2.4).
    pub fn derived(master: &Key, labels: &[String]) -> Result<Self> {
        let mut ring = Self::new();
        for label in labels {
            ring.push(label.clone(), master.derive(label)?);
        }
        Ok(ring)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the keyring has no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Labels and keys.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Key)> {
        self.entries.iter().map(|(l, k)| (l.as_str(), k))
    }
}

/// One key's result in a keyring detection or a cohort attribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyResult {
    /// The key's label.
    pub label: String,
    /// The key's public id.
    pub key_id: KeyId,
    /// The key's test, `None` when its detection was inconclusive.
    pub tested: Option<KeyTest>,
}

/// The test of one key of a family.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyTest {
    /// `log10` of the key's own p-value (the one its verdict stands on).
    pub log10_p: f64,
    /// `log10` of the Holm-adjusted p-value.
    pub log10_p_adjusted: f64,
    /// Whether the adjusted p-value is below the family-wise alpha.
    pub detected: bool,
}

impl KeyResult {
    /// Whether this key is named at the family-wise level.
    pub fn detected(&self) -> bool {
        self.tested.is_some_and(|t| t.detected)
    }

    /// `log10` of the key's own p-value, `None` when inconclusive.
    pub fn log10_p(&self) -> Option<f64> {
        self.tested.map(|t| t.log10_p)
    }
}

impl From<AttributedKey> for KeyResult {
    fn from(k: AttributedKey) -> Self {
        KeyResult {
            label: k.label,
            key_id: k.key_id,
            tested: k.tested,
        }
    }
}

/// The result of testing one text against a keyring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyringDetection {
    /// Per key, in keyring order.
    pub keys: Vec<KeyResult>,
    /// Index of the best-matching key (smallest p-value), if any was testable.
    pub best: Option<usize>,
    /// The family-wise significance level.
    pub alpha: f64,
    /// The correction applied.
    pub correction: String,
    /// The full report of the best-matching key.
    pub best_detection: Option<Detection>,
}

/// Detectors for every key of a keyring, sharing one scheme configuration.
pub struct KeyringDetector {
    detectors: Vec<(String, Detector)>,
    alpha: f64,
}

impl core::fmt::Debug for KeyringDetector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "KeyringDetector({} keys, alpha {})",
            self.detectors.len(),
            self.alpha
        )
    }
}

impl KeyringDetector {
    /// Builds one detector per key. `options.alpha` is the family-wise level.
    pub fn new(keyring: &Keyring, config: &SchemeConfig, vocab_size: usize, options: DetectOptions) -> Result<Self> {
        if keyring.is_empty() {
            return Err(Error::InvalidOption {
                name: "keyring",
                message: "no key to test".into(),
            });
        }
        let alpha = options.alpha;
        let detectors = keyring
            .iter()
            .map(|(label, key)| {
                Ok((
                    label.to_string(),
                    Detector::new(key, config, vocab_size, options.clone())?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { detectors, alpha })
    }

    /// Tests `completion` (after `prompt`) against every key.
    pub fn detect_ids(&self, prompt: &[u32], completion: &[u32]) -> Result<KeyringDetection> {
        self.detect_with(|d| d.detect_ids(prompt, completion))
    }

    /// Tests a text against every key.
    pub fn detect_text(&self, tokenizer: &TextTokenizer, prompt: Option<&str>, text: &str) -> Result<KeyringDetection> {
        self.detect_with(|d| d.detect_text(tokenizer, prompt, text))
    }

    /// Runs `detect` with each key's detector and combines the reports.
    pub fn detect_with(&self, detect: impl Fn(&Detector) -> Result<Detection>) -> Result<KeyringDetection> {
        let reports = self
            .detectors
            .iter()
            .map(|(_, d)| detect(d))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.combine(reports))
    }

    /// Combines per-key reports (in keyring order) with Holm's procedure
    /// ([`attribute_keys`](super::attribute_keys)).
    fn combine(&self, reports: Vec<Detection>) -> KeyringDetection {
        let outcomes = self
            .detectors
            .iter()
            .zip(reports)
            .map(|((label, _), r)| (label.clone(), r.key_id, KeyOutcome::Detection(Box::new(r))))
            .collect();
        attribution::listed(outcomes, self.alpha).into()
    }
}

impl From<KeyAttribution> for KeyringDetection {
    /// The keyring's view of an attribution over a listed key set (its JSON
    /// shape, unchanged).
    fn from(a: KeyAttribution) -> Self {
        KeyringDetection {
            keys: a.keys.into_iter().map(KeyResult::from).collect(),
            best: a.best,
            alpha: a.alpha,
            correction: a.correction,
            best_detection: a.best_detection,
        }
    }
}
