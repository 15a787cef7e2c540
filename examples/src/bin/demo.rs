//! `make demo`: SmolLM2-135M answers three prompts twice, once watermarked
//! (kgw) and once plain; tracemark verifies every answer from its text alone
//! (decode, re-encode with the model's tokenizer, exact test) and prints the
//! answers with their verdicts side by side.
//!
//! It serves as a model server would, so that docs/verifier.md's recipe runs
//! as written on its output folder: a key with its serving manifest (the
//! scheme it was served with), the model's tokenizer, a receipt signing key
//! pair, and for every answer its prompt, its text and a signed receipt. The
//! first watermarked answer is also the recipe's case: `suspect.txt`,
//! `prompt.txt` and `answer.receipt.json`. `verdicts.json` records each
//! answer's verdict, for the test that runs the recipe.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tracemark_candle::paths::{cache_dir, model_path};
use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, set_threads, Arm, Llama, LoadOptions, Rng, Sampling};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::receipt::{Provenance, Receipt, SigningKey};
use tracemark_verifier::serving::ServingManifest;
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
    /// Where to write the answers, keys and receipts (default: the demo folder of the cache)
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// The model name receipts state.
const MODEL_NAME: &str = "SmolLM2-135M-Instruct (Q4_1 GGUF)";

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

/// docs/verifier.md's five commands, as the demo prints them (the test of
/// the recipe runs the docs' own block, and checks this is the same).
const RECIPE: [&str; 5] = [
    "tracemark key-id --key served.key",
    "sha256sum suspect.txt",
    "tracemark detect --key served.key --tokenizer tokenizer.json --prompt-file prompt.txt suspect.txt",
    "tracemark report --out suspect-report.html detect --key served.key --tokenizer tokenizer.json --prompt-file prompt.txt suspect.txt",
    "tracemark receipt verify --receipt answer.receipt.json --text suspect.txt --trust signer.key.pub --key served.key --tokenizer tokenizer.json",
];

/// Writes `text` to `path` (replacing what a former run wrote).
fn write(path: &Path, text: &str) -> Result<()> {
    io(path, std::fs::write(path, text))
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
    let out_dir = args.out_dir.clone().unwrap_or_else(|| cache_dir().join("demo"));
    io(&out_dir, std::fs::create_dir_all(&out_dir))?;
    let tok_path = cache_dir().join("smollm2-tokenizer.json");
    gguf_tokenizer::save(&tok, &tok_path)?;
    // The recipe's tokenizer.json, beside the key.
    let local_tok = out_dir.join("tokenizer.json");
    io(&local_tok, std::fs::copy(&tok_path, &local_tok))?;
    println!(
        "model      {} ({} layers, vocab {}), loaded in {:.1} s",
        model_file.display(),
        model.config().layers,
        model.config().vocab_size,
        t.elapsed().as_secs_f64()
    );
    let verifier_tok = TextTokenizer::from_tokenizer(&tok)?;
    // The served key: the demo's own, from the OS random number generator,
    // with its serving manifest (the scheme and the tokenizer it serves with).
    let key_path = out_dir.join("served.key");
    let key = if key_path.exists() {
        Key::load(&key_path)?
    } else {
        let k = Key::generate()?;
        k.save(&key_path)?;
        k
    };
    match ServingManifest::load_beside(&key_path, &key)? {
        Some(m) if m.scheme()? != args.scheme => {
            return Err(format!(
                "{} was served with {}, not {}: run the demo with that --scheme, or with another --out-dir",
                key_path.display(),
                m.scheme,
                args.scheme
            )
            .into())
        }
        Some(_) => {}
        None => {
            ServingManifest::new(&key, &args.scheme, Some(&verifier_tok.info().fingerprint)).save_beside(&key_path)?;
        }
    }
    // The receipt signing key pair (the public half is what verifiers trust).
    let signer_path = out_dir.join("signer.key");
    let signer = if signer_path.exists() {
        SigningKey::load(&signer_path)?
    } else {
        let k = SigningKey::generate()?;
        k.save(&signer_path)?;
        k
    };
    let public_path = out_dir.join("signer.key.pub");
    if !public_path.exists() {
        signer.verifying_key().save(&public_path)?;
    }
    println!("watermark  {} under key {}", args.scheme, key.id());
    println!("output     {}", out_dir.display());
    let mut verdicts = Vec::new();
    let scheme = args.scheme.build(&key, model.config().vocab_size)?;
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
        write(&out_dir.join(format!("{}-prompt.txt", n + 1)), &prompt_text)?;
        for (g, name) in gens.iter().zip(["watermarked", "plain"]) {
            let text = gguf_tokenizer::decode(&tok, &g.ids)?;
            write(&out_dir.join(format!("{}-{name}.txt", n + 1)), &text)?;
            // Signed as served: the watermarked answer's receipt states the scheme and key.
            let mut provenance = Provenance::new(MODEL_NAME)?;
            if name == "watermarked" {
                provenance = provenance.watermark(args.scheme.clone(), key.id());
            }
            let receipt = Receipt::sign(&signer, &text, &provenance)?;
            write(
                &out_dir.join(format!("{}-{name}.receipt.json", n + 1)),
                &receipt.to_json_pretty(),
            )?;
            if n == 0 && name == "watermarked" {
                write(&out_dir.join("suspect.txt"), &text)?;
                write(&out_dir.join("prompt.txt"), &prompt_text)?;
                write(&out_dir.join("answer.receipt.json"), &receipt.to_json_pretty())?;
            }
            // Verified from the text alone: re-encoded with the model's tokenizer.
            let d = detector.detect_text(&verifier_tok, Some(&prompt_text), &text)?;
            verdicts.push(format!(
                "{{\"answer\": \"{}-{name}\", \"verdict\": \"{}\", \"log10_p\": {}}}",
                n + 1,
                match d.verdict {
                    tracemark_verifier::Verdict::Detected => "detected",
                    tracemark_verifier::Verdict::NotDetected => "not_detected",
                    _ => "inconclusive",
                },
                d.verdict_log10_p().map_or("null".to_string(), |l| format!("{l:.6}"))
            ));
            columns.push((name, text, d));
        }
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
    write(
        &out_dir.join("verdicts.json"),
        &format!("[\n  {}\n]\n", verdicts.join(",\n  ")),
    )?;
    println!(
        "\nVerify the first watermarked answer yourself: docs/verifier.md's five commands, as written, in {}",
        out_dir.display()
    );
    println!("(suspect.txt is answer 1's watermarked text; the scheme comes from served.key.serving.json)\n");
    println!("  cd {}", out_dir.display());
    for line in RECIPE {
        println!("  {line}");
    }
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
