//! The detector: one scheme under one key, over token ids, in one call or
//! as a stream.

use core::fmt;
use std::sync::Arc;

use tracemark_core::{Key, KeyId, Observation, Scheme, SchemeConfig};

use super::detection::{Detection, Outcome, TestReport, Verdict};
use super::forgery::ForgeryReference;
use super::observe::{Counts, Dedup, Deduplicator, Mark, Observations, Scored, Scorer, TokenStatus};
use super::window::{self, WindowOptions};
use crate::error::{Error, Result};
use crate::stats;
use crate::text::Deadline;

/// Options of a detection.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectOptions {
    /// Deduplication of repeated observations.
    pub dedup: Dedup,
    /// Significance level of the verdict.
    pub alpha: f64,
    /// Fewer scored tokens than this make the verdict inconclusive.
    pub min_scored: usize,
    /// Whether to return a mark per completion token.
    pub marks: bool,
    /// Search for the most significant window as well.
    pub window: Option<WindowOptions>,
    /// Test text in its canonical form as well as given, correcting for the
    /// two tests ([`canonical`](crate::canonical)). On by default; has no
    /// effect on ids.
    pub canonicalize: bool,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            dedup: Dedup::Pair,
            alpha: 1e-6,
            min_scored: 10,
            marks: false,
            window: None,
            canonicalize: true,
        }
    }
}

impl DetectOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::InvalidOption {
                name: "alpha",
                message: format!("{} is not a significance level in (0, 1), e.g. 1e-6", self.alpha),
            });
        }
        if self.min_scored == 0 {
            return Err(Error::InvalidOption {
                name: "min_scored",
                message: "must be at least 1".into(),
            });
        }
        if let Some(w) = &self.window {
            w.validate()?;
        }
        Ok(())
    }
}

/// The state of a streaming detection ([`Detector::stream`]): the tokens so
/// far and the observations kept. Holds no key material.
pub struct DetectionStream {
    key_id: KeyId,
    prompt_len: usize,
    sequence: Vec<u32>,
    seen: Deduplicator,
    obs: Observations,
    /// The scores of `obs.scored` summed in order as they came (the sum a
    /// batch report computes), so that a report costs O(1), not O(tokens).
    total: f64,
}

impl DetectionStream {
    /// Completion tokens pushed so far.
    pub fn len(&self) -> usize {
        self.obs.counts.seen
    }

    /// Whether no completion token was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.obs.counts.seen == 0
    }

    /// Tokens scored so far.
    pub fn scored(&self) -> usize {
        self.obs.scored.len()
    }
}

impl fmt::Debug for DetectionStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectionStream")
            .field("key_id", &self.key_id)
            .field("prompt", &self.prompt_len)
            .field("tokens", &self.obs.counts.seen)
            .field("scored", &self.obs.scored.len())
            .finish()
    }
}

/// Detects one scheme under one key.
pub struct Detector {
    scheme: Box<dyn Scheme>,
    scorer: Scorer,
    options: DetectOptions,
    forgery: Option<Arc<ForgeryReference>>,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("scheme", &self.scheme)
            .field("options", &self.options)
            .finish()
    }
}

impl Detector {
    /// A detector for `config` under `key`, for token ids below `vocab_size`.
    pub fn new(key: &Key, config: &SchemeConfig, vocab_size: usize, options: DetectOptions) -> Result<Self> {
        Self::from_scheme(config.build(key, vocab_size)?, options)
    }

    /// A detector for an already keyed scheme: any [`Scheme`], including one
    /// defined outside `tracemark-core`, is tested as its
    /// [`Contract`](tracemark_core::Contract) says.
    pub fn from_scheme(scheme: Box<dyn Scheme>, options: DetectOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self {
            scorer: Scorer::new(scheme.as_ref())?,
            scheme,
            options,
            forgery: None,
        })
    }

    /// This detector, also running the spoof-artifact test
    /// ([`crate::forgery`]) against `reference` on every text it tests; the
    /// reference must have been counted under this detector's scheme and key.
    pub fn with_forgery_reference(mut self, reference: Arc<ForgeryReference>) -> Result<Self> {
        reference.check(self.scheme.as_ref())?;
        self.forgery = Some(reference);
        Ok(self)
    }

    /// The options.
    pub fn options(&self) -> &DetectOptions {
        &self.options
    }

    /// The keyed scheme.
    pub fn scheme(&self) -> &dyn Scheme {
        self.scheme.as_ref()
    }

    /// The score of a keyed value under this detector's scheme.
    #[inline]
    pub(crate) fn score(&self, value: u32) -> f64 {
        self.scheme.score(value)
    }

    /// Checks that every id fits the vocabulary.
    pub(crate) fn check_ids(&self, ids: &[u32], offset: usize) -> Result<()> {
        let vocab_size = self.scheme.vocab_size();
        match ids.iter().position(|&t| t as usize >= vocab_size) {
            Some(i) => Err(Error::WrongTokenizer {
                token: ids[i],
                position: offset + i,
                vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// The observations of `completion` after `prompt`, deduplicated within
    /// the document (and against `seen` when given).
    pub(crate) fn observe(&self, prompt: &[u32], completion: &[u32], marks: bool) -> Result<Observations> {
        self.check_ids(prompt, 0)?;
        self.check_ids(completion, prompt.len())?;
        let mut sequence = Vec::with_capacity(prompt.len() + completion.len());
        sequence.extend_from_slice(prompt);
        sequence.extend_from_slice(completion);
        let mut seen = Deduplicator::with_capacity(self.options.dedup, completion.len());
        let mut out = Observations {
            scored: Vec::with_capacity(completion.len()),
            counts: Counts {
                prompt: prompt.len(),
                seen: completion.len(),
                ..Counts::default()
            },
            marks: marks.then(|| Vec::with_capacity(completion.len())),
        };
        let mut i = 0;
        self.scheme.observe_each(&sequence, prompt.len(), &mut |o, score| {
            self.record(i, completion[i], o, score, &mut seen, &mut out);
            i += 1;
        })?;
        out.counts.scored = out.scored.len();
        Ok(out)
    }

    /// Observes `token` at completion index `i` after `history`: scored, a
    /// repeat, or without context; the one step of streaming detection.
    #[inline]
    fn observe_token(
        &self,
        history: &[u32],
        i: usize,
        token: u32,
        seen: &mut Deduplicator,
        out: &mut Observations,
    ) -> Result<()> {
        let o = self.scheme.observe(history, token)?;
        let score = o.map_or(0.0, |o| self.scheme.score(o.value));
        self.record(i, token, o, score, seen, out);
        Ok(())
    }

    /// Records the observation `o` of `token` at completion index `i`
    /// (`None`: without context) and its score: scored, or a repeat; the step
    /// that batch and streaming detection share.
    #[inline]
    fn record(
        &self,
        i: usize,
        token: u32,
        o: Option<Observation>,
        score: f64,
        seen: &mut Deduplicator,
        out: &mut Observations,
    ) {
        let (status, score) = match o {
            None => {
                out.counts.skipped_short_context += 1;
                (TokenStatus::ShortContext, 0.0)
            }
            Some(o) => {
                if !seen.is_new(self.options.dedup, o.context_key, o.seed, token) {
                    out.counts.skipped_duplicate += 1;
                    (TokenStatus::Duplicate, 0.0)
                } else {
                    out.scored.push(Scored {
                        position: i as u32,
                        context_key: o.context_key,
                        seed: o.seed,
                        token,
                        score,
                    });
                    (TokenStatus::Scored, score)
                }
            }
        };
        if let Some(m) = &mut out.marks {
            m.push(Mark {
                token,
                status,
                score,
                span: None,
            });
        }
    }

    /// A streaming detection of a completion that follows `prompt` (ids,
    /// context only): give it tokens as they arrive with
    /// [`Detector::push`], and ask for the report at any point with
    /// [`Detector::stream_report`], which is the report [`Detector::detect_ids`]
    /// gives on the tokens so far, exactly (the same code scores both).
    pub fn stream(&self, prompt: &[u32]) -> Result<DetectionStream> {
        self.check_ids(prompt, 0)?;
        Ok(DetectionStream {
            key_id: self.scheme.key_id(),
            prompt_len: prompt.len(),
            sequence: prompt.to_vec(),
            seen: Deduplicator::default(),
            obs: Observations {
                scored: Vec::new(),
                counts: Counts {
                    prompt: prompt.len(),
                    ..Counts::default()
                },
                marks: self.options.marks.then(Vec::new),
            },
            // The start of `Iterator::sum` for floats: the same additions, in the same order.
            total: -0.0,
        })
    }

    /// Adds completion `tokens` to `stream`. On an id outside the vocabulary
    /// nothing is added.
    pub fn push(&self, stream: &mut DetectionStream, tokens: &[u32]) -> Result<()> {
        if stream.key_id != self.scheme.key_id() {
            return Err(Error::InvalidOption {
                name: "stream",
                message: "this stream was started by a detector of another key".into(),
            });
        }
        self.check_ids(tokens, stream.sequence.len())?;
        stream.sequence.reserve(tokens.len());
        let before = stream.obs.scored.len();
        for &token in tokens {
            let i = stream.sequence.len() - stream.prompt_len;
            self.observe_token(&stream.sequence, i, token, &mut stream.seen, &mut stream.obs)?;
            stream.sequence.push(token);
            stream.obs.counts.seen += 1;
        }
        for s in &stream.obs.scored[before..] {
            stream.total += s.score;
        }
        stream.obs.counts.scored = stream.obs.scored.len();
        Ok(())
    }

    /// The report of `stream` so far: equal to [`Detector::detect_ids`] on
    /// its prompt and the tokens pushed.
    pub fn stream_report(&self, stream: &DetectionStream) -> Result<Detection> {
        if stream.key_id != self.scheme.key_id() {
            return Err(Error::InvalidOption {
                name: "stream",
                message: "this stream was started by a detector of another key".into(),
            });
        }
        if stream.obs.counts.seen == 0 {
            return Err(Error::EmptyInput);
        }
        // No copy of the observations: the running total, and the observations
        // borrowed where the window search or the spoof-artifact test reads them.
        Ok(self.report_totals(
            stream.obs.counts,
            stream.total,
            stream.obs.marks.clone(),
            &stream.obs.scored,
        ))
    }

    /// Tests `completion` (ids), with `prompt` ids as context only.
    pub fn detect_ids(&self, prompt: &[u32], completion: &[u32]) -> Result<Detection> {
        self.detect_ids_until(prompt, completion, Deadline::NONE)
    }

    /// [`detect_ids`](Self::detect_ids), stopped with
    /// [`Error::DeadlineExceeded`] once `deadline` has passed: the window
    /// search, the one part whose cost grows faster than the text, checks it
    /// every 1,024 windows.
    pub fn detect_ids_until(&self, prompt: &[u32], completion: &[u32], deadline: Deadline) -> Result<Detection> {
        self.detect_paragraphs_until(prompt, completion, &[], deadline)
    }

    /// [`detect_ids_until`](Self::detect_ids_until) of a text's ids whose
    /// paragraphs begin at the completion tokens `paragraphs` (after the
    /// first; SPEC §16 v4): the window search also examines runs of whole
    /// paragraphs.
    pub(crate) fn detect_paragraphs_until(
        &self,
        prompt: &[u32],
        completion: &[u32],
        paragraphs: &[u32],
        deadline: Deadline,
    ) -> Result<Detection> {
        if completion.is_empty() {
            return Err(Error::EmptyInput);
        }
        deadline.check()?;
        let obs = self.observe(prompt, completion, self.options.marks)?;
        let total: f64 = obs.scored.iter().map(|s| s.score).sum();
        let d = self.report_totals_until(obs.counts, total, obs.marks, &obs.scored, paragraphs, deadline);
        deadline.check()?;
        Ok(d)
    }

    /// The report of a set of observations.
    pub(crate) fn report(&self, obs: Observations) -> Detection {
        let total: f64 = obs.scored.iter().map(|s| s.score).sum();
        self.report_totals_until(obs.counts, total, obs.marks, &obs.scored, &[], Deadline::NONE)
    }

    /// The report of `counts.scored` observations whose scores sum to
    /// `total`; `scored` (the observations themselves, in order, when known)
    /// feeds the spoof-artifact test and the window search.
    pub(crate) fn report_totals(
        &self,
        counts: Counts,
        total: f64,
        marks: Option<Vec<Mark>>,
        scored: &[Scored],
    ) -> Detection {
        self.report_totals_until(counts, total, marks, scored, &[], Deadline::NONE)
    }

    fn report_totals_until(
        &self,
        counts: Counts,
        total: f64,
        marks: Option<Vec<Mark>>,
        scored: &[Scored],
        paragraphs: &[u32],
        deadline: Deadline,
    ) -> Detection {
        let n = counts.scored;
        let mut d = Detection {
            tool: crate::TOOL.to_string(),
            spec: tracemark_core::SPEC_VERSION.to_string(),
            scheme: self.scheme.describe(),
            key_id: self.scheme.key_id(),
            tokenizer: None,
            input_sha256: None,
            dedup: self.options.dedup,
            counts,
            outcome: Outcome::Inconclusive { reason: String::new() },
            alpha: self.options.alpha,
            verdict: Verdict::Inconclusive,
            window: None,
            window_skipped: None,
            scheme_source: None,
            marks,
            canonical: None,
            forgery: None,
            semantic: None,
            layered: None,
        };
        if n < self.options.min_scored {
            d.outcome = Outcome::Inconclusive {
                reason: format!(
                    "only {n} of {} tokens could be scored ({} repeats, {} without enough context); \
                     at least {} are needed",
                    counts.seen, counts.skipped_duplicate, counts.skipped_short_context, self.options.min_scored
                ),
            };
            d.window_skipped = self
                .options
                .window
                .as_ref()
                .map(|_| "the window search did not run: the text could not be tested".to_string());
            return d;
        }
        let tail = self.scorer.test(n as u64, total);
        let (name, null_distribution) = self.scorer.describe(n as u64);
        d.outcome = Outcome::Tested {
            test: TestReport {
                name,
                null_distribution,
                statistic: total,
                expected: tail.expected,
                z_score: if tail.sd > 0.0 {
                    (total - tail.expected) / tail.sd
                } else {
                    0.0
                },
            },
            p_value: stats::p_from_ln(tail.ln_p),
            log10_p: stats::log10(tail.ln_p),
        };
        d.forgery = self
            .forgery
            .as_ref()
            .and_then(|r| r.test(scored, self.scheme.contract().null));
        d.window = self
            .options
            .window
            .as_ref()
            .and_then(|w| window::search(&self.scorer, scored, w, paragraphs, tail.ln_p, deadline));
        if let (Some(w), None) = (&self.options.window, &d.window) {
            d.window_skipped = Some(if scored.len() < n {
                "the window search did not run: per-token scores are not kept for this kind of input".to_string()
            } else {
                format!(
                    "the window search did not run: {n} tokens were scored and the shortest window is {} scored tokens",
                    w.min_scored
                )
            });
        }
        // The verdict stands on the family of tests that was run: the whole
        // text alone, or the whole text and the window search together.
        let ln_verdict = d.window.as_ref().map_or(tail.ln_p, |w| w.family_ln_p());
        d.verdict = if ln_verdict < self.options.alpha.ln() {
            Verdict::Detected
        } else {
            Verdict::NotDetected
        };
        d
    }
}

impl ForgeryReference {
    /// Counts the pairs of `documents` (prompt ids, completion ids) under
    /// `detector`'s scheme and key (each document deduplicated as the detector
    /// does). A pair is dense from `dense_at` occurrences on; a detection looks
    /// forged when the test's p-value is at most `alpha`.
    pub fn from_ids<'a>(
        detector: &Detector,
        documents: impl IntoIterator<Item = (&'a [u32], &'a [u32])>,
        dense_at: u32,
        alpha: f64,
    ) -> Result<Self> {
        let scheme = detector.scheme();
        let mut reference = Self::empty(scheme.describe(), scheme.key_id(), dense_at, alpha)?;
        for (prompt, ids) in documents {
            reference.add(detector, prompt, ids)?;
        }
        Ok(reference)
    }

    /// Counts the pairs of one document.
    pub(crate) fn add(&mut self, detector: &Detector, prompt: &[u32], ids: &[u32]) -> Result<()> {
        self.count(&detector.observe(prompt, ids, false)?);
        Ok(())
    }
}
