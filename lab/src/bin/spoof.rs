//! `make spoof`: watermark stealing, spoofing and scrubbing on SmolLM2-135M,
//! with the cohort-key and spoof-artifact defences (`tracemark_lab::spoof`).
//! This binary parses the flags, runs the experiment and maps its error to
//! the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracemark_lab::spoof::{run, Options};

#[derive(Parser)]
#[command(about = "Steal, spoof and scrub tracemark's watermarks on SmolLM2-135M")]
struct Args {
    /// A small run that checks the pipeline in minutes
    #[arg(long)]
    quick: bool,
    /// Harvest sizes (answers) the attacker learns from, comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = Options::default().checkpoints)]
    checkpoints: Vec<usize>,
    /// Cohort key counts K, comma-separated (1: one key)
    #[arg(long, value_delimiter = ',', default_values_t = Options::default().cohorts)]
    cohorts: Vec<usize>,
    /// Only these schemes (labels, comma-separated: "kgw h=0", "kgw h=1", "kgw self4", "gumbel h=4")
    #[arg(long, value_delimiter = ',')]
    schemes: Vec<String>,
    /// Answers per measured cell
    #[arg(long, default_value_t = Options::default().answers)]
    answers: usize,
    /// Spoofed answers of a cohort cell (K > 1) at the largest harvest size
    #[arg(long, default_value_t = Options::default().cohort_answers)]
    cohort_answers: usize,
    /// New tokens per harvested answer
    #[arg(long, default_value_t = Options::default().harvest_tokens)]
    harvest_tokens: usize,
    /// New tokens per measured answer
    #[arg(long, default_value_t = Options::default().answer_tokens)]
    answer_tokens: usize,
    /// Logit the attacker adds at full confidence
    #[arg(long, default_value_t = Options::default().strength)]
    strength: f32,
    /// Reference occurrences from which the artifact test counts a pair as dense
    #[arg(long, default_value_t = Options::default().dense_at)]
    dense_at: u32,
    /// Generate nothing: report the cells whose generations are all cached
    #[arg(long)]
    cached_only: bool,
    /// Where to write the report (default: eval/results/spoof-DATE.md, or the cache with --quick)
    #[arg(long)]
    out: Option<PathBuf>,
    /// CPU threads for the model (default: all cores)
    #[arg(long, default_value_t = Options::default().threads)]
    threads: usize,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let options = Options {
        quick: a.quick,
        checkpoints: a.checkpoints,
        cohorts: a.cohorts,
        schemes: a.schemes,
        answers: a.answers,
        cohort_answers: a.cohort_answers,
        harvest_tokens: a.harvest_tokens,
        answer_tokens: a.answer_tokens,
        strength: a.strength,
        dense_at: a.dense_at,
        cached_only: a.cached_only,
        out: a.out,
        threads: a.threads,
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spoof: {e}");
            ExitCode::FAILURE
        }
    }
}
