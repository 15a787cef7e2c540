//! Stage 1, the harvest: the teacher answers prompts for the harvested cohorts
//! and unwatermarked; the competitor mixes the answers into training sets.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, Arm, Llama, Rng, Sampling};
use tracemark_core::{Key, Scheme, SchemeConfig};
use tracemark_verifier::Document;

use super::{Plan, COHORTS, HARVESTED, PLAIN_PER_PROMPT, SCHEME};
use crate::{io, Error, Result};

/// One harvested answer: the experiment's document (cached as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Harvested {
    /// The prompt ids (chat template applied).
    pub prompt_ids: Vec<u32>,
    /// Cohort index, or None for an unwatermarked answer.
    pub cohort: Option<usize>,
    /// The answer's ids, decoded to text and re-encoded as the competitor sees them.
    pub ids: Vec<u32>,
}

impl Harvested {
    /// The answer as a document for the verifier (its prompt as context).
    pub fn document(&self) -> Document {
        Document::ids(self.prompt_ids.clone(), self.ids.clone())
    }
}

/// Tokens in `docs`.
pub(super) fn tokens_of(docs: &[&Harvested]) -> usize {
    docs.iter().map(|h| h.ids.len()).sum()
}

/// Prompts like the harvested ones: templates over topics (written for this project).
pub fn prompt_pool() -> Vec<String> {
    let data_lines = |text: &'static str| -> Vec<&'static str> {
        text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    };
    let templates = data_lines(include_str!("../../data/distill-templates.txt"));
    let topics = data_lines(include_str!("../../data/distill-topics.txt"));
    let mut pool: Vec<String> = templates
        .iter()
        .flat_map(|t| topics.iter().map(move |x| t.replace("{}", x)))
        .collect();
    // A fixed shuffle: harvest and student prompts are different but alike.
    let mut rng = Rng::new(0x5eed);
    for i in (1..pool.len()).rev() {
        pool.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    pool
}

/// Stage 1: the teacher answers the harvest prompts for the harvested cohorts and unwatermarked.
pub fn harvest(
    dir: &Path,
    plan: &Plan,
    master: &Key,
    model: &Llama,
    tok: &tokenizers::Tokenizer,
    stop: &[u32],
) -> Result<Vec<Harvested>> {
    let config: SchemeConfig = SCHEME.parse()?;
    let keys: Vec<Key> = (0..COHORTS)
        .map(|c| master.derive(&format!("cohort/{c}")))
        .collect::<std::result::Result<_, _>>()?;
    let schemes: Vec<Box<dyn Scheme>> = keys
        .iter()
        .map(|k| config.build(k, model.config().vocab_size))
        .collect::<std::result::Result<_, _>>()?;
    fn arm(scheme: Option<&dyn Scheme>) -> Arm<'_> {
        Arm {
            scheme,
            steer: None,
            skip_repeated: false,
            sampling: Sampling::default(),
        }
    }
    let mut rows: Vec<(Option<usize>, Arm<'_>)> = Vec::new();
    for &(c, n) in &HARVESTED {
        rows.extend((0..n).map(|_| (Some(c), arm(Some(schemes[c].as_ref())))));
    }
    rows.extend((0..PLAIN_PER_PROMPT).map(|_| (None, arm(None))));
    let arms: Vec<Arm<'_>> = rows.iter().map(|r| r.1).collect();
    let cache = dir.join(format!("harvest-{}-{}", master.id(), plan.new_tokens));
    io(&cache, std::fs::create_dir_all(&cache))?;
    let mut out = Vec::new();
    let started = Instant::now();
    for (i, user) in prompt_pool().iter().take(plan.harvest_prompts).enumerate() {
        let file = cache.join(format!("prompt-{i:04}.json"));
        // The quick run (a test) always generates afresh.
        let cached = (!plan.quick)
            .then(|| std::fs::read_to_string(&file).ok())
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(batch) = cached {
            out.extend::<Vec<Harvested>>(batch);
            continue;
        }
        let prompt = gguf_tokenizer::encode(tok, &chat_prompt(user))?;
        let mut rngs: Vec<Rng> = (0..arms.len())
            .map(|a| Rng::new(((i as u64 + 1) << 8) | a as u64))
            .collect();
        let (gens, _) = generate(model, &prompt, &arms, plan.new_tokens, stop, &mut rngs)?;
        // The competitor sees text: decode, then re-encode with the (same) tokenizer.
        let mut batch = Vec::new();
        for (g, (cohort, _)) in gens.iter().zip(&rows) {
            let text = gguf_tokenizer::decode(tok, &g.ids)?;
            batch.push(Harvested {
                prompt_ids: prompt.clone(),
                cohort: *cohort,
                ids: gguf_tokenizer::encode(tok, &text)?,
            });
        }
        let json = serde_json::to_string(&batch).map_err(|e| Error::Usage(e.to_string()))?;
        io(&file, std::fs::write(&file, json))?;
        eprintln!(
            "[harvest {}/{}] {:.0} s so far",
            i + 1,
            plan.harvest_prompts,
            started.elapsed().as_secs_f64()
        );
        out.extend(batch);
    }
    Ok(out)
}

/// Answers for a student's training set: a share `fraction` of `tokens` from `marked`, the rest from `plain`.
pub fn mixture(
    marked: &[&Harvested],
    plain: &[&Harvested],
    fraction: f64,
    tokens: usize,
    eos: u32,
) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out = Vec::new();
    let take = |pool: &[&Harvested], budget: usize, out: &mut Vec<(Vec<u32>, Vec<u32>)>| {
        let mut used = 0;
        for h in pool {
            if used >= budget {
                break;
            }
            let mut text = h.ids.clone();
            text.push(eos);
            used += text.len();
            out.push((h.prompt_ids.clone(), text));
        }
    };
    take(marked, (fraction * tokens as f64).round() as usize, &mut out);
    take(plain, ((1.0 - fraction) * tokens as f64).round() as usize, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(cohort: Option<usize>, token: u32, len: usize) -> Harvested {
        Harvested {
            prompt_ids: vec![9],
            cohort,
            ids: vec![token; len],
        }
    }

    #[test]
    fn mixture_takes_each_share_by_tokens_with_eos() {
        let marked: Vec<Harvested> = (0..4).map(|_| answer(Some(1), 7, 4)).collect();
        let plain: Vec<Harvested> = (0..4).map(|_| answer(None, 8, 4)).collect();
        let (marked, plain): (Vec<&Harvested>, Vec<&Harvested>) = (marked.iter().collect(), plain.iter().collect());
        // 25% of 20 tokens: one marked answer (5 tokens with eos), then plain ones until 15.
        let data = mixture(&marked, &plain, 0.25, 20, 0);
        let from_marked = data.iter().filter(|d| d.1[0] == 7).count();
        assert_eq!((from_marked, data.len()), (1, 4));
        assert!(data
            .iter()
            .all(|(prompt, text)| prompt == &[9] && text.last() == Some(&0)));
        assert!(mixture(&marked, &plain, 0.0, 20, 0).iter().all(|d| d.1[0] == 8));
    }

    #[test]
    fn the_prompt_pool_is_a_fixed_shuffle_of_templates_over_topics() {
        let pool = prompt_pool();
        assert_eq!(pool, prompt_pool());
        assert!(
            pool.len() >= 150 + 120,
            "the full run takes 150 harvest and 120 student prompts"
        );
        assert!(pool.iter().all(|p| !p.contains("{}")));
    }
}
