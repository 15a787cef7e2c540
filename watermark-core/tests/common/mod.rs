//! Shared helpers for the integration tests: a fixed-seed RNG and chi-square.

#![allow(dead_code, unreachable_pub)]

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracemark_core::Key;

/// A fixed-seed ChaCha8 stream: reproducible, and the same on every platform.
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    pub fn key(&mut self) -> Key {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        Key::from_bytes(b)
    }

    /// Samples an index from unnormalised log-weights (`-inf` allowed).
    pub fn sample_logits(&mut self, logits: &[f32]) -> usize {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut u = self.uniform() * total;
        for (i, x) in w.iter().enumerate() {
            if u < *x {
                return i;
            }
            u -= x;
        }
        w.iter().rposition(|x| *x > 0.0).unwrap_or(0)
    }
}

/// Pearson's chi-square statistic of observed counts against expected probabilities.
pub fn chi_square(observed: &[u64], expected_p: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(expected_p)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// The chi-square quantile with `df` degrees of freedom at upper-tail
/// probability 0.001 (Wilson–Hilferty; within 1% of tabulated values for df >= 3).
pub fn chi_square_critical_001(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.090_232; // standard normal 0.999 quantile
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = logits
        .iter()
        .map(|&l| ((f64::from(l) - f64::from(max)) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}
