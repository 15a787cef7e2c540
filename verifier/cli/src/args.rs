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
    /// Also test the semantic layer under the same key (a scheme string,
    /// `semantic:gamma=0.25,planes=8`): the verdict then stands on both
    /// layers (weighted Bonferroni, SPEC 15.4); text input and one key only
    #[arg(long, value_name = "SCHEME")]
    pub(crate) semantic: Option<String>,
    /// The sentence embedder's folder for --semantic (all-MiniLM-L6-v2, from
    /// `python3 scripts/fetch.py embedder`); default $TRACEMARK_EMBEDDER, else
    /// where that script puts it
    #[arg(long, value_name = "DIR", requires = "semantic")]
    pub(crate) embedder: Option<PathBuf>,
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
    /// Also test the semantic layer of the whole corpus under the same key (a
    /// scheme string, `semantic:gamma=0.25,planes=8`): every text's sentences,
    /// each repeated unit counted once across documents; the aggregate verdict
    /// then stands on both layers (SPEC 15.4). A corpus file, not standard input
    #[arg(long, value_name = "SCHEME")]
    pub(crate) semantic: Option<String>,
    /// The sentence embedder's folder for --semantic (default as for `detect --semantic`)
    #[arg(long, value_name = "DIR", requires = "semantic")]
    pub(crate) embedder: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RadioArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// JSONL corpus of the suspect model's outputs, or - for standard input (not with --api)
    #[arg(required_unless_present = "api", conflicts_with = "api")]
    pub(crate) corpus: Option<PathBuf>,
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
    #[command(flatten)]
    pub(crate) api: Box<ApiArgs>,
}

/// `radioactivity --api`: audit a suspect model through its OpenAI-compatible endpoint.
#[derive(Args)]
pub(crate) struct ApiArgs {
    /// Audit a suspect through its OpenAI-compatible API (base URL, e.g. `https://api.example.com/v1`):
    /// ask it the prompts, cache its answers, run the black-box and probability tests per prompt
    /// origin (and the reading test on --read texts); writes OUT.json, OUT.html and OUT-corpora/. The bearer token is read from --token-env
    #[arg(long, value_name = "URL", conflicts_with_all = ["reading", "reference", "logprobs"])]
    pub(crate) api: Option<String>,
    /// With --api: JSONL of the suspicious accounts' requests ({"messages": [...]} or {"prompt": ...} per line)
    #[arg(long)]
    pub(crate) harvest: Option<PathBuf>,
    /// With --api: new prompts, one per line (# comments skipped)
    #[arg(long)]
    pub(crate) new_prompts: Option<PathBuf>,
    /// With --api: JSONL prompts that may each name their "origin" ("harvest", "new" or "read"; default new)
    #[arg(long)]
    pub(crate) prompts: Option<PathBuf>,
    /// With --api: texts to read, never written with this key (human text, our unwatermarked answers), one
    /// {"prompt": "..."} per line: each is sent to the completions route with echo, and the log-probabilities
    /// the suspect gives every token of it are tested (the reading test). Refused if the texts carry our watermark
    #[arg(long)]
    pub(crate) read: Option<PathBuf>,
    /// With --api: at most this many prompts of each origin
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// With --api: the response cache (an interrupted audit resumes from it without paying twice)
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
    /// With --api: the report's path without extension (OUT.json, OUT.html, OUT-corpora/)
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// With --api: the model name to request
    #[arg(long, default_value = "suspect")]
    pub(crate) model: String,
    /// With --api: the environment variable holding the API's bearer token (never a flag)
    #[arg(long, default_value = "SUSPECT_API_TOKEN")]
    pub(crate) token_env: String,
    /// With --api: at most this many requests in this run
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_requests: usize,
    /// With --api: stop asking once the API has billed this many completion tokens in this run
    #[arg(long, default_value_t = 200_000)]
    pub(crate) max_tokens_total: u64,
    /// With --api: tokens per answer
    #[arg(long, default_value_t = 200)]
    pub(crate) max_tokens: usize,
    /// With --api: candidates with log-probabilities per position
    #[arg(long, default_value_t = 5)]
    pub(crate) top_logprobs: usize,
    /// With --api: sampling temperature
    #[arg(long, default_value_t = 1.0)]
    pub(crate) temperature: f64,
    /// With --api: requests in flight at once
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// With --api: retries of a request (429, 5xx, connection errors), with exponential backoff
    #[arg(long, default_value_t = 6)]
    pub(crate) retries: usize,
    /// With --api: the first backoff, in seconds (doubled per retry, at most 60; Retry-After wins)
    #[arg(long, default_value_t = 1.0)]
    pub(crate) backoff: f64,
    /// With --api: seconds a request may take in all
    #[arg(long, default_value_t = 120.0)]
    pub(crate) request_timeout: f64,
}

impl ApiArgs {
    /// Whether a flag that only an API audit reads was given without `--api`.
    pub(crate) fn audit_flags_given(&self) -> bool {
        self.harvest.is_some()
            || self.new_prompts.is_some()
            || self.read.is_some()
            || self.prompts.is_some()
            || self.limit.is_some()
            || self.cache.is_some()
            || self.out.is_some()
    }
}

impl RadioArgs {
    /// The corpus file (absent only with --api, which makes its own).
    pub(crate) fn corpus(&self) -> Result<&std::path::Path, crate::exit::Failure> {
        self.corpus
            .as_deref()
            .ok_or_else(|| crate::exit::Failure::Usage("give the corpus file (or --api URL)".into()))
    }

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
