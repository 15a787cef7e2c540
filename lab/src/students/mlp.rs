//! Distillation students: language models trained on harvested answers,
//! the suspects of a radioactivity test.
//!
//! [`Student`] is what the experiment needs from one: sampling (its outputs
//! are scanned black box, see [`answers`]) and next-token predictions on our
//! texts (reading mode, through [`ReadingModel`]). Two implementations: the
//! smoothed trigram model [`NGram`](super::NGram), and [`MlpLm`]
//! below, a small neural model trained with candle on the CPU.
//!
//! A feed-forward model over the previous `context` tokens (Bengio et al.
//! 2003): embeddings, one tanh hidden layer, a softmax over the tokens seen in
//! training. Trained with AdamW on cross-entropy for a wall-clock budget (or
//! a fixed number of steps); initialised from the options' seed, so a run
//! with a step limit is reproducible.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{AdamW, Embedding, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};

use tracemark_candle::ReadingModel;
use tracemark_candle::Result;
use tracemark_candle::Rng;

/// A language model that samples token by token: a distillation student.
pub trait Student: ReadingModel {
    /// Samples the next token after each history (temperature 1), drawing
    /// from `rng` in history order.
    fn sample_next(&self, histories: &[&[u32]], rng: &mut Rng) -> Result<Vec<u32>>;
}

/// Prompts answered per batch by [`answers`].
const ANSWER_BATCH: usize = 32;
/// The longest answer [`answers`] lets a student write.
const ANSWER_MAX_TOKENS: usize = 150;

/// A student's answer to one prompt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The prompt's ids.
    pub prompt: Vec<u32>,
    /// The answer's ids (without the stop token).
    pub ids: Vec<u32>,
}

/// The student's answers to `prompts` (cycled through in batches of 32) until
/// they hold at least `tokens` tokens; each answer ends at `eos` (not
/// included) or after 150 tokens; a round of empty answers ends it early.
/// Reproducible: all sampling draws from one generator seeded with `seed`.
pub fn answers(
    student: &(impl Student + ?Sized),
    prompts: &[Vec<u32>],
    tokens: usize,
    eos: u32,
    seed: u64,
) -> Result<Vec<Answer>> {
    if prompts.is_empty() {
        return Err(tracemark_candle::Error::Usage(
            "a student needs prompts to answer".into(),
        ));
    }
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut total = 0;
    'outer: for round in 0.. {
        let ps: Vec<&Vec<u32>> = (0..ANSWER_BATCH)
            .map(|i| &prompts[(round * ANSWER_BATCH + i) % prompts.len()])
            .collect();
        let mut hist: Vec<Vec<u32>> = ps.iter().map(|p| p.to_vec()).collect();
        let mut done = [false; ANSWER_BATCH];
        for _ in 0..ANSWER_MAX_TOKENS {
            let next = student.sample_next(&hist.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut rng)?;
            for ((h, d), t) in hist.iter_mut().zip(done.iter_mut()).zip(next) {
                if !*d {
                    if t == eos {
                        *d = true;
                    } else {
                        h.push(t);
                    }
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
        let before = total;
        for (p, h) in ps.iter().zip(hist) {
            let ids = h[p.len()..].to_vec();
            total += ids.len();
            out.push(Answer {
                prompt: p.to_vec(),
                ids,
            });
            if total >= tokens {
                break 'outer;
            }
        }
        if total == before {
            // A student that stops at once on every prompt would never reach `tokens`.
            break;
        }
    }
    Ok(out)
}

/// Training settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    /// Previous tokens the model sees.
    pub context: usize,
    /// Embedding size.
    pub dim: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Examples per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Wall-clock training budget.
    pub budget: Duration,
    /// Stop after this many optimizer steps, if the budget lasts that long
    /// (with it, training is reproducible).
    pub max_steps: Option<usize>,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            context: 3,
            dim: 64,
            hidden: 256,
            batch: 256,
            lr: 3e-3,
            budget: Duration::from_secs(120),
            max_steps: None,
            seed: 1,
        }
    }
}

/// What training did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainReport {
    /// Optimizer steps.
    pub steps: usize,
    /// Passes over the data (fractional).
    pub epochs: f64,
    /// Mean cross-entropy over the last 50 steps (nats per token).
    pub loss: f64,
    /// Examples (predicted tokens) in the training set.
    pub examples: usize,
}

/// The model.
pub struct MlpLm {
    emb: Embedding,
    hidden: Linear,
    out: Linear,
    context: usize,
    /// Global token id -> local id (0 is "unknown").
    local: HashMap<u32, u32>,
    /// Local id -> global token id.
    global: Vec<u32>,
    device: Device,
}

impl MlpLm {
    /// Trains on `(context, text)` pairs: every token of `text` is predicted
    /// from the `context` tokens before it (the pair's context first).
    pub fn train(samples: &[(Vec<u32>, Vec<u32>)], opts: TrainOptions) -> Result<(Self, TrainReport)> {
        let device = Device::Cpu;
        let mut global = vec![u32::MAX];
        let mut local = HashMap::new();
        for (c, t) in samples {
            for &tok in c.iter().chain(t) {
                local.entry(tok).or_insert_with(|| {
                    global.push(tok);
                    (global.len() - 1) as u32
                });
            }
        }
        let n = opts.context;
        let mut xs: Vec<u32> = Vec::new();
        let mut ys: Vec<u32> = Vec::new();
        for (c, t) in samples {
            let seq: Vec<u32> = c.iter().chain(t).map(|tok| local[tok]).collect();
            for i in c.len()..seq.len() {
                for k in (1..=n).rev() {
                    xs.push(if i >= k { seq[i - k] } else { 0 });
                }
                ys.push(seq[i]);
            }
        }
        let examples = ys.len();
        let vocab = global.len();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let emb = candle_nn::embedding(vocab, opts.dim, vb.pp("emb"))?;
        let hidden = candle_nn::linear(n * opts.dim, opts.hidden, vb.pp("hidden"))?;
        let out = candle_nn::linear(opts.hidden, vocab, vb.pp("out"))?;
        // candle initialises from an unseeded generator: re-initialise from ours, with the same
        // distributions (embeddings N(0, 1) here as uniform with variance 1, linear layers
        // uniform in +-1/sqrt(fan_in)).
        let mut init = Rng::new(opts.seed ^ 0x1417);
        {
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?;
            let mut names: Vec<&String> = vars.keys().collect();
            names.sort();
            for name in names {
                let var = &vars[name];
                let bound = match name.as_str() {
                    "emb.weight" => 3f64.sqrt(),
                    "hidden.weight" | "hidden.bias" => 1.0 / ((n * opts.dim) as f64).sqrt(),
                    _ => 1.0 / (opts.hidden as f64).sqrt(),
                };
                let values: Vec<f32> = (0..var.elem_count())
                    .map(|_| ((2.0 * init.uniform() - 1.0) * bound) as f32)
                    .collect();
                var.set(&Tensor::from_vec(values, var.shape(), &device)?)?;
            }
        }
        let model = Self {
            emb,
            hidden,
            out,
            context: n,
            local,
            global,
            device,
        };
        let mut opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: opts.lr,
                ..ParamsAdamW::default()
            },
        )?;
        let mut order: Vec<usize> = (0..examples).collect();
        let mut rng = Rng::new(opts.seed);
        let started = Instant::now();
        let (mut steps, mut seen) = (0usize, 0usize);
        let mut recent: Vec<f64> = Vec::new();
        'training: loop {
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            for chunk in order.chunks(opts.batch) {
                let bx: Vec<u32> = chunk
                    .iter()
                    .flat_map(|&e| xs[e * n..(e + 1) * n].iter().copied())
                    .collect();
                let by: Vec<u32> = chunk.iter().map(|&e| ys[e]).collect();
                let bx = Tensor::from_vec(bx, (chunk.len(), n), &model.device)?;
                let by = Tensor::from_vec(by, chunk.len(), &model.device)?;
                let loss = candle_nn::loss::cross_entropy(&model.logits(&bx)?, &by)?;
                opt.backward_step(&loss)?;
                recent.push(f64::from(loss.to_scalar::<f32>()?));
                if recent.len() > 50 {
                    recent.remove(0);
                }
                steps += 1;
                seen += chunk.len();
                if started.elapsed() >= opts.budget || opts.max_steps.is_some_and(|m| steps >= m) {
                    break 'training;
                }
            }
        }
        let loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
        Ok((
            model,
            TrainReport {
                steps,
                epochs: seen as f64 / examples.max(1) as f64,
                loss,
                examples,
            },
        ))
    }

    fn logits(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, n) = xs.dims2()?;
        let e = self.emb.forward(xs)?.reshape((b, n * self.emb.hidden_size()))?;
        Ok(self.out.forward(&self.hidden.forward(&e)?.tanh()?)?)
    }

    fn contexts(&self, histories: &[&[u32]]) -> Result<Tensor> {
        let n = self.context;
        let flat: Vec<u32> = histories
            .iter()
            .flat_map(|h| {
                (1..=n).rev().map(move |k| {
                    h.len()
                        .checked_sub(k)
                        .map_or(0, |i| *self.local.get(&h[i]).unwrap_or(&0))
                })
            })
            .collect();
        Ok(Tensor::from_vec(flat, (histories.len(), n), &self.device)?)
    }

    /// Samples the next token for each history (temperature 1).
    pub fn sample(&self, histories: &[&[u32]], rng: &mut Rng) -> Result<Vec<u32>> {
        let probs = candle_nn::ops::softmax_last_dim(&self.logits(&self.contexts(histories)?)?)?.to_vec2::<f32>()?;
        Ok(probs
            .iter()
            .map(|p| {
                let mut u = rng.uniform() as f32;
                // Local id 0 ("unknown") is never emitted.
                let total: f32 = p[1..].iter().sum();
                u *= total;
                let mut pick = p.len() - 1;
                for (i, &q) in p.iter().enumerate().skip(1) {
                    if u < q {
                        pick = i;
                        break;
                    }
                    u -= q;
                }
                self.global[pick]
            })
            .collect())
    }

    /// The most likely next token for each history.
    pub fn argmax(&self, histories: &[&[u32]]) -> Result<Vec<u32>> {
        let logits = self.logits(&self.contexts(histories)?)?;
        // Exclude "unknown" (local 0) from the argmax.
        let best = logits
            .narrow(D::Minus1, 1, self.global.len() - 1)?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
        Ok(best.into_iter().map(|i| self.global[i as usize + 1]).collect())
    }

    /// Tokens the model can emit.
    pub fn vocab(&self) -> usize {
        self.global.len() - 1
    }
}

impl Student for MlpLm {
    fn sample_next(&self, histories: &[&[u32]], rng: &mut Rng) -> Result<Vec<u32>> {
        self.sample(histories, rng)
    }
}

impl ReadingModel for MlpLm {
    /// One batch over every position of the text.
    fn predictions(&self, prompt: &[u32], ids: &[u32]) -> Result<Vec<u32>> {
        let full: Vec<u32> = prompt.iter().chain(ids).copied().collect();
        let histories: Vec<&[u32]> = (0..ids.len()).map(|i| &full[..prompt.len() + i]).collect();
        self.argmax(&histories)
    }
}
