//! Corpus scans and account attribution test the forms of a changed text
//! that `tracemark detect` tests (SPEC §14.1): per document, a scan's
//! verdict, `log10_p` (to the bit), tokens and `plan` are those of
//! `Detector::detect_text` on the same text, prompt, key and scheme; and an
//! account's p-value is `detect_text`'s under that account's key. Checked
//! on a table of every kind of change (none, ordinary few, ordinary many, in
//! between, tampering, a changed prompt), on random mixes of them
//! (proptest), and, on real text, by the ignored calibration at the bottom.

mod support;

use proptest::prelude::*;
use support::{flat_candidates, generate, word_tokenizer_json, words, Rng};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::accounts::{attribute_accounts, AccountForms};
use tracemark_verifier::canonical::FormPlan;
use tracemark_verifier::{DetectOptions, Detection, Detector, DocResult, Document, Scanner, TextTokenizer, Verdict};

const VOCAB: usize = 400;
const SCHEMES: [&str; 3] = [
    "kgw:gamma=0.25,delta=1.5,context=lefthash:1",
    "gumbel:temperature=0.7,context=lefthash:2",
    "tournament:layers=4,top_k=20,temperature=1,context=lefthash:2",
];

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_bytes(word_tokenizer_json(VOCAB).as_bytes()).expect("a word-level tokenizer")
}

/// The kinds of change a document gets, from the text alone.
#[derive(Clone, Copy, Debug, Default)]
struct Changes {
    /// Words whose first digit is written full-width (`w１2`: a
    /// `compatibility` change, ordinary, which the word tokenizer reads as
    /// another token).
    fullwidth: usize,
    /// Spaces doubled (`spacing`, ordinary; the same tokens).
    doubled: usize,
    /// A zero-width space inside a word (`invisible`: tampering).
    invisible: bool,
    /// A zero-width space in the prompt.
    prompt_invisible: bool,
}

/// `text` (words `w0 w1 ...` separated by single spaces) with `changes`
/// spread over its words.
fn changed(text: &str, changes: Changes) -> String {
    let mut out: Vec<String> = text.split(' ').map(str::to_string).collect();
    let n = out.len();
    for i in 0..changes.fullwidth.min(n) {
        let w = &mut out[i * n / changes.fullwidth.min(n)];
        if let Some(d) = w.chars().nth(1).and_then(|c| c.to_digit(10)) {
            let wide = char::from_u32(0xFF10 + d).expect("a full-width digit");
            *w = format!("w{wide}{}", &w[2..]);
        }
    }
    if changes.invisible {
        out[n / 2].insert(1, '\u{200b}');
    }
    let mut text = String::new();
    let doubled = changes.doubled.min(n - 1);
    for (i, w) in out.iter().enumerate() {
        if i > 0 {
            text.push(' ');
            if doubled > 0 && i % ((n - 1) / doubled).max(1) == 0 && i / ((n - 1) / doubled).max(1) <= doubled {
                text.push(' ');
            }
        }
        text.push_str(w);
    }
    text
}

fn prompt(changes: Changes) -> String {
    if changes.prompt_invisible {
        "w1 w\u{200b}2 w3".into()
    } else {
        "w1 w2 w3".into()
    }
}

/// A 200-word answer: watermarked under `key` and `config`, or plain.
fn answer(key: &Key, config: &SchemeConfig, marked: bool, rng: &mut Rng) -> String {
    let ids = if marked {
        let scheme = config.build(key, VOCAB).expect("scheme");
        generate(scheme.as_ref(), &[1, 2, 3], 200, rng, |_, r| {
            flat_candidates(VOCAB, 12, r)
        })
    } else {
        support::random_tokens(VOCAB, 200, rng)
    };
    words(&ids)
}

/// Scans `docs` (prompt, text) as a JSONL corpus and checks every line
/// against `detect_text`; returns the results.
fn scan_equals_detect(detector: &Detector, tok: &TextTokenizer, docs: &[(String, String)]) -> Vec<DocResult> {
    let corpus: String = docs
        .iter()
        .map(|(p, t)| Document::text(Some(p.clone()), t.clone()).to_json_line())
        .collect();
    let mut results = Vec::new();
    Scanner::new(detector, Some(tok))
        .jobs(2)
        .scan(corpus.as_bytes(), |d| results.push(d.clone()))
        .expect("scan");
    assert_eq!(results.len(), docs.len());
    for (r, (p, t)) in results.iter().zip(docs) {
        let d = detector.detect_text(tok, Some(p), t).expect("detect");
        same(r, &d);
    }
    results
}

/// A scan's line against `detect_text`'s report of the same document.
fn same(r: &DocResult, d: &Detection) {
    let c = d.canonical.as_ref().expect("canonical section");
    assert_eq!(r.error, None);
    assert_eq!(r.verdict, Some(d.verdict), "line {}", r.line);
    assert_eq!(
        r.log10_p.map(f64::to_bits),
        d.verdict_log10_p().map(f64::to_bits),
        "line {}: {:?} {:?}",
        r.line,
        r.log10_p,
        d.verdict_log10_p()
    );
    assert_eq!(r.tokens, d.counts.seen, "line {}", r.line);
    assert_eq!(r.scored, d.counts.scored, "line {}", r.line);
    assert_eq!(r.canonical_changes, c.changes.total, "line {}", r.line);
    let changed = c.changes.total > 0 || c.forms.len() > 1 || c.plan != Some(FormPlan::AsGiven);
    assert_eq!(r.plan, if changed { c.plan } else { None }, "line {}", r.line);
}

/// A text of white space only is empty input for a scan as for
/// `detect_text`, with canonicalisation on or off; the scan goes on.
#[test]
fn a_white_space_line_is_empty_input_as_in_detect() {
    let tok = tokenizer();
    let key = Key::from_bytes([7; 32]);
    for canonicalize in [true, false] {
        let options = DetectOptions {
            canonicalize,
            ..DetectOptions::default()
        };
        let config: SchemeConfig = SCHEMES[0].parse().expect("scheme");
        let detector = Detector::new(&key, &config, VOCAB, options).expect("detector");
        for blank in [" ", "  \t \n", "\u{3000}"] {
            assert!(matches!(
                detector.detect_text(&tok, None, blank),
                Err(tracemark_verifier::Error::EmptyInput)
            ));
            let corpus = Document::text(None, blank.to_string()).to_json_line()
                + &Document::text(None, "w1 w2 w3".to_string()).to_json_line();
            let mut results = Vec::new();
            Scanner::new(&detector, Some(&tok))
                .scan(corpus.as_bytes(), |d| results.push(d.clone()))
                .expect("scan");
            assert_eq!(results.len(), 2);
            assert_eq!(
                results[0].error.as_deref(),
                Some(tracemark_verifier::Error::EmptyInput.to_string().as_str())
            );
            assert!(results[0].verdict.is_none() && results[1].error.is_none());
        }
    }
}

/// Every kind of change, on watermarked and plain answers, under each
/// scheme: the scan gives detect's numbers, each plan occurs, and a few
/// ordinary changes no longer cost the factor 2.
#[test]
fn a_scan_tests_the_forms_detect_tests() {
    let tok = tokenizer();
    let table: [(&str, Changes, FormPlan); 7] = [
        ("none", Changes::default(), FormPlan::AsGiven),
        (
            "ordinary few",
            Changes {
                doubled: 2,
                ..Changes::default()
            },
            FormPlan::AsGiven,
        ),
        (
            "ordinary, in between",
            Changes {
                fullwidth: 8,
                ..Changes::default()
            },
            FormPlan::Both,
        ),
        (
            "ordinary many",
            Changes {
                fullwidth: 30,
                doubled: 10,
                ..Changes::default()
            },
            FormPlan::Canonical,
        ),
        (
            "tampering",
            Changes {
                invisible: true,
                ..Changes::default()
            },
            FormPlan::Canonical,
        ),
        (
            "tampering and ordinary",
            Changes {
                invisible: true,
                fullwidth: 8,
                ..Changes::default()
            },
            FormPlan::Canonical,
        ),
        (
            "the prompt tampered",
            Changes {
                prompt_invisible: true,
                ..Changes::default()
            },
            FormPlan::Canonical,
        ),
    ];
    let mut rng = Rng::new(0x5ca7_f0a5);
    for config in SCHEMES {
        let config: SchemeConfig = config.parse().expect("scheme");
        let key = rng.key();
        let detector = Detector::new(&key, &config, VOCAB, DetectOptions::default()).expect("detector");
        let mut docs = Vec::new();
        for marked in [true, false] {
            let text = answer(&key, &config, marked, &mut rng);
            for (_, changes, _) in table {
                docs.push((prompt(changes), changed(&text, changes)));
            }
        }
        let results = scan_equals_detect(&detector, &tok, &docs);
        for (i, r) in results.iter().enumerate() {
            let (name, _, plan) = table[i % table.len()];
            let expected = (name != "none").then_some(plan);
            assert_eq!(r.plan, expected, "{config}: {name}");
        }
        // A few ordinary changes: the text as given alone, at exactly the
        // untouched text's p-value (the tokens are the same), not twice it.
        for block in results.chunks(table.len()) {
            assert_eq!(block[1].log10_p.map(f64::to_bits), block[0].log10_p.map(f64::to_bits));
        }
        let detected = results.iter().filter(|r| r.verdict == Some(Verdict::Detected)).count();
        assert!(detected >= table.len() - 1, "{config}: {detected} detected");
        assert!(results[table.len()..]
            .iter()
            .all(|r| r.verdict == Some(Verdict::NotDetected)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random mixes of the kinds of change: each line of the scan is
    /// `detect_text`'s, bit for bit.
    #[test]
    fn any_mix_of_changes_scans_as_detect(
        seed in any::<u64>(),
        scheme in 0..SCHEMES.len(),
        docs in proptest::collection::vec((any::<bool>(), 0usize..70, 0usize..12, any::<bool>(), any::<bool>()), 1..6),
    ) {
        let tok = tokenizer();
        let mut rng = Rng::new(seed);
        let config: SchemeConfig = SCHEMES[scheme].parse().expect("scheme");
        let key = rng.key();
        let detector = Detector::new(&key, &config, VOCAB, DetectOptions::default()).expect("detector");
        let docs: Vec<(String, String)> = docs
            .into_iter()
            .map(|(marked, fullwidth, doubled, invisible, prompt_invisible)| {
                let changes = Changes { fullwidth, doubled, invisible, prompt_invisible };
                (prompt(changes), changed(&answer(&key, &config, marked, &mut rng), changes))
            })
            .collect();
        scan_equals_detect(&detector, &tok, &docs);
    }
}

/// Account attribution of a text: each account's p-value is `detect_text`'s
/// under that account's key, with the same plan, for every kind of change.
#[test]
fn accounts_test_the_forms_detect_tests() {
    let tok = tokenizer();
    let mut rng = Rng::new(0xacc0_f0a5);
    let master = rng.key();
    let config: SchemeConfig = SCHEMES[0].parse().expect("scheme");
    let label = |i: u64| format!("account/{i}");
    let served = master.derive(&label(5)).expect("derive");
    let text = answer(&served, &config, true, &mut rng);
    let options = DetectOptions::default();
    let kinds = [
        (Changes::default(), FormPlan::AsGiven),
        (
            Changes {
                doubled: 2,
                ..Changes::default()
            },
            FormPlan::AsGiven,
        ),
        (
            Changes {
                fullwidth: 8,
                ..Changes::default()
            },
            FormPlan::Both,
        ),
        (
            Changes {
                fullwidth: 40,
                ..Changes::default()
            },
            FormPlan::Canonical,
        ),
        (
            Changes {
                invisible: true,
                ..Changes::default()
            },
            FormPlan::Canonical,
        ),
    ];
    for (changes, plan) in kinds {
        let doc = changed(&text, changes);
        let p = prompt(changes);
        let forms = AccountForms::text(&tok, Some(&p), &doc).expect("forms");
        assert_eq!(forms.plan(), Some(plan));
        assert_eq!(forms.len(), plan.forms());
        let found = attribute_accounts(&master, &config, VOCAB, &options, &forms, 12, label).expect("accounts");
        assert_eq!(found.plan, Some(plan));
        assert_eq!(found.named.first().map(|m| m.label.as_str()), Some("account/5"));
        assert_eq!(found.best.len() as u64, found.accounts - found.inconclusive);
        for m in &found.best {
            let i: u64 = m.label["account/".len()..].parse().expect("label");
            let key = master.derive(&label(i)).expect("derive");
            let d = Detector::new(&key, &config, VOCAB, options.clone())
                .expect("detector")
                .detect_text(&tok, Some(&p), &doc)
                .expect("detect");
            let c = d.canonical.as_ref().expect("canonical");
            assert_eq!(c.plan, Some(plan));
            assert_eq!(
                Some(m.log10_p.to_bits()),
                c.family_log10_p.map(f64::to_bits),
                "{}",
                m.label
            );
            assert_eq!(m.scored, d.counts.scored, "{}", m.label);
        }
    }
}

/// The false-positive rate of the scan path itself (`Scanner::scan` on a
/// JSONL corpus, canonical form v2 and the plan of SPEC §14.1) on held-out
/// human text in five languages and three scripts, under many keys per
/// scheme, with the share of documents per plan; the first key's scan of
/// each scheme is checked line by line against `detect_text`. Writes the
/// tables to stdout (eval/results/scan-forms-2026-12-06.md).
///
/// `TRACEMARK_HUMAN_TEXT_MULTILINGUAL`: `scripts/fetch.py
/// human-text-multilingual`; `TRACEMARK_TOKENIZER`: SmolLM2-135M's
/// tokenizer.json (the demo writes it from the GGUF);
/// `TRACEMARK_SCAN_KEYS` (default 200) keys per scheme,
/// `TRACEMARK_SCAN_DOCS` (default 50) documents per language.
///
/// A measurement, not a test of `make test` (about half an hour at the
/// defaults): it builds only with the feature `calibration`, e.g.
/// `cargo test --release -p tracemark-verifier --features calibration --test
/// scan_forms -- --ignored scan_calibration --nocapture`.
#[cfg(feature = "calibration")]
#[test]
#[ignore = "needs TRACEMARK_HUMAN_TEXT_MULTILINGUAL and TRACEMARK_TOKENIZER; minutes"]
fn scan_calibration_on_multilingual_text() {
    use std::collections::BTreeMap;
    use tracemark_core::Null;
    use tracemark_verifier::stats;

    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let number = |name: &str, default: usize| std::env::var(name).map_or(default, |v| v.parse().expect(name));
    let keys_per_scheme = number("TRACEMARK_SCAN_KEYS", 200);
    let per_language = number("TRACEMARK_SCAN_DOCS", 50);
    let tok = TextTokenizer::from_file(env("TRACEMARK_TOKENIZER")).expect("tokenizer");
    let text = std::fs::read_to_string(env("TRACEMARK_HUMAN_TEXT_MULTILINGUAL")).expect("corpus");
    let mut by_language: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        by_language
            .entry(v["category"].as_str().expect("category").to_string())
            .or_default()
            .push(v["text"].as_str().expect("text").to_string());
    }
    // The held-out draw: a seeded shuffle of each language's documents.
    let mut rng = Rng::new(0x5ca7_ca11);
    let mut docs: Vec<(String, String)> = Vec::new();
    let mut all_plans: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let plan_index = |p: Option<FormPlan>| match p {
        None | Some(FormPlan::AsGiven) => 0,
        Some(FormPlan::Canonical) => 1,
        _ => 2,
    };
    for (language, list) in &by_language {
        let counts = all_plans.entry(language.clone()).or_default();
        for t in list {
            let c = tracemark_verifier::canonicalize(t);
            counts[plan_index(Some(tracemark_verifier::canonical::form_plan(&c, None)))] += 1;
        }
        let mut list = list.clone();
        for i in (1..list.len()).rev() {
            list.swap(i, rng.below(i as u32 + 1) as usize);
        }
        docs.extend(list.into_iter().take(per_language).map(|t| (language.clone(), t)));
    }
    let corpus: String = docs
        .iter()
        .map(|(_, t)| Document::text(None, t.clone()).to_json_line())
        .collect();
    let configs = [
        ("kgw h=1", "kgw:gamma=0.25,delta=2,context=lefthash:1"),
        ("gumbel h=4", "gumbel:temperature=1,context=lefthash:4"),
        (
            "tournament h=4",
            "tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4",
        ),
    ];
    let alphas = [1e-2, 1e-3];
    let started = std::time::Instant::now();
    println!(
        "Tokenizer {}; {} documents ({} per language); {} keys per scheme.\n",
        tok.info().fingerprint,
        docs.len(),
        per_language,
        keys_per_scheme
    );
    println!("| scheme, language | alpha | tests | false positives | rate | 99% interval | exact size | inside |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut drawn_plans: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut checked = 0;
    for (s, (name, config)) in configs.iter().enumerate() {
        let config: SchemeConfig = config.parse().expect("scheme");
        let options = DetectOptions::default();
        // Scored tokens of each form of each document (the first key's
        // count: deduplication does not depend on the key but for chance
        // seed collisions), for the exact size of a test of both forms.
        let mut keys = Rng::new(0x5ca7_0000 + s as u64);
        let first = keys.key();
        let plain = Detector::new(
            &first,
            &config,
            tok.vocab_size(),
            DetectOptions {
                canonicalize: false,
                ..options.clone()
            },
        )
        .expect("detector");
        let scored = |t: &str| {
            let d = plain.detect_text(&tok, None, t).expect("detect");
            d.outcome.log10_p().map_or(0, |_| d.counts.scored as u64)
        };
        let forms: Vec<(u64, u64)> = docs
            .iter()
            .map(|(_, t)| (scored(t), scored(tracemark_verifier::canonicalize(t).text())))
            .collect();
        let size = |n: u64, alpha: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            match config.contract().null {
                Null::Binomial { trials, p } => {
                    let total = n * u64::from(trials);
                    stats::binomial_critical(total, p, alpha)
                        .map_or(0.0, |k| stats::ln_binomial_upper(k, total, p).exp())
                }
                _ => alpha,
            }
        };
        // cells[language][alpha] = (tests, false positives, sum of exact sizes)
        let mut cells: BTreeMap<String, [(u64, u64, f64); 2]> = BTreeMap::new();
        for k in 0..keys_per_scheme {
            let key = if k == 0 { first.clone() } else { keys.key() };
            let detector = Detector::new(&key, &config, tok.vocab_size(), options.clone()).expect("detector");
            let mut results = Vec::with_capacity(docs.len());
            Scanner::new(&detector, Some(&tok))
                .jobs(2)
                .scan(corpus.as_bytes(), |d| results.push(d.clone()))
                .expect("scan");
            for (r, ((language, t), &(given, canonical))) in results.iter().zip(docs.iter().zip(&forms)) {
                if k == 0 {
                    same(r, &detector.detect_text(&tok, None, t).expect("detect"));
                    checked += 1;
                    if s == 0 {
                        drawn_plans.entry(language.clone()).or_default()[plan_index(r.plan)] += 1;
                    }
                }
                for (a, &alpha) in alphas.iter().enumerate() {
                    let exact = match r.plan {
                        Some(FormPlan::Both) => (size(given, alpha / 2.0) + size(canonical, alpha / 2.0)).min(alpha),
                        Some(FormPlan::Canonical) => size(canonical, alpha),
                        _ => size(given, alpha),
                    };
                    let rejected = r.log10_p.is_some_and(|l| l < alpha.log10());
                    for cell in [language.as_str(), "all"] {
                        let c = &mut cells.entry(cell.to_string()).or_default()[a];
                        c.0 += 1;
                        c.1 += u64::from(rejected);
                        c.2 += exact;
                    }
                }
            }
        }
        for (a, alpha) in alphas.iter().enumerate() {
            for (language, c) in cells
                .iter()
                .filter(|(l, _)| *l != "all")
                .chain(cells.get_key_value("all"))
            {
                let (tests, fp, sizes) = c[a];
                let (lo, hi) = stats::clopper_pearson(fp, tests, 0.99);
                let exact = sizes / tests as f64;
                let inside = (lo..=hi).contains(&exact);
                println!(
                    "| {name}, {language} | {alpha:.0e} | {tests} | {fp} | {:.2e} | [{lo:.2e}, {hi:.2e}] | {exact:.2e} | {} |",
                    fp as f64 / tests as f64,
                    if inside { "yes" } else { "**no**" }
                );
            }
        }
    }
    println!(
        "\n| language | documents | plan: as given / canonical / both (drawn) | plan (every document of the corpus) |"
    );
    println!("|---|---|---|---|");
    for (language, d) in &drawn_plans {
        let a = all_plans[language];
        println!(
            "| {language} | {} | {} / {} / {} | {} / {} / {} of {} |",
            d.iter().sum::<usize>(),
            d[0],
            d[1],
            d[2],
            a[0],
            a[1],
            a[2],
            a.iter().sum::<usize>()
        );
    }
    println!(
        "\n{checked} scan lines (the first key of each scheme) equal to `detect_text`'s; {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}
