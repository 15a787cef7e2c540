//! `gumbel`: exponential-minimum sampling (Aaronson 2022; Fernandez et al.
//! 2023), SPEC §9.
//!
//! Every token gets a keyed uniform `u = (value + 1/2) / 2^32` per context.
//! Generation selects `argmax_v  l_v / T - ln(-ln u_v)`: the Gumbel-max trick
//! with keyed noise, which samples exactly from `softmax(l / T)` when the key
//! is random, yet is a deterministic function of key, context and logits.
//! Detection sums `-ln(1 - u)` of the observed tokens: `Gamma(n, 1)` under
//! the null hypothesis, larger when the text was generated this way.

use core::fmt;

use crate::context::{Context, ContextMode, ContextSeed, Seeder};
use crate::contract::{Contract, Generation, Null};
use crate::error::{Error, Result};
use crate::key::{Key, KeyId};
use crate::kgw::check_vocab;
use crate::mix::{ln, mix};
use crate::scheme::{check_row, Params, Scheme, SchemeKind};
use crate::simd::{self, Isa, SelfValues};

/// Parameters of [`Gumbel`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RawGumbel", into = "RawGumbel"))]
pub struct GumbelConfig {
    temperature: f32,
    context: Context,
}

impl GumbelConfig {
    /// Sampling temperature (> 0) and the context that seeds the uniforms.
    pub fn new(temperature: f32, context: Context) -> Result<Self> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::param(
                "temperature",
                temperature,
                "a finite temperature > 0, e.g. 1.0",
            ));
        }
        Ok(Self { temperature, context })
    }

    /// The sampling temperature.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The context mode and width.
    pub fn context(&self) -> Context {
        self.context
    }

    /// The weight of a position for model-assisted detection: the entropy
    /// of the model's distribution over [`ENTROPY_CAP`](crate::ENTROPY_CAP),
    /// capped at 1.
    pub fn token_weight(&self, logits: &[f32]) -> f64 {
        crate::weight::entropy_weight(logits)
    }

    /// The scheme's contract (see [`Contract`]).
    pub fn contract(&self) -> Contract {
        Contract::new(Null::Exponential, "sum of -ln(1-u)", Generation::Selection, true)
    }

    pub(crate) fn from_params(p: &mut Params<'_>) -> Result<Self> {
        let temperature = p.require("temperature", "a number > 0")?;
        let context = p.require("context", "e.g. lefthash:4")?;
        Self::new(temperature, context)
    }
}

impl fmt::Display for GumbelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gumbel:temperature={},context={}", self.temperature, self.context)
    }
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGumbel {
    temperature: f32,
    context: Context,
}

#[cfg(feature = "serde")]
impl TryFrom<RawGumbel> for GumbelConfig {
    type Error = Error;
    fn try_from(r: RawGumbel) -> Result<Self> {
        Self::new(r.temperature, r.context)
    }
}

#[cfg(feature = "serde")]
impl From<GumbelConfig> for RawGumbel {
    fn from(c: GumbelConfig) -> Self {
        Self {
            temperature: c.temperature,
            context: c.context,
        }
    }
}

/// The keyed uniform of a 32-bit value: `(value + 1/2) / 2^32`, in (0, 1).
#[inline]
pub(crate) fn uniform(value: u32) -> f64 {
    (f64::from(value) + 0.5) * (1.0 / 4_294_967_296.0)
}

/// The detection score of a 32-bit value: `-ln(1 - u)`, Exponential(1) under the null.
#[inline]
pub(crate) fn score(value: u32) -> f64 {
    // 1 - u = (2^32 - value - 1/2) / 2^32, computed exactly.
    -ln((4_294_967_295.5 - f64::from(value)) * (1.0 / 4_294_967_296.0))
}

/// The keyed Gumbel noise `-ln(-ln u)` of a 32-bit value.
#[inline]
fn gumbel_noise(value: u32) -> f64 {
    -ln(-ln(uniform(value)))
}

/// The keyed `gumbel` scheme for one vocabulary.
///
/// As a [`Scheme`], processing leaves only the selected token's logit and
/// sets every other one to `-inf`, so any sampler then picks it.
/// [`Gumbel::select`] returns the choice directly.
pub struct Gumbel {
    config: GumbelConfig,
    seeder: Seeder,
    key_id: KeyId,
    vocab: usize,
    isa: Isa,
    self_values: Option<Box<[u32]>>,
}

impl Gumbel {
    /// Builds the scheme under `key` for a vocabulary of `vocab_size` tokens.
    pub fn new(key: &Key, config: GumbelConfig, vocab_size: usize) -> Result<Self> {
        check_vocab(vocab_size)?;
        let seeder = Seeder::new(key.scheme_prf_key(SchemeKind::Gumbel.name()), config.context);
        let self_values = (config.context.mode() == ContextMode::SelfHash).then(|| {
            (0..vocab_size as u32)
                .map(|t| mix(seeder.anchor_seed(t), t))
                .collect::<Box<[u32]>>()
        });
        Ok(Self {
            config,
            seeder,
            key_id: key.id(),
            vocab: vocab_size,
            isa: Isa::detect(),
            self_values,
        })
    }

    /// The parameters.
    pub fn gumbel_config(&self) -> &GumbelConfig {
        &self.config
    }

    /// The token the scheme selects after `history`, or `None` when the
    /// history is shorter than the context width (then sample normally).
    pub fn select(&self, history: &[u32], logits: &[f32]) -> Result<Option<u32>> {
        check_row(self, history, logits)?;
        Ok(self
            .seeder
            .context_seed(history)
            .map(|cs| self.choose(&cs, logits) as u32))
    }

    #[inline(always)]
    fn token_value(&self, cs: &ContextSeed, token: u32) -> u32 {
        match &self.self_values {
            Some(own) if self.seeder.rank(token) < cs.anchor_rank => own[token as usize],
            _ => mix(cs.key, token),
        }
    }

    /// The selected token of a checked row (at least one finite logit).
    fn choose(&self, cs: &ContextSeed, row: &[f32]) -> usize {
        let inv_t = 1.0 / f64::from(self.config.temperature);
        let score = |i: usize| f64::from(row[i]) * inv_t + gumbel_noise(self.token_value(cs, i as u32));
        // Start from the most likely token (the first one, on ties): usually the winner or close.
        let max = simd::row_max(row);
        let mut best = simd::first_at_least(row, max).unwrap_or(0);
        let mut best_score = score(best);
        let visit = |i: usize, best: &mut usize, best_score: &mut f64| {
            if i != *best && row[i] != f32::NEG_INFINITY {
                let s = score(i);
                if s > *best_score || (s == *best_score && i < *best) {
                    *best = i;
                    *best_score = s;
                }
            }
        };
        let inv_t32 = inv_t as f32;
        match prune_threshold(best_score) {
            Some(threshold) if inv_t32.is_finite() => {
                let own = self.self_values.as_deref().map(|table| SelfValues {
                    rank_seed: self.seeder.rank_seed(),
                    anchor_rank: cs.anchor_rank,
                    table,
                });
                simd::gumbel_scan(self.isa, row, cs.key, own, inv_t32, threshold, |i| {
                    visit(i, &mut best, &mut best_score);
                    prune_threshold(best_score).unwrap_or(f32::NEG_INFINITY)
                });
            }
            // Extreme logits or temperature: no f32 bound is safe, score every token exactly.
            _ => (0..row.len()).for_each(|i| visit(i, &mut best, &mut best_score)),
        }
        best
    }
}

/// The f32 threshold below which a token's f32 score bound proves it cannot
/// reach `best_score`. The margin covers the rounding of the f32 bound
/// (relative 2^-22 of terms at most about |best_score| + 200 in size).
fn prune_threshold(best_score: f64) -> Option<f32> {
    let m = best_score - (best_score.abs() + 200.0) * 1e-5;
    if m.is_nan() || m.abs() > f64::from(f32::MAX) {
        return None;
    }
    let t = m as f32;
    let t = if f64::from(t) > m { t.next_down() } else { t };
    t.is_finite().then_some(t)
}

impl fmt::Debug for Gumbel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gumbel({}, key {}, vocab {})", self.config, self.key_id, self.vocab)
    }
}

impl Scheme for Gumbel {
    fn describe(&self) -> String {
        self.config.to_string()
    }
    fn key_id(&self) -> KeyId {
        self.key_id
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn seeder(&self) -> &Seeder {
        &self.seeder
    }
    fn contract(&self) -> Contract {
        self.config.contract()
    }
    fn value(&self, seed: u64, token: u32) -> u32 {
        mix(seed, token)
    }
    #[inline]
    fn score(&self, value: u32) -> f64 {
        score(value)
    }
    fn apply(&self, cs: &ContextSeed, row: &mut [f32]) {
        let best = self.choose(cs, row);
        let keep = row[best];
        crate::simd::fill(row, f32::NEG_INFINITY);
        row[best] = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::noise_bound_f32;

    #[test]
    fn noise_bound_is_an_upper_bound() {
        // The f32 bound may round down by a few ulps; prune_threshold's margin covers 1e-3.
        let check = |v: u32| assert!(f64::from(noise_bound_f32(v)) + 1e-4 >= gumbel_noise(v), "{v}");
        let mut v: u32 = 0;
        loop {
            check(v);
            match v.checked_add(0x0000_1f3d) {
                Some(n) => v = n,
                None => break,
            }
        }
        for v in [0, 1, u32::MAX - 2, u32::MAX - 1, u32::MAX] {
            check(v);
        }
    }

    #[test]
    fn prune_threshold_is_below_the_score() {
        for s in [-1e30, -1e6, -3.5, 0.0, 1e-9, 2.5, 1e6, 1e30] {
            let t = prune_threshold(s).expect("finite");
            assert!(f64::from(t) < s);
        }
        assert!(prune_threshold(1e300).is_none());
    }

    #[test]
    fn score_is_minus_log_one_minus_u() {
        for v in [0u32, 12345, 1 << 31, u32::MAX] {
            assert!((score(v) - (-(1.0 - uniform(v)).ln())).abs() < 1e-12);
        }
    }
}
