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
use std::sync::LazyLock;

use crate::context::{Context, ContextMode, ContextSeed, Seeder};
use crate::contract::{Contract, Generation, Null};
use crate::error::{Error, Result};
use crate::key::{Key, KeyId};
use crate::kgw::check_vocab;
use crate::mix::{ln, mix};
use crate::scheme::{check_row, CheckedRow, Params, Scheme, SchemeKind};
use crate::simd::{self, BlockMaxima, Isa, ScanRow, SelfValues};

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
        let checked = check_row(self, history, logits)?;
        Ok(self.seeder.context_seed(history).map(|cs| {
            let blocks = checked.blocks.unwrap_or_else(|| BlockMaxima::of(logits));
            self.choose(&cs, ScanRow::Read(logits), &blocks).index as u32
        }))
    }

    #[inline(always)]
    fn token_value(&self, cs: &ContextSeed, token: u32) -> u32 {
        match &self.self_values {
            Some(own) if self.seeder.rank(token) < cs.anchor_rank => own[token as usize],
            _ => mix(cs.key, token),
        }
    }

    /// The exact Gumbel score of token `i` with logit `logit`.
    #[inline]
    fn gumbel_score(&self, cs: &ContextSeed, i: usize, logit: f32) -> f64 {
        let inv_t = 1.0 / f64::from(self.config.temperature);
        f64::from(logit) * inv_t + gumbel_noise(self.token_value(cs, i as u32))
    }

    /// The starting candidate: the most likely token (the first one, on ties),
    /// usually the winner or close; found from the row's block maxima.
    fn start(&self, cs: &ContextSeed, row: &[f32], blocks: &BlockMaxima) -> Best {
        let max = blocks.max();
        let index = blocks.first_at_least(row, max).unwrap_or(0);
        Best {
            index,
            logit: row[index],
            score: self.gumbel_score(cs, index, row[index]),
        }
    }

    /// The f32 inverse temperature and first threshold of the pruned scan, or
    /// `None` when no f32 bound is safe (extreme logits or temperature): then
    /// every token is scored exactly.
    fn scan_threshold(&self, best_score: f64) -> Option<(f32, f32)> {
        let inv_t = (1.0 / f64::from(self.config.temperature)) as f32;
        let threshold = prune_threshold(best_score)?;
        inv_t.is_finite().then_some((inv_t, threshold))
    }

    fn own_values(&self, cs: &ContextSeed) -> Option<SelfValues<'_>> {
        self.self_values.as_deref().map(|table| SelfValues {
            rank_seed: self.seeder.rank_seed(),
            anchor_rank: cs.anchor_rank,
            table,
        })
    }

    /// The token selected in a checked row (at least one finite logit),
    /// from its block maxima, with its logit and score; a
    /// [`ScanRow::Clear`] row is all `-inf` afterwards.
    fn choose(&self, cs: &ContextSeed, row: ScanRow<'_>, blocks: &BlockMaxima) -> Best {
        let mut best = self.start(cs, row.values(), blocks);
        match self.scan_threshold(best.score) {
            Some((inv_t, threshold)) => {
                let own = self.own_values(cs);
                simd::gumbel_scan(self.isa, row, cs.key, own, inv_t, threshold, &NOISE_BOUNDS, |i, l| {
                    best.offer(i, l, || self.gumbel_score(cs, i, l))
                });
            }
            None => {
                for (i, &l) in row.values().iter().enumerate() {
                    best.offer(i, l, || self.gumbel_score(cs, i, l));
                }
                if let ScanRow::Clear(row) = row {
                    simd::fill(row, f32::NEG_INFINITY);
                }
            }
        }
        best
    }

    /// Selects the token of a checked row with the row's block maxima, and
    /// leaves only its logit (every other one `-inf`).
    fn apply_blocks(&self, cs: &ContextSeed, row: &mut [f32], blocks: &BlockMaxima) {
        let best = self.choose(cs, ScanRow::Clear(&mut *row), blocks);
        row[best.index] = best.logit;
    }
}

/// The best candidate so far of a Gumbel choice.
struct Best {
    index: usize,
    logit: f32,
    score: f64,
}

impl Best {
    /// Offers token `i` with logit `logit` (`score` computes its exact score)
    /// and returns the threshold of the scan that follows: a higher score
    /// wins, and on equal scores the lower token id.
    #[inline]
    fn offer(&mut self, i: usize, logit: f32, score: impl FnOnce() -> f64) -> f32 {
        if i != self.index && logit != f32::NEG_INFINITY {
            let s = score();
            if s > self.score || (s == self.score && i < self.index) {
                *self = Best {
                    index: i,
                    logit,
                    score: s,
                };
            }
        }
        prune_threshold(self.score).unwrap_or(f32::NEG_INFINITY)
    }
}

/// `NOISE_BOUNDS[n]`: the Gumbel noise of the largest 32-bit value with n
/// leading one bits (n = 31 standing for 31 and 32), rounded up to f32; the
/// noise grows with the value, so it bounds the noise of every value with
/// that n. The AVX-512 scan's bound (`simd::gumbel_scan`).
static NOISE_BOUNDS: LazyLock<[f32; 32]> = LazyLock::new(|| {
    core::array::from_fn(|n| {
        let largest = if n >= 31 { u32::MAX } else { u32::MAX - (1 << (31 - n)) };
        // next_up: one f32 step above the value, whatever the rounding of the cast.
        (gumbel_noise(largest) as f32).next_up()
    })
});

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
        self.apply_blocks(cs, row, &BlockMaxima::of(row));
    }
    fn apply_checked(&self, cs: &ContextSeed, row: &mut [f32], checked: &CheckedRow) {
        match &checked.blocks {
            Some(blocks) => self.apply_blocks(cs, row, blocks),
            None => self.apply(cs, row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::noise_bound_f32;

    /// Every 7,997th 32-bit value from 0 (about 537,000 of them).
    fn spread_values() -> impl Iterator<Item = u32> {
        (0..=u32::MAX).step_by(0x0000_1f3d)
    }

    #[test]
    fn the_noise_table_bounds_every_value_of_its_count() {
        let check = |v: u32| {
            let n = (!v | 1).leading_zeros() as usize;
            assert!(f64::from(NOISE_BOUNDS[n]) >= gumbel_noise(v), "{v:#x}");
        };
        spread_values().for_each(check);
        for n in 0..32u32 {
            // The largest and smallest values with n leading ones.
            let top = if n >= 31 { u32::MAX } else { u32::MAX - (1 << (31 - n)) };
            check(top);
            check(!(u32::MAX >> n));
        }
        // Tight: within one f32 step of the largest value's noise, below the portable bound.
        assert!(NOISE_BOUNDS
            .iter()
            .enumerate()
            .all(|(n, &b)| b < (n + 2) as f32 * core::f32::consts::LN_2 + 1e-3));
    }

    /// Rows of every kind (flat, peaked, with -inf and ties), under several
    /// seeds, temperatures and contexts: every ISA path selects the same token,
    /// the one the exhaustive exact argmax selects, and `apply` leaves only it.
    #[test]
    fn every_isa_selects_the_exact_argmax() {
        let key = Key::from_bytes([7; 32]);
        for v in [1usize, 17, 1000, 70_001] {
            for (shape, t, ctx) in [
                (0u32, 1.0f32, "lefthash:1"),
                (1, 0.7, "lefthash:4"),
                (2, 1.3, "selfhash:3"),
            ] {
                let config = GumbelConfig::new(t, ctx.parse().expect("context")).expect("config");
                let schemes: Vec<Gumbel> = [Isa::Portable, Isa::Avx2, Isa::Avx512]
                    .into_iter()
                    .filter_map(|isa| {
                        let mut g = Gumbel::new(&key, config.clone(), v).expect("scheme");
                        isa.is_available().then(|| {
                            g.isa = isa;
                            g
                        })
                    })
                    .collect();
                for h in 0..12u32 {
                    let row: Vec<f32> = (0..v)
                        .map(|i| {
                            let x = mix(u64::from(h) * 7 + 1, i as u32);
                            match shape {
                                0 => (x % 1000) as f32 * 0.02 - 10.0,
                                1 if x.is_multiple_of(11) => f32::NEG_INFINITY,
                                1 => -1.1 * ((x % 5000 + 1) as f32).ln(),
                                _ => (x % 4) as f32,
                            }
                        })
                        .collect();
                    if row.iter().all(|&x| x == f32::NEG_INFINITY) {
                        continue;
                    }
                    let history = [h % v as u32, (h + 1) % v as u32, (h + 2) % v as u32, (h * 5) % v as u32];
                    let cs = schemes[0].seeder.context_seed(&history).expect("context");
                    let exact = (0..v)
                        .filter(|&i| row[i] != f32::NEG_INFINITY)
                        .map(|i| (schemes[0].gumbel_score(&cs, i, row[i]), i))
                        .fold(None, |best: Option<(f64, usize)>, (s, i)| match best {
                            Some((bs, bi)) if bs > s || (bs == s && bi < i) => Some((bs, bi)),
                            _ => Some((s, i)),
                        })
                        .expect("a finite logit")
                        .1;
                    for g in &schemes {
                        assert_eq!(
                            g.select(&history, &row).expect("ok"),
                            Some(exact as u32),
                            "{:?} v={v}",
                            g.isa
                        );
                        let mut out = row.clone();
                        g.process(&history, &mut out).expect("ok");
                        for (i, x) in out.iter().enumerate() {
                            let want = if i == exact { row[i] } else { f32::NEG_INFINITY };
                            assert_eq!(x.to_bits(), want.to_bits(), "{:?} v={v} i={i}", g.isa);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn noise_bound_is_an_upper_bound() {
        // The f32 bound may round down by a few ulps; prune_threshold's margin covers 1e-3.
        let check = |v: u32| assert!(f64::from(noise_bound_f32(v)) + 1e-4 >= gumbel_noise(v), "{v}");
        spread_values().for_each(check);
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
