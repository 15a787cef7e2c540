//! The observations of a text, the leaf every other part of detection uses:
//! what happened to each token ([`TokenStatus`], [`Mark`]), the counts
//! ([`Counts`]), the deduplication of repeated observations ([`Dedup`],
//! SPEC §10), the kept observations themselves and the exact test of their
//! total under the scheme's null distribution.

use core::fmt;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use tracemark_core::{Null, Scheme};

use crate::error::{Error, Result};
use crate::stats;

/// Which repeated observations are dropped before testing (SPEC §10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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

/// The set of (seed, token) pairs seen: open addressing with linear probing
/// in one flat table of at most half its slots full, sized up front for the
/// observations to come (it grows by doubling past that). The seeds are PRF
/// outputs, so one multiply spreads the pairs over the table; an insert is a
/// few nanoseconds, a third of a general-purpose set's (`benches/detect`).
#[derive(Default)]
pub(crate) struct PairSet {
    /// `(seed, token + 1)`; a second word of 0 is an empty slot.
    slots: Vec<(u64, u64)>,
    len: usize,
    /// `64 - log2(slots.len())`: the shift that turns a hash into a slot.
    shift: u32,
}

impl PairSet {
    /// Room for `n` pairs without growing.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut set = PairSet::default();
        set.resize((2 * n).next_power_of_two().max(16));
        set
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); slots]);
        self.shift = 64 - slots.trailing_zeros();
        self.len = 0;
        for (seed, t) in old {
            if t != 0 {
                self.insert_word(seed, t);
            }
        }
    }

    /// Inserts the pair; whether it was new.
    #[inline]
    pub(crate) fn insert(&mut self, seed: u64, token: u32) -> bool {
        if 2 * (self.len + 1) > self.slots.len() {
            self.resize((2 * self.slots.len()).max(16));
        }
        self.insert_word(seed, u64::from(token) + 1)
    }

    #[inline]
    fn insert_word(&mut self, seed: u64, t: u64) -> bool {
        let mask = self.slots.len() - 1;
        let h = (seed ^ t.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xd6e8_feb8_6659_fd93);
        let mut i = (h >> self.shift) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.1 == 0 {
                *slot = (seed, t);
                self.len += 1;
                return true;
            }
            if *slot == (seed, t) {
                return false;
            }
            i = (i + 1) & mask;
        }
    }
}

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
    pairs: PairSet,
    contexts: PrfSet<u64>,
}

impl Deduplicator {
    /// A deduplicator that records `n` observations in `mode` without growing
    /// (growing rehashed a general-purpose set about ten times over a
    /// 1,000-token text and took 40% of detection's time).
    pub(crate) fn with_capacity(mode: Dedup, n: usize) -> Self {
        match mode {
            Dedup::None => Self::default(),
            Dedup::Pair => Deduplicator {
                pairs: PairSet::with_capacity(n),
                contexts: PrfSet::default(),
            },
            Dedup::Context => Deduplicator {
                pairs: PairSet::with_capacity(n),
                contexts: PrfSet::with_capacity_and_hasher(n, BuildHasherDefault::default()),
            },
        }
    }

    /// Whether the observation is new (and records it).
    #[inline]
    pub(crate) fn is_new(&mut self, mode: Dedup, context_key: u64, seed: u64, token: u32) -> bool {
        match mode {
            Dedup::None => true,
            Dedup::Pair => self.pairs.insert(seed, token),
            Dedup::Context => {
                let new_pair = self.pairs.insert(seed, token);
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
