//! The commands, and what the tests among them share.

pub(crate) mod attribute;
pub(crate) mod detect;
pub(crate) mod keys;
pub(crate) mod radioactivity;
pub(crate) mod receipt;
pub(crate) mod report;
pub(crate) mod scan;
#[cfg(feature = "serve")]
pub(crate) mod serve;

use std::io::IsTerminal;

use tracemark_core::Key;
use tracemark_verifier::{DetectOptions, Keyring, TextTokenizer};

use crate::args::{ColorMode, Common, InputKind};
use crate::exit::Failure;
use crate::input::load_key;

/// Keys, tokenizer and options of a test, from the common options.
pub(crate) struct Setup {
    pub(crate) keyring: Keyring,
    pub(crate) tokenizer: Option<TextTokenizer>,
    pub(crate) vocab: usize,
    pub(crate) options: DetectOptions,
    pub(crate) color: bool,
}

impl Setup {
    /// Loads what `c` names, for input of `kind` (which decides what the vocabulary is checked against).
    pub(crate) fn new(c: &Common, kind: InputKind) -> Result<Self, Failure> {
        let mut keyring = Keyring::new();
        if c.derive_labels.is_empty() {
            for path in &c.key {
                keyring.push(path.display().to_string(), load_key(path)?);
            }
        } else {
            let [master] = c.key.as_slice() else {
                return Err(Failure::Usage("--derive-labels derives from exactly one --key".into()));
            };
            // A bad label is a key error (`Exit::from` maps the core's `InvalidLabel` there).
            keyring = Keyring::derived(&load_key(master)?, &c.derive_labels)?;
        }
        let tokenizer = c.tokenizer.as_ref().map(TextTokenizer::from_file).transpose()?;
        let vocab = match (&tokenizer, c.vocab, kind) {
            (_, Some(v), _) => v,
            (Some(t), None, _) => t.vocab_size(),
            (None, None, InputKind::Ids) => {
                return Err(Failure::Usage(
                    "id input needs --vocab (or --tokenizer) to check ids against".into(),
                ))
            }
            (None, None, InputKind::Text) => {
                return Err(Failure::Usage(
                    "text input needs --tokenizer (the model's tokenizer.json)".into(),
                ))
            }
        };
        let color = match c.color {
            ColorMode::Always => true,
            ColorMode::Never => false,
            ColorMode::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        let options = DetectOptions {
            dedup: c.dedup,
            alpha: c.alpha,
            min_scored: c.min_tokens,
            canonicalize: !c.no_canonicalize,
            ..DetectOptions::default()
        };
        Ok(Setup {
            keyring,
            tokenizer,
            vocab,
            options,
            color,
        })
    }

    /// The key, when exactly one is tested.
    pub(crate) fn single_key(&self) -> Option<&Key> {
        let mut keys = self.keyring.iter();
        match (keys.next(), keys.next()) {
            (Some((_, key)), None) => Some(key),
            _ => None,
        }
    }

    /// The one key of a test that takes one; a usage error for a keyring.
    pub(crate) fn only_key(&self, what: &str) -> Result<&Key, Failure> {
        self.single_key()
            .ok_or_else(|| Failure::Usage(format!("{what} test one key: give a single --key (no --derive-labels)")))
    }
}

/// A report as pretty JSON on standard output.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Write {
        target: "standard output".into(),
        error: e.into(),
    })?;
    println!("{text}");
    Ok(())
}
