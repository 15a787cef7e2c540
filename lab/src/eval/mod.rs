//! The evaluation harness behind `make eval` and tracemark's published numbers.
//!
//! For every prompt of `lab/data/prompts.txt`, SmolLM2-135M answers once per
//! arm (no watermark; kgw at three biases with left-hash h = 1 and self-hash,
//! and at delta 2 with h = 0 and min-hash; tournament; gumbel), all arms of a
//! prompt decoding as one batch. For the attacks, every watermarked arm also
//! answers the prompt with an instruction to put an emoji between words, and
//! the unwatermarked model paraphrases each watermarked answer twice
//! ([`attack_generations`]). Generations are cached and the run resumes where
//! it stopped. The report (`eval/results/DATE.md` plus SVG plots) gives
//! detectability (TPR at exact FPR thresholds, by length), honesty of the FPR
//! on the unwatermarked arm, quality (perplexity under the unwatermarked
//! model, distinct-n), cost, and robustness: random edits of the ids, pasting
//! into human text, the decode/re-encode round trip, every tampering of
//! `tracemark_lab::tamper` at [`TAMPER_RATES`], the emoji attack, the
//! model's paraphrases and a rule-based paraphrase ([`rule_paraphrase`]),
//! with how much meaning the rewrites keep ([`content_overlap`]). `--quick`
//! ([`Options::quick`]) runs a small subset to check the pipeline (part of
//! `make test`).
//!
//! [`run`] is the whole experiment; its stages are [`Setup::load`],
//! [`generate_all`] (per prompt: [`answers`], [`attack_generations`]), [`single_sequence_speed`],
//! [`analyse`], [`write_report`] and [`plots`].

mod analyse;
mod arms;
mod attacks;
mod generate;
mod report;
mod rewrite;

use std::path::PathBuf;
use std::time::Instant;

use crate::summary::rate_below;
pub use analyse::{analyse, tamper_label, uncanonicalized_label, Analysis, EMOJI, PARAPHRASE, RULES, TAMPER_RATES};
pub use arms::{arms, ArmRecord, ArmSpec, AttackRecord, ParaphraseRecord, PromptRecord};
pub use attacks::{delete, distinct_n, insert, substitute};
pub use generate::{
    answers, attack_generations, emoji_request, generate_all, paraphrase_request, single_sequence_speed, Setup, Speed,
    EMOJI_INSTRUCTION, PARAPHRASE_ROUNDS, PARAPHRASE_SAMPLING,
};
pub use report::{missing_cells, plots, robustness_columns, write_report};
pub use rewrite::{
    content_overlap, content_words, copied_share, emojis_per_word, is_emoji, rule_paraphrase, strip_emoji, Overlap,
    RuleParaphrase, SYNONYMS,
};

use crate::{cache_dir, io, prompts, today, Error, Result};

/// The answer lengths of the detection-by-length table: the first L tokens of each answer.
pub const LENGTHS: [usize; 4] = [25, 50, 100, 200];

/// The options of an evaluation run (the `eval` binary's flags).
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// A small subset (3 prompts, 48 tokens) that checks the pipeline in minutes.
    pub quick: bool,
    /// Use only the first N prompts.
    pub prompts: Option<usize>,
    /// New tokens per answer.
    pub tokens: usize,
    /// Where to write the report (default: `eval/results/DATE.md`, or the cache with `quick`).
    pub out: Option<PathBuf>,
    /// CPU threads for the model (0: all cores).
    pub threads: usize,
    /// Sampling seed.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            quick: false,
            prompts: None,
            tokens: 200,
            out: None,
            threads: 0,
            seed: 2026,
        }
    }
}

/// The whole evaluation: generate (or resume), measure, write the report and
/// its plots; with [`Options::quick`], also check that the report is complete
/// and that the strongest kgw arm is caught while no unwatermarked answer is.
pub fn run(options: &Options) -> Result<()> {
    let mut options = options.clone();
    let dir = if options.quick {
        cache_dir().join("eval-quick")
    } else {
        cache_dir().join("eval")
    };
    io(&dir, std::fs::create_dir_all(&dir))?;
    if options.quick {
        options.tokens = options.tokens.min(48);
        options.prompts = Some(options.prompts.unwrap_or(3).min(3));
    }
    let s = Setup::load(&options, &dir)?;
    let all = prompts();
    let set = &all[..options.prompts.unwrap_or(all.len()).min(all.len())];
    eprintln!(
        "eval: {} prompts x {} arms, {} tokens; cache {}",
        set.len(),
        s.arms.len(),
        options.tokens,
        dir.display()
    );
    let t = Instant::now();
    let (records, attacks) = generate_all(&s, &options, set, &dir)?;
    eprintln!("generation: {:.0} s", t.elapsed().as_secs_f64());
    let speeds = single_sequence_speed(&s, if options.quick { 16 } else { 64 })?;
    let analysis = analyse(&s, &records, &attacks)?;
    let out = match (&options.out, options.quick) {
        (Some(p), _) => p.clone(),
        (None, true) => dir.join("report.md"),
        (None, false) => PathBuf::from("eval/results").join(format!("{}.md", today())),
    };
    write_report(&s, &options, &records, &attacks, &analysis, &speeds, t.elapsed(), &out)?;
    eprintln!("report: {} ({:.0} s in all)", out.display(), t.elapsed().as_secs_f64());
    if options.quick {
        // The quick run checks the pipeline, not the numbers: every table cell must have been computed.
        let report = io(&out, std::fs::read_to_string(&out))?;
        let missing = missing_cells(&s, &analysis, records.len());
        if report.contains("| NaN")
            || !report.contains("## Robustness")
            || records.iter().any(|r| r.arms.len() != s.arms.len())
            || !missing.is_empty()
        {
            return Err(Error::Usage(format!(
                "the quick evaluation produced an incomplete report ({} cells missing: {}): {}",
                missing.len(),
                missing.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                out.display()
            )));
        }
        // ... and the basic result: the strongest kgw arm is detected in every answer at 1e-3
        // (48 tokens at delta 4 give log10 p around -20), and no unwatermarked answer is flagged
        // at 1e-3 under any scheme's key.
        let full = *LENGTHS.last().unwrap_or(&200);
        let strong = analysis
            .by_length
            .get(&("kgw d=4 h=1".to_string(), full))
            .map_or(0.0, |l| rate_below(l, 1e-3));
        let flagged = analysis.fpr.values().map(|f| rate_below(f, 1e-3)).fold(0.0, f64::max);
        if strong < 1.0 || flagged > 0.0 {
            return Err(Error::Usage(format!(
                "quick evaluation: kgw d=4 detected in {strong:.3} of answers (want 1), unwatermarked flagged \
                 in {flagged:.3} (want 0): {}",
                out.display()
            )));
        }
    }
    Ok(())
}
