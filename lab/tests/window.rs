//! The window search (SPEC §16) on real human text: over 300 segments of
//! 2,300 tokens of Debian-packaged prose, each under 10 random keys (3,000
//! tests per scheme, fixed seed), the share whose family p-value (whole text
//! and window search) is at most alpha stays at or below the 99.5% quantile
//! of Binomial(3,000, alpha), for alpha = 0.05 and 0.01.
//!
//! Needs the human-text corpus and a real tokenizer, which `make test`
//! fetches (`python3 scripts/fetch.py human-text` and `... tokenizer`):
//!
//! ```text
//! TRACEMARK_HUMAN_TEXT=... TRACEMARK_TOKENIZER=... \
//!     cargo test --release -p tracemark-lab --test window -- --ignored --nocapture
//! ```

mod support;

use rayon::prelude::*;
use serde_json::Value;
use support::Rng;
use tracemark_core::SchemeConfig;
use tracemark_verifier::stats::binomial_central_range;
use tracemark_verifier::{DetectOptions, Detector, TextTokenizer, WindowOptions};

const SEGMENT: usize = 2_300;
const SEGMENTS: usize = 300;
const KEYS: usize = 10;

fn env_path(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("set {var} (make test does: python3 scripts/fetch.py ...)"))
}

#[test]
#[ignore = "needs the human-text corpus and a tokenizer: run by `make test`"]
fn the_window_search_is_conservative_on_real_prose() {
    let tokenizer = TextTokenizer::from_file(env_path("TRACEMARK_TOKENIZER")).expect("tokenizer");
    let vocab = tokenizer.vocab_size();
    let corpus = std::fs::read_to_string(env_path("TRACEMARK_HUMAN_TEXT")).expect("human-text corpus");
    let prose: Vec<String> = corpus
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("corpus line"))
        .filter(|v| v["category"] == "prose")
        .map(|v| v["text"].as_str().expect("text").to_string())
        .collect();
    let ids: Vec<u32> = prose
        .par_iter()
        .map(|t| tokenizer.encode(t).expect("encodes").ids)
        .collect::<Vec<_>>()
        .concat();
    let available = ids.len() / SEGMENT;
    assert!(
        available >= SEGMENTS,
        "only {available} prose segments of {SEGMENT} tokens"
    );
    // Segments spread evenly over the corpus (its sources are in order).
    let segments: Vec<&[u32]> = (0..SEGMENTS)
        .map(|i| {
            let at = i * available / SEGMENTS * SEGMENT;
            &ids[at..at + SEGMENT]
        })
        .collect();
    let mut rng = Rng::new(0x3917_d0e5);
    let keys: Vec<_> = (0..KEYS).map(|_| rng.key()).collect();
    let options = DetectOptions {
        alpha: 0.05,
        window: Some(WindowOptions::default()),
        ..DetectOptions::default()
    };
    for scheme in [
        "kgw:gamma=0.25,delta=2,context=lefthash:1",
        "gumbel:temperature=1,context=lefthash:4",
        "tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4",
    ] {
        let config: SchemeConfig = scheme.parse().expect("scheme");
        let family: Vec<f64> = keys
            .par_iter()
            .flat_map_iter(|key| {
                let detector = Detector::new(key, &config, vocab, options.clone()).expect("detector");
                segments
                    .iter()
                    .map(|s| {
                        let d = detector.detect_ids(&[], s).expect("detects");
                        d.window.expect("a window search on 2,300 tokens").family_log10_p
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let n = family.len() as u64;
        for alpha in [0.05f64, 0.01] {
            let hits = family.iter().filter(|&&p| p <= alpha.log10()).count() as u64;
            let (_, hi) = binomial_central_range(n, alpha, 0.99);
            println!("{scheme}: {hits} of {n} at family p <= {alpha} (99.5% quantile {hi})");
            assert!(
                hits <= hi,
                "{scheme}: {hits} of {n} human segments at family p <= {alpha}, above the 99.5% quantile {hi}"
            );
        }
    }
}
