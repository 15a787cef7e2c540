//! Attribution: which keys of a set does a text (or a corpus) carry the
//! watermark of? One question, asked of three kinds of key set: a keyring
//! (one text against a few labelled keys), cohort keys (a suspect model's
//! corpus against one key per cohort) and account keys (one leaked text
//! against a key derived from a master for every API account, millions of
//! them). [`attribute_keys`] answers it for any [`KeySet`] and returns one
//! [`KeyAttribution`]; [`KeyringDetector`](crate::KeyringDetector),
//! [`attribute`](crate::attribute) and
//! [`attribute_accounts`](crate::accounts::attribute_accounts) are thin
//! wrappers that convert it to the result types their callers (and their
//! JSON) have always had.
//!
//! Every key gets its exact p-value; Holm's step-down procedure adjusts them
//! so that the probability of naming *any* wrong key is at most `alpha`,
//! whatever the dependence between the tests. A key whose test is
//! inconclusive counts as p = 1. For a derived set only the smallest p-values
//! are kept ([`KEPT`]): that is all Holm's procedure needs to name keys, so
//! memory does not grow with the number of keys.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracemark_core::{Key, KeyId};

use super::keyring::{KeyTest, Keyring};
use crate::detect::Detection;
use crate::error::{Error, Result};
use crate::stats;

/// The smallest p-values kept from a derived key set (per worker, then
/// overall): keys beyond these can never be named unless more than this many are.
pub const KEPT: usize = 64;

/// The keys an attribution tests.
#[non_exhaustive]
pub enum KeySet<'a> {
    /// Labelled keys held in memory, reported in their order: a keyring, cohort keys.
    Listed(&'a Keyring),
    /// The keys derived from `master` for the labels `label(0) .. label(count - 1)`
    /// (SPEC §2.4), each derived when it is tested and dropped after: one
    /// per API account, in memory that does not grow with `count`.
    Derived {
        /// The master key.
        master: &'a Key,
        /// How many keys.
        count: u64,
        /// The label of the `i`-th key.
        label: &'a (dyn Fn(u64) -> String + Sync),
    },
}

impl core::fmt::Debug for KeySet<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Listed(ring) => write!(f, "KeySet::Listed({ring:?})"),
            Self::Derived { count, .. } => write!(f, "KeySet::Derived({count} keys)"),
        }
    }
}

impl KeySet<'_> {
    /// The number of keys.
    pub fn len(&self) -> u64 {
        match self {
            Self::Listed(ring) => ring.len() as u64,
            Self::Derived { count, .. } => *count,
        }
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one key's test gave, as the correction needs it.
#[derive(Clone, Debug)]
pub enum KeyOutcome {
    /// A full detection (keyrings, cohorts): its verdict's p-value is the
    /// key's, and the best key's detection is kept.
    Detection(Box<Detection>),
    /// A p-value alone (`None`: inconclusive), with the tokens scored (accounts).
    Score {
        /// `log10` of the key's p-value, corrected for the forms tested.
        log10_p: Option<f64>,
        /// Tokens scored under the key.
        scored: usize,
    },
}

/// One key of an attribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AttributedKey {
    /// The key's label.
    pub label: String,
    /// The key's public id.
    pub key_id: KeyId,
    /// Its test, `None` when inconclusive.
    pub tested: Option<KeyTest>,
    /// Tokens scored under it (of the form or test that decided).
    pub scored: usize,
}

/// The result of an attribution: the keys kept with their tests, which are
/// named, and the correction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyAttribution {
    /// Keys tested.
    pub tested: u64,
    /// Keys whose test was inconclusive (each counted as p = 1).
    pub inconclusive: u64,
    /// The family-wise significance level.
    pub alpha: f64,
    /// The correction, in words.
    pub correction: String,
    /// The keys kept: every key of a listed set, in its order; the [`KEPT`]
    /// smallest p-values of a derived set, smallest first.
    pub keys: Vec<AttributedKey>,
    /// Index in `keys` of the best match (smallest p-value), if any key was tested.
    pub best: Option<usize>,
    /// The best match's detection, when the tests gave detections.
    pub best_detection: Option<Detection>,
}

impl KeyAttribution {
    /// The keys named at the family-wise level, in `keys` order.
    pub fn named(&self) -> impl Iterator<Item = &AttributedKey> {
        self.keys.iter().filter(|k| k.tested.is_some_and(|t| t.detected))
    }

    /// `log10(alpha / tested)`: what the best key's own p-value must be below.
    pub fn log10_needed(&self) -> f64 {
        self.alpha.log10() - (self.tested as f64).log10()
    }
}

/// Tests every key of `keys` with `test` (given each key's label and key)
/// and names the keys whose Holm-adjusted p-value is below `alpha`. The
/// keys of a listed set are tested in order, those of a derived set in
/// parallel (in the current rayon pool).
pub fn attribute_keys(
    keys: &KeySet<'_>,
    alpha: f64,
    test: impl Fn(&str, &Key) -> Result<KeyOutcome> + Sync,
) -> Result<KeyAttribution> {
    if keys.is_empty() {
        return Err(Error::InvalidOption {
            name: "keys",
            message: "no key to test".into(),
        });
    }
    match keys {
        KeySet::Listed(ring) => {
            let outcomes = ring
                .iter()
                .map(|(label, key)| Ok((label.to_string(), key.id(), test(label, key)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(listed(outcomes, alpha))
        }
        KeySet::Derived { master, count, label } => derived(master, *count, label, alpha, &test),
    }
}

/// `log10` of an outcome's p-value as reported, and as it enters the family
/// (an inconclusive key as p = 1), and the tokens scored.
fn outcome_p(outcome: &KeyOutcome) -> (Option<f64>, f64, usize) {
    match outcome {
        KeyOutcome::Detection(d) => (d.verdict_log10_p(), d.conservative_verdict_log10_p(), d.counts.scored),
        KeyOutcome::Score { log10_p, scored } => (*log10_p, log10_p.unwrap_or(0.0), *scored),
    }
}

/// Holm's step-down over every outcome of a listed set (labels, key ids and
/// outcomes in order).
pub(crate) fn listed(outcomes: Vec<(String, KeyId, KeyOutcome)>, alpha: f64) -> KeyAttribution {
    let ln: Vec<f64> = outcomes
        .iter()
        .map(|(_, _, o)| outcome_p(o).1 * core::f64::consts::LN_10)
        .collect();
    let adjusted = stats::holm_adjust_ln(&ln);
    let n = outcomes.len();
    let mut detections = Vec::with_capacity(n);
    let keys: Vec<AttributedKey> = outcomes
        .into_iter()
        .zip(adjusted)
        .map(|((label, key_id, outcome), adj)| {
            let (log10_p, _, scored) = outcome_p(&outcome);
            let key_id = match &outcome {
                KeyOutcome::Detection(d) => d.key_id,
                KeyOutcome::Score { .. } => key_id,
            };
            detections.push(match outcome {
                KeyOutcome::Detection(d) => Some(*d),
                KeyOutcome::Score { .. } => None,
            });
            AttributedKey {
                label,
                key_id,
                tested: log10_p.map(|log10_p| KeyTest {
                    log10_p,
                    log10_p_adjusted: stats::log10(adj),
                    detected: adj < alpha.ln(),
                }),
                scored,
            }
        })
        .collect();
    let best = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.tested.map(|t| (i, t.log10_p)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    let best_detection = best.and_then(|i| detections[i].take());
    KeyAttribution {
        tested: n as u64,
        inconclusive: keys.iter().filter(|k| k.tested.is_none()).count() as u64,
        alpha,
        correction: format!("Holm step-down over {n} keys (family-wise error rate)"),
        keys,
        best,
        best_detection,
    }
}

/// A candidate before the adjustment: (log10 p, key index, key id, scored).
type Candidate = (f64, u64, KeyId, usize);

fn keep_best(mut v: Vec<Candidate>) -> Vec<Candidate> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v.truncate(KEPT);
    v
}

/// Holm's step-down over a derived set, keeping the [`KEPT`] smallest p-values.
fn derived(
    master: &Key,
    count: u64,
    label: &(dyn Fn(u64) -> String + Sync),
    alpha: f64,
    test: &(impl Fn(&str, &Key) -> Result<KeyOutcome> + Sync),
) -> Result<KeyAttribution> {
    let one = |i: u64| -> Result<Option<Candidate>> {
        let name = label(i);
        let key = master.derive(&name)?;
        let (log10_p, _, scored) = outcome_p(&test(&name, &key)?);
        Ok(log10_p.map(|l| (l, i, key.id(), scored)))
    };
    const CHUNK: u64 = 4096;
    let chunks: Vec<u64> = (0..count.div_ceil(CHUNK)).collect();
    let (kept, inconclusive) = chunks
        .par_iter()
        .map(|&c| -> Result<(Vec<Candidate>, u64)> {
            let mut kept = Vec::with_capacity(2 * KEPT);
            let mut inconclusive = 0;
            for i in c * CHUNK..((c + 1) * CHUNK).min(count) {
                match one(i)? {
                    Some(candidate) => {
                        kept.push(candidate);
                        if kept.len() >= 2 * KEPT {
                            kept = keep_best(kept);
                        }
                    }
                    None => inconclusive += 1,
                }
            }
            Ok((keep_best(kept), inconclusive))
        })
        .try_reduce(
            || (Vec::new(), 0),
            |(mut a, ia), (b, ib)| {
                a.extend(b);
                Ok((keep_best(a), ia + ib))
            },
        )?;
    // Holm's step-down: the j-th smallest (from 0) is compared with
    // alpha / (m - j); adjusted p-values are running maxima of (m - j) p_(j).
    // An inconclusive key counts as p = 1, so it never moves ahead of these.
    let m = count as f64;
    let alpha_log10 = alpha.log10();
    let mut running = f64::NEG_INFINITY;
    let keys: Vec<AttributedKey> = kept
        .iter()
        .enumerate()
        .map(|(j, &(log10_p, i, key_id, scored))| {
            running = running.max(((m - j as f64).log10() + log10_p).min(0.0));
            AttributedKey {
                label: label(i),
                key_id,
                tested: Some(KeyTest {
                    log10_p,
                    log10_p_adjusted: running,
                    detected: running < alpha_log10,
                }),
                scored,
            }
        })
        .collect();
    Ok(KeyAttribution {
        tested: count,
        inconclusive,
        alpha,
        correction: format!("Holm step-down over {count} derived keys (family-wise error rate)"),
        best: (!keys.is_empty()).then_some(0),
        keys,
        best_detection: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{DetectOptions, Detector};
    use tracemark_core::SchemeConfig;

    /// The same eight keys, listed and derived: both name the key the text
    /// was generated with, with the same p-values for it.
    #[test]
    fn listed_and_derived_sets_name_the_same_key() {
        let master = Key::from_bytes([5; 32]);
        let config: SchemeConfig = "kgw:gamma=0.25,delta=4,context=lefthash:1".parse().expect("test input");
        let label = |i: u64| format!("account/{i}");
        let scheme = config
            .build(&master.derive(&label(3)).expect("test input"), 1000)
            .expect("test input");
        let mut ids = vec![1u32];
        for step in 0..150u32 {
            let mut logits: Vec<f32> = (0..1000u32).map(|t| ((t * 7 + step * 13) % 17) as f32 * 0.1).collect();
            scheme.process(&ids, &mut logits).expect("test input");
            let next = (0..1000).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
            ids.push(next as u32);
        }
        let test = |_: &str, key: &Key| -> Result<KeyOutcome> {
            let d = Detector::new(key, &config, 1000, DetectOptions::default())?;
            Ok(KeyOutcome::Detection(Box::new(d.detect_ids(&ids[..1], &ids[1..])?)))
        };
        let ring = Keyring::derived(&master, &(0..8).map(label).collect::<Vec<_>>()).expect("test input");
        let listed = attribute_keys(&KeySet::Listed(&ring), 1e-6, test).expect("test input");
        let derived = attribute_keys(
            &KeySet::Derived {
                master: &master,
                count: 8,
                label: &label,
            },
            1e-6,
            test,
        )
        .expect("test input");
        let names = |a: &KeyAttribution| a.named().map(|k| k.label.clone()).collect::<Vec<_>>();
        assert_eq!(names(&listed), ["account/3"]);
        assert_eq!(names(&derived), ["account/3"]);
        assert_eq!((listed.tested, derived.tested), (8, 8));
        assert_eq!(listed.best, Some(3));
        assert_eq!(derived.best, Some(0));
        let (l, d) = (&listed.keys[3], &derived.keys[0]);
        assert_eq!(
            (l.key_id, l.tested.map(|t| t.log10_p)),
            (d.key_id, d.tested.map(|t| t.log10_p))
        );
        let adjusted = |k: &AttributedKey| k.tested.map_or(0.0, |t| t.log10_p_adjusted);
        assert!((adjusted(l) - adjusted(d)).abs() < 1e-9, "{l:?} {d:?}");
        assert!(listed.best_detection.is_some() && derived.best_detection.is_none());
        assert!(attribute_keys(&KeySet::Listed(&Keyring::new()), 1e-6, test).is_err());
    }
}
