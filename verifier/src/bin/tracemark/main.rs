//! `tracemark`: keys, detection, corpus scans and radioactivity tests from the command line.
//!
//! Exit codes: [`exit::Exit`], one variant per code, and the table in
//! `docs/verifier.md`. Every verdict and every failure is mapped to its code
//! there, in `Exit::from`, and nowhere else.

mod args;
mod commands;
mod exit;
mod input;
mod progress;
mod server;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{Cli, Command};
use crate::exit::{Exit, Failure};

fn run(cli: Cli) -> Result<Exit, Failure> {
    match cli.command {
        Command::Keygen { out } => commands::keys::keygen(&out),
        Command::KeyId { key } => commands::keys::key_id(&key),
        Command::Derive { key, label, out } => commands::keys::derive(&key, &label, &out),
        Command::Detect(a) => commands::detect::run(a),
        Command::Scan(a) => commands::scan::run(a),
        Command::Radioactivity(a) => commands::radioactivity::run(a),
        Command::Report(a) => commands::report::run(a),
        Command::Receipt(c) => commands::receipt::run(c),
        Command::Serve(a) => commands::serve::run(a),
    }
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .after_help(Exit::summary())
        .after_long_help(Exit::table())
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Exit::from(&e).into();
        }
    };
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            eprintln!("tracemark: {failure}");
            Exit::from(&failure).into()
        }
    }
}
