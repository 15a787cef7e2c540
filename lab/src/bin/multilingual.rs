//! `make calibrate-multilingual`: calibration with canonical form v2 on
//! held-out human text in German, French, Spanish, Russian and Japanese
//! (issue 28, deliverable 5). Documents of `scripts/fetch.py
//! human-text-multilingual` (Debian's translated man pages and fortunes) go
//! through the text path as the CLI's `detect` does it: the canonical form,
//! the forms rule of SPEC §14.1, SmolLM2's tokenizer, detection, and the
//! factor 2 where both forms are tested. The engine is
//! `tracemark_lab::calibration` (`Corpus::from_texts`, `calibrate`); this
//! binary picks the documents, counts what canonical form v2 changes, checks
//! the engine's p-values against `Detector::detect_text` on a sample, and
//! writes the results file.
//!
//! ```text
//! cargo run --release --locked -p tracemark-lab --bin multilingual -- \
//!     --corpus "$(python3 scripts/fetch.py human-text-multilingual)" --out eval/results/multilingual-YYYY-MM-DD.md
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use rayon::prelude::*;
use serde::Deserialize;
use tracemark_candle::gguf_tokenizer;
use tracemark_core::SchemeConfig;
use tracemark_lab::calibration::{
    calibrate, homogeneity_p, test_segment, CalibrationOptions, Cell, Corpus, KeyStream, SegmentOptions,
};
use tracemark_lab::{model_path, Error, Result};
use tracemark_verifier::canonical::{form_plan, FormPlan};
use tracemark_verifier::{canonicalize, Canonical, ChangeKind, DetectOptions, Detector, TextTokenizer};

/// The schemes of `make calibrate`'s text runs and of the window experiment.
const SCHEMES: [(&str, &str); 3] = [
    ("kgw h=1", "kgw:gamma=0.25,delta=2,context=lefthash:1"),
    ("gumbel h=4", "gumbel:temperature=1,context=lefthash:4"),
    (
        "tournament h=4",
        "tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4",
    ),
];
/// The seed of the keys and of the document draw ("multilin").
const SEED: u64 = 0x6d75_6c74_696c_696e;
const ALPHAS: [f64; 2] = [1e-2, 1e-3];
const CONFIDENCE: f64 = 0.99;

#[derive(Parser)]
#[command(about = "False-positive rates through the text path (canonical form v2) on human text in five languages")]
struct Args {
    /// The corpus (`scripts/fetch.py human-text-multilingual`)
    #[arg(long)]
    corpus: PathBuf,
    /// Where to write the Markdown results (stdout only if absent)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Documents drawn per language
    #[arg(long, default_value_t = 50)]
    docs: usize,
    /// Keys; every drawn document is tested under every key
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// (document, key) tests per scheme also run through `Detector::detect_text`
    /// and compared with the engine's p-value (0: none)
    #[arg(long, default_value_t = 60)]
    check: usize,
    /// Title of the results file
    #[arg(long, default_value = "Calibration on multilingual human text")]
    title: String,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(skip)]
    index: usize,
    category: String,
    kind: String,
    text: String,
}

/// What canonical form v2 does to a set of documents.
#[derive(Default)]
struct Changes {
    documents: usize,
    changed: usize,
    /// Documents with at least one change of each kind (in `ChangeKind::ALL` order).
    by_kind: Vec<usize>,
    /// Documents with a normalisation change (a BOM, NFD text).
    normalisation: usize,
    /// Documents per forms plan: as given, canonical, both.
    plans: [usize; 3],
}

fn changes<'a>(forms: impl Iterator<Item = &'a Canonical>) -> Changes {
    let mut c = Changes {
        by_kind: vec![0; ChangeKind::ALL.len()],
        ..Changes::default()
    };
    for canonical in forms {
        c.documents += 1;
        c.changed += usize::from(!canonical.is_unchanged());
        for (i, kind) in ChangeKind::ALL.iter().enumerate() {
            c.by_kind[i] += usize::from(canonical.count(*kind) > 0);
        }
        c.normalisation += usize::from(canonical.changes().iter().any(|ch| ch.is_normalisation()));
        c.plans[match form_plan(canonical, None) {
            FormPlan::Canonical => 1,
            FormPlan::Both => 2,
            _ => 0,
        }] += 1;
    }
    c
}

/// Examples shown per language and change kind.
const EXAMPLES: usize = 3;

/// Table rows: up to [`EXAMPLES`] changes of each kind but `spacing` in a
/// language's documents, with 24 characters of context either side.
fn examples(lang: &str, docs: &[(&Doc, &Canonical)]) -> Vec<String> {
    let mut rows = Vec::new();
    for kind in ChangeKind::ALL {
        if kind == ChangeKind::Spacing {
            continue;
        }
        // The first change of the kind in each document, so that a kind's
        // examples come from different pages.
        let firsts = docs
            .iter()
            .filter_map(|(d, canonical)| canonical.changes().iter().find(|c| c.kind == kind).map(|c| (d, c)));
        for (d, c) in firsts.take(EXAMPLES) {
            let before: String = d.text[..c.span.0]
                .chars()
                .rev()
                .take(24)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let after: String = d.text[c.span.1..].chars().take(24).collect();
            let show = |t: &str| t.replace('\n', "⏎").replace('`', "'").replace('|', "\\|");
            rows.push(format!(
                "| {lang} | {kind} | {} → {} | `{}[{}]{}` |",
                c.from,
                if c.to.is_empty() { "(removed)" } else { &c.to },
                show(&before),
                show(&d.text[c.span.0..c.span.1]),
                show(&after)
            ));
        }
    }
    rows
}

fn pct(k: usize, n: usize) -> String {
    format!("{:.1}%", 100.0 * k as f64 / n.max(1) as f64)
}

fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else {
        format!("{x:.2e}")
    }
}

fn cell_row(md: &mut String, label: &str, cell: &Cell, alpha: f64) {
    let (lo, hi) = cell.interval(CONFIDENCE);
    let inside = cell.size_within(CONFIDENCE);
    let _ = writeln!(
        md,
        "| {label} | {alpha:e} | {} | {} | {} | [{}, {}] | {} | {} |",
        cell.tests,
        cell.false_positives,
        sci(cell.rate()),
        sci(lo),
        sci(hi),
        size_range(cell),
        if inside { "yes" } else { "**no**" }
    );
}

/// The exact size, or the range the size lies in where tests of both forms
/// make it a range: `[floor, Bonferroni bound]`.
fn size_range(cell: &Cell) -> String {
    let (floor, bound) = (cell.size_floor(), cell.exact_size());
    if (bound - floor).abs() <= 1e-12 * bound.max(1e-300) {
        sci(bound)
    } else {
        format!("[{}, {}]", sci(floor), sci(bound))
    }
}

fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let text =
        std::fs::read_to_string(&args.corpus).map_err(|e| Error::Usage(format!("{}: {e}", args.corpus.display())))?;
    let docs: Vec<Doc> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| Error::Usage(format!("{}: {e}", args.corpus.display()))))
        .collect::<Result<_>>()?;
    let docs: Vec<Doc> = docs
        .into_iter()
        .enumerate()
        .map(|(index, d)| Doc { index, ..d })
        .collect();
    // Every document's canonical form, for the change counts.
    let canonical: Vec<Canonical> = docs.par_iter().map(|d| canonicalize(&d.text)).collect();
    let mut by_language: BTreeMap<&str, Vec<&Doc>> = BTreeMap::new();
    for d in &docs {
        by_language.entry(&d.category).or_default().push(d);
    }
    // The held-out draw: a seeded shuffle of each language's documents.
    let keys = KeyStream::danger_from_seed(SEED);
    let mut rng = keys.words(1 << 20);
    let mut drawn: Vec<&Doc> = Vec::new();
    for list in by_language.values() {
        let mut list = list.clone();
        for i in (1..list.len()).rev() {
            list.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        drawn.extend(list.into_iter().take(args.docs));
    }
    let model_file = model_path()?;
    let tok = TextTokenizer::from_tokenizer(&gguf_tokenizer::from_gguf(&model_file)?)?;
    let corpus = Corpus::from_texts(
        drawn.iter().map(|d| (d.category.clone(), d.text.clone())),
        &tok,
        SegmentOptions::default(),
    )?;
    eprintln!(
        "multilingual: {} documents drawn of {}, {} tokens, prepared in {:.0} s",
        corpus.segments.len(),
        docs.len(),
        corpus.tokens(),
        start.elapsed().as_secs_f64()
    );
    let configs: Vec<SchemeConfig> = SCHEMES
        .iter()
        .map(|(_, s)| s.parse())
        .collect::<core::result::Result<_, _>>()?;
    let n_docs = corpus.segments.len() as u64;
    let mut runs = Vec::new();
    let mut checks = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let options = CalibrationOptions {
            tests: args.keys * n_docs,
            tests_per_key: n_docs,
            first_key: i as u64 * (1 << 40),
            order_stream: i as u64,
            alphas: ALPHAS.to_vec(),
            ..CalibrationOptions::default()
        };
        let run = calibrate(&corpus, config, &keys, &options)?;
        eprintln!(
            "multilingual: {}: rates {} / {} in {:.0} s",
            SCHEMES[i].0,
            sci(run.overall[0].rate()),
            sci(run.overall[1].rate()),
            run.seconds
        );
        // The engine against the CLI's path: detect_text on the text itself.
        // Half of the pairs on documents tested in both forms (where the
        // engine's arithmetic differs most from a single test), half at random.
        let mut check_rng = keys.words((1 << 21) + i as u64);
        let both: Vec<usize> = (0..corpus.segments.len())
            .filter(|&d| corpus.segments[d].second.is_some())
            .collect();
        let pairs: Vec<(usize, u64)> = (0..args.check)
            .map(|j| {
                let r = check_rng.next_u64();
                let d = if j % 2 == 0 && !both.is_empty() {
                    both[(r % both.len() as u64) as usize]
                } else {
                    (r % n_docs) as usize
                };
                (d, check_rng.next_u64() % args.keys)
            })
            .collect();
        let mismatches = pairs
            .par_iter()
            .map(|&(d, k)| -> Result<usize> {
                let detector = Detector::new(
                    &keys.key(options.first_key + k),
                    config,
                    corpus.vocab_size,
                    DetectOptions::default(),
                )?;
                let via_text = detector
                    .detect_text(&tok, None, &drawn[d].text)?
                    .canonical
                    .and_then(|c| c.family_log10_p);
                let via_engine = test_segment(&detector, &corpus.segments[d])?.map(|t| t.log10_p);
                Ok(usize::from(via_text != via_engine))
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))?;
        checks.push((pairs.len(), mismatches));
        runs.push(run);
    }

    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", args.title);
    let corpus_name = args
        .corpus
        .file_name()
        .map_or(String::new(), |f| f.to_string_lossy().into_owned());
    let _ = writeln!(
        md,
        "Held-out human text in five languages and three scripts: Debian's translated man pages (rendered to text by groff) and fortunes, `scripts/fetch.py human-text-multilingual` (`{corpus_name}`, {} documents of about 4,000 characters). \
         From each language {} documents are drawn (a shuffle seeded with {SEED:#x}); each is tested whole, under each of {} keys (`KeyStream` seed {SEED:#x}, a disjoint key range per scheme), \
         through the text path as `tracemark detect` runs it without a prompt: canonical form v{} (SPEC §14), the forms rule of SPEC §14.1 decided from the text alone, SmolLM2-135M-Instruct's tokenizer (`{}`), detection with the default options (pair deduplication), and the smaller p-value times 2 where both forms are tested. \
         The engine is `tracemark_lab::calibration` (`Corpus::from_texts` encodes each document's forms once; `calibrate` runs the tests); for {} (document, key) pairs per scheme, `Detector::detect_text` on the text itself gave exactly the engine's family p-value ({}).\n",
        docs.len(),
        args.docs,
        args.keys,
        tracemark_verifier::canonical::CANONICAL_VERSION,
        tok.info().fingerprint,
        args.check,
        checks
            .iter()
            .zip(&SCHEMES)
            .map(|((n, bad), (name, _))| format!("{name}: {} of {n} equal", n - bad))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        md,
        "A false positive is a test with p < alpha. *Exact size*: the rate the test's null distribution allows at each test's number of scored tokens, averaged over the tests (alpha for the continuous gumbel test; below alpha for the discrete kgw and tournament tests; for a test of both forms, a range: the family rejects when either form's p is below alpha/2, so its size lies between the larger of the two forms' sizes at alpha/2 (forms that always agree) and their sum, the Bonferroni bound, at most alpha (forms that never reject together); a cell with such tests shows `[floor, bound]`). \
         *Inside*: the exact size, or some point of that range, lies in the exact (Clopper–Pearson) {:.0}% interval of the measured rate. Tests per language cell: {} (documents × keys).\n",
        CONFIDENCE * 100.0,
        args.docs as u64 * args.keys
    );
    let _ = writeln!(md, "## False-positive rates\n");
    let _ = writeln!(
        md,
        "| scheme, language | alpha | tests | false positives | rate | 99% interval | exact size (range) | inside |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let mut outside = Vec::new();
    for (run, (name, _)) in runs.iter().zip(&SCHEMES) {
        for (a, &alpha) in ALPHAS.iter().enumerate() {
            for (c, lang) in corpus.categories.iter().enumerate() {
                let cell = &run.by_category[c][a];
                cell_row(&mut md, &format!("{name}, {lang}"), cell, alpha);
                if !cell.size_within(CONFIDENCE) {
                    outside.push(format!("{name}, {lang}, alpha {alpha:e}"));
                }
            }
            cell_row(&mut md, &format!("**{name}, all**"), &run.overall[a], alpha);
            if !run.overall[a].size_within(CONFIDENCE) {
                outside.push(format!("{name}, all languages, alpha {alpha:e}"));
            }
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Homogeneity across languages (chi-square over the language cells, p-value): {}.\n",
        runs.iter()
            .zip(&SCHEMES)
            .flat_map(|(run, (name, _))| {
                ALPHAS.iter().enumerate().map(move |(a, alpha)| {
                    let fp: Vec<u64> = run.by_category.iter().map(|c| c[a].false_positives).collect();
                    let n: Vec<u64> = run.by_category.iter().map(|c| c[a].tests).collect();
                    format!("{name} at {alpha:e}: {:.3}", homogeneity_p(&fp, &n))
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        md,
        "Inconclusive tests (too few scored tokens, counted as not rejected): {}. Tokens scored per test, mean: {}.\n",
        runs.iter()
            .zip(&SCHEMES)
            .map(|(r, (name, _))| format!("{name} {}", r.inconclusive))
            .collect::<Vec<_>>()
            .join(", "),
        runs.iter()
            .zip(&SCHEMES)
            .map(|(r, (name, _))| format!("{name} {:.0}", r.scored_tokens as f64 / r.options.tests.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if outside.is_empty() {
        let _ = writeln!(md, "Every cell is inside its 99% interval.\n");
    } else {
        let _ = writeln!(md, "Cells outside their 99% interval: {}.\n", outside.join("; "));
    }

    let _ = writeln!(md, "## What canonical form v2 changes\n");
    let _ = writeln!(
        md,
        "Share of documents with at least one change (of each kind), over every document of the corpus and over the drawn ones; *plan*: the forms SPEC §14.1 tests (as given / canonical / both).\n"
    );
    let kinds: Vec<String> = ChangeKind::ALL.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        md,
        "| language, documents | n | changed | {} | normalisation | plan: as given / canonical / both |",
        kinds.join(" | ")
    );
    let _ = writeln!(md, "|---|---|---|{}---|---|", "---|".repeat(kinds.len()));
    let mut row = |label: String, c: Changes| {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} / {} / {} |",
            c.documents,
            pct(c.changed, c.documents),
            c.by_kind
                .iter()
                .map(|&k| pct(k, c.documents))
                .collect::<Vec<_>>()
                .join(" | "),
            pct(c.normalisation, c.documents),
            c.plans[0],
            c.plans[1],
            c.plans[2]
        );
    };
    for (lang, list) in &by_language {
        let kinds: std::collections::BTreeSet<&str> = list.iter().map(|d| d.kind.as_str()).collect();
        for kind in kinds {
            row(
                format!("{lang}, all {kind}"),
                changes(list.iter().filter(|d| d.kind == kind).map(|d| &canonical[d.index])),
            );
        }
        row(
            format!("{lang}, drawn"),
            changes(
                drawn
                    .iter()
                    .filter(|d| d.category == *lang)
                    .map(|d| &canonical[d.index]),
            ),
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Examples of each kind other than `spacing` (a run of spaces or a tab between words) in the corpus, at most {EXAMPLES} per language and kind, in context (`⏎` is a line break):\n"
    );
    let _ = writeln!(md, "| language | kind | change | context |");
    let _ = writeln!(md, "|---|---|---|---|");
    for (lang, list) in &by_language {
        let pairs: Vec<(&Doc, &Canonical)> = list.iter().map(|d| (*d, &canonical[d.index])).collect();
        for line in examples(lang, &pairs) {
            let _ = writeln!(md, "{line}");
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "Run time: {:.0} s.", start.elapsed().as_secs_f64());
    if let Some(out) = &args.out {
        std::fs::write(out, &md).map_err(|e| Error::Usage(format!("{}: {e}", out.display())))?;
        eprintln!("multilingual: wrote {}", out.display());
    }
    println!("{md}");
    let bad: usize = checks.iter().map(|c| c.1).sum();
    if bad > 0 {
        return Err(Error::Usage(format!("{bad} engine p-values differ from detect_text's")));
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multilingual: {e}");
            ExitCode::FAILURE
        }
    }
}
