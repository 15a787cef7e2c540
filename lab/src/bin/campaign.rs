//! `make campaign`: student-level account attribution on a simulated
//! harvesting campaign (`tracemark_lab::campaign`). This binary parses the
//! flags, runs the experiment and maps its error to the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracemark_lab::campaign::{run, Options};

#[derive(Parser)]
#[command(about = "Name the accounts a student model learned from: window-cohort keys on a simulated campaign")]
struct Args {
    /// A small version (a minute or two) that fails unless its checks pass
    #[arg(long)]
    quick: bool,
    /// Repetitions of every scenario (default: the plan's)
    #[arg(long)]
    repetitions: Option<usize>,
    /// Only the scenarios whose label contains this
    #[arg(long)]
    only: Option<String>,
    /// Where to write the report (default: eval/results/campaign-DATE.md, or the cache with --quick)
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        quick: args.quick,
        repetitions: args.repetitions,
        only: args.only,
        out: args.out,
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("campaign: {e}");
            ExitCode::FAILURE
        }
    }
}
