//! Detection over token ids: observations, deduplication, the exact test and
//! the report.

use core::fmt;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracemark_core::{Key, KeyId, Null, Scheme, SchemeConfig};

use crate::canonical::CanonicalReport;
use crate::error::{Error, Result};
use crate::forgery::{ForgeryReference, ForgeryTest};
use crate::stats;
use crate::window::{self, WindowOptions, WindowReport};

/// Which repeated observations are dropped before testing (SPEC §10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dedup {
    /// Score every position (repeated text then counts many times: miscalibrated).
    None,
    /// Score the first occurrence of each (seed, token) pair (the default):
    /// exact, because distinct pairs have independent values under the null.
    #[default]
    Pair,
    /// Also score at most one token per context (stricter than `Pair`).
    Context,
}

impl fmt::Display for Dedup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Pair => "pair",
            Self::Context => "context",
        })
    }
}

impl core::str::FromStr for Dedup {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "pair" => Ok(Self::Pair),
            "context" => Ok(Self::Context),
            _ => Err(Error::InvalidOption {
                name: "dedup",
                message: format!("{s:?}: use none, pair or context"),
            }),
        }
    }
}

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

/// What happened to one completion token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenStatus {
    /// Scored.
    Scored,
    /// A repeat of an earlier observation, dropped by deduplication.
    Duplicate,
    /// Fewer preceding tokens than the context width: no seed, not scored.
    ShortContext,
}

/// One completion token in the report.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Mark {
    /// The token id.
    pub token: u32,
    /// Whether and why it was (not) scored.
    pub status: TokenStatus,
    /// Its score (green bit, g-value sum, or `-ln(1-u)`); 0 when not scored.
    pub score: f64,
    /// Byte range in the input text, when the input was text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub span: Option<(usize, usize)>,
}

/// Token counts of a detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counts {
    /// Prompt tokens (context only, never scored).
    pub prompt: usize,
    /// Completion tokens seen.
    pub seen: usize,
    /// Tokens scored.
    pub scored: usize,
    /// Tokens dropped as repeats.
    pub skipped_duplicate: usize,
    /// Tokens without a seed (history shorter than the context width).
    pub skipped_short_context: usize,
    /// Tokens whose context was outside a scan's context filter.
    #[serde(default)]
    pub skipped_by_filter: usize,
}

/// The exact tests this verifier runs, one per null distribution it knows.
#[derive(Clone, Copy, Debug)]
enum ExactTest {
    Binomial { trials: u64, p: f64 },
    Gamma,
}

/// Turns totals of a scheme's scores into exact tails, as its contract says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scorer {
    null: Null,
    test: ExactTest,
    statistic: &'static str,
}

impl Scorer {
    /// The scorer of `scheme`; an error for a null distribution this verifier has no exact test for.
    pub(crate) fn new(scheme: &dyn Scheme) -> Result<Self> {
        let contract = scheme.contract();
        let test = match contract.null {
            Null::Binomial { trials, p } if trials >= 1 && p > 0.0 && p < 1.0 => ExactTest::Binomial {
                trials: u64::from(trials),
                p,
            },
            Null::Exponential => ExactTest::Gamma,
            other => {
                return Err(Error::UnsupportedScheme {
                    scheme: scheme.describe(),
                    reason: format!("no exact test for the null distribution {other:?}"),
                })
            }
        };
        Ok(Scorer {
            null: contract.null,
            test,
            statistic: contract.statistic,
        })
    }

    /// The exact test of `total` over `n` scored tokens.
    pub(crate) fn test(&self, n: u64, total: f64) -> Tail {
        let (expected, sd) = self.null.total_moments(n);
        let ln_p = match self.test {
            ExactTest::Binomial { trials, p } => stats::ln_binomial_upper(total.round() as u64, n * trials, p),
            ExactTest::Gamma => stats::ln_gamma_upper(n, total),
        };
        Tail { ln_p, expected, sd }
    }

    pub(crate) fn describe(&self, n: u64) -> (String, String) {
        (self.null.test_name(self.statistic), self.null.total(n))
    }
}

/// One exact tail.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tail {
    pub(crate) ln_p: f64,
    pub(crate) expected: f64,
    pub(crate) sd: f64,
}

/// The test that was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TestReport {
    /// What the test is.
    pub name: String,
    /// The null distribution of the statistic.
    pub null_distribution: String,
    /// The observed statistic (green count, g-value count, or score sum).
    pub statistic: f64,
    /// Its expectation under the null hypothesis.
    pub expected: f64,
    /// `(statistic - expected) / sd`: informational only, never the test.
    pub z_score: f64,
}

/// The verdict at the report's significance level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// p < alpha: the text carries this key's watermark.
    Detected,
    /// p >= alpha: no evidence of this key's watermark.
    NotDetected,
    /// Too few tokens could be scored to test.
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Detected => "WATERMARK DETECTED",
            Self::NotDetected => "no watermark detected",
            Self::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// Facts about the tokenizer that turned text into ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenizerInfo {
    /// SHA-256 of the tokenizer file, `sha256:<hex>`.
    pub fingerprint: String,
    /// Vocabulary size (special tokens included).
    pub vocab_size: usize,
}

/// Whether a detection was tested, and if so its test and exact p-value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The exact test of the whole text.
    Tested {
        /// The test that was run.
        test: TestReport,
        /// The exact p-value (0 if it underflows `f64`; see `log10_p`).
        p_value: f64,
        /// `log10` of the exact p-value, finite however small the p-value.
        log10_p: f64,
    },
    /// Too few tokens could be scored to test.
    Inconclusive {
        /// Why, in words.
        reason: String,
    },
}

impl Outcome {
    /// `log10` of the whole text's exact p-value, if it was tested.
    pub fn log10_p(&self) -> Option<f64> {
        match self {
            Self::Tested { log10_p, .. } => Some(*log10_p),
            Self::Inconclusive { .. } => None,
        }
    }

    /// `log10` of the p-value, or 0 (p = 1) when inconclusive: the
    /// conservative value where an untested text must count as "not
    /// detected" (detection rates, families of tests).
    pub fn conservative_log10_p(&self) -> f64 {
        self.log10_p().unwrap_or(0.0)
    }

    /// The test, if one was run.
    pub fn test(&self) -> Option<&TestReport> {
        match self {
            Self::Tested { test, .. } => Some(test),
            Self::Inconclusive { .. } => None,
        }
    }
}

/// The report of one detection: everything needed to reproduce and audit it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Detection {
    /// The tool and version that computed this report.
    pub tool: String,
    /// The spec version of every keyed value.
    pub spec: String,
    /// The scheme and its parameters, as a scheme string (`kgw:gamma=0.25,...`).
    pub scheme: String,
    /// The public id of the key tested.
    pub key_id: KeyId,
    /// The tokenizer, when the input was text.
    pub tokenizer: Option<TokenizerInfo>,
    /// SHA-256 of the input bytes, when known.
    pub input_sha256: Option<String>,
    /// Deduplication mode.
    pub dedup: Dedup,
    /// Token counts.
    pub counts: Counts,
    /// The whole text's test and p-value, or why there was none.
    pub outcome: Outcome,
    /// The significance level of the verdict.
    pub alpha: f64,
    /// The verdict: from the whole text's p-value, or, when a window was
    /// searched, from the family p-value of the whole text and the window
    /// ([`WindowReport::family_log10_p`]).
    pub verdict: Verdict,
    /// The most significant window, when a window search was asked for.
    pub window: Option<WindowReport>,
    /// One mark per completion token, when asked for.
    pub marks: Option<Vec<Mark>>,
    /// What canonicalisation changed and the tests of both forms, when the
    /// input was text and canonicalisation was on.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub canonical: Option<CanonicalReport>,
    /// The spoof-artifact test, when the detector holds a forgery reference
    /// and the text had both dense and sparse observations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub forgery: Option<ForgeryTest>,
}

impl Detection {
    /// `log10` of the p-value the verdict stands on: the family p-value of
    /// the forms tested when the input was text
    /// ([`CanonicalReport::family_log10_p`]), else of the whole text and its
    /// window when a window was searched, else the whole text's; `None` when
    /// inconclusive.
    pub fn verdict_log10_p(&self) -> Option<f64> {
        if let Some(c) = &self.canonical {
            return c.family_log10_p;
        }
        self.form_log10_p()
    }

    /// `log10` of this form's own p-value: the window family's when a window
    /// was searched, else the whole text's.
    pub(crate) fn form_log10_p(&self) -> Option<f64> {
        let whole = self.outcome.log10_p()?;
        Some(self.window.as_ref().map_or(whole, |w| w.family_log10_p))
    }

    /// Whether the watermark was detected and its evidence sits where a
    /// spoofer could have learned it (the spoof-artifact test fired).
    pub fn looks_forged(&self) -> bool {
        self.verdict == Verdict::Detected && self.forgery.as_ref().is_some_and(|f| f.artifact)
    }

    /// [`Detection::verdict_log10_p`], or 0 (p = 1) when inconclusive.
    pub fn conservative_verdict_log10_p(&self) -> f64 {
        self.verdict_log10_p().unwrap_or(0.0)
    }
}

/// A fast hasher for keys that contain a PRF output (already uniform).
#[derive(Default)]
pub(crate) struct PrfKeyHasher(u64);

impl Hasher for PrfKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(29) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
}

pub(crate) type PrfSet<T> = HashSet<T, BuildHasherDefault<PrfKeyHasher>>;

/// Remembers the observations seen so far and tells repeats (SPEC §10).
///
/// `Pair` drops an observation whose (seed, token) pair was seen before: such
/// an observation has the same keyed value as the earlier one, so it is a
/// copy, not new evidence. (For self-hash, a token that anchors its own seed
/// has the same value after every context: keying on the context instead of
/// the seed would count it again and again, and inflate the evidence.)
/// `Context` additionally keeps at most one observation per context key.
#[derive(Default)]
pub(crate) struct Deduplicator {
    pairs: PrfSet<(u64, u32)>,
    contexts: PrfSet<u64>,
}

impl Deduplicator {
    /// Whether the observation is new (and records it).
    #[inline]
    pub(crate) fn is_new(&mut self, mode: Dedup, context_key: u64, seed: u64, token: u32) -> bool {
        match mode {
            Dedup::None => true,
            Dedup::Pair => self.pairs.insert((seed, token)),
            Dedup::Context => {
                let new_pair = self.pairs.insert((seed, token));
                self.contexts.insert(context_key) && new_pair
            }
        }
    }
}

/// One kept observation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scored {
    /// Index in the completion.
    pub(crate) position: u32,
    pub(crate) context_key: u64,
    pub(crate) seed: u64,
    pub(crate) token: u32,
    pub(crate) score: f64,
}

/// The observations of one document.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observations {
    pub(crate) scored: Vec<Scored>,
    pub(crate) counts: Counts,
    pub(crate) marks: Option<Vec<Mark>>,
}

/// The state of a streaming detection ([`Detector::stream`]): the tokens so
/// far and the observations kept. Holds no key material.
pub struct DetectionStream {
    key_id: KeyId,
    prompt_len: usize,
    sequence: Vec<u32>,
    seen: Deduplicator,
    obs: Observations,
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
        reference.check(&self)?;
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
        let mut seen = Deduplicator::default();
        let mut out = Observations {
            scored: Vec::with_capacity(completion.len()),
            counts: Counts {
                prompt: prompt.len(),
                seen: completion.len(),
                ..Counts::default()
            },
            marks: marks.then(|| Vec::with_capacity(completion.len())),
        };
        for (i, &token) in completion.iter().enumerate() {
            let history = &sequence[..prompt.len() + i];
            self.observe_token(history, i, token, &mut seen, &mut out)?;
        }
        out.counts.scored = out.scored.len();
        Ok(out)
    }

    /// Observes `token` at completion index `i` after `history`: scored, a
    /// repeat, or without context; the one step of batch and streaming detection.
    #[inline]
    fn observe_token(
        &self,
        history: &[u32],
        i: usize,
        token: u32,
        seen: &mut Deduplicator,
        out: &mut Observations,
    ) -> Result<()> {
        let (status, score) = match self.scheme.observe(history, token)? {
            None => {
                out.counts.skipped_short_context += 1;
                (TokenStatus::ShortContext, 0.0)
            }
            Some(o) => {
                if !seen.is_new(self.options.dedup, o.context_key, o.seed, token) {
                    out.counts.skipped_duplicate += 1;
                    (TokenStatus::Duplicate, 0.0)
                } else {
                    let score = self.scheme.score(o.value);
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
        Ok(())
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
        for &token in tokens {
            let i = stream.sequence.len() - stream.prompt_len;
            self.observe_token(&stream.sequence, i, token, &mut stream.seen, &mut stream.obs)?;
            stream.sequence.push(token);
            stream.obs.counts.seen += 1;
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
        Ok(self.report(stream.obs.clone()))
    }

    /// Tests `completion` (ids), with `prompt` ids as context only.
    pub fn detect_ids(&self, prompt: &[u32], completion: &[u32]) -> Result<Detection> {
        if completion.is_empty() {
            return Err(Error::EmptyInput);
        }
        let obs = self.observe(prompt, completion, self.options.marks)?;
        Ok(self.report(obs))
    }

    /// The report of a set of observations.
    pub(crate) fn report(&self, obs: Observations) -> Detection {
        let total: f64 = obs.scored.iter().map(|s| s.score).sum();
        self.report_totals(obs.counts, total, obs.marks, &obs.scored)
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
            marks,
            canonical: None,
            forgery: None,
        };
        if n < self.options.min_scored {
            d.outcome = Outcome::Inconclusive {
                reason: format!(
                    "only {n} of {} tokens could be scored ({} repeats, {} without enough context); \
                     at least {} are needed",
                    counts.seen, counts.skipped_duplicate, counts.skipped_short_context, self.options.min_scored
                ),
            };
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
            .and_then(|w| window::search(&self.scorer, scored, w, tail.ln_p));
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
