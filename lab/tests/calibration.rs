//! Calibration on real human text: with deduplication on, the share of
//! unwatermarked documents with p < alpha stays within a 99% binomial interval
//! of alpha, for alpha = 0.01 and 0.05, across more than 200 random keys;
//! on text (each document tested as given and in canonical form, corrected
//! for the two tests), tampered or not, the share stays at or below alpha.
//!
//! Needs the human-text corpus and a real tokenizer, which `make test`
//! fetches (`python3 scripts/fetch.py human-text` and `... tokenizer`):
//!
//! ```text
//! TRACEMARK_HUMAN_TEXT=... TRACEMARK_TOKENIZER=... \
//!     cargo test --release -p tracemark-lab --test calibration -- --ignored --nocapture
//! ```
//!
//! It is `#[ignore]`d only so that a bare `cargo test` without the data does
//! not fail; `make test` runs it, and it fails (never skips) if the data is missing.

mod support;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde_json::Value;
use support::Rng;
use tracemark_core::SchemeConfig;
use tracemark_lab::tamper::{tamper, Tampering};
use tracemark_verifier::canonical::FormPlan;
use tracemark_verifier::stats::binomial_central_range;
use tracemark_verifier::{Dedup, DetectOptions, Detector, TextTokenizer};

const SCHEMES: [&str; 4] = [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.25,delta=2,context=selfhash:4",
    "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    "gumbel:temperature=1,context=lefthash:4",
];
const KEYS: usize = 250;
const DOCS_PER_KEY: usize = 12;
const PER_CATEGORY: usize = 1000;

struct Doc {
    category: String,
    text: String,
    ids: Vec<u32>,
}

/// How a document is tested.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Its ids, with this deduplication.
    Ids(Dedup),
    /// Its text, as given and in canonical form (the default text path).
    Text,
    /// Its text with a zero-width joiner in half of its words' gaps between
    /// letters, so that both forms differ and are always tested.
    Tampered,
}

fn env_path(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("set {var} (make test does: python3 scripts/fetch.py ...)"))
}

fn load_docs(tokenizer: &TextTokenizer) -> Vec<Doc> {
    let text = std::fs::read_to_string(env_path("TRACEMARK_HUMAN_TEXT")).expect("human-text corpus");
    let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("corpus line");
        let cat = v["category"].as_str().expect("category").to_string();
        by_category
            .entry(cat)
            .or_default()
            .push(v["text"].as_str().expect("text").to_string());
    }
    let mut picked = Vec::new();
    for (cat, texts) in by_category {
        // An even spread over each category's sources, at most PER_CATEGORY documents.
        let take = texts.len().min(PER_CATEGORY);
        picked.extend((0..take).map(|i| (cat.clone(), texts[i * texts.len() / take].clone())));
    }
    picked
        .into_par_iter()
        .map(|(category, t)| Doc {
            category,
            ids: tokenizer.encode(&t).expect("encodes").ids,
            text: t,
        })
        .filter(|d| d.ids.len() >= 200)
        .collect()
}

/// The 0.5% and 99.5% quantiles of Binomial(n, alpha), as shares.
fn interval99(n: u64, alpha: f64) -> (f64, f64) {
    let (lo, hi) = binomial_central_range(n, alpha, 0.99);
    (lo as f64 / n as f64, hi as f64 / n as f64)
}

#[test]
#[ignore = "needs the human-text corpus and a tokenizer: run by `make test`"]
fn p_values_are_calibrated_on_real_human_text() {
    let tokenizer = TextTokenizer::from_file(env_path("TRACEMARK_TOKENIZER")).expect("tokenizer");
    let vocab = tokenizer.vocab_size();
    let docs = load_docs(&tokenizer);
    let mut order: Vec<usize> = (0..docs.len()).collect();
    let mut rng = Rng::new(0xca11_b8a7e);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let tests = KEYS * DOCS_PER_KEY;
    assert!(
        order.len() >= tests,
        "only {} documents of at least 200 tokens",
        order.len()
    );
    let keys: Vec<_> = (0..KEYS).map(|_| rng.key()).collect();
    let tokens: usize = order[..tests].iter().map(|&i| docs[i].ids.len()).sum();
    println!(
        "\n{tests} tests: {KEYS} keys x {DOCS_PER_KEY} distinct documents each, {tokens} tokens, tokenizer {}",
        tokenizer.info().fingerprint
    );
    let changed = order[..tests]
        .iter()
        .filter(|&&i| !tracemark_verifier::canonicalize(&docs[i].text).is_unchanged())
        .count();
    let plans: Vec<FormPlan> = order[..tests]
        .iter()
        .map(|&i| tracemark_verifier::canonical::form_plan(&tracemark_verifier::canonicalize(&docs[i].text), None))
        .collect();
    let count = |p: FormPlan| plans.iter().filter(|&&q| q == p).count();
    println!(
        "{changed} of the {tests} documents change under canonicalisation; forms tested (SPEC §14.1): \
         as given {}, canonical {}, both {}",
        count(FormPlan::AsGiven),
        count(FormPlan::Canonical),
        count(FormPlan::Both)
    );
    println!("\n| scheme | mode | category | tests | p<0.01 | p<0.05 |\n|---|---|---|---:|---:|---:|");
    let mut failures = Vec::new();
    for scheme in SCHEMES {
        let config: SchemeConfig = scheme.parse().expect("scheme");
        for mode in [
            Mode::Ids(Dedup::Pair),
            Mode::Ids(Dedup::None),
            Mode::Text,
            Mode::Tampered,
        ] {
            let dedup = match mode {
                Mode::Ids(d) => d,
                Mode::Text | Mode::Tampered => Dedup::Pair,
            };
            // (category, p-value) of every (key, document) test: each document is tested once, under one key.
            let results: Vec<(String, f64)> = (0..tests)
                .into_par_iter()
                .map(|t| {
                    let opts = DetectOptions {
                        dedup,
                        min_scored: 1,
                        ..DetectOptions::default()
                    };
                    let detector = Detector::new(&keys[t / DOCS_PER_KEY], &config, vocab, opts).expect("detector");
                    let doc = &docs[order[t]];
                    let log10_p = match mode {
                        Mode::Ids(_) => detector.detect_ids(&[], &doc.ids).expect("detects").outcome.log10_p(),
                        Mode::Text => detector
                            .detect_text(&tokenizer, None, &doc.text)
                            .expect("detects")
                            .verdict_log10_p(),
                        Mode::Tampered => {
                            let tampered = tamper(&doc.text, Tampering::ZeroWidthJoiner, 0.5, t as u64);
                            let r = detector.detect_text(&tokenizer, None, &tampered).expect("detects");
                            // Zero-width joiners are tampering only: the
                            // canonical form alone is tested (SPEC §14.1).
                            let c = r.canonical.as_ref().expect("canonical section");
                            assert_eq!((c.forms.len(), c.plan), (1, Some(FormPlan::Canonical)));
                            r.verdict_log10_p()
                        }
                    };
                    (doc.category.clone(), 10f64.powf(log10_p.expect("p")))
                })
                .collect();
            let mut cats: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for (c, p) in &results {
                cats.entry(c.as_str()).or_default().push(*p);
                cats.entry("all").or_default().push(*p);
            }
            for (cat, ps) in &cats {
                let share = |a: f64| ps.iter().filter(|&&p| p < a).count() as f64 / ps.len() as f64;
                let mode_name = match mode {
                    Mode::Ids(d) => format!("ids, dedup {d}"),
                    Mode::Text => "text, canonical".to_string(),
                    Mode::Tampered => "tampered text, canonical".to_string(),
                };
                println!(
                    "| {scheme} | {mode_name} | {cat} | {} | {:.4} | {:.4} |",
                    ps.len(),
                    share(0.01),
                    share(0.05)
                );
            }
            let all = &cats["all"];
            for alpha in [0.01, 0.05] {
                let share = all.iter().filter(|&&p| p < alpha).count() as f64 / all.len() as f64;
                let (lo, hi) = interval99(all.len() as u64, alpha);
                // Ids with dedup on: within the interval. Text, where the
                // family of two forms is Bonferroni-corrected: at most alpha
                // (the interval's top end).
                let fails = match mode {
                    Mode::Ids(Dedup::Pair) => !(lo..=hi).contains(&share),
                    Mode::Ids(_) => false,
                    Mode::Text | Mode::Tampered => share > hi,
                };
                if fails {
                    failures.push(format!(
                        "{scheme} ({mode:?}): share {share:.4} at alpha {alpha} outside [{lo:.4}, {hi:.4}]"
                    ));
                }
            }
        }
    }
    for alpha in [0.01, 0.05] {
        let (lo, hi) = interval99(tests as u64, alpha);
        println!("\n99% binomial interval of the share at alpha = {alpha} over {tests} tests: [{lo:.4}, {hi:.4}]");
    }
    assert!(
        failures.is_empty(),
        "miscalibrated with dedup on:\n{}",
        failures.join("\n")
    );
}
