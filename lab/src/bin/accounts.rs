//! `make accounts`: how many tokens of a leaked SmolLM2 answer name the
//! account it was served to, among 1, 24,000 and 1,000,000 accounts
//! (`tracemark_lab::accounts`). This binary parses the flags, runs the
//! experiment and maps its error to the exit code.

use std::process::ExitCode;

use clap::Parser;
use tracemark_lab::accounts::{run, Options};

#[derive(Parser)]
#[command(about = "Tokens needed to name an account among many, on SmolLM2 answers")]
struct Args {
    /// Prompts (two accounts answer each)
    #[arg(long, default_value_t = 12)]
    prompts: usize,
    /// New tokens per answer, at most
    #[arg(long, default_value_t = 400)]
    tokens: usize,
    /// Answers scanned against 1,000,000 real account keys (about 8 s each on 2 cores)
    #[arg(long, default_value_t = 6)]
    million_scans: usize,
    /// CPU threads (default: all cores)
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where to write the report (default: `eval/results/accounts-DATE.md`)
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        prompts: args.prompts,
        tokens: args.tokens,
        million_scans: args.million_scans,
        threads: args.threads,
        out: args.out,
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accounts: {e}");
            ExitCode::FAILURE
        }
    }
}
