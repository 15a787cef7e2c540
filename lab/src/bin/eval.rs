//! `make eval`: the evaluation harness behind tracemark's published numbers
//! (`tracemark_lab::eval`). This binary parses the flags, runs the harness and
//! maps its error to the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracemark_lab::eval::{run, Options};

#[derive(Parser)]
#[command(about = "Evaluate tracemark's schemes on SmolLM2-135M")]
struct Args {
    /// A small subset (3 prompts, 48 tokens) that checks the pipeline in minutes
    #[arg(long)]
    quick: bool,
    /// Use only the first N prompts
    #[arg(long)]
    prompts: Option<usize>,
    /// New tokens per answer
    #[arg(long, default_value_t = Options::default().tokens)]
    tokens: usize,
    /// Where to write the report (default: eval/results/DATE.md, or the cache with --quick)
    #[arg(long)]
    out: Option<PathBuf>,
    /// CPU threads for the model (default: all cores)
    #[arg(long, default_value_t = Options::default().threads)]
    threads: usize,
    /// Sampling seed
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        quick: args.quick,
        prompts: args.prompts,
        tokens: args.tokens,
        out: args.out,
        threads: args.threads,
        seed: args.seed,
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eval: {e}");
            ExitCode::FAILURE
        }
    }
}
