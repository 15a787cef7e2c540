//! `tournament`: SynthID-Text-style tournament sampling (Dathathri et al.
//! 2024), SPEC §8.
//!
//! Each candidate token has `m` keyed binary g-values (bits `0..m` of its
//! 32-bit value). Sampling runs an `m`-layer knockout tournament: at each
//! layer, matches of `N` candidates drawn from the current distribution are
//! won by a candidate with g-value 1 if there is one. The processor does not
//! simulate matches; it writes out the tournament winner's exact
//! distribution, layer by layer:
//!
//! ```text
//! P1 = mass of candidates with g = 1
//! p'(v) = p(v) * (1 - (1 - P1)^N) / P1     if g(v) = 1
//! p'(v) = p(v) * (1 - P1)^(N - 1)          if g(v) = 0
//! ```
//!
//! With `N = 2` ([`TournamentConfig::leaves`], the default) this is
//! *single-sample distortion-free*: averaged over keys, the output
//! distribution equals the input distribution (restricted to the top-k
//! candidates at the given temperature). `N > 2` strengthens the signal but
//! distorts the distribution ([`TournamentConfig::is_distortion_free`]).

use core::fmt;

use crate::context::{Context, ContextSeed, Seeder};
use crate::contract::{Contract, Generation, Null};
use crate::error::{Error, Result};
use crate::key::{Key, KeyId};
use crate::kgw::check_vocab;
use crate::mix::mix;
use crate::scheme::{CheckedRow, Params, Scheme, SchemeKind};
use crate::simd::BlockMaxima;

/// Parameters of [`Tournament`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RawTournament", into = "RawTournament"))]
pub struct TournamentConfig {
    layers: u8,
    top_k: u32,
    temperature: f32,
    leaves: u8,
    context: Context,
}

impl TournamentConfig {
    /// `layers` (m, 1..=32) tournament layers over the `top_k` (>= 1) most
    /// likely tokens at `temperature` (> 0), two candidates per match.
    pub fn new(layers: usize, top_k: usize, temperature: f32, context: Context) -> Result<Self> {
        if !(1..=32).contains(&layers) {
            return Err(Error::param(
                "layers",
                layers,
                "1..=32 tournament layers (SynthID uses 30)",
            ));
        }
        if top_k == 0 || top_k > u32::MAX as usize {
            return Err(Error::param("top_k", top_k, "at least 1 candidate, e.g. 40"));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::param(
                "temperature",
                temperature,
                "a finite temperature > 0, e.g. 1.0",
            ));
        }
        Ok(Self {
            layers: layers as u8,
            top_k: top_k as u32,
            temperature,
            leaves: 2,
            context,
        })
    }

    /// Sets the number of candidates per match `N` (2..=8). Only `N = 2` is
    /// distortion-free.
    pub fn with_leaves(mut self, leaves: usize) -> Result<Self> {
        if !(2..=8).contains(&leaves) {
            return Err(Error::param(
                "leaves",
                leaves,
                "2..=8 candidates per match (2 is distortion-free)",
            ));
        }
        self.leaves = leaves as u8;
        Ok(self)
    }

    /// Number of layers `m`.
    pub fn layers(&self) -> usize {
        usize::from(self.layers)
    }

    /// Number of candidates.
    pub fn top_k(&self) -> usize {
        self.top_k as usize
    }

    /// Sampling temperature applied before the tournament.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// Candidates per match `N`.
    pub fn leaves(&self) -> usize {
        usize::from(self.leaves)
    }

    /// The context mode and width.
    pub fn context(&self) -> Context {
        self.context
    }

    /// Whether the output distribution, averaged over keys, equals the input one (`N = 2`).
    pub fn is_distortion_free(&self) -> bool {
        self.leaves == 2
    }

    /// The weight of a position for model-assisted detection: the entropy
    /// of the model's distribution over [`ENTROPY_CAP`](crate::ENTROPY_CAP),
    /// capped at 1.
    pub fn token_weight(&self, logits: &[f32]) -> f64 {
        crate::weight::entropy_weight(logits)
    }

    /// The scheme's contract (see [`Contract`]).
    pub fn contract(&self) -> Contract {
        Contract::new(
            Null::Binomial {
                trials: u32::from(self.layers),
                p: 0.5,
            },
            "g-value count",
            Generation::Distribution,
            true,
        )
    }

    pub(crate) fn from_params(p: &mut Params<'_>) -> Result<Self> {
        let layers = p.require("layers", "1..=32")?;
        let top_k = p.require("top_k", "an integer >= 1")?;
        let temperature = p.require("temperature", "a number > 0")?;
        let context = p.require("context", "e.g. lefthash:4")?;
        let leaves = p.take("leaves", "2..=8")?;
        let c = Self::new(layers, top_k, temperature, context)?;
        match leaves {
            Some(n) => c.with_leaves(n),
            None => Ok(c),
        }
    }
}

impl fmt::Display for TournamentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tournament:layers={},top_k={},temperature={},leaves={},context={}",
            self.layers, self.top_k, self.temperature, self.leaves, self.context
        )
    }
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTournament {
    layers: usize,
    top_k: usize,
    temperature: f32,
    #[serde(default = "two")]
    leaves: usize,
    context: Context,
}

#[cfg(feature = "serde")]
fn two() -> usize {
    2
}

#[cfg(feature = "serde")]
impl TryFrom<RawTournament> for TournamentConfig {
    type Error = Error;
    fn try_from(r: RawTournament) -> Result<Self> {
        Self::new(r.layers, r.top_k, r.temperature, r.context)?.with_leaves(r.leaves)
    }
}

#[cfg(feature = "serde")]
impl From<TournamentConfig> for RawTournament {
    fn from(c: TournamentConfig) -> Self {
        Self {
            layers: c.layers(),
            top_k: c.top_k(),
            temperature: c.temperature,
            leaves: c.leaves(),
            context: c.context,
        }
    }
}

/// The keyed `tournament` scheme for one vocabulary.
///
/// Processing replaces the row by the log-probabilities of the tournament
/// winner (`-inf` outside the top-k candidates): sample from it at
/// temperature 1, with no further top-k/top-p truncation.
pub struct Tournament {
    config: TournamentConfig,
    seeder: Seeder,
    key_id: KeyId,
    vocab: usize,
}

impl Tournament {
    /// Builds the scheme under `key` for a vocabulary of `vocab_size` tokens.
    pub fn new(key: &Key, config: TournamentConfig, vocab_size: usize) -> Result<Self> {
        check_vocab(vocab_size)?;
        let seeder = Seeder::new(key.scheme_prf_key(SchemeKind::Tournament.name()), config.context);
        Ok(Self {
            config,
            seeder,
            key_id: key.id(),
            vocab: vocab_size,
        })
    }

    /// The parameters.
    pub fn tournament_config(&self) -> &TournamentConfig {
        &self.config
    }

    /// The number of g-values equal to 1 among the `m` layers of `value`.
    pub fn g_sum(&self, value: u32) -> u32 {
        g_sum(value, self.config.layers)
    }
}

pub(crate) fn g_sum(value: u32, layers: u8) -> u32 {
    let mask = if layers >= 32 { u32::MAX } else { (1u32 << layers) - 1 };
    (value & mask).count_ones()
}

impl fmt::Debug for Tournament {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tournament({}, key {}, vocab {})",
            self.config, self.key_id, self.vocab
        )
    }
}

/// The `k` largest finite logits as `(token, logit)`, largest first, ties to the lower id.
///
/// One read of the row and a scan of a few of its blocks, in O(k) memory:
/// the maxima of blocks of the row ([`BlockMaxima`](crate::simd::BlockMaxima))
/// give `tau`, a lower bound of the k-th largest value; only blocks whose
/// maximum reaches `tau` can hold one of the k best, and only those are
/// scanned, in order, keeping the k best in a heap.
pub(crate) fn top_k(row: &[f32], k: usize, blocks: &BlockMaxima) -> Vec<(u32, f32)> {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;

    #[derive(PartialEq)]
    struct Cand(f32, u32);
    impl Eq for Cand {}
    impl Ord for Cand {
        fn cmp(&self, o: &Self) -> Ordering {
            // Larger logit is better; for equal logits the lower id is better.
            self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
        }
    }
    impl PartialOrd for Cand {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }

    if k == 0 {
        return Vec::new();
    }
    let tau = blocks.kth_largest_lower_bound(k);
    // Every one of the k best is at least tau: start strictly above the float below it.
    let start = if tau == f32::NEG_INFINITY { tau } else { tau.next_down() };
    let mut heap: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(k.min(row.len()) + 1);
    let mut threshold = start;
    for (b, block) in row.chunks(blocks.width).enumerate() {
        // A block whose maximum does not exceed the threshold has nothing to add.
        if blocks.maxima[b] <= threshold {
            continue;
        }
        let first = b * blocks.width;
        // Scanning in index order, a later token equal to the current minimum has a
        // higher id and loses the tie: only strictly larger logits can enter.
        crate::simd::scan_above(block, threshold, |i| {
            heap.push(Reverse(Cand(block[i], (first + i) as u32)));
            if heap.len() > k {
                heap.pop();
            }
            threshold = match heap.peek() {
                Some(Reverse(min)) if heap.len() == k => min.0,
                _ => start,
            };
            threshold
        });
    }
    let mut out: Vec<Cand> = heap.into_iter().map(|Reverse(c)| c).collect();
    out.sort_by(|a, b| b.cmp(a));
    out.into_iter().map(|Cand(l, t)| (t, l)).collect()
}

/// Applies `m` tournament layers with `n` candidates per match to `p` (in place).
pub(crate) fn tournament_layers(p: &mut [f64], values: &[u32], layers: u8, leaves: u8) {
    let n = i32::from(leaves);
    for layer in 0..layers {
        let p1: f64 = p
            .iter()
            .zip(values)
            .filter(|(_, v)| (*v >> layer) & 1 == 1)
            .map(|(q, _)| q)
            .sum();
        if p1 <= 0.0 || p1 >= 1.0 {
            continue; // every candidate has the same g-value: the layer changes nothing
        }
        let q0 = 1.0 - p1;
        let f1 = (1.0 - q0.powi(n)) / p1;
        let f0 = q0.powi(n - 1);
        for (q, v) in p.iter_mut().zip(values) {
            *q *= if (v >> layer) & 1 == 1 { f1 } else { f0 };
        }
    }
}

impl Scheme for Tournament {
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
        f64::from(g_sum(value, self.config.layers))
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

impl Tournament {
    /// The tournament over the top-k of a checked row, given its block maxima.
    fn apply_blocks(&self, cs: &ContextSeed, row: &mut [f32], blocks: &BlockMaxima) {
        let cands = top_k(row, self.config.top_k(), blocks);
        let inv_t = 1.0 / f64::from(self.config.temperature);
        let max = f64::from(cands[0].1);
        let mut p: Vec<f64> = cands
            .iter()
            .map(|&(_, l)| ((f64::from(l) - max) * inv_t).exp())
            .collect();
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|q| *q /= total);
        let values: Vec<u32> = cands
            .iter()
            .map(|&(t, _)| mix(self.seeder.token_seed(cs, t), t))
            .collect();
        tournament_layers(&mut p, &values, self.config.layers, self.config.leaves);
        let total: f64 = p.iter().sum();
        crate::simd::fill(row, f32::NEG_INFINITY);
        for (&(t, _), q) in cands.iter().zip(&p) {
            row[t as usize] = (q / total).ln() as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_skips_banned() {
        let row = [1.0, f32::NEG_INFINITY, 3.0, 3.0, -2.0];
        assert_eq!(top_k(&row, 2, &BlockMaxima::of(&row)), vec![(2, 3.0), (3, 3.0)]);
        assert_eq!(
            top_k(&row, 10, &BlockMaxima::of(&row)),
            vec![(2, 3.0), (3, 3.0), (0, 1.0), (4, -2.0)]
        );
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        // Rows with ties, -inf runs and fewer finite entries than k, against sorting every entry.
        let mut s = 7u64;
        for (v, k) in [
            (1usize, 1usize),
            (5, 40),
            (255, 3),
            (257, 40),
            (10_000, 40),
            (50_001, 40),
            (50_001, 1),
            (300_007, 40),
        ] {
            for shape in 0..4 {
                let row: Vec<f32> = (0..v)
                    .map(|i| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let x = (s >> 40) as f32 / (1u64 << 24) as f32;
                        match shape {
                            0 => x,
                            1 => (x * 8.0).floor(), // many ties
                            2 if i % 300 != 7 => f32::NEG_INFINITY,
                            3 => -(i as f32) * 0.5, // decreasing: the first blocks hold everything
                            _ => x,
                        }
                    })
                    .collect();
                let mut all: Vec<(u32, f32)> = row
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.is_finite())
                    .map(|(i, &x)| (i as u32, x))
                    .collect();
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                all.truncate(k);
                assert_eq!(top_k(&row, k, &BlockMaxima::of(&row)), all, "v={v} k={k} shape={shape}");
            }
        }
    }

    #[test]
    fn one_layer_matches_closed_form() {
        // Two candidates per match: p'(v) = p(v) (1 + g(v) - P1).
        let mut p = vec![0.5, 0.3, 0.2];
        let values = [1, 0, 1];
        tournament_layers(&mut p, &values, 1, 2);
        let p1 = 0.7;
        let want = [0.5 * (2.0 - p1), 0.3 * (1.0 - p1), 0.2 * (2.0 - p1)];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-15);
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
