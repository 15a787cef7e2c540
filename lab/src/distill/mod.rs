//! The distillation experiment behind `make distill`: an end-to-end run you can repeat.
//!
//! A teacher (SmolLM2-135M + tracemark kgw) answers prompts for 8 API-account
//! cohorts, each with its own key derived from one master key. A competitor
//! harvests answers from 3 of the cohorts, plus unwatermarked answers, and
//! trains students on them: a smoothed trigram model and a small neural
//! language model (candle, CPU, a few minutes). We then test the students:
//! black box (their outputs), black box filtered to contexts of our outputs,
//! reading mode (their predictions on our texts), and cohort attribution,
//! with controls (a student trained only on unwatermarked text, under 24
//! keys) that must look uniform. Harvests are cached; `--quick`
//! ([`Options::quick`]) runs a small version that checks the pipeline (part
//! of `make test`).
//!
//! [`run`] is the whole experiment, sized by a [`Plan`]. Its stages have typed
//! results: [`harvest`] (and [`mixture`], the students' training sets), then
//! [`student_rows`] (the black-box table), [`attribution`], [`controls`];
//! [`plot`] and [`report`] write them down and [`QuickChecks`] judges the
//! quick run.

mod controls;
mod harvest;
mod plan;
mod report;
mod students;

use std::path::PathBuf;
use std::time::Instant;

pub use controls::{attribution, controls, ControlRow, QuickChecks};
use harvest::tokens_of;
pub use harvest::{harvest, mixture, prompt_pool, Harvested};
pub use plan::{Plan, StudentKind, TestMode};
pub use report::{plot, report, Results};
pub use students::{student_rows, tokens_needed, Evidence, Lab, StudentRow, Trained};
use tracemark_candle::{chat_prompt, gguf_tokenizer, set_threads, Llama, LoadOptions};
use tracemark_core::Key;
use tracemark_verifier::DetectOptions;

use crate::{cache_dir, io, model_path, today, Error, Result};

/// The teacher's watermark.
pub const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
/// API-account cohorts, each with its own key derived from the master key.
pub const COHORTS: usize = 8;
/// The cohorts the competitor harvests from, and how many answers each gets per prompt.
pub const HARVESTED: [(usize, usize); 3] = [(1, 3), (4, 1), (6, 1)];
/// Unwatermarked answers the competitor harvests per prompt.
pub const PLAIN_PER_PROMPT: usize = 3;
/// Watermarked shares of the trigram students' training data.
pub const FRACTIONS: [f64; 6] = [0.0, 0.01, 0.05, 0.10, 0.50, 1.0];
/// Keys of the control table (the cohort keys, then fresh ones).
pub const CONTROL_KEYS: usize = 24;

/// The options of a distillation run (the `distill` binary's flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// A small version (minutes) that checks the pipeline and the basic result.
    pub quick: bool,
    /// CPU threads for the teacher (0: all cores).
    pub threads: usize,
    /// Where to write the report (default: `eval/results/distill-DATE.md`, or
    /// the cache with `quick`); the plot goes beside it, as `.svg`.
    pub out: Option<PathBuf>,
}

/// The whole experiment: harvest (or reuse the cached harvest), train and test
/// the students, attribute, run the controls, write the plot and the report;
/// with [`Options::quick`], fail unless [`QuickChecks`] pass.
pub fn run(options: &Options) -> Result<()> {
    let plan = Plan::new(options.quick);
    let dir = cache_dir().join(if options.quick { "distill-quick" } else { "distill" });
    io(&dir, std::fs::create_dir_all(&dir))?;
    set_threads(options.threads);
    let started = Instant::now();
    let path = model_path()?;
    let model = Llama::load(&path, LoadOptions::default())?;
    let tok = gguf_tokenizer::from_gguf(&path)?;
    let eos = gguf_tokenizer::token_id(&tok, "<|im_end|>")?;
    let stop = [eos, gguf_tokenizer::token_id(&tok, "<|endoftext|>")?];
    let master = if options.quick {
        crate::quick_test_key("distill")
    } else {
        crate::stored_key(&dir.join("master.key"))?
    };
    let harvested = harvest(&dir, &plan, &master, &model, &tok, &stop)?;
    let harvest_secs = started.elapsed().as_secs_f64();
    let by = |c: Option<usize>| harvested.iter().filter(|h| h.cohort == c).collect::<Vec<_>>();
    let (c1, plain) = (by(Some(1)), by(None));
    let tokens = [&c1, &by(Some(4)), &by(Some(6)), &plain].map(|v| tokens_of(v));
    eprintln!(
        "harvest: cohort/1 {} tokens, cohort/4 {}, cohort/6 {}, plain {}",
        tokens[0], tokens[1], tokens[2], tokens[3]
    );
    let student_prompts: Vec<Vec<u32>> = prompt_pool()
        .iter()
        .skip(plan.harvest_prompts)
        .take(120)
        .map(|p| gguf_tokenizer::encode(&tok, &chat_prompt(p)))
        .collect::<tracemark_candle::Result<_>>()?;
    let lab = Lab {
        plan: &plan,
        vocab: model.config().vocab_size,
        eos,
        opts: DetectOptions {
            min_scored: 1,
            ..DetectOptions::default()
        },
        reading_texts: c1.iter().take(plan.reading_docs).copied().collect(),
        ours: c1,
        student_prompts,
    };
    let keys: Vec<Key> = (0..COHORTS)
        .map(|c| master.derive(&format!("cohort/{c}")))
        .collect::<std::result::Result<_, _>>()?;

    let (rows, control_students) = student_rows(&lab, &keys[1], &plain)?;
    let plot_path = options.out.as_ref().map_or_else(
        || {
            if options.quick {
                dir.join("distill-p-vs-tokens.svg")
            } else {
                PathBuf::from(format!("eval/results/distill-{}-p-vs-tokens.svg", today()))
            }
        },
        |o| o.with_extension("svg"),
    );
    plot(&plot_path, &rows, &plan)?;
    let (attribution, attribution_tokens) = attribution(&lab, &keys, &harvested)?;
    let controls = controls(&lab, &keys, &control_students)?;
    let checks = QuickChecks::new(&rows, &controls, &attribution, &plan);
    let results = Results {
        plan: &plan,
        master: &master,
        tokens,
        harvest_secs,
        rows,
        plot: plot_path,
        attribution,
        attribution_tokens,
        controls,
    };
    let out = options.out.clone().unwrap_or_else(|| {
        if options.quick {
            dir.join("report.md")
        } else {
            PathBuf::from(format!("eval/results/distill-{}.md", today()))
        }
    });
    io(&out, std::fs::write(&out, report(&results, started)))?;
    eprintln!("report: {}", out.display());
    if options.quick && !checks.passed() {
        return Err(Error::Usage(format!(
            "distillation check failed (caught {}, controls {}, wrong cohort named {}): see {}",
            checks.caught,
            checks.controls_quiet,
            checks.wrongly_named,
            out.display()
        )));
    }
    Ok(())
}
