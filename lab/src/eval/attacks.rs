//! The attacks of the robustness tables (random edits of generated ids) and a
//! text metric. (The summary statistics are `tracemark_verifier::stats`'.)

use tracemark_candle::Rng;

/// Replaces a `fraction` of the tokens by uniformly random ones.
pub fn substitute(ids: &[u32], fraction: f64, vocab: u32, rng: &mut Rng) -> Vec<u32> {
    ids.iter()
        .map(|&t| {
            if rng.uniform() < fraction {
                (rng.next_u64() % u64::from(vocab)) as u32
            } else {
                t
            }
        })
        .collect()
}

/// Deletes a `fraction` of the tokens.
pub fn delete(ids: &[u32], fraction: f64, rng: &mut Rng) -> Vec<u32> {
    ids.iter().copied().filter(|_| rng.uniform() >= fraction).collect()
}

/// Inserts a random token after a `fraction` of the tokens.
pub fn insert(ids: &[u32], fraction: f64, vocab: u32, rng: &mut Rng) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    for &t in ids {
        out.push(t);
        if rng.uniform() < fraction {
            out.push((rng.next_u64() % u64::from(vocab)) as u32);
        }
    }
    out
}

/// Distinct-n: unique n-grams over all n-grams of a text (1 when too short).
pub fn distinct_n(ids: &[u32], n: usize) -> f64 {
    if ids.len() < n || n == 0 {
        return 1.0;
    }
    let grams: std::collections::HashSet<&[u32]> = ids.windows(n).collect();
    grams.len() as f64 / (ids.len() - n + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_change_about_the_asked_fraction() {
        let ids: Vec<u32> = (0..10_000).collect();
        let mut rng = Rng::new(1);
        let s = substitute(&ids, 0.3, 50_000, &mut rng);
        let changed = s.iter().zip(&ids).filter(|(a, b)| a != b).count() as f64 / ids.len() as f64;
        assert!((changed - 0.3).abs() < 0.03, "{changed}");
        assert!((delete(&ids, 0.3, &mut rng).len() as f64 / 7000.0 - 1.0).abs() < 0.05);
        assert!((insert(&ids, 0.3, 50_000, &mut rng).len() as f64 / 13_000.0 - 1.0).abs() < 0.05);
    }

    #[test]
    fn distinct_n_counts_unique_n_grams() {
        assert_eq!(distinct_n(&[1, 2, 1, 2], 2), 2.0 / 3.0);
    }
}
