//! Tampered text on the real model: SmolLM2's watermarked answers to the
//! demo's prompts (kgw δ=2 h=1, gumbel, tournament), with every tampering
//! the verifier canonicalises, stay detected at 1e-6 whenever the untampered
//! answer is: version 1's ten at rates 0.5 and 1, and the ones canonical
//! form version 2 adds (doubled spaces, tabs, U+2800, a dot below raw and
//! composed, small capitals, IPA letters, Greek, words reversed by RLO, the
//! dominant script flipped by Cyrillic or Greek look-alikes and appended
//! paragraphs; issue 28) at 0.25 and 1, for every answer detected untampered
//! with margin (log10 p < −6.31).
//!
//! Needs the SmolLM2 GGUF at `$TRACEMARK_MODEL`; `make test` runs it with
//! `--ignored` (it fails, never skips, without the model):
//!
//! ```text
//! TRACEMARK_MODEL="$(python3 scripts/fetch.py model)" \
//!     cargo test --release -p tracemark-lab --test tampering -- --ignored --nocapture
//! ```

mod support;

use support::model_path;
use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, Arm, Llama, LoadOptions, Rng, Sampling};
use tracemark_core::{Key, SchemeConfig};
use tracemark_lab::tamper::{tamper, Tampering};
use tracemark_verifier::{DetectOptions, Detector, TextTokenizer, Verdict};

/// The demo's prompts (`examples/src/bin/demo.rs`).
const PROMPTS: [&str; 3] = [
    "Explain how photosynthesis works.",
    "Write a short story about a lighthouse keeper.",
    "What are some ways to reduce plastic waste?",
];

const SCHEMES: [&str; 3] = [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "gumbel:temperature=1,context=lefthash:4",
    "tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4",
];

/// Detected clean with margin: the factor 2 of testing two forms would still
/// leave it below 1e-6.
const MARGIN: f64 = -6.31;

#[test]
#[ignore = "needs the SmolLM2 model: run by `make test`"]
fn every_tampering_of_real_answers_is_still_detected() {
    let path = model_path();
    let model = Llama::load(&path, LoadOptions::default()).expect("load");
    let tok = gguf_tokenizer::from_gguf(&path).expect("tokenizer");
    let verifier_tok = TextTokenizer::from_tokenizer(&tok).expect("tokenizer");
    let vocab = model.config().vocab_size;
    let key = Key::from_bytes([0x7a; 32]); // a fixed test key: the verdicts do not depend on a draw
    let configs: Vec<SchemeConfig> = SCHEMES.iter().map(|s| s.parse().expect("scheme")).collect();
    let schemes: Vec<_> = configs.iter().map(|c| c.build(&key, vocab).expect("build")).collect();
    let arms: Vec<Arm<'_>> = schemes
        .iter()
        .map(|s| Arm {
            scheme: Some(s.as_ref()),
            steer: None,
            skip_repeated: s.contract().skip_repeated,
            sampling: Sampling::default(),
        })
        .collect();
    let stop = [gguf_tokenizer::token_id(&tok, "<|im_end|>").expect("id")];
    let options = DetectOptions {
        alpha: 1e-6,
        ..DetectOptions::default()
    };
    let plain_options = DetectOptions {
        canonicalize: false,
        ..options.clone()
    };
    let mut tested = 0;
    let mut escaped_without = 0;
    let mut lines = Vec::new();
    for (n, user) in PROMPTS.iter().enumerate() {
        let prompt_text = chat_prompt(user);
        let prompt = gguf_tokenizer::encode(&tok, &prompt_text).expect("encode");
        let mut rngs: Vec<Rng> = (0..arms.len())
            .map(|i| Rng::new(1000 + 10 * n as u64 + i as u64))
            .collect();
        let (gens, _) = generate(&model, &prompt, &arms, 120, &stop, &mut rngs).expect("generate");
        for ((config, g), scheme) in configs.iter().zip(&gens).zip(SCHEMES) {
            let text = gguf_tokenizer::decode(&tok, &g.ids).expect("decode");
            let detector = Detector::new(&key, config, vocab, options.clone()).expect("detector");
            let plain = Detector::new(&key, config, vocab, plain_options.clone()).expect("detector");
            let clean = detector
                .detect_text(&verifier_tok, Some(&prompt_text), &text)
                .expect("detect");
            let mut row = format!(
                "{:<12} prompt {}  clean {:>7.2} ({} canonical changes: {:?})",
                scheme.split(':').next().unwrap_or(scheme),
                n + 1,
                clean.conservative_verdict_log10_p(),
                clean.canonical.as_ref().map_or(0, |c| c.changes.total),
                clean.canonical.as_ref().map(|c| c
                    .changes
                    .characters
                    .iter()
                    .take(3)
                    .map(|k| format!("{} {}->{} x{}", k.kind, k.from, k.to, k.count))
                    .collect::<Vec<_>>())
            );
            // The bar (issue 28): every answer detected clean with margin.
            if clean.conservative_verdict_log10_p() >= MARGIN {
                lines.push(row + "  (not detected untampered with margin: no claim)");
                continue;
            }
            let attacks = Tampering::ALL
                .iter()
                .map(|&t| (t, [0.5, 1.0]))
                .chain(Tampering::ROUND_TWO.iter().map(|&t| (t, [0.25, 1.0])));
            for (t, rates) in attacks {
                for rate in rates {
                    let tampered = tamper(&text, t, rate, 17 + n as u64);
                    if tampered == text {
                        continue; // e.g. no accented letter to decompose
                    }
                    if t.appends() {
                        // A flip appends human paragraphs: the claim is
                        // against the answer with the same paragraphs.
                        let baseline = tamper(&text, t, 0.0, 17 + n as u64);
                        let b = detector
                            .detect_text(&verifier_tok, Some(&prompt_text), &baseline)
                            .expect("detect");
                        if b.conservative_verdict_log10_p() >= MARGIN {
                            row += &format!(
                                "  {t}@{rate} baseline {:.1}: no claim",
                                b.conservative_verdict_log10_p()
                            );
                            continue;
                        }
                    }
                    let r = detector
                        .detect_text(&verifier_tok, Some(&prompt_text), &tampered)
                        .expect("detect");
                    let without = plain
                        .detect_text(&verifier_tok, Some(&prompt_text), &tampered)
                        .expect("detect");
                    tested += 1;
                    escaped_without += usize::from(without.verdict != Verdict::Detected);
                    if rate == 1.0 {
                        row += &format!(
                            "  {t} {:.1}/{:.1}",
                            r.conservative_verdict_log10_p(),
                            without.conservative_verdict_log10_p()
                        );
                    }
                    assert_eq!(
                        r.verdict,
                        Verdict::Detected,
                        "{scheme}, prompt {}, {t} at {rate}: {:?}",
                        n + 1,
                        r.canonical
                    );
                    let c = r.canonical.as_ref().expect("canonical section");
                    assert!(c.changes.total > 0, "{t}: the report lists the tampering");
                }
            }
            lines.push(row);
        }
    }
    println!("log10 p with canonicalisation / without, tampering at rate 1:");
    for l in &lines {
        println!("{l}");
    }
    println!("{tested} tampered answers detected; {escaped_without} of them escape without canonicalisation");
    assert!(tested >= 200, "only {tested} tampered answers were tested");
    assert!(
        escaped_without * 2 > tested,
        "the attacks should defeat the verdict without canonicalisation"
    );
}
