//! The text pipeline (issue 27, deliverable 3), single thread, on the first
//! 300 documents of the human-text corpus (`TRACEMARK_HUMAN_TEXT`) with
//! DeepSeek V3's tokenizer (`TRACEMARK_TOKENIZER`), in tokens per second:
//! `tokenizers` itself (the group's baseline) against the fast path of
//! `TextTokenizer::encode`, canonical form alone, and `detect_text` end to
//! end (canonical form, the forms rule, tokenizing, the exact test), as
//! `tracemark scan` runs it per document. `make bench` sets the variables.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{canonicalize, DetectOptions, Detector, TextTokenizer};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name} (make bench sets it; scripts/fetch.py)"))
}

fn documents(n: usize) -> Vec<String> {
    std::fs::read_to_string(env("TRACEMARK_HUMAN_TEXT"))
        .expect("the corpus")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| {
            let doc: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            doc["text"].as_str().expect("text").to_string()
        })
        .collect()
}

fn text(c: &mut Criterion) {
    let docs = documents(300);
    let tok = TextTokenizer::from_file(env("TRACEMARK_TOKENIZER")).expect("tokenizer");
    assert!(tok.has_fast_path());
    let tokens: usize = docs.iter().map(|d| tok.encode(d).expect("encode").ids.len()).sum();
    let mut group = c.benchmark_group("text/300-docs");
    group.throughput(Throughput::Elements(tokens as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.bench_function("tokenizers", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| tok.encode_reference(black_box(d)).expect("ok").ids.len())
                .sum::<usize>()
        })
    });
    group.bench_function("fast-path", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| tok.encode(black_box(d)).expect("ok").ids.len())
                .sum::<usize>()
        })
    });
    group.bench_function("canonical-form", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| canonicalize(black_box(d)).text().len())
                .sum::<usize>()
        })
    });
    let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme");
    let detector = Detector::new(
        &Key::from_bytes([3; 32]),
        &config,
        tok.vocab_size(),
        DetectOptions::default(),
    )
    .expect("detector");
    group.bench_function("detect-text", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| detector.detect_text(&tok, None, black_box(d)).expect("ok").counts.seen)
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, text);
criterion_main!(benches);
