//! The probability test: what an API's log-probabilities reveal about a
//! model trained on our watermarked answers.
//!
//! Most completion APIs return, with each sampled token, the log-probability
//! of a few of the most likely tokens at that position (`top_logprobs`). A
//! student that learned our watermark puts more probability on the tokens our
//! key favours at each context than its sampled token alone shows; the black
//! box test sees one draw per position, this test sees the distribution.
//!
//! At each position (context: the prompt and the suspect's own tokens before
//! it) every listed candidate `v` with probability `q` is one occurrence of
//! the pair `(seed, v)`, with the mass `m = q / Σ q_listed`: its share of the
//! probability the API listed at that position. Renormalising keeps diffuse
//! positions (where no candidate reaches 1/32 of the whole distribution, and
//! where a learned bias toward our favoured tokens shows most) in the test.
//!
//! A pair that occurs again (the same context token and candidate, at another
//! position or in another answer) is not new evidence, so it is scored once;
//! but what the suspect does at each occurrence says how strongly it favours
//! the pair. The masses of all its occurrences are therefore added up, `M`,
//! and the pair's weight is `w = min(1, √(M / 4))`
//! ([`pair_weight`], [`MASS_FOR_FULL_WEIGHT`]): a pair reaches full weight
//! once the suspect gave it four positions' worth of probability, and the
//! square root keeps a handful of very frequent pairs from dominating the
//! sum. The statistic is `S = Σ w·score` over the distinct pairs, with `w`
//! quantized to steps of `1/16`. (Stop 38's test weighted each pair by its
//! first occurrence alone; on the audit of the 100% student, aggregating
//! raised the z-score of the harvest prompts' test from 2.7 to 6.4 and of the
//! new prompts' from 2.9 to 5.7. The rule was chosen on that one student and
//! fixed before any other student was audited.)
//!
//! ## Why the test stays exact
//!
//! Under the null hypothesis the suspect model is independent of our key, so
//! its probabilities (and the text they condition on: its own samples and
//! prompts we did not watermark) are independent of the keyed scores. Scores
//! of distinct `(seed, token)` pairs are independent draws of the scheme's
//! null (SPEC §10), and each pair's weight is a function of the suspect's
//! probabilities alone. So conditionally on the weights, `S` is a weighted sum of
//! independent null scores, whose upper tail the weighted machinery computes
//! exactly for binomial nulls (kgw, tournament) and bounds conservatively for
//! gumbel ([`crate::weighted`]). Pairs are deduplicated on `(seed, token)`
//! across the corpus with the detector's [`crate::Dedup`] rule, which decides
//! at a pair's first occurrence whether it is scored (the corpus order is
//! fixed before the key is used); its later occurrences add their mass to it
//! (`Dedup::None` scores every occurrence on its own mass, miscalibrated as
//! everywhere). Pairs whose quantized weight is 0 count as observations with
//! weight 0 (they add nothing). Nothing is assumed about the probability mass
//! the API did not list.
//!
//! Prompts must not contain our watermarked text: the harvest's *questions*
//! are fine (we did not watermark them), our *answers* quoted in a prompt are
//! not (the model could copy their green tokens in context).
//!
//! The same test is the *reading test* of `tracemark radioactivity --api
//! --read`: there `ids` is a text we chose and the API echoed with the
//! suspect's log-probabilities at each of its tokens. The argument above holds
//! as long as that text does not depend on the key either (human text, our
//! answers served without the watermark); the command refuses texts that test
//! positive for the watermark.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};
use tracemark_core::ContextMode;

use crate::detect::observe::{Counts, Dedup, Deduplicator, PrfKeyHasher};
use crate::detect::weighted::WeightedSum;
use crate::detect::{Detection, Detector, Outcome, TestReport, Verdict};
use crate::error::{Error, Result};
use crate::stats::{log10, p_from_ln};

/// One answer of the suspect model with the log-probabilities the API returned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogprobDoc {
    /// Context-only prefix (the prompt as the model saw it); may be empty.
    #[serde(default)]
    pub prompt_ids: Vec<u32>,
    /// The suspect's sampled tokens.
    pub ids: Vec<u32>,
    /// `top[i]`: the candidates listed at position `i` (after `prompt_ids ++
    /// ids[..i]`), each `(token id, natural-log probability)`.
    pub top: Vec<Vec<(u32, f64)>>,
}

/// The total (renormalised) probability mass at which a pair reaches full
/// weight in the probability test: four positions' worth.
pub(crate) const MASS_FOR_FULL_WEIGHT: f64 = 4.0;

/// A pair's weight in the probability test from `mass`, the sum of its
/// renormalised probabilities over all its occurrences in the corpus:
/// `min(1, √(mass / MASS_FOR_FULL_WEIGHT))` (before quantization).
pub(crate) fn pair_weight(mass: f64) -> f64 {
    (mass.max(0.0) / MASS_FOR_FULL_WEIGHT).sqrt().min(1.0)
}

/// The probability test over `docs` (see the module documentation). The
/// report counts occurrences (position, candidate) in `seen`, the distinct
/// pairs scored in `scored` and the repeats folded into them in
/// `skipped_duplicate`.
pub fn probability_test<'a>(detector: &Detector, docs: impl IntoIterator<Item = &'a LogprobDoc>) -> Result<Detection> {
    let scheme = detector.scheme();
    if scheme.seeder().context().mode() == ContextMode::SelfHash {
        return Err(Error::InvalidOption {
            name: "scheme",
            message:
                "the probability test needs a left-hash or min-hash context (self-hash seeds depend on the candidate)"
                    .into(),
        });
    }
    let dedup = detector.options().dedup;
    let mut seen = Deduplicator::default();
    let mut counts = Counts::default();
    // Each scored pair's total mass and score, in the order of first occurrence.
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut index: HashMap<(u64, u32), usize, BuildHasherDefault<PrfKeyHasher>> = HashMap::default();
    let mut history = Vec::new();
    for (d, doc) in docs.into_iter().enumerate() {
        if doc.top.len() != doc.ids.len() {
            return Err(Error::BadDocument {
                line: d + 1,
                message: format!(
                    "{} candidate lists for {} tokens: give one (possibly empty) per position",
                    doc.top.len(),
                    doc.ids.len()
                ),
            });
        }
        detector.check_ids(&doc.prompt_ids, 0)?;
        detector.check_ids(&doc.ids, doc.prompt_ids.len())?;
        counts.prompt += doc.prompt_ids.len();
        history.clear();
        history.extend_from_slice(&doc.prompt_ids);
        for (i, (&sampled, candidates)) in doc.ids.iter().zip(&doc.top).enumerate() {
            if let Some(&(token, logprob)) = candidates.iter().find(|(_, lp)| lp.is_nan() || *lp > 0.0) {
                return Err(Error::BadDocument {
                    line: d + 1,
                    message: format!("position {i}: log-probability {logprob} of token {token} is not <= 0"),
                });
            }
            // The listed candidates' probabilities, renormalised to sum to 1 at this position.
            let listed: f64 = candidates.iter().map(|(_, lp)| lp.exp()).sum();
            for &(token, logprob) in candidates {
                counts.seen += 1;
                match scheme.observe(&history, token).map_err(|e| match e {
                    tracemark_core::Error::TokenOutOfRange { token, vocab_size } => Error::WrongTokenizer {
                        token,
                        position: i,
                        vocab_size,
                    },
                    other => Error::Core(other),
                })? {
                    None => counts.skipped_short_context += 1,
                    Some(o) => {
                        let mass = logprob.exp() / listed;
                        if seen.is_new(dedup, o.context_key, o.seed, token) {
                            if dedup != Dedup::None {
                                index.insert((o.seed, token), pairs.len());
                            }
                            pairs.push((mass, detector.score(o.value)));
                            counts.scored += 1;
                        } else {
                            // A repeat: its mass goes to the pair's first
                            // occurrence, if that one was scored.
                            if let Some(&at) = index.get(&(o.seed, token)) {
                                pairs[at].0 += mass;
                            }
                            counts.skipped_duplicate += 1;
                        }
                    }
                }
            }
            history.push(sampled);
        }
    }
    let mut sum = WeightedSum::new(scheme.contract().null);
    for &(mass, score) in &pairs {
        sum.add(pair_weight(mass), score);
    }
    // The base report (counts, scheme, key, verdict rules), then this test.
    let mut report = detector.report_totals(counts, 0.0, None, &[]);
    if matches!(report.outcome, Outcome::Inconclusive { .. }) {
        return Ok(report);
    }
    let t = sum.tail()?;
    report.outcome = Outcome::Tested {
        test: TestReport {
            name: format!("probability test: {}", t.test),
            null_distribution: format!(
                "Σ over {} distinct (context, candidate) pairs of weight w = min(1, √(M/4)), M the \
                 pair's probability mass summed over its occurrences (total weight {:.2}), times an \
                 independent null score",
                counts.scored, t.weight_total
            ),
            statistic: t.statistic,
            expected: t.expected,
            z_score: 0.0,
        },
        p_value: p_from_ln(t.ln_p),
        log10_p: log10(t.ln_p),
    };
    report.verdict = if t.ln_p < detector.options().alpha.ln() {
        Verdict::Detected
    } else {
        Verdict::NotDetected
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectOptions;
    use tracemark_core::{Key, SchemeConfig};

    fn detector(seed: u8) -> Detector {
        let key = Key::from_bytes([seed; 32]);
        let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("test input");
        Detector::new(&key, &config, 500, DetectOptions::default()).expect("test input")
    }

    /// A suspect that never saw the key: random candidates and probabilities.
    fn null_docs(seed: u64, n_docs: usize) -> Vec<LogprobDoc> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n_docs)
            .map(|_| {
                let ids: Vec<u32> = (0..60).map(|_| (next() % 500) as u32).collect();
                let top = ids
                    .iter()
                    .map(|&t| {
                        let mut c = vec![(t, (0.6f64).ln())];
                        for k in 0..4 {
                            c.push(((next() % 500) as u32, (0.08 - 0.015 * k as f64).ln()));
                        }
                        c
                    })
                    .collect();
                LogprobDoc {
                    prompt_ids: vec![1, 2],
                    ids,
                    top,
                }
            })
            .collect()
    }

    #[test]
    fn null_p_values_are_calibrated() {
        // 200 keys on one null corpus: the share below 0.1 stays within the
        // 99.9% binomial range of 200 x 0.1 (8..34).
        let docs = null_docs(7, 20);
        let below = (0..200u32)
            .filter(|&k| {
                let key = Key::from_bytes(core::array::from_fn(|i| (i as u32 * 31 + k * 7) as u8));
                let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("test input");
                let d = Detector::new(&key, &config, 500, DetectOptions::default()).expect("test input");
                probability_test(&d, &docs)
                    .expect("test input")
                    .outcome
                    .log10_p()
                    .expect("test input")
                    < -1.0
            })
            .count();
        assert!((8..=34).contains(&below), "{below} of 200 below 0.1");
    }

    #[test]
    fn a_suspect_that_favours_green_tokens_is_found() {
        let det = detector(3);
        let scheme = det.scheme();
        let mut docs = null_docs(11, 20);
        // Move probability onto the green candidates: a student of the watermark.
        for doc in &mut docs {
            let mut history = doc.prompt_ids.clone();
            for (i, c) in doc.top.iter_mut().enumerate() {
                for cand in c.iter_mut() {
                    if let Some(o) = scheme.observe(&history, cand.0).expect("test input") {
                        if det.score(o.value) > 0.5 {
                            cand.1 = (cand.1.exp() + 0.2).min(0.95).ln();
                        }
                    }
                }
                history.push(doc.ids[i]);
            }
        }
        let r = probability_test(&det, &docs).expect("test input");
        assert_eq!(r.verdict, Verdict::Detected, "{:?}", r.outcome);
        let plain = probability_test(&det, &null_docs(11, 20)).expect("test input");
        assert_eq!(plain.verdict, Verdict::NotDetected);
    }

    #[test]
    fn repeats_add_their_mass_to_the_pair_scored_once() {
        let det = detector(5);
        let doc = null_docs(3, 1).remove(0);
        let once = probability_test(&det, [&doc]).expect("test input");
        let twice = probability_test(&det, [&doc, &doc]).expect("test input");
        // The second copy adds no pair, only mass to the pairs of the first.
        assert_eq!(once.counts.scored, twice.counts.scored);
        assert_eq!(
            twice.counts.skipped_duplicate,
            once.counts.skipped_duplicate + once.counts.seen
        );
        let (Some(a), Some(b)) = (once.outcome.test(), twice.outcome.test()) else {
            panic!("both tested: {:?} {:?}", once.outcome, twice.outcome)
        };
        // Weights grow with the mass (√2 here, below saturation) and never pass 1.
        assert!(b.expected > a.expected, "{} <= {}", b.expected, a.expected);
        assert!(b.expected <= 0.25 * once.counts.scored as f64 + 1e-9);
        assert_eq!(pair_weight(0.0), 0.0);
        assert!((pair_weight(1.0) - 0.5).abs() < 1e-12);
        assert_eq!(pair_weight(MASS_FOR_FULL_WEIGHT), 1.0);
        assert_eq!(pair_weight(100.0), 1.0);
    }

    #[test]
    fn malformed_documents_are_refused() {
        let det = detector(1);
        let mut doc = null_docs(1, 1).remove(0);
        doc.top.pop();
        assert!(matches!(probability_test(&det, [&doc]), Err(Error::BadDocument { .. })));
        let mut doc = null_docs(1, 1).remove(0);
        doc.top[0][0].1 = 0.5;
        assert!(matches!(probability_test(&det, [&doc]), Err(Error::BadDocument { .. })));
        let mut doc = null_docs(1, 1).remove(0);
        doc.top[0][0].0 = 9999;
        assert!(probability_test(&det, [&doc]).is_err());
    }
}
