//! The argument groups the commands share (the leaf of the command line:
//! it imports no command).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::serving::{resolve_scheme, SchemeSource, ServingManifest};
use tracemark_verifier::{Dedup, TextTokenizer};

use crate::exit::Failure;

/// What the keys watermarked: the scheme, and the model's tokenizer or
/// vocabulary. Every command that tests or serves keys takes these.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Scheme and parameters, exactly as generated, e.g. kgw:gamma=0.25,delta=2,context=lefthash:1;
    /// default: the scheme the key's serving manifest (KEY.serving.json) records. A scheme that
    /// differs from the manifest's is tested, with a warning in the output and the report
    #[arg(long)]
    pub(crate) scheme: Option<SchemeConfig>,
    /// tokenizer.json of the model (needed for text input)
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Vocabulary size, for id input without a tokenizer
    #[arg(long)]
    pub(crate) vocab: Option<usize>,
}

impl ModelArgs {
    /// The tokenizer named by --tokenizer, loaded, if any.
    pub(crate) fn load_tokenizer(&self) -> Result<Option<TextTokenizer>, Failure> {
        Ok(self.tokenizer.as_ref().map(TextTokenizer::from_file).transpose()?)
    }

    /// The scheme to test with the key in `key_path`: --scheme, else the one
    /// its serving manifest records; and where it came from. A warning goes
    /// to standard error (even with --quiet) when --scheme differs from the
    /// manifest's, or `tokenizer` (the fingerprint used) from the one it names.
    pub(crate) fn resolve_scheme(
        &self,
        key_path: &Path,
        key: &Key,
        tokenizer: Option<&str>,
    ) -> Result<(SchemeConfig, SchemeSource), Failure> {
        let manifest = ServingManifest::load_beside(key_path, key)?;
        let (scheme, mut source) = resolve_scheme(self.scheme.as_ref(), manifest.as_ref())?;
        source.check_tokenizer(tokenizer);
        if let Some(w) = &source.warning {
            eprintln!("WARNING: {w}");
        }
        Ok((scheme, source))
    }
}

/// The options every test shares.
#[derive(Args)]
pub(crate) struct Common {
    /// Key file; repeat to test a keyring of several keys
    #[arg(long, required = true)]
    pub(crate) key: Vec<PathBuf>,
    /// Test the keys derived from --key for these labels (comma-separated) instead of --key itself
    #[arg(long, value_delimiter = ',')]
    pub(crate) derive_labels: Vec<String>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Deduplication of repeated (context, token) observations
    #[arg(long, default_value = "pair")]
    pub(crate) dedup: Dedup,
    /// Significance level of the verdict (family-wise for keyrings)
    #[arg(long, default_value_t = 1e-6)]
    pub(crate) alpha: f64,
    /// Fewer scored tokens than this give an inconclusive verdict
    #[arg(long, default_value_t = 10)]
    pub(crate) min_tokens: usize,
    /// Test text only as given, not also its canonical form (invisible characters
    /// removed, whitespace, compatibility forms and look-alike letters undone); for
    /// experts: tampered text then escapes
    #[arg(long)]
    pub(crate) no_canonicalize: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Colour the output
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) color: ColorMode,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ColorMode {
    Auto,
    Always,
    Never,
}

/// What an input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputKind {
    /// Text, to be encoded with `--tokenizer`.
    Text,
    /// Token ids: a JSON array or whitespace-separated numbers.
    Ids,
}

#[derive(Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Input file, or - for standard input
    #[arg(default_value = "-")]
    pub(crate) input: PathBuf,
    /// The input is token ids (a JSON array or whitespace-separated), not text
    #[arg(long)]
    ids: bool,
    /// Prompt text (context only, never scored)
    #[arg(long, conflicts_with = "prompt_file")]
    pub(crate) prompt: Option<String>,
    /// File with the prompt (text, or ids with --ids)
    #[arg(long)]
    pub(crate) prompt_file: Option<PathBuf>,
    /// Also search for the most significant window (a watermarked span in longer text);
    /// the verdict then stands on the whole text and the window together (Bonferroni over the two)
    #[arg(long)]
    pub(crate) window: bool,
    /// Shortest window, in scored tokens
    #[arg(long, default_value_t = 32)]
    pub(crate) window_min: usize,
    /// Also run the spoof-artifact test against this reference: a JSONL corpus
    /// (scan format) of text from the same model, e.g. a sample of answers we
    /// served; the report says when a detection looks forged (one key only)
    #[arg(long)]
    pub(crate) forgery_reference: Option<PathBuf>,
}

impl DetectArgs {
    /// What the input and the prompt hold.
    pub(crate) fn input_kind(&self) -> InputKind {
        if self.ids {
            InputKind::Ids
        } else {
            InputKind::Text
        }
    }
}

#[derive(Args)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// JSONL corpus ({"text": ...} or {"ids": [...]} per line), or - for standard input
    pub(crate) corpus: PathBuf,
    /// Threads (0 = one per core)
    #[arg(long, default_value_t = 0)]
    pub(crate) jobs: usize,
    /// Write per-document results (JSONL) here instead of standard output
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RadioArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// JSONL corpus of the suspect model's outputs, or - for standard input
    pub(crate) corpus: PathBuf,
    /// Score only contexts that occur in this JSONL corpus of our own watermarked outputs
    #[arg(long, conflicts_with = "reading")]
    pub(crate) reference: Option<PathBuf>,
    /// Reading mode (open weights): the corpus holds our watermarked texts with the suspect
    /// model's next-token predictions, one {"ids": [...], "predicted": [...], "prompt_ids": [...]} per line
    #[arg(long)]
    pub(crate) reading: bool,
    /// Probability test (an API's log-probabilities): the corpus holds the suspect's answers with the
    /// candidates the API listed at each position, one {"prompt_ids": [...], "ids": [...],
    /// "top": [[[id, logprob], ...], ...]} per line (`tracemark.radioactivity_api` writes it)
    #[arg(long, conflicts_with_all = ["reading", "reference"])]
    pub(crate) logprobs: bool,
    /// Threads (0 = one per core)
    #[arg(long, default_value_t = 0)]
    pub(crate) jobs: usize,
}

impl RadioArgs {
    /// Which of the three tests to run.
    pub(crate) fn mode(&self) -> RadioMode<'_> {
        match (self.reading, &self.reference) {
            _ if self.logprobs => RadioMode::Logprobs,
            (true, _) => RadioMode::Reading,
            (false, Some(r)) => RadioMode::Filtered { reference: r },
            (false, None) => RadioMode::BlackBox,
        }
    }
}

/// The radioactivity tests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RadioMode<'a> {
    /// The suspect model's outputs, at every context.
    BlackBox,
    /// The suspect model's outputs, only at contexts of our own outputs in `reference`.
    Filtered {
        /// Our watermarked outputs (JSONL).
        reference: &'a std::path::Path,
    },
    /// The suspect model's predictions on our watermarked texts.
    Reading,
    /// The suspect's answers with an API's log-probabilities.
    Logprobs,
}
