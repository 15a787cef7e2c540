//! A smoothed trigram language model: the fast student of the distillation
//! experiment.
//!
//! Interpolated absolute discounting (the backbone of Kneser-Ney):
//!
//! ```text
//! P(w | u v) = max(c(u v w) - d, 0) / c(u v)  +  d N1+(u v .) / c(u v) * P(w | v)
//! P(w | v)   = max(c(v w) - d, 0) / c(v)      +  d N1+(v .) / c(v)     * P(w)
//! P(w)       = (1 - e) c(w) / N + e / V        (e = 0.001: unseen tokens stay possible)
//! ```
//!
//! with `d = 0.75`; a context never seen passes all its mass to the next
//! level. Sampling walks the levels without building a vocabulary-sized
//! distribution.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use super::Student;
use tracemark_candle::ReadingModel;
use tracemark_candle::Result;
use tracemark_candle::Rng;

const DISCOUNT: f64 = 0.75;
/// Share of the unigram mass spread uniformly over the vocabulary.
const UNIFORM: f64 = 0.001;

/// A fixed hasher: iteration order, and so sampling, is the same on every run.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// Counts of the tokens that followed one context.
#[derive(Clone, Debug, Default)]
struct Followers {
    total: u32,
    counts: Map<u32, u32>,
}

impl Followers {
    fn add(&mut self, token: u32) {
        self.total += 1;
        *self.counts.entry(token).or_insert(0) += 1;
    }

    /// Share of the mass handed to the lower level.
    fn backoff(&self) -> f64 {
        DISCOUNT * self.counts.len() as f64 / f64::from(self.total)
    }

    fn discounted(&self, token: u32) -> f64 {
        self.counts
            .get(&token)
            .map_or(0.0, |&c| (f64::from(c) - DISCOUNT).max(0.0) / f64::from(self.total))
    }

    /// Samples from the discounted counts, for `u` uniform in `[0, 1 - backoff)`
    /// (the discounted counts hold that share of the mass).
    fn sample(&self, u: f64) -> Option<u32> {
        let mut left = u * f64::from(self.total);
        let mut last = None;
        for (&t, &c) in &self.counts {
            let w = f64::from(c) - DISCOUNT;
            if left < w {
                return Some(t);
            }
            left -= w;
            last = Some(t);
        }
        last
    }
}

/// The trigram model.
#[derive(Clone, Debug, Default)]
pub struct NGram {
    vocab: usize,
    unigram: Vec<u32>,
    unigram_total: u64,
    bigram: Map<u32, Followers>,
    trigram: Map<(u32, u32), Followers>,
    /// Unigram tokens by count, for argmax and sampling.
    by_count: Vec<(u32, u32)>,
}

impl NGram {
    /// Counts every token of each `(context, text)` pair: `context` (e.g. the
    /// prompt) conditions the first tokens of `text` but is not predicted.
    pub fn train(vocab: usize, samples: &[(Vec<u32>, Vec<u32>)]) -> Self {
        let mut m = Self {
            vocab,
            unigram: vec![0; vocab],
            ..Self::default()
        };
        for (context, text) in samples {
            let mut seq: Vec<u32> = context.iter().rev().take(2).rev().copied().collect();
            let start = seq.len();
            seq.extend_from_slice(text);
            for i in start..seq.len() {
                let w = seq[i];
                m.unigram[w as usize] += 1;
                m.unigram_total += 1;
                if i >= 1 {
                    m.bigram.entry(seq[i - 1]).or_default().add(w);
                }
                if i >= 2 {
                    m.trigram.entry((seq[i - 2], seq[i - 1])).or_default().add(w);
                }
            }
        }
        m.by_count = m
            .unigram
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(t, &c)| (t as u32, c))
            .collect();
        m.by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        m
    }

    /// Tokens counted.
    pub fn tokens(&self) -> u64 {
        self.unigram_total
    }

    fn unigram_prob(&self, w: u32) -> f64 {
        let uniform = 1.0 / self.vocab as f64;
        if self.unigram_total == 0 {
            return uniform;
        }
        (1.0 - UNIFORM) * f64::from(self.unigram[w as usize]) / self.unigram_total as f64 + UNIFORM * uniform
    }

    fn bigram_prob(&self, v: u32, w: u32) -> f64 {
        match self.bigram.get(&v) {
            Some(f) => f.discounted(w) + f.backoff() * self.unigram_prob(w),
            None => self.unigram_prob(w),
        }
    }

    /// `P(w | u v)`.
    pub fn prob(&self, u: u32, v: u32, w: u32) -> f64 {
        match self.trigram.get(&(u, v)) {
            Some(f) => f.discounted(w) + f.backoff() * self.bigram_prob(v, w),
            None => self.bigram_prob(v, w),
        }
    }

    /// Samples the next token after `u v`.
    pub fn sample(&self, u: u32, v: u32, rng: &mut Rng) -> u32 {
        for level in [self.trigram.get(&(u, v)), self.bigram.get(&v)].into_iter().flatten() {
            let r = rng.uniform();
            let keep = 1.0 - level.backoff();
            if r < keep {
                if let Some(t) = level.sample(r) {
                    return t;
                }
            }
        }
        // Unigram: a seen token by count, or (with probability UNIFORM) any token.
        if self.unigram_total > 0 && rng.uniform() >= UNIFORM {
            let mut left = rng.uniform() * self.unigram_total as f64;
            for &(t, c) in &self.by_count {
                if left < f64::from(c) {
                    return t;
                }
                left -= f64::from(c);
            }
        }
        (rng.next_u64() % self.vocab as u64) as u32
    }

    /// The most likely next token after `u v`.
    pub fn argmax(&self, u: u32, v: u32) -> u32 {
        let mut cands: Vec<u32> = Vec::new();
        if let Some(f) = self.trigram.get(&(u, v)) {
            cands.extend(f.counts.keys());
        }
        if let Some(f) = self.bigram.get(&v) {
            cands.extend(f.counts.keys());
        }
        if let Some(&(t, _)) = self.by_count.first() {
            cands.push(t);
        }
        cands
            .into_iter()
            .max_by(|&a, &b| self.prob(u, v, a).total_cmp(&self.prob(u, v, b)).then(b.cmp(&a)))
            .unwrap_or(0)
    }
}

/// The last two tokens of a history (`u v`), padded from the left by
/// repeating the first token, or 0 for an empty history.
fn last_two(h: &[u32]) -> (u32, u32) {
    (
        h.get(h.len().saturating_sub(2)).copied().unwrap_or(0),
        h.last().copied().unwrap_or(0),
    )
}

impl Student for NGram {
    fn sample_next(&self, histories: &[&[u32]], rng: &mut Rng) -> Result<Vec<u32>> {
        Ok(histories
            .iter()
            .map(|h| {
                let (u, v) = last_two(h);
                self.sample(u, v, rng)
            })
            .collect())
    }
}

impl ReadingModel for NGram {
    fn predictions(&self, prompt: &[u32], ids: &[u32]) -> Result<Vec<u32>> {
        let full: Vec<u32> = prompt.iter().chain(ids).copied().collect();
        Ok((0..ids.len())
            .map(|i| {
                let (u, v) = last_two(&full[..prompt.len() + i]);
                self.argmax(u, v)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_and_sampling_follows_them() {
        let samples = vec![(vec![1, 2], vec![3, 4, 3, 5, 3, 4, 6]), (vec![9], vec![3, 4, 7])];
        let m = NGram::train(10, &samples);
        for (u, v) in [(2, 3), (3, 4), (8, 8), (4, 3)] {
            let total: f64 = (0..10).map(|w| m.prob(u, v, w)).sum();
            assert!((total - 1.0).abs() < 1e-12, "{u} {v}: {total}");
        }
        let mut rng = Rng::new(5);
        let mut counts = [0u32; 10];
        let n = 200_000;
        for _ in 0..n {
            counts[m.sample(3, 4, &mut rng) as usize] += 1;
        }
        for w in 0..10u32 {
            let want = m.prob(3, 4, w);
            let got = f64::from(counts[w as usize]) / f64::from(n);
            assert!(
                (got - want).abs() < 4.0 * (want * (1.0 - want) / f64::from(n)).sqrt() + 1e-4,
                "{w}: {got} vs {want}"
            );
        }
        assert_eq!(m.argmax(2, 3), 4);
    }

    #[test]
    fn reading_predictions_and_answers_come_from_the_last_two_tokens() {
        let samples = vec![(vec![1, 2], vec![3, 4, 3, 5, 3, 4, 6]), (vec![9], vec![3, 4, 7])];
        let m = NGram::train(10, &samples);
        let (prompt, ids) = ([1u32, 2], [3u32, 4, 3]);
        let doc = tracemark_candle::reading_doc(&m, &prompt, &ids).expect("predictions");
        assert_eq!(doc.predicted, [m.argmax(1, 2), m.argmax(2, 3), m.argmax(3, 4)]);
        assert_eq!((doc.prompt_ids.as_slice(), doc.ids.as_slice()), (&prompt[..], &ids[..]));
        // Answers: reproducible from the seed, at least the asked tokens, never the stop token.
        let prompts = vec![vec![1, 2], vec![9, 3]];
        let a = super::super::answers(&m, &prompts, 200, 6, 5).expect("answers");
        assert_eq!(a, super::super::answers(&m, &prompts, 200, 6, 5).expect("answers"));
        assert!(a.iter().map(|x| x.ids.len()).sum::<usize>() >= 200);
        assert!(a.iter().all(|x| !x.ids.contains(&6) && prompts.contains(&x.prompt)));
        assert!(super::super::answers(&m, &[], 10, 6, 5).is_err());
    }
}
