//! Detection over token ids: observations, deduplication, the exact test and
//! the report.

use core::fmt;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use tracemark_core::{gumbel_score, tournament_g_sum, Key, Scheme, SchemeConfig, SchemeKind};

use crate::error::{Error, Result};
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
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            dedup: Dedup::Pair,
            alpha: 1e-6,
            min_scored: 10,
            marks: false,
            window: None,
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

/// The null distribution of a scheme's total score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Null {
    /// Total of `trials` Bernoulli(`p`) per scored token.
    Binomial { p: f64, trials: u64 },
    /// Sum of Exponential(1) per scored token.
    Gamma,
}

/// Turns a scheme's keyed values into scores and totals into exact tails.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scorer {
    kind: SchemeKind,
    g16: u32,
    layers: u32,
    null: Null,
}

impl Scorer {
    pub(crate) fn new(config: &SchemeConfig) -> Self {
        match config {
            SchemeConfig::Kgw(c) => Scorer {
                kind: SchemeKind::Kgw,
                g16: u32::from(c.green_threshold()),
                layers: 0,
                null: Null::Binomial {
                    p: c.effective_gamma(),
                    trials: 1,
                },
            },
            SchemeConfig::Tournament(c) => Scorer {
                kind: SchemeKind::Tournament,
                g16: 0,
                layers: c.layers() as u32,
                null: Null::Binomial {
                    p: 0.5,
                    trials: c.layers() as u64,
                },
            },
            _ => Scorer {
                kind: SchemeKind::Gumbel,
                g16: 0,
                layers: 0,
                null: Null::Gamma,
            },
        }
    }

    #[inline]
    pub(crate) fn score(&self, value: u32) -> f64 {
        match self.kind {
            SchemeKind::Kgw => f64::from(u8::from(value < self.g16)),
            SchemeKind::Tournament => f64::from(tournament_g_sum(value, self.layers as usize)),
            _ => gumbel_score(value),
        }
    }

    /// The exact test of `total` over `n` scored tokens.
    pub(crate) fn test(&self, n: u64, total: f64) -> Tail {
        match self.null {
            Null::Binomial { p, trials } => {
                let nt = n * trials;
                let k = total.round() as u64;
                let mean = nt as f64 * p;
                let sd = (nt as f64 * p * (1.0 - p)).sqrt();
                Tail {
                    ln_p: stats::ln_binomial_upper(k, nt, p),
                    expected: mean,
                    sd,
                }
            }
            Null::Gamma => Tail {
                ln_p: stats::ln_gamma_upper(n, total),
                expected: n as f64,
                sd: (n as f64).sqrt(),
            },
        }
    }

    pub(crate) fn describe(&self, n: u64) -> (String, String) {
        match self.null {
            Null::Binomial { p, trials: 1 } => (
                "binomial upper tail of the green count".into(),
                format!("Binomial(n={n}, p={p})"),
            ),
            Null::Binomial { p, trials } => (
                "binomial upper tail of the g-value count".into(),
                format!("Binomial(n={}, p={p})", n * trials),
            ),
            Null::Gamma => (
                "gamma upper tail of the sum of -ln(1-u)".into(),
                format!("Gamma(shape={n}, scale=1)"),
            ),
        }
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
pub struct TokenizerInfo {
    /// SHA-256 of the tokenizer file, `sha256:<hex>`.
    pub fingerprint: String,
    /// Vocabulary size (special tokens included).
    pub vocab_size: usize,
}

/// The report of one detection: everything needed to reproduce and audit it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The tool and version that computed this report.
    pub tool: String,
    /// The spec version of every keyed value.
    pub spec: String,
    /// The scheme and its parameters.
    pub scheme: SchemeConfig,
    /// The public id of the key tested.
    pub key_id: String,
    /// The tokenizer, when the input was text.
    pub tokenizer: Option<TokenizerInfo>,
    /// SHA-256 of the input bytes, when known.
    pub input_sha256: Option<String>,
    /// Deduplication mode.
    pub dedup: Dedup,
    /// Token counts.
    pub counts: Counts,
    /// The test (absent when inconclusive).
    pub test: Option<TestReport>,
    /// The exact p-value (0 if it underflows `f64`; see `log10_p`).
    pub p_value: Option<f64>,
    /// `log10` of the exact p-value, finite however small the p-value.
    pub log10_p: Option<f64>,
    /// The significance level of the verdict.
    pub alpha: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is inconclusive.
    pub inconclusive_reason: Option<String>,
    /// The most significant window, when a window search was asked for.
    pub window: Option<WindowReport>,
    /// One mark per completion token, when asked for.
    pub marks: Option<Vec<Mark>>,
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

/// Detects one scheme under one key.
pub struct Detector {
    scheme: Box<dyn Scheme>,
    scorer: Scorer,
    options: DetectOptions,
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
        options.validate()?;
        Ok(Self {
            scheme: config.build(key, vocab_size)?,
            scorer: Scorer::new(config),
            options,
        })
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
    pub(crate) fn score(&self, value: u32) -> f64 {
        self.scorer.score(value)
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
        let dedup = self.options.dedup;
        for (i, &token) in completion.iter().enumerate() {
            let history = &sequence[..prompt.len() + i];
            let (status, score) = match self.scheme.observe(history, token)? {
                None => {
                    out.counts.skipped_short_context += 1;
                    (TokenStatus::ShortContext, 0.0)
                }
                Some(o) => {
                    if !seen.is_new(dedup, o.context_key, o.seed, token) {
                        out.counts.skipped_duplicate += 1;
                        (TokenStatus::Duplicate, 0.0)
                    } else {
                        let score = self.scorer.score(o.value);
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
        out.counts.scored = out.scored.len();
        Ok(out)
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
        let n = obs.scored.len();
        let total: f64 = obs.scored.iter().map(|s| s.score).sum();
        let window = self
            .options
            .window
            .as_ref()
            .and_then(|w| window::search(&self.scorer, &obs.scored, w));
        let mut d = Detection {
            tool: crate::TOOL.to_string(),
            spec: tracemark_core::SPEC_VERSION.to_string(),
            scheme: self.scheme.config(),
            key_id: self.scheme.key_id().to_string(),
            tokenizer: None,
            input_sha256: None,
            dedup: self.options.dedup,
            counts: obs.counts,
            test: None,
            p_value: None,
            log10_p: None,
            alpha: self.options.alpha,
            verdict: Verdict::Inconclusive,
            inconclusive_reason: None,
            window,
            marks: obs.marks,
        };
        if n < self.options.min_scored {
            d.inconclusive_reason = Some(format!(
                "only {n} of {} tokens could be scored ({} repeats, {} without enough context); \
                 at least {} are needed",
                obs.counts.seen,
                obs.counts.skipped_duplicate,
                obs.counts.skipped_short_context,
                self.options.min_scored
            ));
            return d;
        }
        let tail = self.scorer.test(n as u64, total);
        let (name, null_distribution) = self.scorer.describe(n as u64);
        d.test = Some(TestReport {
            name,
            null_distribution,
            statistic: total,
            expected: tail.expected,
            z_score: if tail.sd > 0.0 {
                (total - tail.expected) / tail.sd
            } else {
                0.0
            },
        });
        d.p_value = Some(stats::p_from_ln(tail.ln_p));
        d.log10_p = Some(stats::log10(tail.ln_p));
        d.verdict = if tail.ln_p < self.options.alpha.ln() {
            Verdict::Detected
        } else {
            Verdict::NotDetected
        };
        d
    }
}
