//! Layered generation: the semantic layer's sentence-level rejection
//! sampling (issue 25, `docs/SPEC.md` §15) on top of any token-level scheme.
//!
//! Tokens are decoded exactly as [`generate`](crate::generate()) decodes them
//! (the arm's steer, scheme and sampler, one token at a time: the token
//! layer is untouched). After each token the decoded completion is cut into
//! sentences by §15.1 ([`tracemark_verifier::sentence_spans`], the
//! verifier's own function on the same string the verifier will read). A
//! sentence is *complete* once the next sentence has begun (its first letter
//! or digit is in the text: from then on §15.1 cannot move the boundary), or
//! when a stop token ends the answer. A complete sentence that is scored
//! ([`SemanticConfig::is_scored`](tracemark_core::SemanticConfig::is_scored))
//! is embedded ([`Embedder`]) and accepted iff
//! [`Semantic::accepts_after`] (green after the previous scored sentence's
//! region, at least the margin from every hyperplane). A rejected sentence is
//! taken back: the generated ids, the token layer's repeated-context memory
//! and the KV cache return to the sentence's start (a [`KvCache`] clone taken
//! there, no recomputation), and the sentence is sampled again from the
//! continuing random stream, i.e. with fresh randomness.
//!
//! - **The sentence's start** is the state right after the token in which
//!   the previous sentence was seen to end; that token also carries the new
//!   sentence's first characters (usually its first word, ` The`), which are
//!   kept: resampling the token that closes a sentence could change the
//!   sentence already accepted.
//! - **Cap**: at most [`Layer::max_candidates`] candidates per sentence
//!   ([`DEFAULT_MAX_CANDIDATES`] = 16). A candidate passes with probability
//!   about `a = γ · P(margin)` (about 0.2 at γ = 0.25 and the default
//!   margin), so a sentence needs `1/a` ≈ 5 candidates on average and
//!   reaches the cap with probability `(1 - a)^16` ≈ 3%; 32 would bring
//!   that to 0.1% at twice the worst-case cost. At the cap the candidate
//!   with the largest *signed margin* is kept (its distance to the nearest
//!   hyperplane, negative when its region is not green after the previous
//!   one: a green candidate that missed only the margin wins over any red
//!   one) and the sentence is counted in [`LayeredStats::cap_hits`].
//! - **Two sentences ending in one token** (rare: `Yes. No. The`) are
//!   checked together, in order, chained; the candidate passes when every
//!   scored one does.
//! - **The last sentence** of an answer cut by `max_new` mid-sentence is
//!   not resampled: it is kept as sampled and, when scored, reported in
//!   [`LayeredStats::unsteered_final`]. A rejected candidate that runs into
//!   `max_new` is kept the same way (`max_new` counts kept tokens).
//!   A final sentence ended by the stop token is steered like any other.

use std::time::{Duration, Instant};

use candle_core::Tensor;
use tokenizers::Tokenizer;
use tracemark_core::{Region, SeenContexts, Semantic};
use tracemark_verifier::sentence_spans;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::generate::{decode_step, Arm, Generation, Rng, Timing};
use crate::gguf_tokenizer;
use crate::model::{KvCache, Llama};

/// The default cap on candidates per sentence (see the module
/// documentation for why 16).
pub const DEFAULT_MAX_CANDIDATES: usize = 16;

/// The semantic layer of a layered generation.
#[derive(Clone, Copy)]
pub struct Layer<'a> {
    /// The keyed semantic scheme (its configuration gives the margin,
    /// `min_words` and the chaining).
    pub semantic: &'a Semantic,
    /// The sentence embedder (all-MiniLM-L6-v2, SPEC §15.2).
    pub embedder: &'a Embedder,
    /// The model's tokenizer, to decode the completion as the verifier will
    /// read it.
    pub tokenizer: &'a Tokenizer,
    /// The most candidates sampled for one sentence (at least 1; 1 turns
    /// the layer off while still measuring it).
    pub max_candidates: usize,
}

/// What the sentence layer cost and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayeredStats {
    /// Scored sentences that were steered (complete, at least `min_words`).
    pub sentences: usize,
    /// Candidates tested, over all steered sentences.
    pub candidates: usize,
    /// Candidates tested for each sentence that was tested at least once,
    /// in order: the steered ones (two sentences that ended in the same
    /// token share one entry), and last, when `max_new` cut a sentence after
    /// some of its candidates were rejected, that one (its last candidate is
    /// kept unsteered). A sentence whose resampling came out shorter than
    /// `min_words`, or was replaced by the stop token, ends its entry too.
    pub candidates_per_sentence: Vec<usize>,
    /// Sentences kept at the cap without passing (the kept one is the
    /// candidate of largest signed margin).
    pub cap_hits: usize,
    /// Tokens sampled, rejected candidates included.
    pub tokens_generated: usize,
    /// Tokens in the answer.
    pub tokens_kept: usize,
    /// Whether the answer ends with a scored sentence that was cut by
    /// `max_new` and so was not steered.
    pub unsteered_final: bool,
    /// Regions of the answer's scored sentences as kept, in order (what the
    /// verifier will find, given the same embeddings).
    pub regions: Vec<Region>,
    /// Time spent embedding candidates.
    pub embed_time: Duration,
    /// Wall time of the whole generation (prefill included).
    pub wall_time: Duration,
}

impl LayeredStats {
    /// Mean candidates per tested sentence (0 when none was tested).
    pub fn mean_candidates(&self) -> f64 {
        match self.candidates_per_sentence.len() {
            0 => 0.0,
            n => self.candidates as f64 / n as f64,
        }
    }

    /// Tokens sampled per token kept.
    pub fn tokens_per_kept(&self) -> f64 {
        self.tokens_generated as f64 / self.tokens_kept.max(1) as f64
    }
}

/// A layered answer: the kept generation (ids, per-token log-probs and
/// watermarked steps of the kept tokens; `watermark_time` counts every
/// sampled token) and the sentence layer's statistics.
#[derive(Clone, Debug)]
pub struct Layered {
    /// The answer, as [`generate`](crate::generate()) returns it.
    pub generation: Generation,
    /// The sentence layer's cost.
    pub stats: LayeredStats,
    /// Token-layer timings over every sampled token.
    pub timing: Timing,
}

/// Where a sentence starts: everything needed to sample it again.
#[derive(Clone)]
struct Checkpoint {
    generation: Generation,
    memory: SeenContexts,
    cache: KvCache,
    logits: Tensor,
    /// Byte offset in the decoded completion where the open sentence region
    /// starts (the start of the sentence being sampled, or of the text after
    /// the last complete one).
    text_start: usize,
    previous: Option<Region>,
}

/// A candidate sentence, complete and tested, before its closing token has
/// been run through the model.
struct Candidate {
    generation: Generation,
    memory: SeenContexts,
    cache: KvCache,
    /// The token that revealed the end (`None` when the stop token did: the
    /// answer is finished).
    pending: Option<u32>,
    text_start: usize,
    previous: Option<Region>,
    regions: Vec<Region>,
    scored: usize,
    signed_margin: f64,
    passed: bool,
}

/// Generates up to `max_new` kept tokens after `prompt` with the token
/// layer of `arm` and the sentence layer `layer`, stopping at any of
/// `stop`. Deterministic for a given `rng` seed.
pub fn generate_layered(
    model: &Llama,
    prompt: &[u32],
    arm: Arm<'_>,
    layer: &Layer<'_>,
    max_new: usize,
    stop: &[u32],
    rng: &mut Rng,
) -> Result<Layered> {
    if prompt.is_empty() {
        return Err(Error::Usage("layered generation needs a non-empty prompt".into()));
    }
    if layer.max_candidates == 0 {
        return Err(Error::Usage(
            "max_candidates must be at least 1, e.g. 16 (tracemark_candle::layered::DEFAULT_MAX_CANDIDATES)".into(),
        ));
    }
    let config = layer.semantic.config();
    let wall = Instant::now();
    let mut stats = LayeredStats::default();
    let mut timing = Timing::default();
    let mut cache = KvCache::new();
    let t0 = Instant::now();
    let logits = model.forward(&[prompt.to_vec()], &mut cache, false)?;
    timing.prefill = t0.elapsed();
    let mut at = Checkpoint {
        generation: Generation::default(),
        memory: SeenContexts::new(),
        cache,
        logits,
        text_start: 0,
        previous: None,
    };
    // The live state, reset to `at` on a rejection.
    let mut generation = at.generation.clone();
    let mut memory = at.memory.clone();
    let mut cache = at.cache.clone();
    let mut logits = at.logits.clone();
    let mut history: Vec<u32> = prompt.to_vec();
    let mut tried = 0usize;
    let mut best: Option<Candidate> = None;
    loop {
        if generation.ids.len() >= max_new {
            let text = gguf_tokenizer::decode(layer.tokenizer, &generation.ids)?;
            let open = sentence_spans(&text).into_iter().filter(|s| s.start >= at.text_start);
            stats.unsteered_final = open.clone().any(|s| config.is_scored(&text[s]));
            if tried > 0 {
                stats.candidates_per_sentence.push(tried);
            }
            break;
        }
        let mut row = logits.squeeze(0)?.to_vec1::<f32>()?;
        let (tok, nll) = decode_step(&arm, &history, &mut row, &mut memory, rng, &mut timing, &mut generation)?;
        stats.tokens_generated += 1;
        let stopped = stop.contains(&tok);
        if !stopped {
            generation.ids.push(tok);
            generation.nll.push(nll);
            history.push(tok);
        }
        let text = gguf_tokenizer::decode(layer.tokenizer, &generation.ids)?;
        let open: Vec<_> = sentence_spans(&text)
            .into_iter()
            .filter(|s| s.start >= at.text_start)
            .collect();
        // Complete sentences: all but the open last one, or all at the stop.
        let complete = if stopped {
            open.len()
        } else {
            open.len().saturating_sub(1)
        };
        if complete == 0 {
            if stopped {
                // The answer ends here (after rejections, the stop token may
                // end it where a rejected sentence stood).
                if tried > 0 {
                    stats.candidates_per_sentence.push(tried);
                }
                generation.stopped = true;
                break;
            }
            let t = Instant::now();
            logits = model.forward(&[vec![tok]], &mut cache, false)?;
            timing.forward += t.elapsed();
            timing.steps += 1;
            continue;
        }
        // Test the complete sentences, in order, chained.
        let scored: Vec<&str> = open[..complete]
            .iter()
            .map(|s| &text[s.clone()])
            .filter(|s| config.is_scored(s))
            .collect();
        let mut candidate = Candidate {
            generation: generation.clone(),
            memory: memory.clone(),
            cache: cache.clone(),
            pending: (!stopped).then_some(tok),
            text_start: open.get(complete).map_or(text.len(), |s| s.start),
            previous: at.previous,
            regions: Vec::with_capacity(scored.len()),
            scored: scored.len(),
            signed_margin: f64::INFINITY,
            passed: true,
        };
        if !scored.is_empty() {
            let t = Instant::now();
            let embeddings = layer.embedder.embed(&scored)?;
            stats.embed_time += t.elapsed();
            for e in embeddings.rows() {
                let p = layer.semantic.project(e)?;
                let green = layer.semantic.is_green_after(candidate.previous, p.region());
                let passed = layer.semantic.accepts_after(candidate.previous, e)?;
                candidate.passed &= passed;
                let signed = if green { p.margin() } else { -p.margin() };
                candidate.signed_margin = candidate.signed_margin.min(signed);
                candidate.previous = Some(p.region());
                candidate.regions.push(p.region());
            }
            tried += 1;
            stats.candidates += 1;
        }
        let keep = if scored.is_empty() || candidate.passed {
            Some(candidate)
        } else {
            if best.as_ref().is_none_or(|b| candidate.signed_margin > b.signed_margin) {
                best = Some(candidate);
            }
            if tried >= layer.max_candidates {
                stats.cap_hits += 1;
                best.take()
            } else {
                None
            }
        };
        match keep {
            None => {
                // Rejected: back to the sentence's start.
                generation = at.generation.clone();
                memory = at.memory.clone();
                cache = at.cache.clone();
                logits = at.logits.clone();
                history.truncate(prompt.len() + generation.ids.len());
            }
            Some(kept) => {
                if kept.scored > 0 {
                    stats.sentences += kept.scored;
                    stats.regions.extend(&kept.regions);
                }
                if tried > 0 {
                    stats.candidates_per_sentence.push(tried);
                }
                tried = 0;
                best = None;
                generation = kept.generation;
                memory = kept.memory;
                cache = kept.cache;
                history.truncate(prompt.len());
                history.extend(&generation.ids);
                match kept.pending {
                    None => {
                        generation.stopped = true;
                        break;
                    }
                    Some(pending) => {
                        let t = Instant::now();
                        logits = model.forward(&[vec![pending]], &mut cache, false)?;
                        timing.forward += t.elapsed();
                        timing.steps += 1;
                    }
                }
                at = Checkpoint {
                    generation: generation.clone(),
                    memory: memory.clone(),
                    cache: cache.clone(),
                    logits: logits.clone(),
                    text_start: kept.text_start,
                    previous: kept.previous,
                };
            }
        }
    }
    // The answer's text is final: its open sentence may still hold scored
    // regions the verifier will see, but only steered ones are listed.
    generation.watermark_time = timing.watermark;
    stats.tokens_kept = generation.ids.len();
    stats.wall_time = wall.elapsed();
    Ok(Layered {
        generation,
        stats,
        timing,
    })
}
