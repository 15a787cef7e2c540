//! `make calibrate`: the false-positive rate of every scheme on Debian-packaged
//! human text over 10 million (segment, key) tests per scheme, with exact 99%
//! intervals, per scheme and per text category, and a statistical battery on
//! the per-token values. The engine is `tracemark_lab::calibration`;
//! this binary only fixes the experiment and writes the results file.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tracemark_core::SchemeConfig;
use tracemark_lab::calibration::{
    battery, calibrate, markdown, CalibrationOptions, Corpus, KeyStream, Report, SegmentOptions,
};
use tracemark_lab::{Error, Result};
use tracemark_verifier::TextTokenizer;

const SCHEMES: [&str; 5] = [
    "kgw:gamma=0.25,delta=2,context=lefthash:0",
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.25,delta=2,context=selfhash:4",
    "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    "gumbel:temperature=1,context=lefthash:4",
];
/// The seed of every key, shuffle and battery input of the run ("tracemar").
const KEY_SEED: u64 = 0x7472_6163_656d_6172;
/// Self-hash builds a value table over the vocabulary for each key (a few ms):
/// its tests share a key in blocks of this many distinct segments.
const SELF_HASH_TESTS_PER_KEY: u64 = 256;

#[derive(Parser)]
#[command(about = "False-positive rates of every scheme over millions of (document, key) tests")]
struct Args {
    /// The human-text corpus (JSONL with `category` and `text`)
    #[arg(long)]
    corpus: String,
    /// The tokenizer.json
    #[arg(long)]
    tokenizer: String,
    /// Where to write the Markdown results
    #[arg(long)]
    out: String,
    /// Tests per scheme
    #[arg(long, default_value_t = 10_000_000)]
    tests: u64,
    /// Tokens per test segment
    #[arg(long, default_value_t = 256)]
    segment: usize,
    /// Samples per battery stream
    #[arg(long, default_value_t = 1 << 20)]
    battery_samples: usize,
    /// Title of the results file
    #[arg(long, default_value = "Calibration at scale")]
    title: String,
}

fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let tokenizer = TextTokenizer::from_file(&args.tokenizer)?;
    let segments = SegmentOptions {
        max_tokens: args.segment,
        min_tokens: args.segment / 4,
    };
    let corpus = Corpus::from_jsonl(&args.corpus, &tokenizer, segments)?;
    eprintln!(
        "calibrate: {} segments, {} tokens, tokenized in {:.0} s",
        corpus.segments.len(),
        corpus.tokens(),
        start.elapsed().as_secs_f64()
    );
    let keys = KeyStream::danger_from_seed(KEY_SEED);
    let configs: Vec<SchemeConfig> = SCHEMES
        .iter()
        .map(|s| s.parse())
        .collect::<core::result::Result<_, _>>()?;
    let mut runs = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let self_hash = config.to_string().contains("selfhash");
        let options = CalibrationOptions {
            tests: args.tests,
            tests_per_key: if self_hash { SELF_HASH_TESTS_PER_KEY } else { 1 },
            first_key: i as u64 * (1 << 40),
            order_stream: i as u64,
            ..CalibrationOptions::default()
        };
        let run = calibrate(&corpus, config, &keys, &options)?;
        let rates: Vec<String> = run.overall.iter().map(|c| format!("{:.3e}", c.rate())).collect();
        eprintln!("calibrate: {config}: FPR {} in {:.0} s", rates.join(" / "), run.seconds);
        runs.push(run);
    }
    let battery = battery(&configs, corpus.vocab_size, &keys, args.battery_samples)?;
    let corpus_name = std::path::Path::new(&args.corpus)
        .file_name()
        .map_or(args.corpus.clone(), |f| f.to_string_lossy().into_owned());
    let text = markdown(&Report {
        corpus: &corpus,
        corpus_source: format!("Debian-packaged human text (`scripts/fetch.py human-text`, `{corpus_name}`)"),
        tokenizer: format!("`scripts/fetch.py tokenizer` ({})", tokenizer.info().fingerprint),
        keys: &keys,
        schemes: &runs,
        battery: &battery,
        confidence: 0.99,
        seconds: start.elapsed().as_secs_f64(),
        title: args.title,
    });
    std::fs::write(&args.out, &text).map_err(|e| Error::Usage(format!("{}: {e}", args.out)))?;
    println!("{text}");
    eprintln!("calibrate: wrote {}", args.out);
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calibrate: {e}");
            ExitCode::FAILURE
        }
    }
}
