//! Generation of every arm, cached per prompt, and the decode speed of a single sequence.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tracemark_candle::{
    chat_prompt, generate, generate_each, gguf_tokenizer, set_threads, Arm, Llama, LoadOptions, Rng, Sampling,
};
use tracemark_core::{Key, Scheme};
use tracemark_verifier::TextTokenizer;

use super::{arms, ArmRecord, ArmSpec, AttackRecord, Options, ParaphraseRecord, PromptRecord};
use crate::{io, model_path, Error, Result};

/// FNV-1a: names the generation cache and seeds each (prompt, arm) stream.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What every stage of the evaluation shares: the model, its tokenizers, the key and the arms.
pub struct Setup {
    /// The model (SmolLM2-135M-Instruct).
    pub model: Llama,
    /// The model's tokenizer, from the GGUF file.
    pub tok: tokenizers::Tokenizer,
    /// The same tokenizer for the verifier's text API.
    pub verifier_tok: TextTokenizer,
    /// The key of every watermarked arm.
    pub key: Key,
    /// The arms, in table order.
    pub arms: Vec<ArmSpec>,
    /// Each arm's scheme under [`Setup::key`] (none for the unwatermarked arms).
    pub schemes: Vec<Option<Box<dyn Scheme>>>,
    /// The tokens that end an answer.
    pub stop: Vec<u32>,
}

impl Setup {
    /// Loads the model and its tokenizer, the key (the fixed quick-test key with
    /// `--quick`, else `eval.key` in `dir`, created once) and the schemes of every arm.
    pub fn load(options: &Options, dir: &Path) -> Result<Self> {
        set_threads(options.threads);
        let path = model_path()?;
        let model = Llama::load(&path, LoadOptions::default())?;
        let tok = gguf_tokenizer::from_gguf(&path)?;
        let verifier_tok = TextTokenizer::from_tokenizer(&tok)?;
        let key_path = dir.join("eval.key");
        let key = if options.quick {
            crate::quick_test_key("eval")
        } else {
            crate::stored_key(&key_path)?
        };
        let arms = arms();
        let schemes = arms
            .iter()
            .map(|a| {
                a.scheme
                    .as_ref()
                    .map(|c| c.build(&key, model.config().vocab_size))
                    .transpose()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let stop = vec![
            gguf_tokenizer::token_id(&tok, "<|im_end|>")?,
            gguf_tokenizer::token_id(&tok, "<|endoftext|>")?,
        ];
        Ok(Setup {
            model,
            tok,
            verifier_tok,
            key,
            arms,
            schemes,
            stop,
        })
    }
}

/// The cache of the generations under `dir`, named by the key, the answer length and the seed.
fn generations_dir(s: &Setup, options: &Options, dir: &Path) -> Result<PathBuf> {
    let tag = format!("{}|{}|{}", s.key.id(), options.tokens, options.seed);
    let gen_dir = dir.join(format!("generations-{:016x}", fnv(&tag)));
    io(&gen_dir, std::fs::create_dir_all(&gen_dir))?;
    Ok(gen_dir)
}

/// Every arm's answer to every prompt of `prompt_set` and the attack
/// generations, prompt by prompt (so that an interrupted run leaves complete
/// prompts): [`answers`], then [`attack_generations`]. Cached under `dir`
/// per prompt; `--quick` always generates afresh.
pub fn generate_all(
    s: &Setup,
    options: &Options,
    prompt_set: &[&str],
    dir: &Path,
) -> Result<(Vec<PromptRecord>, Vec<AttackRecord>)> {
    let gen_dir = generations_dir(s, options, dir)?;
    let tag = format!(
        "attacks-v2|{}|{}|{:?}|{PARAPHRASE_ROUNDS}",
        emoji_request("{user}"),
        paraphrase_request("{question}", "{answer}"),
        PARAPHRASE_SAMPLING
    );
    let att_dir = gen_dir.join(format!("attacks-{:016x}", fnv(&tag)));
    io(&att_dir, std::fs::create_dir_all(&att_dir))?;
    let (mut records, mut attacks) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut fresh = 0;
    for (i, user) in prompt_set.iter().enumerate() {
        let t = Instant::now();
        let (record, new_answers) = answers(s, options, i, user, &gen_dir)?;
        let (attack, new_attacks) = attack_generations(s, options, i, user, &record, &att_dir)?;
        if new_answers || new_attacks {
            fresh += 1;
            let per = started.elapsed().as_secs_f64() / f64::from(fresh);
            eprintln!(
                "[{}/{}] generated in {:.0} s (answers {:.0} s, emoji answers {:.0} s, paraphrases {:.0} s as \
                 recorded); about {:.0} min left",
                i + 1,
                prompt_set.len(),
                t.elapsed().as_secs_f64(),
                record.wall_ns as f64 / 1e9,
                attack.emoji_ns as f64 / 1e9,
                attack.paraphrase_ns as f64 / 1e9,
                per * (prompt_set.len() - i - 1) as f64 / 60.0
            );
        }
        records.push(record);
        attacks.push(attack);
    }
    Ok((records, attacks))
}

/// Every arm's answer to prompt `i` (`user`), with all missing arms as one
/// batch, cached in `gen_dir` (adding an arm generates only that arm), in
/// [`arms`] order; and whether any was generated.
pub fn answers(s: &Setup, options: &Options, i: usize, user: &str, gen_dir: &Path) -> Result<(PromptRecord, bool)> {
    let file = gen_dir.join(format!("prompt-{i:03}.json"));
    // The quick run (a test) always generates afresh.
    let cached = (!options.quick)
        .then(|| std::fs::read_to_string(&file).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<PromptRecord>(&t).ok());
    let prompt = gguf_tokenizer::encode(&s.tok, &chat_prompt(user))?;
    let mut record = cached.unwrap_or(PromptRecord {
        prompt_index: i,
        prompt_ids: prompt.clone(),
        arms: Vec::new(),
        forward_ns: 0,
        steps: 0,
        wall_ns: 0,
    });
    let missing: Vec<usize> = (0..s.arms.len())
        .filter(|&a| !record.arms.iter().any(|r| r.arm == s.arms[a].name))
        .collect();
    if !missing.is_empty() {
        let t = Instant::now();
        let (new, timing) = generate_arms(s, options, &prompt, &missing, |name| format!("{i}/{name}"))?;
        record.arms.extend(new);
        record.forward_ns += timing.forward.as_nanos() as u64;
        record.steps += timing.steps;
        record.wall_ns += t.elapsed().as_nanos() as u64;
        let json = serde_json::to_string(&record).map_err(|e| Error::Usage(e.to_string()))?;
        io(&file, std::fs::write(&file, json))?;
    }
    // In the order of the current arms.
    record.arms = s
        .arms
        .iter()
        .map(|spec| record.arms.iter().find(|r| r.arm == spec.name).cloned())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::Usage("an arm is missing after generation".into()))?;
    Ok((record, !missing.is_empty()))
}

/// The answers of arms `missing` (indices into [`Setup::arms`]) after
/// `prompt`, as one batch, each arm watermarking as it does in the table and
/// sampling from its own random stream, seeded by the name `stream(arm name)`
/// (so an arm's answer does not depend on its batch).
fn generate_arms(
    s: &Setup,
    options: &Options,
    prompt: &[u32],
    missing: &[usize],
    stream: impl Fn(&str) -> String,
) -> Result<(Vec<ArmRecord>, tracemark_candle::Timing)> {
    let arms: Vec<Arm<'_>> = missing
        .iter()
        .map(|&a| Arm {
            scheme: s.schemes[a].as_deref(),
            steer: None,
            skip_repeated: s.arms[a].skip_repeated,
            sampling: s.arms[a].sampling,
        })
        .collect();
    let mut rngs: Vec<Rng> = missing
        .iter()
        .map(|&a| Rng::new(options.seed ^ fnv(&stream(s.arms[a].name))))
        .collect();
    let (gens, timing) = generate(&s.model, prompt, &arms, options.tokens, &s.stop, &mut rngs)?;
    let records = gens
        .into_iter()
        .zip(missing)
        .map(|(g, &a)| ArmRecord {
            arm: s.arms[a].name.to_string(),
            ids: g.ids,
            nll: g.nll,
            stopped: g.stopped,
            watermark_ns: g.watermark_time.as_nanos() as u64,
        })
        .collect();
    Ok((records, timing))
}

/// The emoji attack's instruction, appended to the user's prompt (Kirchenbauer
/// et al. 2023: the model writes an emoji between words, the attacker removes them).
pub const EMOJI_INSTRUCTION: &str = "Put an emoji between every two words of your answer.";

/// The user message of the emoji attack for the prompt `user`.
pub fn emoji_request(user: &str) -> String {
    format!("{user} {EMOJI_INSTRUCTION}")
}

/// The user message that asks the model to paraphrase `answer`, an answer to `question`.
pub fn paraphrase_request(question: &str, answer: &str) -> String {
    format!("Rewrite the following answer to the question '{question}' in your own words:\n\n{answer}")
}

/// How the paraphraser samples: the unwatermarked model at temperature 0.7
/// with nucleus 0.95, a setting an attacker who wants a faithful rewrite
/// would choose over plain sampling.
pub const PARAPHRASE_SAMPLING: Sampling = Sampling {
    temperature: 0.7,
    top_k: None,
    top_p: Some(0.95),
};

/// Paraphrase rounds: the answer's paraphrase, and the paraphrase of that.
pub const PARAPHRASE_ROUNDS: usize = 2;

/// The attack generations of prompt `i` (`user`) for every watermarked arm:
/// its answer to the prompt with [`EMOJI_INSTRUCTION`] (all arms as one
/// batch, each arm watermarking as it does in `record`), and
/// [`PARAPHRASE_ROUNDS`] paraphrases of its answer in `record` by the
/// unwatermarked model ([`paraphrase_request`], [`PARAPHRASE_SAMPLING`]; per
/// round, all arms as one batch of different requests, [`generate_each`]).
/// Up to [`Options::tokens`] new tokens each, cached in `att_dir` (whose
/// name [`generate_all`] derives from the requests and the sampling), in
/// [`arms`] order; and whether any was generated.
pub fn attack_generations(
    s: &Setup,
    options: &Options,
    i: usize,
    user: &str,
    record: &PromptRecord,
    att_dir: &Path,
) -> Result<(AttackRecord, bool)> {
    let marked: Vec<usize> = (0..s.arms.len()).filter(|&a| s.schemes[a].is_some()).collect();
    let file = att_dir.join(format!("prompt-{i:03}.json"));
    let cached = (!options.quick)
        .then(|| std::fs::read_to_string(&file).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<AttackRecord>(&t).ok());
    let mut att = cached.unwrap_or(AttackRecord {
        prompt_index: i,
        emoji: Vec::new(),
        paraphrases: Vec::new(),
        emoji_ns: 0,
        paraphrase_ns: 0,
    });
    let save = |att: &AttackRecord| -> Result<()> {
        let json = serde_json::to_string(att).map_err(|e| Error::Usage(e.to_string()))?;
        io(&file, std::fs::write(&file, json))
    };
    let mut generated = false;
    // The emoji attack: the watermarked arms answer the prompt with the emoji instruction.
    let missing: Vec<usize> = marked
        .iter()
        .copied()
        .filter(|&a| !att.emoji.iter().any(|r| r.arm == s.arms[a].name))
        .collect();
    if !missing.is_empty() {
        let t = Instant::now();
        let prompt = gguf_tokenizer::encode(&s.tok, &chat_prompt(&emoji_request(user)))?;
        let (new, _) = generate_arms(s, options, &prompt, &missing, |name| format!("emoji/{i}/{name}"))?;
        att.emoji.extend(new);
        att.emoji_ns += t.elapsed().as_nanos() as u64;
        save(&att)?;
        generated = true;
    }
    // Paraphrases: per round, every arm that lacks one as one batch (each with its own request).
    let paraphraser = Arm {
        scheme: None,
        steer: None,
        skip_repeated: false,
        sampling: PARAPHRASE_SAMPLING,
    };
    for round in 1..=PARAPHRASE_ROUNDS {
        let has = |att: &AttackRecord, name: &str, round: usize| {
            att.paraphrases
                .iter()
                .find(|p| p.arm == name && p.round == round)
                .map(|p| p.ids.clone())
        };
        let mut todo = Vec::new();
        for &a in &marked {
            let name = s.arms[a].name;
            if has(&att, name, round).is_some() {
                continue;
            }
            // The text to paraphrase: the answer, or the previous round's paraphrase.
            let ids = if round == 1 {
                record
                    .arms
                    .get(a)
                    .filter(|r| r.arm == name)
                    .map(|r| r.ids.clone())
                    .ok_or_else(|| Error::Usage(format!("no answer of arm {name} to prompt {i}")))?
            } else {
                has(&att, name, round - 1)
                    .ok_or_else(|| Error::Usage(format!("no paraphrase {} of arm {name}", round - 1)))?
            };
            let source = gguf_tokenizer::decode(&s.tok, &ids)?;
            let request = chat_prompt(&paraphrase_request(user, source.trim()));
            todo.push((a, gguf_tokenizer::encode(&s.tok, &request)?));
        }
        if todo.is_empty() {
            continue;
        }
        let t = Instant::now();
        let prompts: Vec<Vec<u32>> = todo.iter().map(|(_, p)| p.clone()).collect();
        let mut rngs: Vec<Rng> = todo
            .iter()
            .map(|&(a, _)| Rng::new(options.seed ^ fnv(&format!("paraphrase/{i}/{}/{round}", s.arms[a].name))))
            .collect();
        let arms = vec![paraphraser; todo.len()];
        let (gens, _) = generate_each(&s.model, &prompts, &arms, options.tokens, &s.stop, &mut rngs)?;
        for (g, &(a, _)) in gens.into_iter().zip(&todo) {
            att.paraphrases.push(ParaphraseRecord {
                arm: s.arms[a].name.to_string(),
                round,
                ids: g.ids,
                stopped: g.stopped,
            });
        }
        att.paraphrase_ns += t.elapsed().as_nanos() as u64;
        save(&att)?;
        generated = true;
    }
    // In the order of the current arms.
    let emoji = marked
        .iter()
        .map(|&a| att.emoji.iter().find(|r| r.arm == s.arms[a].name).cloned())
        .collect::<Option<Vec<_>>>();
    let paraphrases = marked
        .iter()
        .flat_map(|&a| (1..=PARAPHRASE_ROUNDS).map(move |round| (a, round)))
        .map(|(a, round)| {
            att.paraphrases
                .iter()
                .find(|p| p.arm == s.arms[a].name && p.round == round)
                .cloned()
        })
        .collect::<Option<Vec<_>>>();
    let (Some(emoji), Some(paraphrases)) = (emoji, paraphrases) else {
        return Err(Error::Usage("an attack generation is missing after generation".into()));
    };
    att.emoji = emoji;
    att.paraphrases = paraphrases;
    Ok((att, generated))
}

/// The decode speed of one arm at batch 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Speed {
    /// The arm's name.
    pub arm: String,
    /// Decode steps per second.
    pub tokens_per_second: f64,
    /// The watermark's time over the model's forward time.
    pub watermark_share: f64,
}

/// Decode speed of a single sequence (batch 1), with and without each watermark.
pub fn single_sequence_speed(s: &Setup, tokens: usize) -> Result<Vec<Speed>> {
    let prompt = gguf_tokenizer::encode(&s.tok, &chat_prompt("Describe a long train journey."))?;
    let sampling = Sampling::default();
    let mut out = Vec::new();
    for (spec, scheme) in s.arms.iter().zip(&s.schemes) {
        if !matches!(
            spec.name,
            "none" | "kgw d=2 h=1" | "kgw d=2 self4" | "tournament" | "gumbel"
        ) {
            continue;
        }
        let arm = [Arm {
            scheme: scheme.as_deref(),
            steer: None,
            skip_repeated: spec.skip_repeated,
            sampling,
        }];
        let (_, timing) = generate(&s.model, &prompt, &arm, tokens, &[], &mut [Rng::new(1)])?;
        // Decode steps only (the prompt's forward pass is the same with or without a watermark).
        let step = (timing.forward + timing.watermark + timing.sampling).as_secs_f64() / timing.steps.max(1) as f64;
        let share = timing.watermark.as_secs_f64() / timing.forward.as_secs_f64();
        out.push(Speed {
            arm: spec.name.to_string(),
            tokens_per_second: 1.0 / step,
            watermark_share: share,
        });
    }
    Ok(out)
}
