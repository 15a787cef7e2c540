//! `tracemark`: keys, detection, corpus scans and radioactivity tests from the command line.
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; for `detect` and `radioactivity`: watermark detected (p < alpha) |
//! | 1 | `detect`/`radioactivity`: no watermark detected |
//! | 2 | usage error (bad command line) |
//! | 3 | `detect`/`radioactivity`: inconclusive (too few tokens could be scored) |
//! | 4 | input error: unreadable input, invalid UTF-8, wrong tokenizer, bad corpus file |
//! | 5 | key error: missing, unreadable or corrupted key file; refusing to overwrite |

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{
    attribute, context_keys, reading_mode, render, scan_path, utf8, Dedup, DetectOptions, Detection, Detector, Error,
    Keyring, KeyringDetector, ReadingDoc, Scanner, TextTokenizer, Verdict, WindowOptions,
};

const EXIT_NOT_DETECTED: u8 = 1;
const EXIT_INCONCLUSIVE: u8 = 3;
const EXIT_INPUT: u8 = 4;
const EXIT_KEY: u8 = 5;

#[derive(Parser)]
#[command(
    name = "tracemark",
    version,
    about = "Keyed LLM watermarks: keys, detection, corpus and radioactivity tests"
)]
#[command(
    after_help = "Exit codes: 0 detected/success, 1 not detected, 2 usage, 3 inconclusive, 4 input error, 5 key error"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a new key from the OS random number generator (file mode 0600, never overwrites)
    Keygen {
        /// Where to write the key file
        #[arg(long)]
        out: PathBuf,
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
    },
    /// Test a text (or ids) for a watermark
    Detect(DetectArgs),
    /// Test every document of a JSONL corpus; per-line results and an aggregate test
    Scan(ScanArgs),
    /// One corpus-level test: did the model that wrote this corpus learn from our watermarked text?
    Radioactivity(RadioArgs),
}

#[derive(Args)]
struct Common {
    /// Key file; repeat to test a keyring of several keys
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Test the keys derived from --key for these labels (comma-separated) instead of --key itself
    #[arg(long, value_delimiter = ',')]
    derive_labels: Vec<String>,
    /// Scheme and parameters, exactly as generated, e.g. kgw:gamma=0.25,delta=2,context=lefthash:1
    #[arg(long)]
    scheme: SchemeConfig,
    /// tokenizer.json of the model (needed for text input)
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Vocabulary size, for id input without a tokenizer
    #[arg(long)]
    vocab: Option<usize>,
    /// Deduplication of repeated (context, token) observations
    #[arg(long, default_value = "pair")]
    dedup: Dedup,
    /// Significance level of the verdict (family-wise for keyrings)
    #[arg(long, default_value_t = 1e-6)]
    alpha: f64,
    /// Fewer scored tokens than this give an inconclusive verdict
    #[arg(long, default_value_t = 10)]
    min_tokens: usize,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Colour the output
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorMode,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorMode {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct DetectArgs {
    #[command(flatten)]
    common: Common,
    /// Input file, or - for standard input
    #[arg(default_value = "-")]
    input: PathBuf,
    /// The input is token ids (a JSON array or whitespace-separated), not text
    #[arg(long)]
    ids: bool,
    /// Prompt text (context only, never scored)
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// File with the prompt (text, or ids with --ids)
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Also search for the most significant window (a watermarked span in longer text)
    #[arg(long)]
    window: bool,
    /// Shortest window, in scored tokens
    #[arg(long, default_value_t = 32)]
    window_min: usize,
}

#[derive(Args)]
struct ScanArgs {
    #[command(flatten)]
    common: Common,
    /// JSONL corpus ({"text": ...} or {"ids": [...]} per line), or - for standard input
    corpus: PathBuf,
    /// Threads (0 = one per core)
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Write per-document results (JSONL) here instead of standard output
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct RadioArgs {
    #[command(flatten)]
    common: Common,
    /// JSONL corpus of the suspect model's outputs, or - for standard input
    corpus: PathBuf,
    /// Score only contexts that occur in this JSONL corpus of our own watermarked outputs
    #[arg(long, conflicts_with = "reading")]
    reference: Option<PathBuf>,
    /// Reading mode (open weights): the corpus holds our watermarked texts with the suspect
    /// model's next-token predictions, one {"ids": [...], "predicted": [...], "prompt_ids": [...]} per line
    #[arg(long)]
    reading: bool,
    /// Threads (0 = one per core)
    #[arg(long, default_value_t = 0)]
    jobs: usize,
}

/// A failure with its exit code.
struct Failure(u8, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Core(c) if is_key_error(c) => EXIT_KEY,
            _ => EXIT_INPUT,
        };
        Failure(code, e.to_string())
    }
}

fn is_key_error(e: &tracemark_core::Error) -> bool {
    use tracemark_core::Error as E;
    matches!(
        e,
        E::InvalidKey { .. } | E::KeyFileExists { .. } | E::InvalidLabel { .. } | E::Rng { .. }
    )
}

fn key_failure(path: &Path, e: tracemark_core::Error) -> Failure {
    let msg = match &e {
        tracemark_core::Error::Io { .. } => format!("cannot read key file {}: {e}", path.display()),
        _ => e.to_string(),
    };
    Failure(EXIT_KEY, msg)
}

fn load_key(path: &Path) -> Result<Key, Failure> {
    Key::load(path).map_err(|e| key_failure(path, e))
}

fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let r = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    r.map_err(|e| Failure(EXIT_INPUT, format!("{}: {e}", path.display())))?;
    Ok(bytes)
}

fn parse_ids(bytes: &[u8], source: &str) -> Result<Vec<u32>, Failure> {
    let text = utf8(bytes, source)?;
    let trimmed = text.trim();
    let ids = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<u32>>(trimmed).map_err(|e| e.to_string())
    } else {
        trimmed
            .split_whitespace()
            .map(|t| t.parse::<u32>().map_err(|_| format!("{t:?} is not a token id")))
            .collect()
    };
    ids.map_err(|e| Failure(EXIT_INPUT, format!("{source}: {e}")))
}

struct Setup {
    keyring: Keyring,
    tokenizer: Option<TextTokenizer>,
    vocab: usize,
    options: DetectOptions,
    color: bool,
}

fn setup(c: &Common, ids_input: bool) -> Result<Setup, Failure> {
    let mut keyring = Keyring::new();
    if c.derive_labels.is_empty() {
        for path in &c.key {
            keyring.push(path.display().to_string(), load_key(path)?);
        }
    } else {
        if c.key.len() != 1 {
            return Err(Failure(2, "--derive-labels derives from exactly one --key".into()));
        }
        let master = load_key(&c.key[0])?;
        keyring = Keyring::derived(&master, &c.derive_labels).map_err(Failure::from)?;
    }
    let tokenizer = c.tokenizer.as_ref().map(TextTokenizer::from_file).transpose()?;
    let vocab = match (&tokenizer, c.vocab) {
        (_, Some(v)) => v,
        (Some(t), None) => t.vocab_size(),
        (None, None) if ids_input => {
            return Err(Failure(
                2,
                "id input needs --vocab (or --tokenizer) to check ids against".into(),
            ))
        }
        (None, None) => {
            return Err(Failure(
                2,
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

fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Detected => 0,
        Verdict::NotDetected => EXIT_NOT_DETECTED,
        _ => EXIT_INCONCLUSIVE,
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure(EXIT_INPUT, e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn detect(a: DetectArgs) -> Result<u8, Failure> {
    let mut s = setup(&a.common, a.ids)?;
    s.options.marks = !a.common.json || a.window;
    if a.window {
        s.options.window = Some(WindowOptions {
            min_scored: a.window_min,
        });
    }
    let source = if a.input.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        a.input.display().to_string()
    };
    let bytes = read_input(&a.input)?;
    let prompt_bytes = a.prompt_file.as_deref().map(read_input).transpose()?;
    let (text, prompt_ids, ids) = if a.ids {
        let prompt = match (&prompt_bytes, &a.prompt) {
            (Some(b), _) => parse_ids(b, "prompt file")?,
            (None, Some(p)) => parse_ids(p.as_bytes(), "--prompt")?,
            (None, None) => Vec::new(),
        };
        (None, prompt, parse_ids(&bytes, &source)?)
    } else {
        let text = utf8(&bytes, &source)?;
        let prompt = match (&prompt_bytes, &a.prompt) {
            (Some(b), _) => Some(utf8(b, "prompt file")?),
            (None, p) => p.clone(),
        };
        (Some((text, prompt)), Vec::new(), Vec::new())
    };
    let run = |d: &Detector| -> Result<Detection, Error> {
        match &text {
            Some((t, p)) => {
                // setup() guarantees a tokenizer for text input.
                let tok = s.tokenizer.as_ref().ok_or(Error::Tokenizer {
                    message: "no tokenizer".into(),
                })?;
                d.detect_text(tok, p.as_deref(), t)
            }
            None => {
                let mut r = d.detect_ids(&prompt_ids, &ids)?;
                r.input_sha256 = Some(tracemark_verifier::sha256_hex(&bytes));
                Ok(r)
            }
        }
    };
    let shown_text = text.as_ref().map(|(t, _)| t.as_str());
    if s.keyring.len() == 1 {
        let (_, key) = s.keyring.iter().next().ok_or(Failure(EXIT_KEY, "no key".into()))?;
        let d = Detector::new(key, &a.common.scheme, s.vocab, s.options.clone())?;
        let report = run(&d)?;
        if a.common.json {
            print_json(&report)?;
        } else {
            print!("{}", render::detection(&report, shown_text, s.color));
        }
        Ok(verdict_code(report.verdict))
    } else {
        let kd = KeyringDetector::new(&s.keyring, &a.common.scheme, s.vocab, s.options.clone())?;
        let result = kd.detect_with(run)?;
        if a.common.json {
            print_json(&result)?;
        } else {
            print!("{}", render::keyring(&result, s.color));
            if let Some(best) = &result.best_detection {
                println!("\nbest match:");
                print!("{}", render::detection(best, shown_text, s.color));
            }
        }
        Ok(if result.keys.iter().any(|k| k.detected()) {
            0
        } else if result.best.is_none() {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_NOT_DETECTED
        })
    }
}

fn scan(a: ScanArgs) -> Result<u8, Failure> {
    let s = setup(&a.common, false)?;
    let (_, key) = only_key(&s)?;
    let detector = Detector::new(key, &a.common.scheme, s.vocab, s.options.clone())?;
    let scanner = Scanner::new(&detector, s.tokenizer.as_ref()).jobs(a.jobs);
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| Failure(EXIT_INPUT, format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let progress = progress_bar();
    let mut write_error = None;
    let summary = scan_path(&scanner, &a.corpus, |doc| {
        if let Some(pb) = &progress {
            pb.inc(1);
        }
        if write_error.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, doc)
                .map_err(|e| e.to_string())
                .and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()))
            {
                write_error = Some(e);
            }
        }
    })?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    out.flush().map_err(|e| Failure(EXIT_INPUT, e.to_string()))?;
    if let Some(e) = write_error {
        return Err(Failure(EXIT_INPUT, format!("writing results: {e}")));
    }
    if a.common.json {
        let text = serde_json::to_string(&summary).map_err(|e| Failure(EXIT_INPUT, e.to_string()))?;
        eprintln!("{text}");
    } else {
        eprint!(
            "{}",
            render::scan_summary(&summary, s.color && std::io::stderr().is_terminal())
        );
    }
    Ok(0)
}

fn only_key(s: &Setup) -> Result<(&str, &Key), Failure> {
    if s.keyring.len() != 1 {
        return Err(Failure(
            2,
            "scans test one key: give a single --key (no --derive-labels)".into(),
        ));
    }
    s.keyring.iter().next().ok_or(Failure(EXIT_KEY, "no key".into()))
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} documents ({per_sec}) {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(pb)
}

fn read_reading_docs(path: &Path) -> Result<Vec<ReadingDoc>, Failure> {
    let bytes = read_input(path)?;
    let text = utf8(&bytes, &path.display().to_string())?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<ReadingDoc>(l)
                .map_err(|e| Failure(EXIT_INPUT, format!("{}: line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// One corpus-level test under one key: reading mode, or a (filtered) scan.
fn radioactivity_test(a: &RadioArgs, s: &Setup, key: &Key, docs: Option<&[ReadingDoc]>) -> Result<Detection, Failure> {
    let detector = Detector::new(key, &a.common.scheme, s.vocab, s.options.clone())?;
    if let Some(docs) = docs {
        return Ok(reading_mode(&detector, docs)?);
    }
    let filter = match &a.reference {
        Some(path) => {
            let file =
                std::fs::File::open(path).map_err(|e| Failure(EXIT_INPUT, format!("{}: {e}", path.display())))?;
            Some(context_keys(
                &detector,
                s.tokenizer.as_ref(),
                std::io::BufReader::new(file),
            )?)
        }
        None => None,
    };
    let mut scanner = Scanner::new(&detector, s.tokenizer.as_ref()).jobs(a.jobs);
    if let Some(f) = &filter {
        scanner = scanner.filter(f);
    }
    let progress = progress_bar();
    let summary = scan_path(&scanner, &a.corpus, |_| {
        if let Some(pb) = &progress {
            pb.inc(1);
        }
    })?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    Ok(summary.aggregate)
}

fn radioactivity(a: RadioArgs) -> Result<u8, Failure> {
    let s = setup(&a.common, a.reading)?;
    let docs = if a.reading {
        Some(read_reading_docs(&a.corpus)?)
    } else {
        None
    };
    let mode = match (a.reading, &a.reference) {
        (true, _) => "reading mode: the suspect model's predictions on our watermarked texts".to_string(),
        (false, Some(r)) => format!("black box, scored only at contexts of our outputs in {}", r.display()),
        (false, None) => "black box: the suspect model's outputs".to_string(),
    };
    let mut labels = Vec::new();
    let mut reports = Vec::new();
    for (label, key) in s.keyring.iter() {
        labels.push(label.to_string());
        reports.push(radioactivity_test(&a, &s, key, docs.as_deref())?);
    }
    if reports.len() == 1 {
        let report = &reports[0];
        if a.common.json {
            print_json(report)?;
        } else {
            println!("radioactivity test ({mode}): one exact test over every scored token of the corpus");
            print!("{}", render::detection(report, None, s.color));
        }
        return Ok(verdict_code(report.verdict));
    }
    let attribution = attribute(&labels, &reports, a.common.alpha);
    if a.common.json {
        print_json(&attribution)?;
    } else {
        println!(
            "radioactivity test ({mode}), cohort attribution over {} keys",
            labels.len()
        );
        print!("{}", render::attribution(&attribution, s.color));
    }
    Ok(if attribution.named.is_empty() {
        EXIT_NOT_DETECTED
    } else {
        0
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => Key::generate()
            .and_then(|k| k.save(&out).map(|()| k.id()))
            .map(|id| {
                println!("{id}");
                0
            })
            .map_err(|e| key_failure(&out, e)),
        Command::KeyId { key } => load_key(&key).map(|k| {
            println!("{}", k.id());
            0
        }),
        Command::Derive { key, label, out } => load_key(&key).and_then(|k| {
            let child = k.derive(&label).map_err(|e| key_failure(&key, e))?;
            child.save(&out).map_err(|e| key_failure(&out, e))?;
            println!("{}", child.id());
            Ok(0)
        }),
        Command::Detect(a) => detect(a),
        Command::Scan(a) => scan(a),
        Command::Radioactivity(a) => radioactivity(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, msg)) => {
            eprintln!("tracemark: {msg}");
            ExitCode::from(code)
        }
    }
}
