//! `tracemark`: keys, detection, corpus scans and radioactivity tests from the command line.
//!
//! The crate `tracemark-cli`: a thin layer over `tracemark-verifier` (the
//! tests) and its `evidence` (reports, receipts). Start at `commands` (one
//! module per subcommand) and `args` (the argument groups they share); the
//! HTTP service `tracemark serve` is `server`, behind the `serve` feature (on
//! by default).
//!
//! Exit codes: [`exit::Exit`], one variant per code, and the table in
//! `docs/verifier.md`. Every verdict and every failure is mapped to its code
//! there, in `Exit::from`, and nowhere else.

mod args;
mod commands;
mod exit;
mod input;
mod progress;
mod semantic;
#[cfg(feature = "serve")]
mod server;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::commands::{Cli, Command};
use crate::exit::{Exit, Failure};

fn run(cli: Cli) -> Result<Exit, Failure> {
    progress::set_quiet(cli.quiet);
    match cli.command {
        Command::Keygen { out, serving } => commands::keys::keygen(&out, &serving),
        Command::Serving { key, serving } => commands::keys::serving(&key, &serving),
        Command::KeyId { key } => commands::keys::key_id(&key),
        Command::Derive {
            key,
            label,
            out,
            serving,
        } => commands::keys::derive(&key, &label, &out, &serving),
        Command::Detect(a) => commands::detect::run(a),
        Command::Scan(a) => commands::scan::run(a),
        Command::Radioactivity(a) => commands::radioactivity::run(a),
        Command::Attribute(a) => commands::attribute::run(a),
        Command::Report(a) => commands::report::run(a),
        Command::Receipt(c) => commands::receipt::run(c),
        #[cfg(feature = "serve")]
        Command::Serve(a) => commands::serve::run(a),
    }
}

/// What to do next, for the failures where the message alone does not say.
fn hint(failure: &Failure) -> Option<String> {
    use std::io::ErrorKind::{NotFound, PermissionDenied};
    use tracemark_verifier::Error as E;
    Some(match failure {
        Failure::Key {
            path,
            error: tracemark_core::Error::Io { .. },
        } if !path.exists() => format!(
            "no key file at {}: give the key the text was generated with, or make a new one with `tracemark keygen --out {}`",
            path.display(),
            path.display()
        ),
        Failure::Key {
            error: tracemark_core::Error::KeyFileExists { .. },
            ..
        } => "keys are never overwritten: choose another --out path, or move the old key away first".into(),
        Failure::Key {
            error: tracemark_core::Error::InvalidKey { .. },
            ..
        } => "this is not a tracemark watermark key file (those are made by `tracemark keygen` or `tracemark derive`); \
              a receipt signing key goes to `tracemark receipt`"
            .into(),
        Failure::Read { error, .. } if error.kind() == NotFound => "check the path (use - for standard input)".into(),
        Failure::Read { error, .. } | Failure::Write { error, .. } if error.kind() == PermissionDenied => {
            "check the file's permissions".into()
        }
        Failure::Write { .. } => "check that the directory exists and has space".into(),
        Failure::Read { error, .. } if error.kind() == std::io::ErrorKind::IsADirectory => {
            "give a file, not a directory".into()
        }
        Failure::NotText { advice, .. } => (*advice).to_string(),
        Failure::Verifier(E::EmptyInput) => {
            "the input is empty: give the file with the suspect text, or pipe it in with -".into()
        }
        Failure::Verifier(E::InvalidUtf8 { .. }) => {
            "the input is not UTF-8 text: for token ids add --ids; for text in another encoding convert it first \
             (e.g. iconv -t UTF-8)"
                .into()
        }
        Failure::Verifier(E::WrongTokenizer { .. }) => {
            "these ids do not fit the vocabulary: give the tokenizer.json of the model that wrote the text (--tokenizer), \
             or the right --vocab"
                .into()
        }
        Failure::Verifier(E::Tokenizer { .. }) => {
            "check that --tokenizer names the model's tokenizer.json (the Hugging Face format)".into()
        }
        Failure::BadPrompts { .. } => "each line of a prompts file is one JSON object, {\"messages\": [{\"role\": \
             \"user\", \"content\": \"...\"}]} or {\"prompt\": \"...\"}, as the serving logs hold the requests"
            .into(),
        Failure::Verifier(E::BadDocument { .. }) | Failure::Malformed { .. } => {
            "each line of a corpus is one JSON object, {\"text\": \"...\"} or {\"ids\": [...]}; \
             `tracemark scan --help` shows the format"
                .into()
        }
        _ => return None,
    })
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
            if let Some(hint) = hint(&failure) {
                eprintln!("  what to do: {hint}");
            }
            Exit::from(&failure).into()
        }
    }
}
