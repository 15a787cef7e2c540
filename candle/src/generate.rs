//! The generation loop: temperature / top-k / top-p sampling with any
//! tracemark scheme plugged in through the core's public API only.
//!
//! Several *arms* (e.g. one per scheme) share one prompt and advance as one
//! batch, so the model reads its weights once per step for all of them.

use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracemark_core::{Scheme, SeenContexts, Step};

use crate::error::{Error, Result};
use crate::model::{KvCache, Llama};

/// A seeded random stream for sampling: ChaCha8 (`rand_chacha`), the same
/// on every platform, so a seed reproduces a generation anywhere.
#[derive(Clone, Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Stream `stream` of the generator of `seed`: independent of the other
    /// streams of the same seed (ChaCha's stream id), for separate draws
    /// reproducible from one seed.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self(rng)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Sampling settings (applied after a `kgw` bias, or without a watermark;
/// schemes that select the token themselves, `tournament` and `gumbel`, are
/// sampled as they come on watermarked steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Temperature (> 0).
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens with this much probability.
    pub top_p: Option<f32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

/// Samples a token from logits under `sampling`.
pub fn sample(logits: &[f32], sampling: Sampling, rng: &mut Rng) -> u32 {
    let inv_t = 1.0 / f64::from(sampling.temperature.max(1e-6));
    let mut cands: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, f64::from(l) * inv_t))
        .collect();
    if cands.is_empty() {
        return 0;
    }
    if let Some(k) = sampling.top_k.filter(|&k| k > 0 && k < cands.len()) {
        cands.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        cands.truncate(k);
    }
    let max = cands.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
    let mut weights: Vec<(u32, f64)> = cands.into_iter().map(|(t, l)| (t, (l - max).exp())).collect();
    if let Some(p) = sampling.top_p.filter(|&p| p > 0.0 && p < 1.0) {
        // Tokens below 1e-9 of the top weight cannot change which tokens make the nucleus.
        weights.retain(|w| w.1 > 1e-9);
        weights.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let mut acc = 0.0;
        let keep = weights
            .iter()
            .position(|w| {
                acc += w.1;
                acc >= f64::from(p) * total
            })
            .map_or(weights.len(), |i| i + 1);
        weights.truncate(keep);
    }
    let total: f64 = weights.iter().map(|w| w.1).sum();
    let mut u = rng.uniform() * total;
    for &(t, w) in &weights {
        if u < w {
            return t;
        }
        u -= w;
    }
    weights.last().map_or(0, |w| w.0)
}

/// `ln sum exp(row)` over the finite entries.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from(x - max).exp())
        .sum();
    f64::from(max) + sum.ln()
}

/// Whether `scheme` chooses the token itself (its processed row is a
/// distribution to sample as it comes, at temperature 1 without top-k/top-p)
/// rather than biasing logits for the caller's sampler.
// contract: the core's scheme contract answers.
fn scheme_selects_token(scheme: &dyn Scheme) -> bool {
    scheme.contract().generation.controls_sampling()
}

/// A caller's own change to the logits before the watermark: the
/// experiments' attacker, who steers an unwatermarked model with what it
/// learned from harvested answers, is one.
pub trait Steer: Sync {
    /// Changes `row` (the raw logits of the next token after `history`, prompt
    /// included) in place.
    fn steer(&self, history: &[u32], row: &mut [f32]);
}

/// One arm of a batched generation.
#[derive(Clone, Copy)]
pub struct Arm<'a> {
    /// The watermark, if any.
    pub scheme: Option<&'a dyn Scheme>,
    /// A change to the logits before the watermark, if any (its effect is not
    /// counted in [`Generation::nll`], which is the raw model's).
    pub steer: Option<&'a dyn Steer>,
    /// Skip contexts already watermarked in this sequence.
    pub skip_repeated: bool,
    /// Sampling after a `kgw` bias or without a watermark.
    pub sampling: Sampling,
}

/// What one arm generated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generation {
    /// The new token ids (without the prompt, without the stop token).
    pub ids: Vec<u32>,
    /// Whether a stop token ended it.
    pub stopped: bool,
    /// Steps that were watermarked.
    pub watermarked_steps: usize,
    /// `-ln P(token)` of each new token under the unwatermarked model at
    /// temperature 1 (from the raw logits, before any watermark): the
    /// perplexity of the text costs no extra forward pass.
    pub nll: Vec<f32>,
    /// Time this arm spent in watermark processing.
    pub watermark_time: Duration,
}

/// Time spent, summed over the arms' steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    /// The forward pass over the prompt (the whole batch).
    pub prefill: Duration,
    /// Model forward passes of the decode steps (the whole batch).
    pub forward: Duration,
    /// Watermark processing.
    pub watermark: Duration,
    /// Sampling.
    pub sampling: Duration,
    /// Decode steps.
    pub steps: usize,
    /// Tokens produced over all arms.
    pub tokens: usize,
}

/// One decode step of one arm, the token layer exactly as [`generate_each`]
/// runs it: the arm's steer, its scheme (with the repeated-context `memory`
/// when `skip_repeated`), then sampling from `rng`. Returns the token and its
/// `-ln P` under the raw row (the [`Generation::nll`] entry); counts the
/// watermark's time and watermarked steps in `out` and `timing`. Shared with
/// [`crate::layered`], whose sentence-level rejection sits on top of it.
pub(crate) fn decode_step(
    arm: &Arm<'_>,
    history: &[u32],
    row: &mut [f32],
    memory: &mut SeenContexts,
    rng: &mut Rng,
    timing: &mut Timing,
    out: &mut Generation,
) -> Result<(u32, f32)> {
    let raw_lse = log_sum_exp(row);
    let raw = row.to_vec();
    if let Some(steer) = arm.steer {
        steer.steer(history, row);
    }
    let mut controls_sampling = false;
    if let Some(scheme) = arm.scheme {
        let t = Instant::now();
        let step = if arm.skip_repeated {
            scheme.process_with_memory(history, row, memory)?
        } else {
            scheme.process(history, row)?
        };
        let spent = t.elapsed();
        timing.watermark += spent;
        out.watermark_time += spent;
        out.watermarked_steps += usize::from(matches!(step, Step::Watermarked { .. }));
        controls_sampling = step.is_watermarked() && scheme_selects_token(scheme);
    }
    let t = Instant::now();
    let sampling = if controls_sampling {
        Sampling::default()
    } else {
        arm.sampling
    };
    let tok = sample(row, sampling, rng);
    timing.sampling += t.elapsed();
    timing.tokens += 1;
    let nll = raw
        .get(tok as usize)
        .map_or(f32::INFINITY, |&l| (raw_lse - f64::from(l)) as f32);
    Ok((tok, nll))
}

/// Generates up to `max_new` tokens for every arm after `prompt`, stopping
/// each arm at any of `stop`. Each arm samples from its own random stream, so
/// an arm's output does not depend on which other arms share its batch.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    arms: &[Arm<'_>],
    max_new: usize,
    stop: &[u32],
    rngs: &mut [Rng],
) -> Result<(Vec<Generation>, Timing)> {
    generate_each(model, &vec![prompt.to_vec(); arms.len()], arms, max_new, stop, rngs)
}

/// [`generate`] with a prompt per arm: `prompts[i]` for `arms[i]`. Prompts
/// of different lengths are left-padded to one length and their padding is
/// masked ([`KvCache::left_padded`]): an arm with a shorter prompt samples
/// from nearly, not exactly, the distributions it would have alone, so its
/// output can differ from a run alone with the same seed. Prompts of one
/// length run exactly as [`generate`]'s.
pub fn generate_each(
    model: &Llama,
    prompts: &[Vec<u32>],
    arms: &[Arm<'_>],
    max_new: usize,
    stop: &[u32],
    rngs: &mut [Rng],
) -> Result<(Vec<Generation>, Timing)> {
    let b = arms.len();
    if rngs.len() != b || prompts.len() != b {
        return Err(Error::Usage(format!(
            "{b} arms need {b} random streams and {b} prompts, got {} and {}",
            rngs.len(),
            prompts.len()
        )));
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(Error::Usage("every arm needs a non-empty prompt".into()));
    }
    let mut out = vec![Generation::default(); b];
    let mut memories = vec![SeenContexts::new(); b];
    let mut timing = Timing::default();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let padding: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    // Padding positions are masked: any id serves; the row's own first token does.
    let padded: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&padding)
        .map(|(p, &n)| std::iter::repeat_n(p[0], n).chain(p.iter().copied()).collect())
        .collect();
    let mut cache = if padding.iter().any(|&n| n > 0) {
        KvCache::left_padded(padding)
    } else {
        KvCache::new()
    };
    let t0 = Instant::now();
    let mut logits = model.forward(&padded, &mut cache, false)?;
    timing.prefill = t0.elapsed();
    let mut history: Vec<Vec<u32>> = prompts.to_vec();
    for _ in 0..max_new {
        let mut rows = logits.to_vec2::<f32>()?;
        let mut next = Vec::with_capacity(b);
        for (i, arm) in arms.iter().enumerate() {
            if out[i].stopped {
                next.push(vec![*history[i].last().unwrap_or(&0)]);
                continue;
            }
            let (tok, nll) = decode_step(
                arm,
                &history[i],
                &mut rows[i],
                &mut memories[i],
                &mut rngs[i],
                &mut timing,
                &mut out[i],
            )?;
            if stop.contains(&tok) {
                out[i].stopped = true;
            } else {
                out[i].nll.push(nll);
                out[i].ids.push(tok);
                history[i].push(tok);
            }
            next.push(vec![tok]);
        }
        timing.steps += 1;
        if out.iter().all(|g| g.stopped) {
            break;
        }
        let t = Instant::now();
        logits = model.forward(&next, &mut cache, false)?;
        timing.forward += t.elapsed();
    }
    Ok((out, timing))
}

#[cfg(test)]
mod tests {
    use tracemark_core::{Key, SchemeConfig};

    use super::*;

    #[test]
    fn only_tournament_and_gumbel_select_their_token() {
        let key = Key::from_bytes([3; 32]);
        for (config, selects) in [
            ("kgw:gamma=0.25,delta=2,context=lefthash:1", false),
            ("kgw:gamma=0.25,delta=2,context=selfhash:4", false),
            ("tournament:layers=30,top_k=40,temperature=1,context=lefthash:4", true),
            ("gumbel:temperature=1,context=lefthash:4", true),
        ] {
            let config: SchemeConfig = config.parse().expect("config");
            let scheme = config.build(&key, 1000).expect("scheme");
            assert_eq!(scheme_selects_token(scheme.as_ref()), selects, "{config}");
        }
    }

    #[test]
    fn sampling_respects_top_k_and_banned_tokens() {
        let logits = [0.0, 5.0, f32::NEG_INFINITY, 4.9, -3.0];
        let mut rng = Rng::new(9);
        let top2 = Sampling {
            top_k: Some(2),
            ..Sampling::default()
        };
        for _ in 0..200 {
            let t = sample(&logits, top2, &mut rng);
            assert!(t == 1 || t == 3, "{t}");
            assert_ne!(sample(&logits, Sampling::default(), &mut rng), 2);
        }
        // The same seed draws the same tokens.
        let draw = |seed| {
            (0..20)
                .map(|_| sample(&logits, Sampling::default(), &mut Rng::new(seed)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(4), draw(4));
    }
}
