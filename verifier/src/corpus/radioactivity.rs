//! Radioactivity: did a model learn from our watermarked outputs?
//! (Sander et al., "Watermarking makes language models radioactive", 2024.)
//!
//! A student trained on watermarked text inherits the watermark's bias. Three
//! tests, each one exact p-value over a whole corpus:
//!
//! - **black box**: score the suspect model's own outputs (a corpus scan with
//!   deduplication across the corpus, [`Scanner`](crate::Scanner)), optionally
//!   only at contexts that occur in our watermarked outputs
//!   ([`context_keys`](crate::context_keys));
//! - **reading mode** (open weights): feed our watermarked texts to the
//!   suspect model and score *its* next-token predictions ([`reading_mode`]);
//! - **cohort attribution**: the same tests against a keyring of per-cohort
//!   keys, with Holm's family-wise correction ([`attribute`], a view of
//!   [`attribute_keys`](super::attribute_keys)).
//!
//! ## Why reading mode stays exact
//!
//! The texts are ours, so they are watermarked; the question is whether the
//! suspect's predictions depend on our key. Under the null hypothesis the
//! suspect's weights are independent of the key, and its prediction at a
//! position depends only on the text before it. That text carries no
//! information about the green list of the current context unless the same
//! context occurred earlier in the text (then the token that followed it was
//! biased by that very green list, and a model can copy it in context). So a
//! position is scored only if its context did not occur earlier in the same
//! document, and observations are deduplicated on (seed, predicted token)
//! across the corpus. Self-hash contexts, whose seeds depend on the candidate,
//! are refused: a self-anchored token's bias is exposed by any earlier
//! occurrence of the token, which this rule does not track.
//!
//! **Across documents the argument is not complete.** Another of our texts
//! may have followed the same context with a token the green list favoured;
//! if the suspect predicts that token here, the pair's value is not a fresh
//! draw given our texts, so the p-value is not proven exact. The unwatermarked
//! teacher, reading 150 of our answers, gave 10^-0.16 (stop 39, in the lab):
//! the effect looks small in practice, but that is one measurement, not a
//! bound. For a p-value that must be
//! exact, feed the suspect text that was never written with the key: `ids` may
//! be any text, and then nothing in the corpus depends on the key (the
//! argument of the probability test; `radioactivity --api --read` does this
//! through an API).

use serde::{Deserialize, Serialize};
use tracemark_core::ContextMode;

use super::attribution::{self, KeyAttribution, KeyOutcome};
use super::keyring::KeyResult;
use crate::detect::observe::{Deduplicator, Observations, PrfSet, Scored};
use crate::detect::{Detection, Detector};
use crate::error::{Error, Result};

/// One of our watermarked texts, with the suspect model's predictions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingDoc {
    /// Context-only prefix (e.g. the prompt); may be empty.
    #[serde(default)]
    pub prompt_ids: Vec<u32>,
    /// Our watermarked text.
    pub ids: Vec<u32>,
    /// `predicted[i]`: the suspect's most likely token after `prompt_ids ++ ids[..i]`.
    pub predicted: Vec<u32>,
}

/// The reading-mode test over `docs` (see the module documentation). The
/// report's `skipped_by_filter` counts positions whose context had occurred
/// earlier in their document.
pub fn reading_mode<'a>(detector: &Detector, docs: impl IntoIterator<Item = &'a ReadingDoc>) -> Result<Detection> {
    let scheme = detector.scheme();
    if scheme.seeder().context().mode() == ContextMode::SelfHash {
        return Err(Error::InvalidOption {
            name: "scheme",
            message: "reading mode needs a left-hash or min-hash context (self-hash seeds depend on the candidate)"
                .into(),
        });
    }
    let dedup = detector.options().dedup;
    let mut seen = Deduplicator::default();
    let mut obs = Observations::default();
    let mut history = Vec::new();
    for (d, doc) in docs.into_iter().enumerate() {
        if doc.predicted.len() != doc.ids.len() {
            return Err(Error::BadDocument {
                line: d + 1,
                message: format!(
                    "{} predictions for {} tokens: give one per position",
                    doc.predicted.len(),
                    doc.ids.len()
                ),
            });
        }
        detector.check_ids(&doc.prompt_ids, 0)?;
        detector.check_ids(&doc.ids, doc.prompt_ids.len())?;
        detector.check_ids(&doc.predicted, 0)?;
        obs.counts.prompt += doc.prompt_ids.len();
        obs.counts.seen += doc.ids.len();
        history.clear();
        history.extend_from_slice(&doc.prompt_ids);
        // Contexts already followed by one of our (watermarked) tokens in this document.
        let mut exposed = PrfSet::<u64>::default();
        for (i, (&actual, &predicted)) in doc.ids.iter().zip(&doc.predicted).enumerate() {
            if let Some(o) = scheme.observe(&history, predicted)? {
                if !exposed.insert(o.context_key) {
                    obs.counts.skipped_by_filter += 1;
                } else if !seen.is_new(dedup, o.context_key, o.seed, predicted) {
                    obs.counts.skipped_duplicate += 1;
                } else {
                    obs.scored.push(Scored {
                        position: i as u32,
                        context_key: o.context_key,
                        seed: o.seed,
                        token: predicted,
                        score: detector.score(o.value),
                    });
                }
            } else {
                obs.counts.skipped_short_context += 1;
            }
            history.push(actual);
        }
    }
    obs.counts.scored = obs.scored.len();
    Ok(detector.report(obs))
}

/// Cohort attribution: one test per key (in keyring order), combined with
/// Holm's step-down procedure at family-wise level `alpha`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attribution {
    /// Per key: its p-value, adjusted p-value, and whether it is named.
    pub keys: Vec<KeyResult>,
    /// The family-wise significance level.
    pub alpha: f64,
    /// The correction applied.
    pub correction: String,
    /// The labels of the keys named at `alpha`.
    pub named: Vec<String>,
}

/// Combines per-key reports (one per label, in order) into an attribution
/// ([`attribute_keys`](super::attribute_keys)'s correction over a listed set).
pub fn attribute(labels: &[String], reports: &[Detection], alpha: f64) -> Attribution {
    let outcomes = labels
        .iter()
        .zip(reports)
        .map(|(label, r)| (label.clone(), r.key_id, KeyOutcome::Detection(Box::new(r.clone()))))
        .collect();
    attribution::listed(outcomes, alpha).into()
}

impl From<KeyAttribution> for Attribution {
    /// The cohort view of an attribution over a listed key set (its JSON
    /// shape, unchanged).
    fn from(a: KeyAttribution) -> Self {
        let named = a.named().map(|k| k.label.clone()).collect();
        Attribution {
            keys: a.keys.into_iter().map(KeyResult::from).collect(),
            alpha: a.alpha,
            correction: a.correction,
            named,
        }
    }
}
