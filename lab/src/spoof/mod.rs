//! Watermark stealing and spoofing (`make spoof`), after Jovanović et al.
//! (ICML 2024), with two defences.
//!
//! An attacker harvests `N` watermarked answers of SmolLM2 (from accounts
//! spread over `K` cohort keys; `K = 1` is one key for everyone) and the same
//! number of unwatermarked answers of the open model, learns which tokens are
//! green after which contexts ([`Knowledge`]), then
//! - **spoofs**: answers new prompts with the unwatermarked model steered
//!   toward what it believes green, and succeeds when our verifier detects
//!   the answer at 1e-6 under our key;
//! - **scrubs**: asks the unwatermarked model to rewrite our answers while
//!   steering away from what it believes green, and succeeds when an answer
//!   we detected at 1e-6 no longer is (`N = 0` is a plain paraphrase).
//!
//! The defences are measured the same way: **cohort keys** (a text counts as
//! ours only when exactly one of the `K` cohort keys fires at 1e-6 / `K`;
//! Aremu et al. 2025) and the verifier's **spoof-artifact test**
//! ([`tracemark_verifier::forgery`], Gloaguen et al., ICML 2025; its reference
//! is the base corpus, text of the same model, never the attacker's harvest).
//! Every generation is cached in batches, so an interrupted run resumes.

mod attacker;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use attacker::{Knowledge, Levels, Steering};
pub use report::{write_report, Cell, SchemeResults};
use serde::{Deserialize, Serialize};
use tracemark_candle::{
    chat_prompt, generate_each, gguf_tokenizer, set_threads, Arm, Llama, LoadOptions, Rng, Sampling, Steer,
};
use tracemark_core::{Key, Scheme, SchemeConfig};
use tracemark_verifier::{DetectOptions, Detector, ForgeryReference, FORGERY_ALPHA};

use crate::distill::prompt_pool;
use crate::eval::{paraphrase_request, PARAPHRASE_SAMPLING};
use crate::{cache_dir, io, model_path, today, Error, Result};

/// The schemes attacked: kgw at every context width of the robustness table
/// but min-hash, and gumbel.
pub const SCHEMES: [(&str, &str); 4] = [
    ("kgw h=1", "kgw:gamma=0.25,delta=2,context=lefthash:1"),
    ("kgw h=0", "kgw:gamma=0.25,delta=2,context=lefthash:0"),
    ("kgw self4", "kgw:gamma=0.25,delta=2,context=selfhash:4"),
    ("gumbel h=4", "gumbel:temperature=1,context=lefthash:4"),
];

/// Prompts of the harvest (the first of the shuffled pool); the answers the
/// attacker writes and the answers it scrubs are to the other prompts.
pub const HARVEST_PROMPTS: usize = 300;

/// The level at which a text counts as ours.
pub const ALPHA: f64 = 1e-6;

/// Answers generated per batch (one cache file).
const BATCH: usize = 32;

/// The options of a run (the `spoof` binary's flags).
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// A small run that checks the pipeline in minutes (part of `make test`).
    pub quick: bool,
    /// Harvest sizes the attacker learns from (answers), ascending.
    pub checkpoints: Vec<usize>,
    /// Cohort counts `K` (1: no cohort defence).
    pub cohorts: Vec<usize>,
    /// Only these schemes (labels of [`SCHEMES`]); empty: all.
    pub schemes: Vec<String>,
    /// Answers per measured cell (spoofed, scrubbed, genuine).
    pub answers: usize,
    /// Spoofed answers of a cohort cell (`K > 1`) at the largest harvest:
    /// bounding forgery near 1% takes hundreds (none of 300 bounds it below
    /// 1% at 95%).
    pub cohort_answers: usize,
    /// New tokens per harvested answer.
    pub harvest_tokens: usize,
    /// New tokens per measured answer.
    pub answer_tokens: usize,
    /// Logit the attacker adds at full confidence.
    pub strength: f32,
    /// The artifact test's density threshold (reference occurrences of a dense pair).
    pub dense_at: u32,
    /// Generate nothing: report the cells whose generations are all cached, skip the rest.
    pub cached_only: bool,
    /// Where to write the report (default `eval/results/spoof-DATE.md`; the cache with `quick`).
    pub out: Option<PathBuf>,
    /// CPU threads for the model (0: all cores).
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            quick: false,
            checkpoints: vec![100, 300, 1000],
            cohorts: vec![1, 8, 64],
            schemes: Vec::new(),
            answers: 48,
            cohort_answers: 320,
            harvest_tokens: 48,
            answer_tokens: 96,
            strength: 6.0,
            dense_at: tracemark_verifier::forgery::DENSE_AT,
            cached_only: false,
            out: None,
            threads: 0,
        }
    }
}

/// One answer: the pool prompt it answers, the cohort whose key watermarked
/// it, its ids as the reader sees them (decoded and re-encoded) and the mean
/// `-ln P` of its tokens under the unwatermarked model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Text {
    /// Index into the prompt pool.
    pub prompt: usize,
    /// The cohort key's index, for a watermarked answer.
    pub cohort: Option<usize>,
    /// The answer's ids after decode and re-encode.
    pub ids: Vec<u32>,
    /// Mean negative log-likelihood per token under the raw model.
    pub nll: f32,
}

/// What one generation request asks.
struct Request {
    prompt: usize,
    /// The user message when it is not the pool prompt (a paraphrase request).
    user: Option<String>,
    cohort: Option<usize>,
    seed: u64,
}

/// The model and everything a run shares.
pub struct Setup {
    model: Llama,
    tok: tokenizers::Tokenizer,
    stop: Vec<u32>,
    pool: Vec<String>,
    pool_ids: Vec<Vec<u32>>,
    master: Key,
    dir: PathBuf,
    quick: bool,
    cached_only: bool,
}

/// FNV-1a of a label: seeds and cache names.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Setup {
    /// Loads the model, the prompt pool and the master key (`spoof.key` in
    /// the cache, created once; the fixed quick-test key with `quick`).
    pub fn load(options: &Options) -> Result<Self> {
        set_threads(options.threads);
        let dir = cache_dir().join(if options.quick { "spoof-quick" } else { "spoof" });
        io(&dir, std::fs::create_dir_all(&dir))?;
        let path = model_path()?;
        let model = Llama::load(&path, LoadOptions::default())?;
        let tok = gguf_tokenizer::from_gguf(&path)?;
        let stop = vec![
            gguf_tokenizer::token_id(&tok, "<|im_end|>")?,
            gguf_tokenizer::token_id(&tok, "<|endoftext|>")?,
        ];
        let pool = prompt_pool();
        let pool_ids = pool
            .iter()
            .map(|u| gguf_tokenizer::encode(&tok, &chat_prompt(u)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let master = if options.quick {
            crate::quick_test_key("spoof")
        } else {
            crate::stored_key(&dir.join("spoof.key"))?
        };
        Ok(Self {
            model,
            tok,
            stop,
            pool,
            pool_ids,
            master,
            dir,
            quick: options.quick,
            cached_only: options.cached_only,
        })
    }

    /// The key of cohort `c` (cohort 0's is the key of the one-key runs).
    pub fn cohort_key(&self, c: usize) -> Result<Key> {
        Ok(self.master.derive(&format!("spoof/cohort/{c}"))?)
    }

    fn vocab(&self) -> usize {
        self.model.config().vocab_size
    }

    /// Generates (or loads) the answers to `requests`, batch by batch, under
    /// `cache` (a name that covers everything that decides the text).
    #[allow(clippy::too_many_arguments)]
    fn produce(
        &self,
        cache: &str,
        requests: &[Request],
        schemes: &[Box<dyn Scheme>],
        steer: Option<&dyn Steer>,
        sampling: Sampling,
        tokens: usize,
    ) -> Result<Vec<Text>> {
        let dir = self.dir.join(format!("{cache}-{:012x}", fnv(cache) & 0xffff_ffff_ffff));
        io(&dir, std::fs::create_dir_all(&dir))?;
        let mut out = Vec::with_capacity(requests.len());
        for (b, batch) in requests.chunks(BATCH).enumerate() {
            let file = dir.join(format!("batch-{b:04}.json"));
            let cached: Option<Vec<Text>> = (!self.quick)
                .then(|| std::fs::read_to_string(&file).ok())
                .flatten()
                .and_then(|t| serde_json::from_str(&t).ok());
            if let Some(texts) = cached.filter(|t| t.len() == batch.len()) {
                out.extend(texts);
                continue;
            }
            if self.cached_only {
                return Err(Error::NotCached(cache.to_string()));
            }
            let t = Instant::now();
            let prompts = batch
                .iter()
                .map(|r| match &r.user {
                    Some(u) => Ok(gguf_tokenizer::encode(&self.tok, &chat_prompt(u))?),
                    None => Ok(self.pool_ids[r.prompt].clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            let arms: Vec<Arm<'_>> = batch
                .iter()
                .map(|r| {
                    let scheme = r.cohort.map(|c| schemes[c].as_ref());
                    Arm {
                        scheme,
                        steer,
                        skip_repeated: scheme.is_some_and(|s| s.contract().skip_repeated),
                        sampling,
                    }
                })
                .collect();
            let mut rngs: Vec<Rng> = batch.iter().map(|r| Rng::new(r.seed)).collect();
            let (gens, _) = generate_each(&self.model, &prompts, &arms, tokens, &self.stop, &mut rngs)?;
            let mut texts = Vec::with_capacity(batch.len());
            for (g, r) in gens.iter().zip(batch) {
                // The attacker and the verifier see text: decode, then re-encode.
                let text = gguf_tokenizer::decode(&self.tok, &g.ids)?;
                let ids = gguf_tokenizer::encode(&self.tok, &text)?;
                let nll = g.nll.iter().sum::<f32>() / g.nll.len().max(1) as f32;
                texts.push(Text {
                    prompt: r.prompt,
                    cohort: r.cohort,
                    ids,
                    nll,
                });
            }
            let json = serde_json::to_string(&texts).map_err(|e| Error::Usage(e.to_string()))?;
            io(&file, std::fs::write(&file, json))?;
            eprintln!(
                "spoof: {cache} batch {}/{} in {:.0} s",
                b + 1,
                requests.len().div_ceil(BATCH),
                t.elapsed().as_secs_f64()
            );
            out.extend(texts);
        }
        Ok(out)
    }

    fn docs<'a>(&'a self, texts: &'a [Text]) -> Vec<(&'a [u32], &'a [u32])> {
        texts
            .iter()
            .map(|t| (self.pool_ids[t.prompt].as_slice(), t.ids.as_slice()))
            .collect()
    }
}

/// `r`, with a generation missing from the cache of a cached-only run as
/// `None` (and its name added to `missing`).
fn skip_missing<T>(r: Result<T>, missing: &mut Vec<String>) -> Result<Option<T>> {
    match r {
        Err(Error::NotCached(name)) => {
            eprintln!("spoof: {name} is not cached: its cells are left out");
            missing.push(name);
            Ok(None)
        }
        r => r.map(Some),
    }
}

/// `n` requests of the pool prompts `prompt(j)`, watermarked under cohort
/// `cohort(j)` (or not), with sampling seeds named `label|j`.
fn requests(
    n: usize,
    label: &str,
    prompt: impl Fn(usize) -> usize,
    cohort: impl Fn(usize) -> Option<usize>,
) -> Vec<Request> {
    (0..n)
        .map(|j| Request {
            prompt: prompt(j),
            user: None,
            cohort: cohort(j),
            seed: fnv(&format!("{label}|{j}")),
        })
        .collect()
}

/// The measured prompts: the `i`-th answer of a cell answers pool prompt
/// [`HARVEST_PROMPTS`] + `i` (cycling over the rest of the pool).
fn measured_prompt(s: &Setup, i: usize) -> usize {
    HARVEST_PROMPTS + i % (s.pool.len() - HARVEST_PROMPTS)
}

/// `log10 p` of `t` under each detector (0 when inconclusive), and the forgery test under the first.
fn p_values(s: &Setup, detectors: &[Detector], t: &Text) -> Result<(Vec<f64>, Option<bool>)> {
    let mut out = Vec::with_capacity(detectors.len());
    let mut artifact = None;
    for (k, d) in detectors.iter().enumerate() {
        if t.ids.is_empty() {
            out.push(0.0);
            continue;
        }
        let det = d.detect_ids(&s.pool_ids[t.prompt], &t.ids)?;
        if k == 0 {
            artifact = Some(det.forgery.as_ref().is_some_and(|f| f.artifact));
        }
        out.push(det.conservative_verdict_log10_p());
    }
    Ok((out, artifact))
}

/// [`p_values`] of every text.
fn p_all(s: &Setup, detectors: &[Detector], texts: &[Text]) -> Result<Vec<Tested>> {
    texts
        .iter()
        .map(|t| {
            let (log10_p, artifact) = p_values(s, detectors, t)?;
            Ok(Tested {
                log10_p,
                artifact: artifact.unwrap_or(false),
                nll: f64::from(t.nll),
            })
        })
        .collect()
}

/// One measured answer: `log10 p` under each cohort key tested, whether the
/// spoof-artifact test fired under the first, its mean `-ln P` per token.
#[derive(Clone, Debug)]
pub struct Tested {
    /// `log10 p` under keys 0, 1, ... (0 when inconclusive).
    pub log10_p: Vec<f64>,
    /// The spoof-artifact test fired under key 0.
    pub artifact: bool,
    /// Mean `-ln P` per token under the raw model.
    pub nll: f64,
}

/// The whole experiment; writes the report and its plots.
pub fn run(options: &Options) -> Result<()> {
    let mut options = options.clone();
    if options.quick {
        options.checkpoints = vec![4, 8];
        options.cohorts = vec![1, 2];
        options.answers = 2;
        options.cohort_answers = 3;
        options.harvest_tokens = 16;
        options.answer_tokens = 24;
        options.schemes = vec!["kgw h=1".into(), "gumbel h=4".into()];
    }
    if options.checkpoints.is_empty() || options.cohorts.is_empty() || options.cohorts.contains(&0) {
        return Err(Error::Usage(
            "need at least one checkpoint and cohort counts >= 1".into(),
        ));
    }
    options.checkpoints.sort_unstable();
    let started = Instant::now();
    let s = Setup::load(&options)?;
    let n_max = *options.checkpoints.last().unwrap_or(&0);
    let k_max = options.cohorts.iter().copied().max().unwrap_or(1);
    let keys: Vec<Key> = (0..k_max).map(|c| s.cohort_key(c)).collect::<Result<_>>()?;
    let plain = Sampling::default();
    let ht = options.harvest_tokens;
    let at = options.answer_tokens;
    // The attacker's base: unwatermarked answers to the harvest prompts.
    let base_requests = requests(n_max, "base", |j| j % HARVEST_PROMPTS, |_| None);
    let base = s.produce(&format!("base-{ht}"), &base_requests, &[], None, plain, ht)?;
    let mut results = Vec::new();
    let mut missing = Vec::new();
    let selected: Vec<(&str, &str)> = SCHEMES
        .iter()
        .copied()
        .filter(|(label, _)| options.schemes.is_empty() || options.schemes.iter().any(|x| x == label))
        .collect();
    for &(label, config) in &selected {
        let config: SchemeConfig = config.parse()?;
        let tag = label.replace([' ', '='], "");
        let schemes: Vec<Box<dyn Scheme>> = keys
            .iter()
            .map(|k| config.build(k, s.vocab()))
            .collect::<std::result::Result<_, _>>()?;
        let base_docs = s.docs(&base);
        let mut detectors = Vec::with_capacity(k_max);
        for k in &keys {
            let d = Detector::new(k, &config, s.vocab(), DetectOptions::default())?;
            let reference = ForgeryReference::from_ids(&d, base_docs.iter().copied(), options.dense_at, FORGERY_ALPHA)?;
            detectors.push(d.with_forgery_reference(Arc::new(reference))?);
        }
        // Our genuine answers (cohort 0's key) to the measured prompts.
        let genuine_requests = requests(options.answers, "genuine", |i| measured_prompt(&s, i), |_| Some(0));
        let Some(genuine) = skip_missing(
            s.produce(
                &format!("genuine-{tag}-{at}"),
                &genuine_requests,
                &schemes,
                None,
                plain,
                at,
            ),
            &mut missing,
        )?
        else {
            continue;
        };
        let genuine_p = p_all(&s, &detectors, &genuine)?;
        let mut sr = SchemeResults::new(label, &config.to_string(), genuine_p);
        // Scrubbing with no knowledge: a plain paraphrase.
        // The scrubbing requests: rewrite each genuine answer.
        let mut scrub_requests = requests(genuine.len(), "scrub", |i| genuine[i].prompt, |_| None);
        for (r, g) in scrub_requests.iter_mut().zip(&genuine) {
            let answer = gguf_tokenizer::decode(&s.tok, &g.ids)?;
            r.user = Some(paraphrase_request(&s.pool[g.prompt], &answer));
        }
        let scrubbed = skip_missing(
            s.produce(
                &format!("scrub-{tag}-n0-{at}"),
                &scrub_requests,
                &schemes,
                None,
                PARAPHRASE_SAMPLING,
                at,
            ),
            &mut missing,
        )?;
        if let Some(scrubbed) = scrubbed {
            sr.add_scrub(0, &p_all(&s, &detectors[..1], &scrubbed)?);
        }
        for &k in &options.cohorts {
            let harvest_requests = requests(n_max, "harvest", |j| j % HARVEST_PROMPTS, |j| Some(j % k));
            let Some(harvest) = skip_missing(
                s.produce(
                    &format!("harvest-{tag}-k{k}-{ht}"),
                    &harvest_requests,
                    &schemes,
                    None,
                    plain,
                    ht,
                ),
                &mut missing,
            )?
            else {
                continue;
            };
            for &n in &options.checkpoints {
                let t = Instant::now();
                let knowledge = Knowledge::learn(
                    Levels::for_config(&config),
                    &s.docs(&harvest[..n]),
                    &s.docs(&base[..n]),
                    s.vocab(),
                );
                eprintln!(
                    "spoof: {label} K={k} N={n}: {} beliefs from {} tokens ({:.1} s)",
                    knowledge.beliefs,
                    knowledge.harvest_tokens,
                    t.elapsed().as_secs_f64()
                );
                let answers = if k > 1 && n == n_max {
                    options.cohort_answers.max(options.answers)
                } else {
                    options.answers
                };
                let spoof_requests = requests(answers, "spoof", |i| measured_prompt(&s, i), |_| None);
                let steering = Steering {
                    knowledge: &knowledge,
                    strength: options.strength,
                };
                let Some(spoofed) = skip_missing(
                    s.produce(
                        &format!("spoof-{tag}-k{k}-n{n}-s{}-{at}", options.strength),
                        &spoof_requests,
                        &schemes,
                        Some(&steering),
                        plain,
                        at,
                    ),
                    &mut missing,
                )?
                else {
                    break;
                };
                let spoof_p = p_all(&s, &detectors[..k], &spoofed)?;
                sr.add_spoof(k, n, &knowledge, spoof_p);
                if k == 1 {
                    // The artifact test against the served log: the base and
                    // every harvested answer (we served them), under key 0.
                    let mut served = base_docs.clone();
                    served.extend(s.docs(&harvest[..n]));
                    let d = Detector::new(&keys[0], &config, s.vocab(), DetectOptions::default())?;
                    let r = ForgeryReference::from_ids(&d, served, options.dense_at, FORGERY_ALPHA)?;
                    let d = [d.with_forgery_reference(Arc::new(r))?];
                    sr.add_served_artifacts(&p_all(&s, &d, &spoofed)?, &p_all(&s, &d, &genuine)?);
                    let scrubbing = Steering {
                        knowledge: &knowledge,
                        strength: -options.strength,
                    };
                    let scrubbed = skip_missing(
                        s.produce(
                            &format!("scrub-{tag}-n{n}-s{}-{at}", options.strength),
                            &scrub_requests,
                            &schemes,
                            Some(&scrubbing),
                            PARAPHRASE_SAMPLING,
                            at,
                        ),
                        &mut missing,
                    )?;
                    if let Some(scrubbed) = scrubbed {
                        sr.add_scrub(n, &p_all(&s, &detectors[..1], &scrubbed)?);
                    }
                }
            }
        }
        results.push(sr);
    }
    let out = match (&options.out, options.quick) {
        (Some(p), _) => p.clone(),
        (None, true) => s.dir.join("report.md"),
        (None, false) => PathBuf::from("eval/results").join(format!("spoof-{}.md", today())),
    };
    let base_nll = base.iter().map(|t| f64::from(t.nll)).sum::<f64>() / base.len().max(1) as f64;
    write_report(
        &out,
        &options,
        &results,
        &missing,
        base_nll,
        s.master.id(),
        started.elapsed(),
    )?;
    eprintln!(
        "report: {} ({:.0} s in all)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    if options.quick {
        check_quick(&out, &results)?;
    }
    Ok(())
}

/// The quick run checks the pipeline: every cell measured, and the genuine
/// answers of the strongest configuration detected under their key only.
fn check_quick(out: &Path, results: &[SchemeResults]) -> Result<()> {
    let report = io(out, std::fs::read_to_string(out))?;
    let complete = results.iter().all(|r| !r.spoofs.is_empty() && !r.scrubs.is_empty());
    if !complete || report.contains("NaN") || !report.contains("## Spoofing") {
        return Err(Error::Usage(format!(
            "the quick spoofing run produced an incomplete report: {}",
            out.display()
        )));
    }
    Ok(())
}
