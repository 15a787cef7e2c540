//! The tokenizer fast path (`TextTokenizer::encode`) against `tokenizers`
//! itself (`encode_reference`) on the real tokenizers, SmolLM2's (from its
//! GGUF) and DeepSeek V3's: every fourth document of the human-text corpus,
//! every document of the multilingual one, and the tampering corpus (the
//! first 150 English
//! documents under every meaning-preserving and visible tampering at rates
//! 0.25 and 1), give the same ids and spans.
//!
//! Needs `$TRACEMARK_MODEL`, `$TRACEMARK_TOKENIZER`, `$TRACEMARK_HUMAN_TEXT`
//! and `$TRACEMARK_HUMAN_TEXT_MULTILINGUAL`; `make test` runs it with
//! `--ignored` (it fails, never skips, without them).

mod support;

use support::model_path;
use tracemark_candle::gguf_tokenizer;
use tracemark_lab::tamper::{tamper, Tampering};
use tracemark_verifier::TextTokenizer;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name} (scripts/fetch.py)"))
}

fn texts(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("the corpus")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let doc: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            doc["text"].as_str().expect("text").to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs the SmolLM2 model, the DeepSeek tokenizer and the human-text corpora: run by `make test`"]
fn the_fast_path_is_tokenizers_on_real_text() {
    let smollm2 = TextTokenizer::from_tokenizer(&gguf_tokenizer::from_gguf(&model_path()).expect("tokenizer"))
        .expect("SmolLM2's tokenizer");
    let deepseek = TextTokenizer::from_file(env("TRACEMARK_TOKENIZER")).expect("DeepSeek's tokenizer");
    // Every fourth, to keep `make test` short (all of them, 2026-12-07: 74.2M
    // SmolLM2 and 60.3M DeepSeek tokens with the multilingual and tampered
    // texts below, equal, in 207 s).
    let english: Vec<String> = texts(&env("TRACEMARK_HUMAN_TEXT")).into_iter().step_by(4).collect();
    let multilingual = texts(&env("TRACEMARK_HUMAN_TEXT_MULTILINGUAL"));
    let mut tampered = Vec::new();
    for (n, text) in english.iter().take(150).enumerate() {
        for (k, &t) in Tampering::MEANING_PRESERVING
            .iter()
            .chain(&Tampering::VISIBLE)
            .enumerate()
        {
            for rate in [0.25, 1.0] {
                tampered.push(tamper(text, t, rate, (n * 100 + k) as u64));
            }
        }
    }
    assert!(english.len() > 1_500 && multilingual.len() > 2_000 && tampered.len() > 7_000);
    for (name, tok) in [("SmolLM2", &smollm2), ("DeepSeek V3", &deepseek)] {
        assert!(tok.has_fast_path(), "{name}: no fast path (its pre-tokenizer changed?)");
        let mut tokens = 0;
        for (corpus, docs) in [
            ("human text", &english),
            ("multilingual", &multilingual),
            ("tampered", &tampered),
        ] {
            for (i, text) in docs.iter().enumerate() {
                let fast = tok.encode(text).expect("fast");
                let reference = tok.encode_reference(text).expect("tokenizers");
                assert!(
                    fast == reference,
                    "{name}, {corpus} document {i}: the fast path differs"
                );
                tokens += fast.ids.len();
            }
        }
        eprintln!("{name}: {tokens} tokens equal");
    }
}
