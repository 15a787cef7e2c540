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
//!
//! The run is a sequence of stages with typed results: [`harvest`], then
//! [`student_rows`] (the black-box table), [`attribution`], [`controls`];
//! [`report`] writes them down and [`QuickChecks`] judges the quick run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};
use tracemark_candle::{
    answers, chat_prompt, generate, gguf_tokenizer, reading_doc, set_threads, Answer, Arm, Llama, LoadOptions, MlpLm,
    NGram, Rng, Sampling, Student, TrainOptions,
};
use tracemark_core::{Key, Scheme, SchemeConfig};
use tracemark_lab::plot::{line_chart, Series};
use tracemark_lab::{cache_dir, io, model_path, today, Error, Result};
use tracemark_verifier::stats::{binomial_central_range, ks_uniform};
use tracemark_verifier::{
    attribute, reading_mode, Attribution, ContextFilter, DetectOptions, Detection, Detector, Document, ReadingDoc,
    Scanner,
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

/// The sizes of a run.
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
        let full = Plan {
            quick,
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
        };
        if !quick {
            return full;
        }
        Plan {
            harvest_prompts: 8,
            new_tokens: 48,
            train_tokens: 1_000,
            budgets: vec![500, 1_000, 3_000],
            neural_max_budget: 3_000,
            neural_fractions: vec![0.0, 1.0],
            // The step limit alone decides, so that the quick run (a test) does not
            // depend on the machine's load: a time budget once cut it to 287 steps.
            neural_budget: Duration::MAX,
            neural_steps: Some(600),
            calibration_keys: 0,
            reading_docs: 10,
            ..full
        }
    }

    fn last_budget(&self) -> usize {
        *self.budgets.last().unwrap_or(&1_000)
    }

    /// Student tokens generated for the black-box tests.
    fn max_budget(&self, kind: StudentKind) -> usize {
        match kind {
            StudentKind::Trigram => self.last_budget(),
            StudentKind::Neural => self.last_budget().min(self.neural_max_budget),
        }
    }
}

/// The two kinds of student.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StudentKind {
    Trigram,
    Neural,
}

impl StudentKind {
    fn name(self) -> &'static str {
        match self {
            Self::Trigram => "trigram",
            Self::Neural => "neural",
        }
    }
}

/// How a suspect student is tested for radioactivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TestMode {
    /// Its outputs, scored under our key.
    BlackBox,
    /// Its outputs, scored only at contexts that occur in our watermarked answers.
    Filtered,
    /// Its next-token predictions on our watermarked answers.
    Reading,
}

impl TestMode {
    const ALL: [TestMode; 3] = [Self::BlackBox, Self::Filtered, Self::Reading];

    fn label(self) -> &'static str {
        match self {
            Self::BlackBox => "black box",
            Self::Filtered => "filtered",
            Self::Reading => "reading mode",
        }
    }
}

/// One harvested answer: the experiment's document (cached as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Harvested {
    prompt_ids: Vec<u32>,
    /// Cohort index, or None for an unwatermarked answer.
    cohort: Option<usize>,
    ids: Vec<u32>,
}

impl Harvested {
    fn document(&self) -> Document {
        Document::ids(self.prompt_ids.clone(), self.ids.clone())
    }
}

fn tokens_of(docs: &[&Harvested]) -> usize {
    docs.iter().map(|h| h.ids.len()).sum()
}

/// Prompts like the harvested ones: templates over topics (written for this project).
fn prompt_pool() -> Vec<String> {
    const TEMPLATES: [&str; 6] = [
        "Tell me about {}.",
        "Write a short paragraph about {}.",
        "Explain {} to a child.",
        "What are three interesting facts about {}?",
        "Write a short story that involves {}.",
        "Why do people care about {}?",
    ];
    let topics: Vec<&str> = include_str!("../../data/distill-topics.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut pool: Vec<String> = TEMPLATES
        .iter()
        .flat_map(|t| topics.iter().map(move |x| t.replace("{}", x)))
        .collect();
    // A fixed shuffle: harvest and student prompts are different but alike.
    let mut rng = Rng::new(0x5eed);
    for i in (1..pool.len()).rev() {
        pool.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    pool
}

/// Stage 1: the teacher answers the harvest prompts for the harvested cohorts and unwatermarked.
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
    fn arm(scheme: Option<&dyn Scheme>) -> Arm<'_> {
        Arm {
            scheme,
            skip_repeated: false,
            sampling: Sampling::default(),
        }
    }
    let mut rows: Vec<(Option<usize>, Arm<'_>)> = Vec::new();
    for &(c, n) in &HARVESTED {
        rows.extend((0..n).map(|_| (Some(c), arm(Some(schemes[c].as_ref())))));
    }
    rows.extend((0..PLAIN_PER_PROMPT).map(|_| (None, arm(None))));
    let arms: Vec<Arm<'_>> = rows.iter().map(|r| r.1).collect();
    let cache = dir.join(format!("harvest-{}-{}", master.id(), plan.new_tokens));
    io(&cache, std::fs::create_dir_all(&cache))?;
    let mut out = Vec::new();
    let started = Instant::now();
    for (i, user) in prompt_pool().iter().take(plan.harvest_prompts).enumerate() {
        let file = cache.join(format!("prompt-{i:04}.json"));
        // The quick run (a test) always generates afresh.
        let cached = (!plan.quick)
            .then(|| std::fs::read_to_string(&file).ok())
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(batch) = cached {
            out.extend::<Vec<Harvested>>(batch);
            continue;
        }
        let prompt = gguf_tokenizer::encode(tok, &chat_prompt(user))?;
        let mut rngs: Vec<Rng> = (0..arms.len())
            .map(|a| Rng::new(((i as u64 + 1) << 8) | a as u64))
            .collect();
        let (gens, _) = generate(model, &prompt, &arms, plan.new_tokens, stop, &mut rngs)?;
        // The competitor sees text: decode, then re-encode with the (same) tokenizer.
        let mut batch = Vec::new();
        for (g, (cohort, _)) in gens.iter().zip(&rows) {
            let text = gguf_tokenizer::decode(tok, &g.ids)?;
            batch.push(Harvested {
                prompt_ids: prompt.clone(),
                cohort: *cohort,
                ids: gguf_tokenizer::encode(tok, &text)?,
            });
        }
        let json = serde_json::to_string(&batch).map_err(|e| Error::Usage(e.to_string()))?;
        io(&file, std::fs::write(&file, json))?;
        eprintln!(
            "[harvest {}/{}] {:.0} s so far",
            i + 1,
            plan.harvest_prompts,
            started.elapsed().as_secs_f64()
        );
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

/// The first answers of a student's outputs holding at least `tokens` tokens.
fn prefix(docs: &[Answer], tokens: usize) -> &[Answer] {
    let mut total = 0;
    for (i, d) in docs.iter().enumerate() {
        total += d.ids.len();
        if total >= tokens {
            return &docs[..=i];
        }
    }
    docs
}

/// What a student leaves for the tests: its outputs (black box) and its
/// predictions on our watermarked texts (reading mode).
struct Evidence {
    outputs: Vec<Answer>,
    predictions: Vec<ReadingDoc>,
}

/// The common ground of every test: the setup, our watermarked texts, the student prompts.
struct Lab<'a> {
    plan: &'a Plan,
    vocab: usize,
    eos: u32,
    opts: DetectOptions,
    /// Our cohort-1 answers: the filter's contexts.
    ours: Vec<&'a Harvested>,
    /// Our texts the students read (reading mode).
    reading_texts: Vec<&'a Harvested>,
    student_prompts: Vec<Vec<u32>>,
}

impl Lab<'_> {
    fn detector(&self, key: &Key) -> Result<Detector> {
        Ok(Detector::new(key, &SCHEME.parse()?, self.vocab, self.opts.clone())?)
    }

    fn evidence(&self, kind: StudentKind, student: &dyn Student, seed: u64) -> Result<Evidence> {
        let outputs = answers(
            student,
            &self.student_prompts,
            self.plan.max_budget(kind),
            self.eos,
            seed,
        )?;
        let predictions = self
            .reading_texts
            .iter()
            .map(|h| reading_doc(student, &h.prompt_ids, &h.ids))
            .collect::<tracemark_candle::Result<_>>()?;
        Ok(Evidence { outputs, predictions })
    }

    fn black_box(&self, key: &Key, outputs: &[Answer], filter: Option<&ContextFilter>) -> Result<Detection> {
        let d = self.detector(key)?;
        let mut scanner = Scanner::new(&d, None);
        if let Some(f) = filter {
            scanner = scanner.filter(f);
        }
        let docs = outputs.iter().map(|a| Document::ids(a.prompt.clone(), a.ids.clone()));
        Ok(scanner.scan_documents(docs, |_| ())?.aggregate)
    }

    fn test(&self, mode: TestMode, key: &Key, evidence: &Evidence) -> Result<Detection> {
        match mode {
            TestMode::BlackBox => self.black_box(key, &evidence.outputs, None),
            TestMode::Filtered => {
                let filter =
                    ContextFilter::from_documents(&self.detector(key)?, None, self.ours.iter().map(|h| h.document()))?;
                self.black_box(key, &evidence.outputs, Some(&filter))
            }
            TestMode::Reading => Ok(reading_mode(&self.detector(key)?, &evidence.predictions)?),
        }
    }
}

fn lp(d: &Detection) -> f64 {
    d.outcome.conservative_log10_p()
}

/// A student trained on a share of watermarked answers, and its test results under the cohort-1 key.
struct StudentRow {
    kind: StudentKind,
    fraction: f64,
    /// log10 p of the black-box test per budget of the plan (None: beyond what this student generated).
    black_box: Vec<Option<f64>>,
    filtered: f64,
    reading: f64,
}

impl StudentRow {
    fn label(&self) -> String {
        format!("{} {:.0}%", self.kind.name(), self.fraction * 100.0)
    }

    fn points(&self, plan: &Plan) -> Vec<(f64, f64)> {
        plan.budgets
            .iter()
            .zip(&self.black_box)
            .filter_map(|(&b, l)| l.map(|l| (b as f64, l)))
            .collect()
    }
}

/// A trained student and its kind.
struct Trained {
    kind: StudentKind,
    model: Box<dyn Student>,
}

/// Stage 2: students trained on growing shares of watermarked answers, tested three ways.
/// Returns their rows and the students that saw no watermarked text (the controls).
fn student_rows(lab: &Lab<'_>, key1: &Key, plain: &[&Harvested]) -> Result<(Vec<StudentRow>, Vec<Trained>)> {
    let plan = lab.plan;
    let mut rows = Vec::new();
    let mut controls = Vec::new();
    for kind in [StudentKind::Trigram, StudentKind::Neural] {
        let fractions = match kind {
            StudentKind::Trigram => FRACTIONS.to_vec(),
            StudentKind::Neural => plan.neural_fractions.clone(),
        };
        for fraction in fractions {
            let data = mixture(&lab.ours, plain, fraction, plan.train_tokens, lab.eos);
            let student: Box<dyn Student> = match kind {
                StudentKind::Trigram => Box::new(NGram::train(lab.vocab, &data)),
                StudentKind::Neural => {
                    let opts = TrainOptions {
                        budget: plan.neural_budget,
                        max_steps: plan.neural_steps,
                        ..TrainOptions::default()
                    };
                    let (m, rep) = MlpLm::train(&data, opts)?;
                    eprintln!(
                        "neural student {:.0}%: {} steps, {:.1} epochs, loss {:.2}",
                        fraction * 100.0,
                        rep.steps,
                        rep.epochs,
                        rep.loss
                    );
                    Box::new(m)
                }
            };
            let ev = lab.evidence(kind, student.as_ref(), 77)?;
            let black_box = plan
                .budgets
                .iter()
                .map(|&b| {
                    (b <= plan.max_budget(kind))
                        .then(|| -> Result<f64> { Ok(lp(&lab.black_box(key1, prefix(&ev.outputs, b), None)?)) })
                        .transpose()
                })
                .collect::<Result<_>>()?;
            rows.push(StudentRow {
                kind,
                fraction,
                black_box,
                filtered: lp(&lab.test(TestMode::Filtered, key1, &ev)?),
                reading: lp(&lab.test(TestMode::Reading, key1, &ev)?),
            });
            if fraction == 0.0 {
                controls.push(Trained { kind, model: student });
            }
        }
    }
    Ok((rows, controls))
}

/// Tokens needed at 10%: the smallest budget from which every larger budget stays below
/// p = 1e-3 (and the first budget that reached it, which can be luck).
fn tokens_needed(points: &[(f64, f64)]) -> String {
    let sustained = (0..points.len())
        .find(|&i| points[i..].iter().all(|p| p.1 < -3.0))
        .map(|i| points[i].0 as usize);
    let first = points.iter().find(|p| p.1 < -3.0).map(|p| p.0 as usize);
    match (sustained, first) {
        (Some(s), Some(f)) => format!("p < 1e-3 at every budget from {s} student tokens on (first reached at {f})"),
        (None, Some(f)) => format!("p < 1e-3 reached at {f} student tokens but not kept at larger budgets"),
        _ => "p < 1e-3 not reached within the budgets".to_string(),
    }
}

/// Stage 3: a trigram student trained on everything harvested from cohorts 1, 4 and 6, tested
/// under all cohort keys. Returns the attribution and the training tokens.
fn attribution(lab: &Lab<'_>, keys: &[Key], harvested: &[Harvested]) -> Result<(Attribution, usize)> {
    let mut data = Vec::new();
    for (c, _) in HARVESTED {
        let from: Vec<&Harvested> = harvested.iter().filter(|h| h.cohort == Some(c)).collect();
        data.extend(mixture(&from, &[], 1.0, lab.plan.train_tokens / 3, lab.eos));
    }
    let student = NGram::train(lab.vocab, &data);
    let outputs = answers(&student, &lab.student_prompts, lab.plan.last_budget(), lab.eos, 78)?;
    let labels: Vec<String> = (0..COHORTS).map(|c| format!("cohort/{c}")).collect();
    let reports = keys
        .iter()
        .map(|k| lab.black_box(k, &outputs, None))
        .collect::<Result<Vec<_>>>()?;
    Ok((attribute(&labels, &reports, 0.01), data.iter().map(|d| d.1.len()).sum()))
}

/// One control student under one test mode: its p-values under every control key.
struct ControlRow {
    kind: StudentKind,
    mode: TestMode,
    p: Vec<f64>,
}

impl ControlRow {
    /// The table's verdict on the first `CONTROL_KEYS` p-values: (min p, KS distance, critical value).
    fn table(&self) -> (f64, f64, f64) {
        let p = &self.p[..CONTROL_KEYS.min(self.p.len())];
        let (d, crit) = ks_uniform(p);
        (p.iter().copied().fold(1.0, f64::min), d, crit)
    }

    fn ok(&self) -> bool {
        let (min, d, crit) = self.table();
        d < crit && min >= 1e-3
    }
}

/// Stage 4: the control students (no watermarked text seen) under the cohort keys and fresh ones.
fn controls(lab: &Lab<'_>, cohort_keys: &[Key], students: &[Trained]) -> Result<Vec<ControlRow>> {
    let mut keys = cohort_keys.to_vec();
    let mut rng = Rng::new(0xc0_47_01);
    while keys.len() < CONTROL_KEYS.max(lab.plan.calibration_keys) {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        keys.push(Key::from_bytes(b));
    }
    let mut rows = Vec::new();
    for Trained { kind, model } in students {
        let ev = lab.evidence(*kind, model.as_ref(), 79)?;
        for mode in TestMode::ALL {
            let p = keys
                .iter()
                .map(|k| -> Result<f64> { Ok(10f64.powf(lp(&lab.test(mode, k, &ev)?))) })
                .collect::<Result<_>>()?;
            rows.push(ControlRow { kind: *kind, mode, p });
        }
    }
    Ok(rows)
}

/// What the quick run requires: the fully watermarked trigram student caught, the controls
/// quiet (every row uniform, no p-value below 0.01 / their number: family-wise, Bonferroni),
/// and no unharvested cohort named.
struct QuickChecks {
    caught: bool,
    controls_quiet: bool,
    wrongly_named: bool,
}

impl QuickChecks {
    fn new(rows: &[StudentRow], controls: &[ControlRow], attribution: &Attribution, plan: &Plan) -> Self {
        let caught = rows
            .iter()
            .find(|r| r.kind == StudentKind::Trigram && r.fraction == 1.0)
            .and_then(|r| r.points(plan).last().map(|p| p.1))
            .is_some_and(|l| l < -3.0);
        let all_p: Vec<f64> = controls
            .iter()
            .flat_map(|c| c.p.iter().take(CONTROL_KEYS).copied())
            .collect();
        let uniform = controls.iter().all(|c| c.table().1 < c.table().2);
        let controls_quiet = uniform && all_p.iter().all(|&p| p >= 0.01 / all_p.len() as f64);
        let wrongly_named = attribution.named.iter().any(|n| !expected_cohorts().contains(n));
        Self {
            caught,
            controls_quiet,
            wrongly_named,
        }
    }

    fn passed(&self) -> bool {
        self.caught && self.controls_quiet && !self.wrongly_named
    }
}

fn expected_cohorts() -> Vec<String> {
    HARVESTED.iter().map(|h| format!("cohort/{}", h.0)).collect()
}

/// The results of every stage, for the report.
struct Results<'a> {
    plan: &'a Plan,
    master: &'a Key,
    tokens: [usize; 4],
    harvest_secs: f64,
    rows: Vec<StudentRow>,
    plot: PathBuf,
    attribution: Attribution,
    attribution_tokens: usize,
    controls: Vec<ControlRow>,
}

fn report(r: &Results<'_>, started: Instant) -> String {
    let plan = r.plan;
    let mut md = String::new();
    let _ = writeln!(md, "# Distillation forensics, {}\n", today());
    let _ = writeln!(
        md,
        "Teacher: SmolLM2-135M-Instruct watermarked with `{SCHEME}` under one key per API-account cohort \
         (8 cohorts, keys derived from one master key; master id `{}`). The competitor harvested answers to {} prompts \
         from cohorts 1, 4 and 6 ({} / {} / {} tokens) and {} unwatermarked answer tokens, all decoded to text and \
         re-encoded. Students: a smoothed trigram model, and a neural model (MLP over 3 tokens, candle, CPU, {} of \
         training). Each student answers different prompts of the same kind. Exact p-values; dedup across each \
         corpus. Regenerate with `make distill` (harvest: {:.0} min in this run; {}).\n",
        r.master.id(),
        plan.harvest_prompts,
        r.tokens[0],
        r.tokens[1],
        r.tokens[2],
        r.tokens[3],
        plan.neural_steps.map_or_else(
            || format!("{} s", plan.neural_budget.as_secs()),
            |n| format!("{n} steps")
        ),
        r.harvest_secs / 60.0,
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
    for row in &r.rows {
        let cells: Vec<String> = row
            .black_box
            .iter()
            .map(|l| l.map_or_else(|| "–".to_string(), |l| format!("{l:.1}")))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {:.0}% | {} | {:.1} | {:.1} |",
            row.kind.name(),
            row.fraction * 100.0,
            cells.join(" | "),
            row.filtered,
            row.reading
        );
        if row.kind == StudentKind::Trigram && row.fraction == 0.10 {
            let _ = writeln!(md, "| | *10%: {}* | | | |", tokens_needed(&row.points(plan)));
        }
    }
    let _ = writeln!(
        md,
        "\n![log10 p vs tokens](./{})\n",
        r.plot
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    );

    let attribution = &r.attribution;
    let _ = writeln!(md, "## Cohort attribution\n\nA trigram student trained on the answers harvested from cohorts 1, 4 and 6 ({} tokens); its outputs tested under all 8 cohort keys, {} at family-wise alpha = 0.01:\n\n| cohort | harvested | log10 p | log10 p (Holm) | named |\n|---|---|---:|---:|---|", r.attribution_tokens, attribution.correction);
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
    let _ = writeln!(
        md,
        "\nNamed: {} (expected: {}).\n",
        attribution.named.join(", "),
        expected_cohorts().join(", ")
    );

    let _ = writeln!(md, "## Controls\n\nStudents trained only on unwatermarked answers, tested under {CONTROL_KEYS} keys (the real cohort keys and fresh ones). Their p-values must look uniform (Kolmogorov-Smirnov at level 1e-3) and none may fall below 1e-3:\n\n| student | test | min p | KS distance | KS critical (1e-3) | uniform |\n|---|---|---:|---:|---:|---|");
    for c in &r.controls {
        let (min, d, crit) = c.table();
        let _ = writeln!(
            md,
            "| {} 0% | {} | {min:.4} | {d:.3} | {crit:.3} | {} |",
            c.kind.name(),
            c.mode.label(),
            if c.ok() { "yes" } else { "**no**" }
        );
    }
    let p_values = r.controls.iter().map(|c| c.p.len().min(CONTROL_KEYS)).sum::<usize>();
    let _ = writeln!(
        md,
        "\nThe bar (no control p-value below 1e-3, every row uniform) is {}. Under the null each of the {} \
         p-values falls below 1e-3 with probability 1e-3, so about {:.0}% of honest runs see at least one.",
        if r.controls.iter().all(ControlRow::ok) {
            "**met**"
        } else {
            "**not met**"
        },
        p_values,
        100.0 * (1.0 - 0.999f64.powi(p_values as i32))
    );
    if plan.calibration_keys > 0 && !r.controls.is_empty() {
        let n = plan.calibration_keys;
        let (lo2, hi2) = binomial_central_range(n as u64, 1e-2, 0.99);
        let (lo3, hi3) = binomial_central_range(n as u64, 1e-3, 0.99);
        let _ = writeln!(
            md,
            "\n### Calibration of the tests on the control students\n\nThe same students and tests under {n} keys (the \
             {CONTROL_KEYS} above and fresh ones): how many p-values fall below 1e-2 and 1e-3, against the central 99% \
             range of Binomial({n}, alpha) that an exact test gives, and the KS distance to uniform (critical value at \
             1e-3: {:.3}):\n\n| student | test | p < 1e-2 | 99% range | p < 1e-3 | 99% range | min p | KS distance | calibrated |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---|",
            1.95 / (n as f64).sqrt()
        );
        for c in &r.controls {
            let below = |a: f64| c.p.iter().filter(|&&x| x < a).count() as u64;
            let (d, crit) = ks_uniform(&c.p);
            let (b2, b3) = (below(1e-2), below(1e-3));
            let ok = d < crit && (lo2..=hi2).contains(&b2) && (lo3..=hi3).contains(&b3);
            let _ = writeln!(
                md,
                "| {} 0% | {} | {b2} | {lo2}-{hi2} | {b3} | {lo3}-{hi3} | {:.5} | {d:.3} | {} |",
                c.kind.name(),
                c.mode.label(),
                c.p.iter().copied().fold(1.0, f64::min),
                if ok { "yes" } else { "**no**" }
            );
        }
    }
    let _ = writeln!(
        md,
        "\nTotal run time: {:.0} min.",
        started.elapsed().as_secs_f64() / 60.0
    );
    md
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
    let master = if args.quick {
        tracemark_lab::quick_test_key("distill")
    } else {
        tracemark_lab::stored_key(&dir.join("master.key"))?
    };
    let harvested = harvest(&dir, &plan, &master, &model, &tok, &stop)?;
    let harvest_secs = started.elapsed().as_secs_f64();
    let by = |c: Option<usize>| harvested.iter().filter(|h| h.cohort == c).collect::<Vec<_>>();
    let (c1, plain) = (by(Some(1)), by(None));
    let tokens = [&c1, &by(Some(4)), &by(Some(6)), &plain].map(|v| tokens_of(v));
    eprintln!(
        "harvest: cohort/1 {} tokens, cohort/4 {}, cohort/6 {}, plain {}",
        tokens[0], tokens[1], tokens[2], tokens[3]
    );
    let student_prompts: Vec<Vec<u32>> = prompt_pool()
        .iter()
        .skip(plan.harvest_prompts)
        .take(120)
        .map(|p| gguf_tokenizer::encode(&tok, &chat_prompt(p)))
        .collect::<tracemark_candle::Result<_>>()?;
    let lab = Lab {
        plan: &plan,
        vocab: model.config().vocab_size,
        eos,
        opts: DetectOptions {
            min_scored: 1,
            ..DetectOptions::default()
        },
        reading_texts: c1.iter().take(plan.reading_docs).copied().collect(),
        ours: c1,
        student_prompts,
    };
    let keys: Vec<Key> = (0..COHORTS)
        .map(|c| master.derive(&format!("cohort/{c}")))
        .collect::<std::result::Result<_, _>>()?;

    let (rows, control_students) = student_rows(&lab, &keys[1], &plain)?;
    let plot = args.out.as_ref().map_or_else(
        || {
            if args.quick {
                dir.join("distill-p-vs-tokens.svg")
            } else {
                PathBuf::from(format!("eval/results/distill-{}-p-vs-tokens.svg", today()))
            }
        },
        |o| o.with_extension("svg"),
    );
    if let Some(parent) = plot.parent() {
        io(parent, std::fs::create_dir_all(parent))?;
    }
    let series: Vec<Series> = rows
        .iter()
        .map(|r| Series {
            name: r.label(),
            points: r.points(&plan),
        })
        .collect();
    line_chart(
        &plot,
        "radioactivity: log10 p vs student tokens scanned",
        "student tokens scanned",
        "log10 p",
        &series,
    )?;
    let (attribution, attribution_tokens) = attribution(&lab, &keys, &harvested)?;
    let controls = controls(&lab, &keys, &control_students)?;
    let checks = QuickChecks::new(&rows, &controls, &attribution, &plan);
    let results = Results {
        plan: &plan,
        master: &master,
        tokens,
        harvest_secs,
        rows,
        plot,
        attribution,
        attribution_tokens,
        controls,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            dir.join("report.md")
        } else {
            PathBuf::from(format!("eval/results/distill-{}.md", today()))
        }
    });
    io(&out, std::fs::write(&out, report(&results, started)))?;
    eprintln!("report: {}", out.display());
    if args.quick && !checks.passed() {
        return Err(Error::Usage(format!(
            "distillation check failed (caught {}, controls {}, wrong cohort named {}): see {}",
            checks.caught,
            checks.controls_quiet,
            checks.wrongly_named,
            out.display()
        )));
    }
    Ok(())
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
