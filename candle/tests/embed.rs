//! The sentence embedder against sentence-transformers itself: the golden
//! embeddings of `testdata/embed/minilm.json` (written by
//! `testdata/embed/gen_minilm.py`) are reproduced to a cosine of at least
//! 0.9999 per sentence, truncation and batching included.
//!
//! Needs all-MiniLM-L6-v2 at `$TRACEMARK_EMBEDDER` (`make test-rust` sets it
//! from `python3 scripts/fetch.py embedder`); `#[ignore]`d only so that a bare
//! `cargo test` without it does not fail. They fail, never skip, without it:
//!
//! ```text
//! TRACEMARK_EMBEDDER="$(python3 scripts/fetch.py embedder)" \
//!     cargo test --release -p tracemark-candle --test embed -- --ignored
//! ```

use std::path::PathBuf;

use serde_json::Value;
use tracemark_candle::embed::Embedder;

struct Golden {
    model_sha256: String,
    max_seq_length: usize,
    min_cosine: f32,
    cases: Vec<(String, usize, Vec<f32>)>,
}

fn golden() -> Golden {
    let v: Value = serde_json::from_str(include_str!("../../testdata/embed/minilm.json")).expect("golden JSON");
    let cases = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let embedding = c["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            let tokens = c["tokens"].as_u64().expect("tokens") as usize;
            (c["sentence"].as_str().expect("sentence").to_string(), tokens, embedding)
        })
        .collect();
    Golden {
        model_sha256: v["model_sha256"].as_str().expect("model_sha256").to_string(),
        max_seq_length: v["max_seq_length"].as_u64().expect("max_seq_length") as usize,
        min_cosine: v["min_cosine"].as_f64().expect("min_cosine") as f32,
        cases,
    }
}

/// all-MiniLM-L6-v2 at `$TRACEMARK_EMBEDDER`: a test fails, never skips, without it.
fn embedder() -> Embedder {
    let dir = std::env::var_os("TRACEMARK_EMBEDDER")
        .map(PathBuf::from)
        .expect("set TRACEMARK_EMBEDDER to the all-MiniLM-L6-v2 folder (make test-rust does: python3 scripts/fetch.py embedder)");
    Embedder::load(&dir).expect("load the embedder")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
#[ignore = "needs all-MiniLM-L6-v2: run by `make test`"]
fn embeddings_match_sentence_transformers() {
    let golden = golden();
    let embedder = embedder();
    assert_eq!(embedder.fingerprint(), format!("sha256:{}", golden.model_sha256));
    assert_eq!(embedder.max_tokens(), golden.max_seq_length);
    assert!(embedder.normalizes());
    let sentences: Vec<&str> = golden.cases.iter().map(|(s, _, _)| s.as_str()).collect();
    let got = embedder.embed(&sentences).expect("embed");
    assert_eq!((got.len(), got.dim()), (golden.cases.len(), 384));
    let mut worst = (f32::INFINITY, 0.0f32);
    for (i, (sentence, tokens, want)) in golden.cases.iter().enumerate() {
        assert_eq!(embedder.token_count(sentence).expect("tokens"), *tokens, "{sentence:?}");
        let row = got.row(i);
        let c = cosine(row, want);
        let diff = row.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(
            c >= golden.min_cosine,
            "{sentence:?}: cosine {c} with sentence-transformers"
        );
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{sentence:?}: norm {norm}");
        worst = (worst.0.min(c), worst.1.max(diff));
    }
    println!(
        "{} sentences: worst cosine {:.7}, worst coordinate difference {:.2e}",
        golden.cases.len(),
        worst.0,
        worst.1
    );
}

#[test]
#[ignore = "needs all-MiniLM-L6-v2: run by `make test`"]
fn a_sentence_embeds_the_same_alone_and_in_any_batch() {
    let golden = golden();
    let embedder = embedder();
    let sentences: Vec<&str> = golden.cases.iter().map(|(s, _, _)| s.as_str()).collect();
    let batch = embedder.embed(&sentences).expect("embed");
    let reversed: Vec<&str> = sentences.iter().rev().copied().collect();
    let backwards = embedder.embed(&reversed).expect("embed");
    for (i, sentence) in sentences.iter().enumerate() {
        let alone = embedder.embed(&[sentence]).expect("embed");
        assert!(cosine(alone.row(0), batch.row(i)) > 0.99999, "{sentence:?}");
        assert!(
            cosine(backwards.row(sentences.len() - 1 - i), batch.row(i)) > 0.99999,
            "{sentence:?}"
        );
    }
    assert!(embedder.embed::<&str>(&[]).expect("embed nothing").is_empty());
}

#[test]
#[ignore = "needs all-MiniLM-L6-v2: run by `make test`"]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let embedder = embedder();
    let e = embedder
        .embed(&[
            "The cat sat on the mat.",
            "A cat was sitting on the mat.",
            "The stock market fell sharply on Monday.",
        ])
        .expect("embed");
    let (para, other) = (cosine(e.row(0), e.row(1)), cosine(e.row(0), e.row(2)));
    assert!(para > 0.8 && other < 0.3, "paraphrase {para}, unrelated {other}");
}
