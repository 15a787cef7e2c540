//! `window`: finding a quote (issue 28, deliverable 3). SmolLM2's
//! watermarked answers (kgw δ=2 h=1, gumbel h=4, tournament h=4) spliced
//! between two paragraphs of Debian-packaged human prose of about 2,300 and
//! 20,000 tokens, tested with `--window` at family-wise 1e-6; and the window
//! search's false-positive rate on the same human text (no answer) under
//! many keys. Answers are generated once and cached with their key under
//! `<cache>/window/`.
//!
//! ```text
//! cargo run --release --locked -p tracemark-lab --bin window -- \
//!     --human-text "$(python3 scripts/fetch.py human-text)" --out eval/results/window-YYYY-MM-DD.md
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, Arm, Llama, LoadOptions, Rng, Sampling};
use tracemark_core::SchemeConfig;
use tracemark_lab::calibration::KeyStream;
use tracemark_lab::{cache_dir, io, model_path, prompts, stored_key};
use tracemark_lab::{Error, Result};
use tracemark_verifier::{DetectOptions, Detector, TextTokenizer, WindowOptions};

const SCHEMES: [(&str, &str); 3] = [
    ("kgw h=1", "kgw:gamma=0.25,delta=2,context=lefthash:1"),
    ("gumbel h=4", "gumbel:temperature=1,context=lefthash:4"),
    (
        "tournament h=4",
        "tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4",
    ),
];
/// The family-wise level of the bars.
const ALPHA: f64 = 1e-6;
/// The answers whose clean p is below this must be found (the bar).
const BAR_LOG10_P: f64 = -9.0;
/// Seed of the splice positions, human-text draws and calibration keys.
const SEED: u64 = 0x7769_6e64_6f77; // "window"

#[derive(Parser)]
#[command(about = "Watermarked answers spliced into human prose: does --window find them, and is it calibrated?")]
struct Args {
    /// The human-text corpus (`scripts/fetch.py human-text`)
    #[arg(long)]
    human_text: PathBuf,
    /// Where to write the Markdown results (stdout if absent)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Prompts (answers per scheme)
    #[arg(long, default_value_t = 18)]
    prompts: usize,
    /// New tokens per answer at most
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// Human tokens around each answer, comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = vec![2300, 20000])]
    lengths: Vec<usize>,
    /// Splice positions per answer and length
    #[arg(long, default_value_t = 2)]
    placements: usize,
    /// Calibration: human documents per length (0: no calibration)
    #[arg(long, default_value_t = 0)]
    calibration_docs: usize,
    /// Calibration: keys per document
    #[arg(long, default_value_t = 10)]
    calibration_keys: u64,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    scheme: usize,
    prompt: String,
    text: String,
}

/// The cached answers (generated on first use, with the run's stored key).
fn answers(args: &Args, dir: &Path, key: &tracemark_core::Key) -> Result<Vec<Answer>> {
    let path = dir.join(format!("answers-{}-{}.json", args.prompts, args.max_tokens));
    if let Ok(bytes) = std::fs::read(&path) {
        return serde_json::from_slice(&bytes).map_err(|e| Error::Usage(format!("{}: {e}", path.display())));
    }
    let model_file = model_path()?;
    let model = Llama::load(&model_file, LoadOptions::default())?;
    let tok = gguf_tokenizer::from_gguf(&model_file)?;
    let vocab = model.config().vocab_size;
    let configs: Vec<SchemeConfig> = SCHEMES
        .iter()
        .map(|(_, s)| s.parse())
        .collect::<core::result::Result<_, _>>()?;
    let schemes = configs
        .iter()
        .map(|c| c.build(key, vocab))
        .collect::<core::result::Result<Vec<_>, _>>()?;
    let arms: Vec<Arm<'_>> = schemes
        .iter()
        .map(|s| Arm {
            scheme: Some(s.as_ref()),
            steer: None,
            skip_repeated: s.contract().skip_repeated,
            sampling: Sampling::default(),
        })
        .collect();
    let stop = [gguf_tokenizer::token_id(&tok, "<|im_end|>")?];
    let mut out = Vec::new();
    for (n, user) in prompts().iter().take(args.prompts).enumerate() {
        let prompt_text = chat_prompt(user);
        let prompt = gguf_tokenizer::encode(&tok, &prompt_text)?;
        let mut rngs: Vec<Rng> = (0..arms.len())
            .map(|i| Rng::new(5000 + 10 * n as u64 + i as u64))
            .collect();
        let (gens, _) = generate(&model, &prompt, &arms, args.max_tokens, &stop, &mut rngs)?;
        for (i, g) in gens.iter().enumerate() {
            out.push(Answer {
                scheme: i,
                prompt: prompt_text.clone(),
                text: gguf_tokenizer::decode(&tok, &g.ids)?,
            });
        }
        eprintln!("window: answers of prompt {} of {}", n + 1, args.prompts);
    }
    let json = serde_json::to_vec(&out).map_err(|e| Error::Usage(e.to_string()))?;
    io(&path, std::fs::write(&path, json))?;
    Ok(out)
}

/// The paragraphs of the corpus's prose documents, in order, with their token counts.
fn paragraphs(path: &Path, tok: &TextTokenizer) -> Result<Vec<(String, usize)>> {
    #[derive(Deserialize)]
    struct Doc {
        category: String,
        text: String,
    }
    let text = io(path, std::fs::read_to_string(path))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let doc: Doc = serde_json::from_str(line).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        if doc.category != "prose" {
            continue;
        }
        for p in doc
            .text
            .split("\n\n")
            .map(str::trim_end)
            .filter(|p| !p.trim().is_empty())
        {
            // Very long paragraphs (a whole file without blank lines) are cut at line ends.
            let mut chunk = String::new();
            for l in p.lines() {
                if chunk.len() + l.len() > 4000 && !chunk.is_empty() {
                    out.push(std::mem::take(&mut chunk));
                }
                chunk.push_str(l);
                chunk.push('\n');
            }
            if !chunk.trim().is_empty() {
                out.push(chunk.trim_end().to_string());
            }
        }
    }
    out.into_par_iter()
        .map(|p| {
            let n = tok.encode(&p)?.ids.len();
            Ok((p, n))
        })
        .collect::<core::result::Result<Vec<_>, tracemark_verifier::Error>>()
        .map_err(Error::from)
}

/// About `tokens` tokens of consecutive paragraphs from a random place.
fn human(paras: &[(String, usize)], tokens: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
    let start = rng.random_range(0..paras.len());
    let mut out = Vec::new();
    let mut n = 0;
    let mut i = start;
    while n < tokens {
        let (p, t) = &paras[i % paras.len()];
        out.push(p.clone());
        n += t;
        i += 1;
    }
    out
}

struct Row {
    scheme: usize,
    length: usize,
    clean: f64,
    verdict: f64,
    window: Option<f64>,
    overlap: f64,
    /// The verdict and window cover of version 3's search (the grid alone).
    grid_verdict: f64,
    grid_overlap: f64,
    /// Whether the reported window is a run of whole paragraphs, and how many such runs were examined.
    paragraphs: bool,
    segments: usize,
    scored: usize,
    answer_tokens: usize,
    /// kgw only: `log10 p` of the answer's own tokens inside the document,
    /// deduplicated over the whole document (as the search sees them) and
    /// within the answer only (what deduplicating within each window would
    /// see on a window equal to the answer).
    dedup: Option<(f64, f64)>,
}

/// `log10 P(Binomial(n, gamma) >= k)`, the kgw test.
fn kgw_log10_p(n: usize, k: f64, gamma: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if n == 0 || k <= 0.0 {
        return 0.0;
    }
    let k = k.round() as u64;
    Binomial::new(gamma, n as u64).map_or(0.0, |b| b.sf(k - 1).max(f64::MIN_POSITIVE).log10())
}

fn run(args: Args) -> Result<()> {
    let dir = cache_dir().join("window");
    io(&dir, std::fs::create_dir_all(&dir))?;
    let key = stored_key(&dir.join("run.key"))?;
    let answers = answers(&args, &dir, &key)?;
    let model_file = model_path()?;
    let tok = TextTokenizer::from_tokenizer(&gguf_tokenizer::from_gguf(&model_file)?)?;
    let vocab = tok.vocab_size();
    let configs: Vec<SchemeConfig> = SCHEMES
        .iter()
        .map(|(_, s)| s.parse())
        .collect::<core::result::Result<_, _>>()?;
    let paras = paragraphs(&args.human_text, &tok)?;
    eprintln!("window: {} prose paragraphs", paras.len());
    let options = DetectOptions {
        alpha: ALPHA,
        window: Some(WindowOptions::default()),
        ..DetectOptions::default()
    };
    // Version 3's search (the grid alone), on the same documents.
    let grid_options = DetectOptions {
        alpha: ALPHA,
        window: Some(WindowOptions {
            paragraphs: false,
            ..WindowOptions::default()
        }),
        ..DetectOptions::default()
    };
    let clean_options = DetectOptions {
        alpha: ALPHA,
        ..DetectOptions::default()
    };
    // The splice jobs, drawn up front so that each is reproducible.
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut jobs = Vec::new();
    for (a, _) in answers.iter().enumerate() {
        for &length in &args.lengths {
            for _ in 0..args.placements {
                let human = human(&paras, length, &mut rng);
                let at = rng.random_range(0..=human.len());
                jobs.push((a, length, human, at));
            }
        }
    }
    let rows = jobs
        .par_iter()
        .map(|(a, length, human, at)| {
            let answer = &answers[*a];
            let det = Detector::new(&key, &configs[answer.scheme], vocab, options.clone())?;
            let clean_det = Detector::new(&key, &configs[answer.scheme], vocab, clean_options.clone())?;
            let clean = clean_det.detect_text(&tok, Some(&answer.prompt), &answer.text)?;
            let mut doc = human[..*at].join("\n\n");
            if !doc.is_empty() {
                doc.push_str("\n\n");
            }
            let begin = doc.len();
            doc.push_str(&answer.text);
            let end = doc.len();
            if *at < human.len() {
                doc.push_str("\n\n");
                doc.push_str(&human[*at..].join("\n\n"));
            }
            let d = det.detect_text(&tok, None, &doc)?;
            let grid = Detector::new(&key, &configs[answer.scheme], vocab, grid_options.clone())?
                .detect_text(&tok, None, &doc)?;
            let dedup = if answer.scheme == 0 {
                // The answer's observations: whole-document deduplication is
                // the document's minus the prose's before it (deduplication
                // is sequential); within the answer, the prose is context only.
                let pre = tok.encode(&doc[..begin])?.ids;
                let ans = tok.encode(&answer.text)?.ids;
                let all: Vec<u32> = pre.iter().chain(&ans).copied().collect();
                let stat = |d: &tracemark_verifier::Detection| {
                    (d.counts.scored, d.outcome.test().map_or(0.0, |t| t.statistic))
                };
                let (n1, k1) = stat(&clean_det.detect_ids(&[], &all)?);
                let (n0, k0) = if pre.is_empty() {
                    (0, 0.0)
                } else {
                    stat(&clean_det.detect_ids(&[], &pre)?)
                };
                let (n2, k2) = stat(&clean_det.detect_ids(&pre, &ans)?);
                Some((kgw_log10_p(n1 - n0, k1 - k0, 0.25), kgw_log10_p(n2, k2, 0.25)))
            } else {
                None
            };
            let cover = |d: &tracemark_verifier::Detection| {
                d.window.as_ref().and_then(|w| w.span).map_or(0.0, |(s, e)| {
                    let inter = e.min(end).saturating_sub(s.max(begin));
                    inter as f64 / (end - begin).max(1) as f64
                })
            };
            let overlap = cover(&d);
            Ok(Row {
                scheme: answer.scheme,
                length: *length,
                clean: clean.conservative_verdict_log10_p(),
                verdict: d.conservative_verdict_log10_p(),
                window: d.window.as_ref().map(|w| w.log10_p),
                overlap,
                grid_verdict: grid.conservative_verdict_log10_p(),
                grid_overlap: cover(&grid),
                paragraphs: d.window.as_ref().is_some_and(|w| w.paragraphs),
                segments: d.window.as_ref().map_or(0, |w| w.segments_examined),
                scored: d.counts.scored,
                answer_tokens: clean.counts.seen,
                dedup,
            })
        })
        .collect::<core::result::Result<Vec<Row>, tracemark_verifier::Error>>()?;

    let mut md = String::new();
    let _ = writeln!(md, "## Spliced answers\n");
    let _ = writeln!(
        md,
        "{} answers per scheme (SmolLM2-135M-Instruct, at most {} new tokens, the evaluation's first prompts), each spliced between two paragraphs of Debian-packaged prose at {} random places per length. \
         *Found*: the detection's verdict p-value (the family of the whole text and the window search, and of the forms tested) is below {ALPHA:e} and the reported window overlaps the answer. \
         The bar counts the answers whose clean p-value (the answer alone, with its prompt) is below 1e{BAR_LOG10_P}.\n",
        args.prompts, args.max_tokens, args.placements
    );
    let _ = writeln!(
        md,
        "| scheme | human tokens | splices | clean p < 1e-9 | found of those, v3 / v4 | found, all, v3 / v4 | found by a paragraph run (v4) | paragraph runs examined (median) | median window cover | median log10 p: clean / window / verdict v3 / verdict v4 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for (s, (name, _)) in SCHEMES.iter().enumerate() {
        for &length in &args.lengths {
            let rs: Vec<&Row> = rows.iter().filter(|r| r.scheme == s && r.length == length).collect();
            let found = |r: &&&Row| r.verdict < ALPHA.log10() && r.overlap > 0.0;
            let found_v3 = |r: &&&Row| r.grid_verdict < ALPHA.log10() && r.grid_overlap > 0.0;
            let bar: Vec<&&Row> = rs.iter().filter(|r| r.clean < BAR_LOG10_P).collect();
            let med = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            let _ = writeln!(
                md,
                "| {name} | {length} | {} | {} | {} / {} | {} / {} | {} | {} | {:.2} | {:.1} / {:.1} / {:.1} / {:.1} |",
                rs.len(),
                bar.len(),
                bar.iter().filter(|r| found_v3(r)).count(),
                bar.iter().filter(|r| found(r)).count(),
                rs.iter().filter(|r| found_v3(r)).count(),
                rs.iter().filter(|r| found(r)).count(),
                rs.iter().filter(|r| found(r) && r.paragraphs).count(),
                med(rs.iter().map(|r| r.segments as f64).collect()),
                med(rs.iter().map(|r| r.overlap).collect()),
                med(rs.iter().map(|r| r.clean).collect()),
                med(rs.iter().map(|r| r.window.unwrap_or(0.0)).collect()),
                med(rs.iter().map(|r| r.grid_verdict).collect()),
                med(rs.iter().map(|r| r.verdict).collect()),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nWhat deduplicating within each window instead of over the whole document (SPEC §16, not done) would give kgw h=1: \
         the exact log10 p of the answer's own tokens in the document, deduplicated over the whole document against within the answer only.\n"
    );
    let _ = writeln!(md, "| human tokens | splices | median gain (decades) | largest gain | gain on the splices missed with clean p < 1e-9 |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for &length in &args.lengths {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.scheme == 0 && r.length == length).collect();
        let mut gains: Vec<f64> = rs.iter().filter_map(|r| r.dedup.map(|(a, b)| a - b)).collect();
        gains.sort_by(f64::total_cmp);
        let missed: Vec<String> = rs
            .iter()
            .filter(|r| r.clean < BAR_LOG10_P && !(r.verdict < ALPHA.log10() && r.overlap > 0.0))
            .filter_map(|r| r.dedup.map(|(a, b)| format!("{:.2}", a - b)))
            .collect();
        let _ = writeln!(
            md,
            "| {length} | {} | {:.2} | {:.2} | {} |",
            gains.len(),
            gains.get(gains.len() / 2).copied().unwrap_or(f64::NAN),
            gains.last().copied().unwrap_or(f64::NAN),
            if missed.is_empty() {
                "none missed".to_string()
            } else {
                missed.join(", ")
            }
        );
    }
    let _ = writeln!(md, "\nEvery splice (log10 p):\n");
    let _ = writeln!(
        md,
        "| scheme | human tokens | answer tokens | scored in document | clean | window | verdict v3 / v4 | window covers | paragraph run | answer in document: whole-document / within-answer dedup |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (a.scheme, a.length)
            .cmp(&(b.scheme, b.length))
            .then(a.clean.total_cmp(&b.clean))
    });
    for r in sorted {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} | {} | {:.2} / {:.2} | {:.2} | {} | {} |",
            SCHEMES[r.scheme].0,
            r.length,
            r.answer_tokens,
            r.scored,
            r.clean,
            r.window.map_or("-".to_string(), |w| format!("{w:.2}")),
            r.grid_verdict,
            r.verdict,
            r.overlap,
            if r.paragraphs { "yes" } else { "no" },
            r.dedup.map_or("-".to_string(), |(a, b)| format!("{a:.2} / {b:.2}"))
        );
    }

    if args.calibration_docs > 0 {
        let _ = writeln!(md, "\n## Calibration on human prose\n");
        let _ = writeln!(
            md,
            "{} documents of about each length (consecutive prose paragraphs from random places), each tested as text (canonical forms and paragraph runs as the CLI tests it) under {} keys (`KeyStream` seed {SEED:#x}) with the window search; the rate at which the family p-value (whole text and window search) is at most alpha, with its exact 99% interval.\n",
            args.calibration_docs, args.calibration_keys
        );
        let _ = writeln!(
            md,
            "| scheme | human tokens | tests | rate p <= 1e-2 | 99% interval | rate p <= 1e-3 | 99% interval | windows / paragraph runs examined (median) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        let keys = KeyStream::danger_from_seed(SEED);
        let mut hits: Vec<String> = Vec::new();
        for &length in &args.lengths {
            let docs: Vec<String> = (0..args.calibration_docs)
                .map(|_| human(&paras, length, &mut rng).join("\n\n"))
                .collect();
            for (s, (name, _)) in SCHEMES.iter().enumerate() {
                let results = (0..args.calibration_keys)
                    .into_par_iter()
                    .map(|k| {
                        let key = keys.key(k);
                        let det = Detector::new(&key, &configs[s], vocab, options.clone())?;
                        docs.iter()
                            .enumerate()
                            .map(|(i, text)| {
                                let d = det.detect_text(&tok, None, text)?;
                                let p = d.conservative_verdict_log10_p();
                                // Who made a test reach 1e-3: key, document, and what decided it.
                                let hit = (p <= -3.0).then(|| {
                                    let by = match &d.window {
                                        Some(w) if w.decides_verdict && w.paragraphs => "paragraph run",
                                        Some(w) if w.decides_verdict => "grid window",
                                        _ => "whole text",
                                    };
                                    format!("key {k} document {i} ({by}, log10 p {p:.2})")
                                });
                                Ok((
                                    p,
                                    d.window.as_ref().map_or(0, |w| w.windows_examined),
                                    d.window.as_ref().map_or(0, |w| w.segments_examined),
                                    hit,
                                ))
                            })
                            .collect::<core::result::Result<Vec<_>, tracemark_verifier::Error>>()
                    })
                    .collect::<core::result::Result<Vec<_>, _>>()?;
                let all: Vec<(f64, usize, usize, Option<String>)> = results.into_iter().flatten().collect();
                let n = all.len() as u64;
                let at = |lvl: f64| all.iter().filter(|(p, ..)| *p <= lvl.log10()).count() as u64;
                let mut ex: Vec<usize> = all.iter().map(|(_, e, ..)| *e).collect();
                ex.sort_unstable();
                let mut segs: Vec<usize> = all.iter().map(|(_, _, g, _)| *g).collect();
                segs.sort_unstable();
                hits.extend(
                    all.iter()
                        .filter_map(|(.., h)| h.as_ref())
                        .map(|h| format!("{name}, {length} tokens: {h}")),
                );
                let (c2, c3) = (at(1e-2), at(1e-3));
                let (l2, u2) = clopper_pearson(c2, n, 0.99);
                let (l3, u3) = clopper_pearson(c3, n, 0.99);
                let _ = writeln!(
                    md,
                    "| {name} | {length} | {n} | {:.4} | [{l2:.4}, {u2:.4}] | {:.5} | [{l3:.5}, {u3:.5}] | {} / {} |",
                    c2 as f64 / n as f64,
                    c3 as f64 / n as f64,
                    ex.get(ex.len() / 2).copied().unwrap_or(0),
                    segs.get(segs.len() / 2).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(
            md,
            "\nThe tests at or below 1e-3 (the documents of one length overlap, being drawn from one corpus, so the tests of one key are not independent):\n"
        );
        for h in &hits {
            let _ = writeln!(md, "- {h}");
        }
        if hits.is_empty() {
            let _ = writeln!(md, "- none");
        }
    }
    match &args.out {
        Some(path) => io(path, std::fs::write(path, md))?,
        None => print!("{md}"),
    }
    Ok(())
}

/// The exact (Clopper-Pearson) interval of a binomial rate.
fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    use statrs::distribution::{Beta, ContinuousCDF};
    let a = (1.0 - confidence) / 2.0;
    let lo = if k == 0 {
        0.0
    } else {
        Beta::new(k as f64, (n - k + 1) as f64).map_or(0.0, |b| b.inverse_cdf(a))
    };
    let hi = if k == n {
        1.0
    } else {
        Beta::new((k + 1) as f64, (n - k) as f64).map_or(1.0, |b| b.inverse_cdf(1.0 - a))
    };
    (lo, hi)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("window: {e}");
            ExitCode::FAILURE
        }
    }
}
