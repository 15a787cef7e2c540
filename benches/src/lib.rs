//! Shared inputs for the benches: fixed pseudo-random logits and the floor baseline.

use std::hint::black_box;

/// Logits shaped like a language model's: a few large values over a broad,
/// noisy tail (fixed seed, so every run measures the same input).
pub fn lm_like_logits(vocab: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..vocab)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = (s >> 40) as f32 / (1u64 << 24) as f32;
            // Zipf-like decay over a shuffled rank, plus noise.
            let rank = (i as u64).wrapping_mul(2654435761) % vocab as u64;
            -1.1 * ((rank + 1) as f32).ln() + 3.0 * noise
        })
        .collect()
}

/// The floor: the same row updated by one vectorized in-place add, with the
/// addend hidden from the compiler so the work cannot be elided.
#[inline(never)]
pub fn floor_add(row: &mut [f32], d: f32) {
    let d = black_box(d);
    for x in row.iter_mut() {
        *x += d;
    }
}

/// `n` pseudo-random token ids below `vocab` (fixed seed: every run measures
/// the same document).
pub fn random_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}
