//! `make distill`: an end-to-end distillation experiment you can rerun.
//!
//! A teacher (SmolLM2-135M + tracemark kgw) answers prompts for 8 API-account
//! cohorts, each with its own key derived from one master key. A competitor
//! harvests answers from 3 of the cohorts, plus unwatermarked answers, and
//! trains students on them: a smoothed trigram model and a small neural
//! language model (candle, CPU, a few minutes). We then test the students:
//! black box (their outputs), black box filtered to contexts of our outputs,
//! reading mode (their predictions on our texts), and cohort attribution,
//! with controls (a student trained only on unwatermarked text, under 24
//! keys) that must look uniform. Harvests are cached; `--quick` runs a small
//! version that checks the pipeline (part of `make test`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};
use tracemark_core::{Key, Scheme, SchemeConfig};
use tracemark_examples::generate::{generate, Arm, Rng, Sampling};
use tracemark_examples::model::{set_threads, Llama, LoadOptions};
use tracemark_examples::ngram::NGram;
use tracemark_examples::plot::{line_chart, Series};
use tracemark_examples::student::{MlpLm, TrainOptions};
use tracemark_examples::{cache_dir, chat_prompt, gguf_tokenizer, model_path, today, Error, Result};
use tracemark_verifier::{
    attribute, context_keys, reading_mode, ContextFilter, DetectOptions, Detection, Detector, ReadingDoc, Scanner,
};

const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const COHORTS: usize = 8;
/// The cohorts the competitor harvests from, and how many answers each gets per prompt.
const HARVESTED: [(usize, usize); 3] = [(1, 3), (4, 1), (6, 1)];
const PLAIN_PER_PROMPT: usize = 3;
const FRACTIONS: [f64; 6] = [0.0, 0.01, 0.05, 0.10, 0.50, 1.0];
const CONTROL_KEYS: usize = 24;

#[derive(Parser)]
#[command(about = "Distillation forensics: prove that a model was trained on watermarked answers")]
struct Args {
    /// A small version (minutes) that checks the pipeline and the basic result
    #[arg(long)]
    quick: bool,
    /// CPU threads for the teacher (default: all cores)
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where to write the report (default: eval/results/distill-DATE.md, or the cache with --quick)
    #[arg(long)]
    out: Option<PathBuf>,
}

struct Plan {
    quick: bool,
    harvest_prompts: usize,
    new_tokens: usize,
    train_tokens: usize,
    budgets: Vec<usize>,
    /// The neural students sample slowly: their outputs stop at this many tokens.
    neural_max_budget: usize,
    neural_fractions: Vec<f64>,
    neural_budget: Duration,
    /// A step limit for the neural students (the quick run: reproducible).
    neural_steps: Option<usize>,
    /// Keys for the calibration of the control students' tests (0: none).
    calibration_keys: usize,
    reading_docs: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                quick: true,
                harvest_prompts: 8,
                new_tokens: 48,
                train_tokens: 1_000,
                budgets: vec![500, 1_000, 3_000],
                neural_max_budget: 3_000,
                neural_fractions: vec![0.0, 1.0],
                neural_budget: Duration::from_secs(60),
                neural_steps: Some(600),
                calibration_keys: 0,
                reading_docs: 10,
            }
        } else {
            Plan {
                quick: false,
                harvest_prompts: 150,
                new_tokens: 150,
                train_tokens: 60_000,
                budgets: vec![1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000],
                neural_max_budget: 50_000,
                neural_fractions: vec![0.0, 0.10, 1.0],
                neural_budget: Duration::from_secs(150),
                neural_steps: None,
                calibration_keys: 1_000,
                reading_docs: 300,
            }
        }
    }
}

impl Plan {
    /// Student tokens generated for the black-box tests.
    fn max_budget(&self, neural: bool) -> usize {
        let last = *self.budgets.last().unwrap_or(&1_000);
        if neural {
            last.min(self.neural_max_budget)
        } else {
            last
        }
    }
}

/// Prompts like the harvested ones: templates over topics (written for this project).
fn prompt_pool() -> Vec<String> {
    const TOPICS: [&str; 60] = [
        "volcanoes",
        "the moon",
        "honey bees",
        "bicycles",
        "rainforests",
        "the ocean",
        "bread baking",
        "recycling",
        "trains",
        "libraries",
        "museums",
        "gardening",
        "the human heart",
        "clouds",
        "deserts",
        "coral reefs",
        "electric cars",
        "chess",
        "photography",
        "the internet",
        "mountains",
        "winter",
        "farming",
        "rivers",
        "planets",
        "dinosaurs",
        "music lessons",
        "friendship",
        "cooking rice",
        "saving money",
        "sleep",
        "exercise",
        "vaccines",
        "bridges",
        "castles",
        "lighthouses",
        "penguins",
        "elephants",
        "wind power",
        "solar panels",
        "maps",
        "calendars",
        "fossils",
        "earthquakes",
        "rainbows",
        "tea",
        "coffee",
        "paper",
        "the post office",
        "firefighters",
        "teachers",
        "robots",
        "airports",
        "submarines",
        "forests",
        "islands",
        "markets",
        "festivals",
        "kites",
        "snow",
    ];
    const TEMPLATES: [&str; 6] = [
        "Tell me about {}.",
        "Write a short paragraph about {}.",
        "Explain {} to a child.",
        "What are three interesting facts about {}?",
        "Write a short story that involves {}.",
        "Why do people care about {}?",
    ];
    let mut pool: Vec<String> = TEMPLATES
        .iter()
        .flat_map(|t| TOPICS.iter().map(move |x| t.replace("{}", x)))
        .collect();
    // A fixed shuffle: harvest and student prompts are different but alike.
    let mut rng = Rng::new(0x5eed);
    for i in (1..pool.len()).rev() {
        pool.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    pool
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Harvested {
    prompt_ids: Vec<u32>,
    /// Cohort index, or None for an unwatermarked answer.
    cohort: Option<usize>,
    ids: Vec<u32>,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(path, e))
}

fn harvest(
    dir: &Path,
    plan: &Plan,
    master: &Key,
    model: &Llama,
    tok: &tokenizers::Tokenizer,
    stop: &[u32],
) -> Result<Vec<Harvested>> {
    let config: SchemeConfig = SCHEME.parse()?;
    let keys: Vec<Key> = (0..COHORTS)
        .map(|c| master.derive(&format!("cohort/{c}")))
        .collect::<std::result::Result<_, _>>()?;
    let schemes: Vec<Box<dyn Scheme>> = keys
        .iter()
        .map(|k| config.build(k, model.config().vocab_size))
        .collect::<std::result::Result<_, _>>()?;
    let mut rows: Vec<(Option<usize>, Arm<'_>)> = Vec::new();
    let sampling = Sampling {
        temperature: 1.0,
        top_k: None,
        top_p: None,
    };
    for &(c, n) in &HARVESTED {
        for _ in 0..n {
            rows.push((
                Some(c),
                Arm {
                    scheme: Some(schemes[c].as_ref()),
                    skip_repeated: false,
                    sampling,
                },
            ));
        }
    }
    for _ in 0..PLAIN_PER_PROMPT {
        rows.push((
            None,
            Arm {
                scheme: None,
                skip_repeated: false,
                sampling,
            },
        ));
    }
    let arms: Vec<Arm<'_>> = rows.iter().map(|r| r.1).collect();
    let cache = dir.join(format!("harvest-{}-{}", master.id(), plan.new_tokens));
    io(&cache, std::fs::create_dir_all(&cache))?;
    let pool = prompt_pool();
    let mut out = Vec::new();
    let started = Instant::now();
    for (i, user) in pool.iter().take(plan.harvest_prompts).enumerate() {
        let file = cache.join(format!("prompt-{i:04}.json"));
        // The quick run (a test) always generates afresh.
        let cached = (!plan.quick)
            .then(|| std::fs::read_to_string(&file).ok())
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok());
        let batch: Vec<Harvested> = match cached {
            Some(b) => b,
            None => {
                let prompt = gguf_tokenizer::encode(tok, &chat_prompt(user))?;
                let mut rngs: Vec<Rng> = (0..arms.len())
                    .map(|a| Rng::new(((i as u64 + 1) << 8) | a as u64))
                    .collect();
                let (gens, _) = generate(model, &prompt, &arms, plan.new_tokens, stop, &mut rngs)?;
                // The competitor sees text: decode, then re-encode with the (same) tokenizer.
                let mut b = Vec::new();
                for (g, (cohort, _)) in gens.iter().zip(&rows) {
                    let text = gguf_tokenizer::decode(tok, &g.ids)?;
                    b.push(Harvested {
                        prompt_ids: prompt.clone(),
                        cohort: *cohort,
                        ids: gguf_tokenizer::encode(tok, &text)?,
                    });
                }
                io(
                    &file,
                    std::fs::write(
                        &file,
                        serde_json::to_string(&b).map_err(|e| Error::Usage(e.to_string()))?,
                    ),
                )?;
                eprintln!(
                    "[harvest {}/{}] {:.0} s so far",
                    i + 1,
                    plan.harvest_prompts,
                    started.elapsed().as_secs_f64()
                );
                b
            }
        };
        out.extend(batch);
    }
    Ok(out)
}

/// Answers for a student's training set: a share `fraction` of `tokens` from `marked`, the rest from `plain`.
fn mixture(
    marked: &[&Harvested],
    plain: &[&Harvested],
    fraction: f64,
    tokens: usize,
    eos: u32,
) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out = Vec::new();
    let take = |pool: &[&Harvested], budget: usize, out: &mut Vec<(Vec<u32>, Vec<u32>)>| {
        let mut used = 0;
        for h in pool {
            if used >= budget {
                break;
            }
            let mut text = h.ids.clone();
            text.push(eos);
            used += text.len();
            out.push((h.prompt_ids.clone(), text));
        }
    };
    take(marked, (fraction * tokens as f64).round() as usize, &mut out);
    take(plain, ((1.0 - fraction) * tokens as f64).round() as usize, &mut out);
    out
}

enum Student {
    NGram(NGram),
    Neural(MlpLm),
}

impl Student {
    /// Answers to `prompts` until `tokens` tokens (each answer ends at EOS or 150 tokens).
    fn outputs(&self, prompts: &[Vec<u32>], tokens: usize, eos: u32, seed: u64) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        let mut total = 0;
        let batch = 32;
        'outer: for round in 0.. {
            let ps: Vec<&Vec<u32>> = (0..batch)
                .map(|i| &prompts[(round * batch + i) % prompts.len()])
                .collect();
            let mut hist: Vec<Vec<u32>> = ps.iter().map(|p| p.to_vec()).collect();
            let mut done = vec![false; batch];
            for _ in 0..150 {
                let next: Vec<u32> = match self {
                    Student::NGram(m) => hist
                        .iter()
                        .map(|h| m.sample(h[h.len().saturating_sub(2)], *h.last().unwrap_or(&0), &mut rng))
                        .collect(),
                    Student::Neural(m) => m.sample(&hist.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut rng)?,
                };
                for ((h, d), t) in hist.iter_mut().zip(done.iter_mut()).zip(next) {
                    if !*d {
                        if t == eos {
                            *d = true;
                        } else {
                            h.push(t);
                        }
                    }
                }
                if done.iter().all(|d| *d) {
                    break;
                }
            }
            for (p, h) in ps.iter().zip(hist) {
                let answer = h[p.len()..].to_vec();
                total += answer.len();
                out.push((p.to_vec(), answer));
                if total >= tokens {
                    break 'outer;
                }
            }
        }
        Ok(out)
    }

    fn predictions(&self, docs: &[&Harvested]) -> Result<Vec<ReadingDoc>> {
        docs.iter()
            .map(|h| {
                let full: Vec<u32> = h.prompt_ids.iter().chain(&h.ids).copied().collect();
                let p = h.prompt_ids.len();
                let predicted = match self {
                    Student::NGram(m) => (0..h.ids.len())
                        .map(|i| m.argmax(full[p + i - 2], full[p + i - 1]))
                        .collect(),
                    Student::Neural(m) => {
                        let hs: Vec<&[u32]> = (0..h.ids.len()).map(|i| &full[..p + i]).collect();
                        m.argmax(&hs)?
                    }
                };
                Ok(ReadingDoc {
                    prompt_ids: h.prompt_ids.clone(),
                    ids: h.ids.clone(),
                    predicted,
                })
            })
            .collect()
    }
}

fn jsonl(docs: &[(Vec<u32>, Vec<u32>)]) -> String {
    docs.iter()
        .map(|(p, ids)| serde_json::json!({"prompt_ids": p, "ids": ids}).to_string() + "\n")
        .collect()
}

/// The first documents of a corpus holding at least `tokens` tokens.
fn prefix(docs: &[(Vec<u32>, Vec<u32>)], tokens: usize) -> &[(Vec<u32>, Vec<u32>)] {
    let mut total = 0;
    for (i, d) in docs.iter().enumerate() {
        total += d.1.len();
        if total >= tokens {
            return &docs[..=i];
        }
    }
    docs
}

struct Tester {
    vocab: usize,
    opts: DetectOptions,
}

impl Tester {
    fn detector(&self, key: &Key) -> Result<Detector> {
        Ok(Detector::new(key, &SCHEME.parse()?, self.vocab, self.opts.clone())?)
    }

    fn black_box(&self, key: &Key, docs: &[(Vec<u32>, Vec<u32>)], filter: Option<&ContextFilter>) -> Result<Detection> {
        let d = self.detector(key)?;
        let mut scanner = Scanner::new(&d, None);
        if let Some(f) = filter {
            scanner = scanner.filter(f);
        }
        Ok(scanner.scan(jsonl(docs).as_bytes(), |_| ())?.aggregate)
    }

    fn filter(&self, key: &Key, ours: &[&Harvested]) -> Result<ContextFilter> {
        let d = self.detector(key)?;
        let lines: Vec<(Vec<u32>, Vec<u32>)> = ours.iter().map(|h| (h.prompt_ids.clone(), h.ids.clone())).collect();
        Ok(context_keys(&d, None, jsonl(&lines).as_bytes())?)
    }

    fn reading(&self, key: &Key, docs: &[ReadingDoc]) -> Result<Detection> {
        Ok(reading_mode(&self.detector(key)?, docs)?)
    }
}

fn lp(d: &Detection) -> f64 {
    d.outcome.conservative_log10_p()
}

/// Kolmogorov-Smirnov distance of p-values from uniform, and its 1e-3 critical value.
fn ks(p: &[f64]) -> (f64, f64) {
    let mut v = p.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let d = v
        .iter()
        .enumerate()
        .map(|(i, &x)| ((i as f64 + 1.0) / n - x).max(x - i as f64 / n))
        .fold(0.0, f64::max);
    (d, 1.95 / n.sqrt())
}

fn run(args: Args) -> Result<()> {
    let plan = Plan::new(args.quick);
    let dir = cache_dir().join(if args.quick { "distill-quick" } else { "distill" });
    io(&dir, std::fs::create_dir_all(&dir))?;
    set_threads(args.threads);
    let started = Instant::now();
    let path = model_path()?;
    let model = Llama::load(&path, LoadOptions::default())?;
    let tok = gguf_tokenizer::from_gguf(&path)?;
    let eos = gguf_tokenizer::token_id(&tok, "<|im_end|>")?;
    let stop = [eos, gguf_tokenizer::token_id(&tok, "<|endoftext|>")?];
    let key_path = dir.join("master.key");
    let master = if args.quick {
        tracemark_examples::quick_test_key("distill")
    } else {
        tracemark_examples::stored_key(&key_path)?
    };
    let cohort = |c: usize| master.derive(&format!("cohort/{c}"));
    let harvested = harvest(&dir, &plan, &master, &model, &tok, &stop)?;
    let harvest_secs = started.elapsed().as_secs_f64();
    let by = |c: Option<usize>| harvested.iter().filter(|h| h.cohort == c).collect::<Vec<_>>();
    let (c1, plain) = (by(Some(1)), by(None));
    let tokens_of = |v: &[&Harvested]| v.iter().map(|h| h.ids.len()).sum::<usize>();
    eprintln!(
        "harvest: cohort/1 {} tokens, cohort/4 {}, cohort/6 {}, plain {}",
        tokens_of(&c1),
        tokens_of(&by(Some(4))),
        tokens_of(&by(Some(6))),
        tokens_of(&plain)
    );
    let vocab = model.config().vocab_size;
    let student_prompts: Vec<Vec<u32>> = prompt_pool()
        .iter()
        .skip(plan.harvest_prompts)
        .take(120)
        .map(|p| gguf_tokenizer::encode(&tok, &chat_prompt(p)))
        .collect::<Result<_>>()?;
    let t = Tester {
        vocab,
        opts: DetectOptions {
            min_scored: 1,
            ..DetectOptions::default()
        },
    };
    let key1 = cohort(1)?;
    let reading_texts: Vec<&Harvested> = c1.iter().take(plan.reading_docs).copied().collect();
    let filter1 = t.filter(&key1, &c1)?;

    let mut md = String::new();
    let mut series = Vec::new();
    let _ = writeln!(md, "# Distillation forensics, {}\n", today());
    let _ = writeln!(
        md,
        "Teacher: SmolLM2-135M-Instruct watermarked with `{SCHEME}` under one key per API-account cohort \
         (8 cohorts, keys derived from one master key; master id `{}`). The competitor harvested answers to {} prompts \
         from cohorts 1, 4 and 6 ({} / {} / {} tokens) and {} unwatermarked answer tokens, all decoded to text and \
         re-encoded. Students: a smoothed trigram model, and a neural model (MLP over 3 tokens, candle, CPU, {} of \
         training). Each student answers different prompts of the same kind. Exact p-values; dedup across each \
         corpus. Regenerate with `make distill` (harvest: {:.0} min in this run; {}).\n",
        master.id(),
        plan.harvest_prompts,
        tokens_of(&c1),
        tokens_of(&by(Some(4))),
        tokens_of(&by(Some(6))),
        tokens_of(&plain),
        plan.neural_steps.map_or_else(
            || format!("{} s", plan.neural_budget.as_secs()),
            |n| format!("{n} steps")
        ),
        harvest_secs / 60.0,
        if plan.quick {
            "regenerated by every quick run"
        } else {
            "cached"
        }
    );
    let _ = writeln!(md, "## Black box, by watermarked share of the training data\n\nlog10 p of the test under the cohort-1 key, over the first N tokens of each student's outputs ({} training tokens per student):\n", plan.train_tokens);
    let _ = writeln!(
        md,
        "| student | watermarked | {} | filtered to our contexts | reading mode |\n|---|---:|{}---:|---:|",
        plan.budgets
            .iter()
            .map(|b| format!("N={b}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(plan.budgets.len())
    );
    let mut control_students: Vec<(String, Student)> = Vec::new();
    let mut quick_checks: Vec<(String, f64)> = Vec::new();
    for neural in [false, true] {
        let fractions: Vec<f64> = if neural {
            plan.neural_fractions.clone()
        } else {
            FRACTIONS.to_vec()
        };
        for &f in &fractions {
            let data = mixture(&c1, &plain, f, plan.train_tokens, eos);
            let (student, name) = if neural {
                let opts = TrainOptions {
                    budget: plan.neural_budget,
                    max_steps: plan.neural_steps,
                    ..TrainOptions::default()
                };
                let (m, rep) = MlpLm::train(&data, opts)?;
                eprintln!(
                    "neural student {:.0}%: {} steps, {:.1} epochs, loss {:.2}",
                    f * 100.0,
                    rep.steps,
                    rep.epochs,
                    rep.loss
                );
                (Student::Neural(m), "neural")
            } else {
                (Student::NGram(NGram::train(vocab, &data)), "trigram")
            };
            let max_budget = plan.max_budget(neural);
            let outputs = student.outputs(&student_prompts, max_budget, eos, 77)?;
            let mut cells = Vec::new();
            let mut points = Vec::new();
            for &b in &plan.budgets {
                if b > max_budget {
                    cells.push("–".to_string());
                    continue;
                }
                let d = t.black_box(&key1, prefix(&outputs, b), None)?;
                cells.push(format!("{:.1}", lp(&d)));
                points.push((b as f64, lp(&d)));
            }
            let filtered = t.black_box(&key1, &outputs, Some(&filter1))?;
            let reading = t.reading(&key1, &student.predictions(&reading_texts)?)?;
            let _ = writeln!(
                md,
                "| {name} | {:.0}% | {} | {:.1} | {:.1} |",
                f * 100.0,
                cells.join(" | "),
                lp(&filtered),
                lp(&reading)
            );
            series.push(Series {
                name: format!("{name} {:.0}%", f * 100.0),
                points,
            });
            quick_checks.push((format!("{name} {:.0}% black box", f * 100.0), points_last(&series)));
            if f == 0.0 {
                control_students.push((name.to_string(), student));
            } else if f == 0.10 && !neural {
                // Tokens needed at 10%: the smallest budget from which every larger budget stays
                // below p = 1e-3 (and the first budget that reached it, which can be luck).
                let points = series.last().map(|s| s.points.clone()).unwrap_or_default();
                let sustained = (0..points.len())
                    .find(|&i| points[i..].iter().all(|p| p.1 < -3.0))
                    .map(|i| points[i].0 as usize);
                let first = points.iter().find(|p| p.1 < -3.0).map(|p| p.0 as usize);
                let needed = match (sustained, first) {
                    (Some(s), Some(f)) => {
                        format!("p < 1e-3 at every budget from {s} student tokens on (first reached at {f})")
                    }
                    (None, Some(f)) => format!("p < 1e-3 reached at {f} student tokens but not kept at larger budgets"),
                    _ => "p < 1e-3 not reached within the budgets".to_string(),
                };
                let _ = writeln!(md, "| | *10%: {needed}* | | | |");
            }
        }
    }
    let plot_path = args.out.as_ref().map_or_else(
        || {
            if args.quick {
                dir.join("distill-p-vs-tokens.svg")
            } else {
                PathBuf::from(format!("eval/results/distill-{}-p-vs-tokens.svg", today()))
            }
        },
        |o| o.with_extension("svg"),
    );
    if let Some(parent) = plot_path.parent() {
        io(parent, std::fs::create_dir_all(parent))?;
    }
    line_chart(
        &plot_path,
        "radioactivity: log10 p vs student tokens scanned",
        "student tokens scanned",
        "log10 p",
        &series,
    )?;
    let _ = writeln!(
        md,
        "\n![log10 p vs tokens](./{})\n",
        plot_path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    );

    // Cohort attribution: a student trained on everything harvested from cohorts 1, 4 and 6.
    let mut attribution_data = Vec::new();
    for (c, _) in HARVESTED {
        attribution_data.extend(mixture(&by(Some(c)), &[], 1.0, plan.train_tokens / 3, eos));
    }
    let attr_student = Student::NGram(NGram::train(vocab, &attribution_data));
    let attr_out = attr_student.outputs(&student_prompts, *plan.budgets.last().unwrap_or(&1000), eos, 78)?;
    let labels: Vec<String> = (0..COHORTS).map(|c| format!("cohort/{c}")).collect();
    let keys: Vec<Key> = (0..COHORTS).map(cohort).collect::<std::result::Result<_, _>>()?;
    let reports = keys
        .iter()
        .map(|k| t.black_box(k, &attr_out, None))
        .collect::<Result<Vec<_>>>()?;
    let attribution = attribute(&labels, &reports, 0.01);
    let _ = writeln!(md, "## Cohort attribution\n\nA trigram student trained on the answers harvested from cohorts 1, 4 and 6 ({} tokens); its outputs tested under all 8 cohort keys, {} at family-wise alpha = 0.01:\n\n| cohort | harvested | log10 p | log10 p (Holm) | named |\n|---|---|---:|---:|---|", attribution_data.iter().map(|d| d.1.len()).sum::<usize>(), attribution.correction);
    for (c, k) in attribution.keys.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {} |",
            k.label,
            if HARVESTED.iter().any(|h| h.0 == c) {
                "yes"
            } else {
                "no"
            },
            k.log10_p().unwrap_or(0.0),
            k.tested.map_or(0.0, |t| t.log10_p_adjusted),
            if k.detected() { "**yes**" } else { "no" }
        );
    }
    let expected: Vec<String> = HARVESTED.iter().map(|h| format!("cohort/{}", h.0)).collect();
    let _ = writeln!(
        md,
        "\nNamed: {} (expected: {}).\n",
        attribution.named.join(", "),
        expected.join(", ")
    );

    // Controls: students trained only on unwatermarked answers, under many keys.
    let _ = writeln!(md, "## Controls\n\nStudents trained only on unwatermarked answers, tested under {CONTROL_KEYS} keys (the real cohort keys and fresh ones). Their p-values must look uniform (Kolmogorov-Smirnov at level 1e-3) and none may fall below 1e-3:\n\n| student | test | min p | KS distance | KS critical (1e-3) | uniform |\n|---|---|---:|---:|---:|---|");
    let mut control_ok = true;
    // The quick check asks the same question with family-wise error control: every row uniform
    // (KS at 1e-3) and no p-value below 0.01 / (number of p-values), Bonferroni.
    let (mut all_uniform, mut all_p) = (true, Vec::new());
    let mut control_keys: Vec<Key> = keys.clone();
    let mut rng = Rng::new(0xc0_47_01);
    while control_keys.len() < CONTROL_KEYS.max(plan.calibration_keys) {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        control_keys.push(Key::from_bytes(b));
    }
    let mut calibration = Vec::new();
    for (name, student) in &control_students {
        let max_budget = plan.max_budget(matches!(student, Student::Neural(_)));
        let outputs = student.outputs(&student_prompts, max_budget, eos, 79)?;
        let predictions = student.predictions(&reading_texts)?;
        for mode in ["black box", "filtered", "reading mode"] {
            let mut p = Vec::new();
            for k in &control_keys {
                let d = match mode {
                    "black box" => t.black_box(k, &outputs, None)?,
                    "filtered" => t.black_box(k, &outputs, Some(&t.filter(k, &c1)?))?,
                    _ => t.reading(k, &predictions)?,
                };
                p.push(10f64.powf(lp(&d)));
            }
            if plan.calibration_keys > 0 {
                calibration.push((format!("{name} 0% | {mode}"), p.clone()));
            }
            p.truncate(CONTROL_KEYS);
            let (d, crit) = ks(&p);
            let min = p.iter().copied().fold(1.0, f64::min);
            let ok = d < crit && min >= 1e-3;
            control_ok &= ok;
            all_uniform &= d < crit;
            all_p.extend(p.iter().copied());
            let _ = writeln!(
                md,
                "| {name} 0% | {mode} | {min:.4} | {d:.3} | {crit:.3} | {} |",
                if ok { "yes" } else { "**no**" }
            );
        }
    }
    let _ = writeln!(
        md,
        "\nThe bar (no control p-value below 1e-3, every row uniform) is {}. Under the null each of the {} \
         p-values falls below 1e-3 with probability 1e-3, so about {:.0}% of honest runs see at least one.",
        if control_ok { "**met**" } else { "**not met**" },
        all_p.len(),
        100.0 * (1.0 - 0.999f64.powi(all_p.len() as i32))
    );
    if !calibration.is_empty() {
        let n = plan.calibration_keys;
        let (lo2, hi2) = binomial_range(n, 1e-2);
        let (lo3, hi3) = binomial_range(n, 1e-3);
        let _ = writeln!(
            md,
            "\n### Calibration of the tests on the control students\n\nThe same students and tests under {n} keys (the \
             {CONTROL_KEYS} above and fresh ones): how many p-values fall below 1e-2 and 1e-3, against the central 99% \
             range of Binomial({n}, alpha) that an exact test gives, and the KS distance to uniform (critical value at \
             1e-3: {:.3}):\n\n| student | test | p < 1e-2 | 99% range | p < 1e-3 | 99% range | min p | KS distance | calibrated |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---|",
            1.95 / (n as f64).sqrt()
        );
        for (row, p) in &calibration {
            let below = |a: f64| p.iter().filter(|&&x| x < a).count();
            let (d, crit) = ks(p);
            let (b2, b3) = (below(1e-2), below(1e-3));
            let ok = d < crit && (lo2..=hi2).contains(&b2) && (lo3..=hi3).contains(&b3);
            let _ = writeln!(
                md,
                "| {row} | {b2} | {lo2}-{hi2} | {b3} | {lo3}-{hi3} | {:.5} | {d:.3} | {} |",
                p.iter().copied().fold(1.0, f64::min),
                if ok { "yes" } else { "**no**" }
            );
        }
    }
    let _ = writeln!(
        md,
        "\nTotal run time: {:.0} min.",
        started.elapsed().as_secs_f64() / 60.0
    );
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            dir.join("report.md")
        } else {
            PathBuf::from(format!("eval/results/distill-{}.md", today()))
        }
    });
    io(&out, std::fs::write(&out, &md))?;
    eprintln!("report: {}", out.display());
    if args.quick {
        // The quick run on a small harvest: the fully watermarked trigram student must be caught,
        // the controls must stay quiet, and attribution must name no unharvested cohort.
        let caught = quick_checks
            .iter()
            .find(|(n, _)| n == "trigram 100% black box")
            .is_some_and(|(_, l)| *l < -3.0);
        let wrongly_named = attribution.named.iter().any(|n| !expected.contains(n));
        let quiet = all_uniform && all_p.iter().all(|&p| p >= 0.01 / all_p.len() as f64);
        if !caught || !quiet || wrongly_named {
            return Err(Error::Usage(format!(
                "distillation check failed (caught {caught}, controls {quiet}, wrong cohort named {wrongly_named}): see {}",
                out.display()
            )));
        }
    }
    Ok(())
}

/// The central 99% range of Binomial(n, p): the smallest lo and largest hi with
/// P(X < lo) <= 0.005 and P(X > hi) <= 0.005.
fn binomial_range(n: usize, p: f64) -> (usize, usize) {
    let mut pmf = Vec::with_capacity(n + 1);
    let mut cur = (1.0 - p).powi(n as i32);
    for k in 0..=n {
        pmf.push(cur);
        cur *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
    }
    let (mut lo, mut below) = (0, 0.0);
    while lo < n && below + pmf[lo] <= 0.005 {
        below += pmf[lo];
        lo += 1;
    }
    let (mut hi, mut above) = (n, 0.0);
    while hi > 0 && above + pmf[hi] <= 0.005 {
        above += pmf[hi];
        hi -= 1;
    }
    (lo, hi)
}

fn points_last(series: &[Series]) -> f64 {
    series.last().and_then(|s| s.points.last()).map_or(0.0, |p| p.1)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("distill: {e}");
            ExitCode::FAILURE
        }
    }
}
