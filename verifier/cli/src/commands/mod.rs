//! The command line ([`Cli`]), its commands, and what the tests among them share.

pub(crate) mod api;
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
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::serving::SchemeSource;
use tracemark_verifier::{DetectOptions, Keyring, TextTokenizer};

use crate::args::{ColorMode, Common, DetectArgs, InputKind, RadioArgs, ScanArgs};
use crate::exit::Failure;
use crate::input::load_key;

#[derive(Parser)]
#[command(
    name = "tracemark",
    version,
    about = "Keyed LLM watermarks: keys, detection, corpus and radioactivity tests"
)]
pub(crate) struct Cli {
    /// No progress bars and no notes on standard error (errors are still printed)
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Generate a new key from the OS random number generator (file mode 0600, never overwrites)
    Keygen {
        /// Where to write the key file
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        serving: keys::ServingArgs,
    },
    /// Record the scheme (and tokenizer) a key is served with, in a manifest beside the key file
    /// (KEY.serving.json, with a MAC under the key); tests then take the scheme from it and warn
    /// when another is given
    Serving {
        /// Key file
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        serving: keys::ServingArgs,
    },
    /// Print the public id of a key
    KeyId {
        /// Key file
        #[arg(long)]
        key: PathBuf,
    },
    /// Derive a sub-key for a label (a tenant or API-account cohort, e.g. cohort/3)
    Derive {
        /// Master key file
        #[arg(long)]
        key: PathBuf,
        /// Derivation label: printable ASCII without spaces, 1-128 bytes
        #[arg(long)]
        label: String,
        /// Where to write the derived key file
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        serving: keys::ServingArgs,
    },
    /// Test a text (or ids) for a watermark
    Detect(DetectArgs),
    /// Test every document of a JSONL corpus; per-line results and an aggregate test
    ///
    /// One JSON line per document goes to standard output (or --out). With --json the summary
    /// follows on standard output as one more JSON line, {"summary": {...}}; without it, the
    /// summary is printed for people on standard error.
    Scan(ScanArgs),
    /// One corpus-level test: did the model that wrote this corpus learn from our watermarked text?
    Radioactivity(RadioArgs),
    /// Name the account a leaked text was served to, among the keys derived for every account
    ///
    /// Each account's key is derived from the master key (--key) and its label
    /// (`account/<id>` by default), on the fly; the accounts named have a Holm-adjusted
    /// p-value below --alpha over every account tested.
    Attribute(attribute::AttributeArgs),
    /// A self-contained HTML report (and the JSON it is made from) of a detection, scan or radioactivity test
    Report(report::ReportArgs),
    /// Signed provenance receipts: signing keys, signing, verifying a text against a receipt
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// An HTTP detection service (keys loaded at start, hashed API tokens, rate and size limits)
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
}

/// Keys, tokenizer and options of a test, from the common options.
pub(crate) struct Setup {
    pub(crate) keyring: Keyring,
    /// The scheme tested, and where it came from.
    pub(crate) scheme: SchemeConfig,
    pub(crate) scheme_source: SchemeSource,
    pub(crate) tokenizer: Option<TextTokenizer>,
    pub(crate) vocab: usize,
    pub(crate) options: DetectOptions,
    pub(crate) color: bool,
}

impl Setup {
    /// Loads what `c` names, for input of `kind` (which decides what the vocabulary is checked against).
    pub(crate) fn new(c: &Common, kind: InputKind) -> Result<Self, Failure> {
        let mut keyring = Keyring::new();
        let tokenizer = c.model.load_tokenizer()?;
        let fingerprint = tokenizer.as_ref().map(|t| t.info().fingerprint.clone());
        // The scheme: --scheme, or the serving manifest of the first key (the
        // master key, with --derive-labels); every key of a keyring is served
        // with one scheme.
        let mut resolved = None;
        if c.derive_labels.is_empty() {
            for path in &c.key {
                let key = load_key(path)?;
                if resolved.is_none() {
                    resolved = Some(c.model.resolve_scheme(path, &key, fingerprint.as_deref())?);
                }
                keyring.push(path.display().to_string(), key);
            }
        } else {
            let [master] = c.key.as_slice() else {
                return Err(Failure::Usage("--derive-labels derives from exactly one --key".into()));
            };
            let master_key = load_key(master)?;
            resolved = Some(c.model.resolve_scheme(master, &master_key, fingerprint.as_deref())?);
            // A bad label is a key error (`Exit::from` maps the core's `InvalidLabel` there).
            keyring = Keyring::derived(&master_key, &c.derive_labels)?;
        }
        let Some((scheme, scheme_source)) = resolved else {
            return Err(Failure::Usage("give at least one --key".into()));
        };
        let vocab = match (&tokenizer, c.model.vocab, kind) {
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
            scheme,
            scheme_source,
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
