//! `make distill`: the distillation experiment (`tracemark_lab::distill`).
//! This binary parses the flags, runs the experiment and maps its error to the
//! exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracemark_lab::distill::{run, Options};

#[derive(Parser)]
#[command(about = "Distillation forensics: prove that a model was trained on watermarked answers")]
struct Args {
    /// A small version (minutes) that checks the pipeline and the basic result
    #[arg(long)]
    quick: bool,
    /// CPU threads for the teacher (default: all cores)
    #[arg(long, default_value_t = Options::default().threads)]
    threads: usize,
    /// Where to write the report (default: eval/results/distill-DATE.md, or the cache with --quick)
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        quick: args.quick,
        threads: args.threads,
        out: args.out,
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("distill: {e}");
            ExitCode::FAILURE
        }
    }
}
