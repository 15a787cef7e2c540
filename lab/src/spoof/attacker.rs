//! The attacker of Jovanović et al. (ICML 2024), "Watermark stealing in large
//! language models": from harvested watermarked answers and unwatermarked
//! answers of the same model (its own base), it estimates which tokens are
//! green after which contexts, then steers an unwatermarked model toward them
//! (spoofing) or away from them (scrubbing).
//!
//! It knows the scheme's public configuration (Kerckhoffs): the context mode
//! and width, never the key. Its evidence for token `t` after a context
//! *level* `k` is the ratio of `t`'s smoothed frequency after `k` in the
//! harvest to that in the base text; levels are the token alone (a unigram
//! list, or a token that anchors its own seed under self-hash), each single
//! token of the window paired with `t` (the anchor of min-/self-hash is one of
//! them; for `h = 1` this is the whole context), and the whole window (left-hash
//! with `h >= 2`).

use std::collections::HashMap;

use tracemark_candle::Steer;
use tracemark_core::{ContextMode, SchemeConfig};

/// Pseudo-count of the smoothing toward the base unigram frequency.
const SMOOTHING: f64 = 4.0;
/// The frequency ratio at which the attacker is sure a token is green (kgw
/// with `gamma = 0.25, delta = 2` makes green tokens about 2.8 times likelier).
const SURE_RATIO: f64 = 2.5;
/// Evidence below this confidence is dropped.
const MIN_CONFIDENCE: f32 = 0.05;

/// Which context levels the attacker counts, from the scheme's public configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    /// The token alone.
    pub unigram: bool,
    /// Each window token paired with the token.
    pub pairs: bool,
    /// The whole window.
    pub full: bool,
    /// The window width `h`.
    pub width: usize,
}

impl Levels {
    /// The levels an attacker who knows `config` (not its key) counts.
    pub fn for_config(config: &SchemeConfig) -> Self {
        let context = config.context();
        let width = context.width();
        match context.mode() {
            ContextMode::LeftHash => Self {
                unigram: width == 0,
                pairs: width >= 1,
                full: width >= 2,
                width,
            },
            ContextMode::SelfHash => Self {
                unigram: true,
                pairs: true,
                full: width >= 2,
                width,
            },
            // Min-hash, and any mode added later: the window's tokens one by one.
            _ => Self {
                unigram: false,
                pairs: true,
                full: width >= 2,
                width,
            },
        }
    }

    /// The level keys of the position after `history` (the unigram key is 0).
    fn keys(&self, history: &[u32], out: &mut Vec<u64>) {
        out.clear();
        if self.unigram {
            out.push(0);
        }
        if history.len() < self.width {
            return;
        }
        let window = &history[history.len() - self.width..];
        if self.pairs {
            for (i, &w) in window.iter().enumerate() {
                if !window[..i].contains(&w) {
                    out.push((1 << 62) | u64::from(w));
                }
            }
        }
        if self.full {
            let h = window.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &w| {
                (h ^ u64::from(w)).wrapping_mul(0x0100_0000_01b3)
            });
            out.push((2 << 62) | (h & ((1 << 62) - 1)));
        }
    }
}

#[derive(Default)]
struct Counts {
    pair: HashMap<(u64, u32), u32>,
    total: HashMap<u64, u32>,
    unigram: HashMap<u32, u32>,
    tokens: u64,
}

impl Counts {
    fn add(&mut self, levels: &Levels, docs: &[(&[u32], &[u32])]) {
        let mut keys = Vec::new();
        for (prompt, ids) in docs {
            let mut seq = prompt.to_vec();
            for &t in *ids {
                levels.keys(&seq, &mut keys);
                for &k in &keys {
                    *self.pair.entry((k, t)).or_default() += 1;
                    *self.total.entry(k).or_default() += 1;
                }
                *self.unigram.entry(t).or_default() += 1;
                self.tokens += 1;
                seq.push(t);
            }
        }
    }
}

/// What the attacker learned: per context level key, the tokens it believes
/// green there with a confidence in (0, 1].
pub struct Knowledge {
    levels: Levels,
    table: HashMap<u64, Vec<(u32, f32)>>,
    /// Harvested tokens it learned from.
    pub harvest_tokens: u64,
    /// (context level, token) pairs it believes green.
    pub beliefs: usize,
}

impl Knowledge {
    /// Learns from `harvest` (watermarked answers: prompt ids, answer ids) against `base`
    /// (unwatermarked answers of the same model), for a vocabulary of `vocab` tokens.
    pub fn learn(levels: Levels, harvest: &[(&[u32], &[u32])], base: &[(&[u32], &[u32])], vocab: usize) -> Self {
        let mut o = Counts::default();
        o.add(&levels, harvest);
        let mut b = Counts::default();
        b.add(&levels, base);
        let base_total = b.tokens as f64 + 0.5 * vocab as f64;
        let unigram = |t: u32| (f64::from(b.unigram.get(&t).copied().unwrap_or(0)) + 0.5) / base_total;
        let mut table: HashMap<u64, Vec<(u32, f32)>> = HashMap::new();
        let mut beliefs = 0;
        for (&(k, t), &n) in &o.pair {
            let o_total = f64::from(o.total[&k]);
            let b_total = f64::from(b.total.get(&k).copied().unwrap_or(0));
            // A context never seen in the base (or once in the harvest) says nothing.
            if o_total < 2.0 || (k != 0 && b_total < 1.0) {
                continue;
            }
            let u = unigram(t);
            let pw = (f64::from(n) + SMOOTHING * u) / (o_total + SMOOTHING);
            let nb = f64::from(b.pair.get(&(k, t)).copied().unwrap_or(0));
            let pb = (nb + SMOOTHING * u) / (b_total + SMOOTHING);
            let s = (pw / pb).ln() / SURE_RATIO.ln();
            let confidence = (s.clamp(0.0, 1.0) * (1.0 - (-f64::from(n) / 2.0).exp())) as f32;
            if confidence >= MIN_CONFIDENCE {
                table.entry(k).or_default().push((t, confidence));
                beliefs += 1;
            }
        }
        Self {
            levels,
            table,
            harvest_tokens: o.tokens,
            beliefs,
        }
    }

    /// The attacker's confidence that each token is green after `history`:
    /// `(token, confidence)`, the highest over the levels.
    pub fn beliefs_after(&self, history: &[u32]) -> HashMap<u32, f32> {
        let mut keys = Vec::new();
        self.levels.keys(history, &mut keys);
        let mut out: HashMap<u32, f32> = HashMap::new();
        for k in &keys {
            for &(t, c) in self.table.get(k).map_or(&[][..], Vec::as_slice) {
                let e = out.entry(t).or_default();
                *e = e.max(c);
            }
        }
        out
    }
}

/// The attacker's steering: `strength` times its confidence added to each
/// believed-green token's logit (negative to scrub).
pub struct Steering<'a> {
    /// What it learned.
    pub knowledge: &'a Knowledge,
    /// Logit added at full confidence.
    pub strength: f32,
}

impl Steer for Steering<'_> {
    fn steer(&self, history: &[u32], row: &mut [f32]) {
        for (t, c) in self.knowledge.beliefs_after(history) {
            if let Some(x) = row.get_mut(t as usize) {
                *x += self.strength * c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tracemark_candle::Rng;
    use tracemark_core::Key;

    use super::*;

    /// Text from a toy model (each next token uniform over 40) watermarked by
    /// kgw h=1: the attacker must find the green tokens after frequent contexts.
    #[test]
    fn learns_green_pairs_of_a_watermark_from_text_alone() {
        let config: SchemeConfig = "kgw:gamma=0.25,delta=4,context=lefthash:1".parse().expect("config");
        let vocab = 40;
        let scheme = config.build(&Key::from_bytes([7; 32]), vocab).expect("scheme");
        let mut rng = Rng::new(1);
        let mut sample = |marked: bool| -> Vec<u32> {
            let mut seq = vec![0u32];
            for _ in 0..400 {
                let mut row = vec![0.0f32; vocab];
                if marked {
                    scheme.process(&seq, &mut row).expect("process");
                }
                seq.push(tracemark_candle::sample(&row, Default::default(), &mut rng));
            }
            seq
        };
        let harvest: Vec<Vec<u32>> = (0..40).map(|_| sample(true)).collect();
        let base: Vec<Vec<u32>> = (0..40).map(|_| sample(false)).collect();
        fn as_docs(d: &[Vec<u32>]) -> Vec<(&[u32], &[u32])> {
            d.iter().map(|s| (&s[..1], &s[1..])).collect()
        }
        let k = Knowledge::learn(Levels::for_config(&config), &as_docs(&harvest), &as_docs(&base), vocab);
        // Beliefs above 0.5 confidence are mostly right (a quarter would be by chance).
        let (mut right, mut all) = (0, 0);
        for prev in 0..vocab as u32 {
            for (t, c) in k.beliefs_after(&[prev]) {
                if c > 0.5 {
                    all += 1;
                    let mut row = vec![0.0f32; vocab];
                    scheme.process(&[prev], &mut row).expect("process");
                    right += usize::from(row[t as usize] > 0.0);
                }
            }
        }
        assert!(all > 100, "{all} confident beliefs");
        assert!(right as f64 > 0.8 * all as f64, "{right} of {all} right");
    }
}
