//! Detection behaviour: power against closed forms, deduplication, windows,
//! keyrings, corpus scans, the text path and bad input.

mod support;

use support::{flat_candidates, generate, random_tokens, word_tokenizer_json, words, Rng};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::stats::{self, ln_binomial_upper, ln_gamma_upper};
use tracemark_verifier::{
    ContextFilter, Dedup, DetectOptions, Detector, Document, Error, Keyring, KeyringDetector, Outcome, Scanner,
    TextTokenizer, TokenStatus, Verdict, WindowOptions,
};

fn config(s: &str) -> SchemeConfig {
    s.parse().expect("scheme config")
}

fn options(alpha: f64) -> DetectOptions {
    DetectOptions {
        alpha,
        min_scored: 1,
        ..DetectOptions::default()
    }
}

/// Smallest k with P(Binomial(n, p) >= k) < alpha (n + 1 when no count is that unlikely).
fn binomial_critical(n: u64, p: f64, alpha: f64) -> u64 {
    stats::binomial_critical(n, p, alpha).unwrap_or(n + 1)
}

/// Checks an empirical detection rate against a predicted one, within 4.5
/// standard errors plus `slack` for the approximation in the prediction.
fn assert_rate(name: &str, detected: usize, trials: usize, predicted: f64, slack: f64) {
    let got = detected as f64 / trials as f64;
    let se = (predicted * (1.0 - predicted) / trials as f64).sqrt();
    assert!(
        (got - predicted).abs() <= 4.5 * se + slack,
        "{name}: detection rate {got:.3} vs predicted {predicted:.3} (se {se:.3})"
    );
}

/// kgw on flat logits: each token is green with probability
/// g e^d / (1 + g (e^d - 1)), so the green count is Binomial(n, that) and the
/// detection rate is its tail beyond the null critical value.
#[test]
fn kgw_power_matches_closed_form() {
    let (vocab, n, trials, alpha) = (4000usize, 40usize, 600usize, 1e-3);
    let cfg = config("kgw:gamma=0.25,delta=1,context=lefthash:1");
    let mut rng = Rng::new(101);
    let mut detected = 0;
    for _ in 0..trials {
        let key = rng.key();
        let scheme = cfg.build(&key, vocab).expect("scheme");
        let prompt = [rng.below(vocab as u32)];
        let ids = generate(scheme.as_ref(), &prompt, n, &mut rng, |_, _| vec![0.0; vocab]);
        let d = Detector::new(&key, &cfg, vocab, options(alpha))
            .expect("detector")
            .detect_ids(&prompt, &ids)
            .expect("ok");
        detected += usize::from(d.verdict == Verdict::Detected);
    }
    let e = 1f64.exp();
    let p_green = 0.25 * e / (1.0 + 0.25 * (e - 1.0));
    let k = binomial_critical(n as u64, 0.25, alpha);
    let predicted = ln_binomial_upper(k, n as u64, p_green).exp();
    // Slack: contexts repeat rarely (dedup) and green-list sizes vary around gamma.
    assert_rate("kgw", detected, trials, predicted, 0.03);
}

/// Tournament with one layer over K equally likely candidates: each sampled
/// token has g = 1 with probability 1/2 + (1 - 1/K)/4 (SynthID's closed form).
#[test]
fn tournament_power_matches_closed_form() {
    let (vocab, k_cands, n, trials, alpha) = (5000usize, 4usize, 60usize, 600usize, 1e-3);
    let cfg = config("tournament:layers=1,top_k=4,temperature=1,context=lefthash:2");
    let mut rng = Rng::new(102);
    let mut detected = 0;
    for _ in 0..trials {
        let key = rng.key();
        let scheme = cfg.build(&key, vocab).expect("scheme");
        let prompt = [rng.below(vocab as u32), rng.below(vocab as u32)];
        let ids = generate(scheme.as_ref(), &prompt, n, &mut rng, |_, r| {
            flat_candidates(vocab, k_cands, r)
        });
        let d = Detector::new(&key, &cfg, vocab, options(alpha))
            .expect("detector")
            .detect_ids(&prompt, &ids)
            .expect("ok");
        detected += usize::from(d.verdict == Verdict::Detected);
    }
    let q = 0.5 + 0.25 * (1.0 - 1.0 / k_cands as f64);
    let k = binomial_critical(n as u64, 0.5, alpha);
    let predicted = ln_binomial_upper(k, n as u64, q).exp();
    assert_rate("tournament", detected, trials, predicted, 0.02);
}

/// Gumbel over K equally likely candidates: the selected token's score
/// -ln(1 - u) is the maximum of K Exponential(1) variables. The predicted
/// rate is that law's n-fold sum beyond the Gamma(n, 1) critical value
/// (the sum's tail by simulation from the closed-form law).
#[test]
fn gumbel_power_matches_closed_form() {
    let (vocab, k_cands, n, trials, alpha) = (5000usize, 2usize, 40usize, 600usize, 1e-3);
    let cfg = config("gumbel:temperature=1,context=lefthash:2");
    let mut rng = Rng::new(103);
    let mut detected = 0;
    for _ in 0..trials {
        let key = rng.key();
        let scheme = cfg.build(&key, vocab).expect("scheme");
        let prompt = [rng.below(vocab as u32), rng.below(vocab as u32)];
        let ids = generate(scheme.as_ref(), &prompt, n, &mut rng, |_, r| {
            flat_candidates(vocab, k_cands, r)
        });
        let d = Detector::new(&key, &cfg, vocab, options(alpha))
            .expect("detector")
            .detect_ids(&prompt, &ids)
            .expect("ok");
        detected += usize::from(d.verdict == Verdict::Detected);
    }
    // Critical value of Gamma(n, 1) by bisection.
    let (mut lo, mut hi) = (n as f64, 10.0 * n as f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if ln_gamma_upper(n as u64, mid) < alpha.ln() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let mut sim = Rng::new(999);
    let sims = 200_000;
    let above = (0..sims)
        .filter(|_| {
            let total: f64 = (0..n)
                .map(|_| (0..k_cands).map(|_| -(1.0 - sim.uniform()).ln()).fold(0.0, f64::max))
                .sum();
            total >= hi
        })
        .count();
    let predicted = above as f64 / sims as f64;
    assert_rate("gumbel", detected, trials, predicted, 0.02);
}

#[test]
fn dedup_stops_repeats_from_counting_twice() {
    let vocab = 5000;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let mut rng = Rng::new(104);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let once = generate(scheme.as_ref(), &[7], 60, &mut rng, |_, _| vec![0.0; vocab]);
    let repeated: Vec<u32> = once.iter().copied().cycle().take(once.len() * 10).collect();
    let detect = |dedup, ids: &[u32]| {
        let opts = DetectOptions { dedup, ..options(1e-6) };
        Detector::new(&key, &cfg, vocab, opts)
            .expect("detector")
            .detect_ids(&[7], ids)
            .expect("ok")
    };
    let single = detect(Dedup::Pair, &once);
    let tenfold = detect(Dedup::Pair, &repeated);
    // The first copy is all there is to score (plus at most one new context at the seam).
    assert!(tenfold.counts.scored <= single.counts.scored + 1);
    assert!(tenfold.counts.skipped_duplicate >= 9 * once.len() - 1);
    let raw = detect(Dedup::None, &repeated);
    assert_eq!(raw.counts.scored, repeated.len());
    assert!(
        raw.outcome.log10_p().expect("p") < 5.0 * single.outcome.log10_p().expect("p"),
        "no dedup inflates the evidence"
    );
    let ctx = detect(Dedup::Context, &once);
    assert!(ctx.counts.scored <= single.counts.scored);
}

/// Under the null, repetitive text gives uniform p-values only with deduplication.
#[test]
fn dedup_keeps_repetitive_text_calibrated() {
    let vocab = 5000;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let mut rng = Rng::new(105);
    let keys = 400;
    let (mut fp_dedup, mut fp_raw) = (0usize, 0usize);
    for _ in 0..keys {
        let phrase = random_tokens(vocab, 25, &mut rng);
        let text: Vec<u32> = phrase.iter().copied().cycle().take(500).collect();
        let key = rng.key();
        for (dedup, fp) in [(Dedup::Pair, &mut fp_dedup), (Dedup::None, &mut fp_raw)] {
            let opts = DetectOptions { dedup, ..options(0.05) };
            let d = Detector::new(&key, &cfg, vocab, opts)
                .expect("detector")
                .detect_ids(&[], &text)
                .expect("ok");
            *fp += usize::from(d.verdict == Verdict::Detected);
        }
    }
    let se = (0.05f64 * 0.95 / keys as f64).sqrt();
    assert!(
        (fp_dedup as f64 / keys as f64) <= 0.05 + 4.0 * se,
        "dedup on: {fp_dedup}/{keys}"
    );
    assert!(
        (fp_raw as f64 / keys as f64) > 0.2,
        "dedup off should be badly miscalibrated: {fp_raw}/{keys}"
    );
}

/// Zipf-distributed tokens: frequent tokens recur after many different
/// contexts. Under self-hash such a token often anchors its own seed, so its
/// value repeats across contexts; deduplicating on the (seed, token) pair keeps
/// the test exact (keying on the context would count those copies).
#[test]
fn dedup_on_the_seed_keeps_self_hash_calibrated() {
    let vocab = 5000u32;
    let mut rng = Rng::new(111);
    let trials = 400;
    // Zipf(1) over 300 tokens by inverse CDF.
    let weights: Vec<f64> = (1..=300).map(|r| 1.0 / f64::from(r)).collect();
    let total: f64 = weights.iter().sum();
    for cfg in [
        "kgw:gamma=0.25,delta=2,context=selfhash:4",
        "gumbel:temperature=1,context=selfhash:2",
    ] {
        let cfg = config(cfg);
        let mut fp = 0;
        for _ in 0..trials {
            let text: Vec<u32> = (0..600)
                .map(|_| {
                    let mut u = rng.uniform() * total;
                    let mut r = 0;
                    while u >= weights[r] && r + 1 < weights.len() {
                        u -= weights[r];
                        r += 1;
                    }
                    (r as u32 * 7919) % vocab
                })
                .collect();
            let d = Detector::new(&rng.key(), &cfg, vocab as usize, options(0.05))
                .expect("detector")
                .detect_ids(&[], &text)
                .expect("ok");
            fp += usize::from(d.verdict == Verdict::Detected);
        }
        let se = (0.05f64 * 0.95 / trials as f64).sqrt();
        assert!(
            (fp as f64 / trials as f64) <= 0.05 + 4.0 * se,
            "{cfg}: {fp}/{trials} false positives at alpha 0.05"
        );
    }
}

#[test]
fn window_finds_a_pasted_watermarked_span() {
    let vocab = 20_000;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let mut rng = Rng::new(106);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let marked = generate(scheme.as_ref(), &[3], 100, &mut rng, |_, _| vec![0.0; vocab]);
    let mut text = random_tokens(vocab, 200, &mut rng);
    text.extend_from_slice(&marked);
    text.extend(random_tokens(vocab, 200, &mut rng));
    let opts = DetectOptions {
        window: Some(WindowOptions::default()),
        ..options(1e-6)
    };
    let d = Detector::new(&key, &cfg, vocab, opts)
        .expect("detector")
        .detect_ids(&[], &text)
        .expect("ok");
    let w = d.window.expect("window");
    let overlap = w.end.min(300).saturating_sub(w.start.max(200));
    assert!(overlap >= 50, "window {}..{} misses the span 200..300", w.start, w.end);
    assert!(w.log10_p < -6.0, "corrected window p {}", w.log10_p);
    assert!(
        w.log10_p_uncorrected < d.outcome.log10_p().expect("p"),
        "the window is more significant than the whole text"
    );
    assert!(w.correction.contains("Bonferroni") && w.windows_examined > 10);
    assert!(w.log10_p >= w.log10_p_uncorrected);
}

/// The corrected window p-value controls false positives on unwatermarked text.
#[test]
fn window_p_value_is_conservative_under_the_null() {
    let vocab = 20_000;
    let mut rng = Rng::new(107);
    let trials = 300;
    for cfg in [
        "kgw:gamma=0.25,delta=2,context=lefthash:1",
        "gumbel:temperature=1,context=lefthash:2",
    ] {
        let cfg = config(cfg);
        let mut fp = 0;
        for _ in 0..trials {
            let text = random_tokens(vocab, 400, &mut rng);
            let opts = DetectOptions {
                window: Some(WindowOptions::default()),
                ..options(0.05)
            };
            let d = Detector::new(&rng.key(), &cfg, vocab, opts)
                .expect("detector")
                .detect_ids(&[], &text)
                .expect("ok");
            fp += usize::from(d.window.expect("window").p_value < 0.05);
        }
        let se = (0.05f64 * 0.95 / trials as f64).sqrt();
        assert!((fp as f64 / trials as f64) <= 0.05 + 3.0 * se, "{cfg}: {fp}/{trials}");
    }
}

#[test]
fn keyring_names_exactly_the_generating_cohort() {
    let vocab = 20_000;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let mut rng = Rng::new(108);
    let master = rng.key();
    let labels: Vec<String> = (0..8).map(|i| format!("cohort/{i}")).collect();
    let ring = Keyring::derived(&master, &labels).expect("keyring");
    let cohort3 = master.derive("cohort/3").expect("derive");
    let scheme = cfg.build(&cohort3, vocab).expect("scheme");
    let ids = generate(scheme.as_ref(), &[11], 150, &mut rng, |_, _| vec![0.0; vocab]);
    let kd = KeyringDetector::new(&ring, &cfg, vocab, options(0.01)).expect("keyring detector");
    let r = kd.detect_ids(&[11], &ids).expect("ok");
    assert_eq!(r.best, Some(3));
    let named: Vec<&str> = r
        .keys
        .iter()
        .filter(|k| k.detected())
        .map(|k| k.label.as_str())
        .collect();
    assert_eq!(named, ["cohort/3"]);
    assert_eq!(r.keys[3].key_id, cohort3.id());
    assert!(r.correction.contains("Holm"));

    // Family-wise error under the null: no cohort named on unwatermarked text.
    let trials = 200;
    let mut any = 0;
    for _ in 0..trials {
        let ring = Keyring::derived(&rng.key(), &labels).expect("keyring");
        let kd = KeyringDetector::new(&ring, &cfg, vocab, options(0.05)).expect("detector");
        let text = random_tokens(vocab, 150, &mut rng);
        any += usize::from(kd.detect_ids(&[], &text).expect("ok").keys.iter().any(|k| k.detected()));
    }
    let se = (0.05f64 * 0.95 / trials as f64).sqrt();
    assert!(
        (any as f64 / trials as f64) <= 0.05 + 3.0 * se,
        "family-wise false positives {any}/{trials}"
    );
}

fn corpus_line(ids: &[u32], id: usize) -> String {
    serde_json::json!({"id": id, "ids": ids}).to_string()
}

#[test]
fn corpus_scan_reports_every_line_and_aggregates_across_documents() {
    let vocab = 20_000;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let mut rng = Rng::new(109);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let mut lines = Vec::new();
    let marked: Vec<Vec<u32>> = (0..5)
        .map(|i| generate(scheme.as_ref(), &[i], 80, &mut rng, |_, _| vec![0.0; vocab]))
        .collect();
    for (i, m) in marked.iter().enumerate() {
        lines.push(corpus_line(m, i));
        lines.push(corpus_line(&random_tokens(vocab, 80, &mut rng), 100 + i));
    }
    lines.push("{not json".to_string());
    lines.push(String::new());
    lines.push(serde_json::json!({"ids": [1, 2, vocab]}).to_string());
    lines.push(serde_json::json!({"text": "needs a tokenizer"}).to_string());
    let corpus = lines.join("\n") + "\n";
    let detector = Detector::new(&key, &cfg, vocab, DetectOptions::default()).expect("detector");
    let mut seen = Vec::new();
    let summary = Scanner::new(&detector, None)
        .jobs(2)
        .scan(corpus.as_bytes(), |d| seen.push(d.clone()))
        .expect("scan");
    assert_eq!(summary.documents, 13);
    assert_eq!(summary.errors, 3);
    assert_eq!(summary.detected, 5);
    assert_eq!(summary.not_detected, 5);
    assert_eq!(seen.len(), 13);
    assert_eq!(seen[10].line, 11);
    assert!(seen[10].error.as_deref().is_some_and(|e| e.contains("JSON")));
    assert_eq!(
        seen[11].line, 13,
        "the blank line 12 is skipped but counted in line numbers"
    );
    assert!(seen[11].error.as_deref().is_some_and(|e| e.contains("vocabulary")));
    assert_eq!(summary.aggregate.verdict, Verdict::Detected);

    // A document repeated across the corpus adds nothing to the aggregate.
    let doubled = format!(
        "{corpus}{}\n{}\n",
        corpus_line(&marked[0], 0),
        corpus_line(&marked[0], 0)
    );
    let again = Scanner::new(&detector, None)
        .jobs(1)
        .scan(doubled.as_bytes(), |_| ())
        .expect("scan");
    assert_eq!(again.aggregate.counts.scored, summary.aggregate.counts.scored);
    assert_eq!(again.detected, 7);
    assert_ne!(again.corpus_sha256, summary.corpus_sha256);
}

#[test]
fn in_memory_scan_equals_the_jsonl_scan_of_the_same_documents() {
    let vocab = 20_000;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let mut rng = Rng::new(112);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let mut docs = Vec::new();
    for i in 0..6u32 {
        let prompt = vec![i, i + 1];
        let ids = if i % 2 == 0 {
            generate(scheme.as_ref(), &prompt, 60, &mut rng, |_, _| vec![0.0; vocab])
        } else {
            random_tokens(vocab, 60, &mut rng)
        };
        docs.push(Document::ids(prompt, ids).with_id(serde_json::json!(i)));
    }
    docs.push(Document::ids(vec![], vec![1, 2, vocab as u32]));
    docs.push(Document::text(None, "needs a tokenizer".into()));
    let jsonl: String = docs.iter().map(Document::to_json_line).collect();
    let detector = Detector::new(&key, &cfg, vocab, DetectOptions::default()).expect("detector");
    let (mut from_lines, mut from_docs) = (Vec::new(), Vec::new());
    let a = Scanner::new(&detector, None)
        .scan(jsonl.as_bytes(), |d| from_lines.push(d.clone()))
        .expect("scan");
    let b = Scanner::new(&detector, None)
        .scan_documents(docs.clone(), |d| from_docs.push(d.clone()))
        .expect("scan");
    assert_eq!(a, b, "same documents, same summary (and the same hash)");
    assert_eq!(from_lines, from_docs);
    assert_eq!((b.documents, b.errors, b.detected), (8, 2, 3));
    assert_eq!(from_docs[0].id, Some(serde_json::json!(0)));

    // The in-memory context filter equals the JSONL one.
    let ours = &docs[..6];
    let f1 = tracemark_verifier::context_keys(&detector, None, jsonl.as_bytes()).err();
    assert!(f1.is_some(), "the out-of-vocabulary document is an error");
    let lines: String = ours.iter().map(Document::to_json_line).collect();
    let f1 = tracemark_verifier::context_keys(&detector, None, lines.as_bytes()).expect("keys");
    let f2 = ContextFilter::from_documents(&detector, None, ours.to_vec()).expect("keys");
    assert!(f1.len() == f2.len() && !f1.is_empty());
    let filtered = |f| {
        Scanner::new(&detector, None)
            .filter(f)
            .scan_documents(ours.to_vec(), |_| ())
            .expect("scan")
    };
    assert_eq!(filtered(&f1), filtered(&f2));
}

#[test]
fn a_tokenizer_in_memory_has_the_fingerprint_of_its_file() {
    let json = word_tokenizer_json(500);
    let inner: tokenizers::Tokenizer = json.parse().expect("tokenizer");
    let from_memory = TextTokenizer::from_tokenizer(&inner).expect("wraps");
    let saved = inner.to_string(false).expect("serialises");
    let from_file = TextTokenizer::from_bytes(saved.as_bytes()).expect("parses");
    assert_eq!(from_memory.info(), from_file.info());
    assert_eq!(from_memory.vocab_size(), 500);
    assert_eq!(from_memory.encode("w1 w2 w499").expect("encodes").ids, [1, 2, 499]);
}

#[test]
fn text_path_uses_the_tokenizer_and_reports_spans() {
    let vocab = 3000;
    let tok = TextTokenizer::from_bytes(word_tokenizer_json(vocab).as_bytes()).expect("tokenizer");
    assert_eq!(tok.vocab_size(), vocab);
    let cfg = config("kgw:gamma=0.25,delta=3,context=lefthash:1");
    let mut rng = Rng::new(110);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let prompt = [5u32, 6, 7];
    let ids = generate(scheme.as_ref(), &prompt, 80, &mut rng, |_, _| vec![0.0; vocab]);
    let text = words(&ids);
    assert_eq!(tok.encode(&text).expect("encode").ids, ids);
    let opts = DetectOptions {
        marks: true,
        ..DetectOptions::default()
    };
    let d = Detector::new(&key, &cfg, vocab, opts).expect("detector");
    let r = d.detect_text(&tok, Some(&words(&prompt)), &text).expect("ok");
    assert_eq!(r.verdict, Verdict::Detected);
    assert_eq!(r.counts.prompt, 3);
    assert_eq!(r.counts.skipped_short_context, 0, "the prompt seeds the first context");
    let info = r.tokenizer.as_ref().expect("tokenizer info");
    assert!(info.fingerprint.starts_with("sha256:") && info.vocab_size == vocab);
    assert_eq!(
        r.input_sha256.as_deref(),
        Some(tracemark_verifier::internal::sha256_hex(text.as_bytes()).as_str())
    );
    let marks = r.marks.as_ref().expect("marks");
    let (s, e) = marks[1].span.expect("span");
    assert_eq!(&text[s..e], format!("w{}", ids[1]));
    assert!(marks
        .iter()
        .all(|m| m.status == TokenStatus::Scored || m.status == TokenStatus::Duplicate));
    // Without the prompt, the first token has no context.
    let r = d.detect_text(&tok, None, &text).expect("ok");
    assert_eq!(r.counts.skipped_short_context, 1);
    // The rendered report names everything a reviewer needs.
    let human = tracemark_verifier::render::detection(&r, Some(&text), false);
    for needle in [
        "WATERMARK DETECTED",
        "key id",
        "tokenizer",
        "sha256:",
        "p-value",
        "binomial",
        "tool",
    ] {
        assert!(human.contains(needle), "{needle} missing from\n{human}");
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let vocab = 100;
    let cfg = config("kgw:gamma=0.25,delta=2,context=lefthash:1");
    let key = Key::from_bytes([1; 32]);
    let d = Detector::new(&key, &cfg, vocab, DetectOptions::default()).expect("detector");
    assert_eq!(d.detect_ids(&[], &[]), Err(Error::EmptyInput));
    assert_eq!(
        d.detect_ids(&[1], &[1, 2, 100, 3]),
        Err(Error::WrongTokenizer {
            token: 100,
            position: 3,
            vocab_size: 100
        })
    );
    assert!(matches!(
        d.detect_ids(&[500], &[1, 2]),
        Err(Error::WrongTokenizer { position: 0, .. })
    ));
    let tok = TextTokenizer::from_bytes(word_tokenizer_json(vocab).as_bytes()).expect("tokenizer");
    assert_eq!(d.detect_text(&tok, None, "  \n "), Err(Error::EmptyInput));
    assert!(matches!(
        TextTokenizer::from_bytes(b"{\"not\": \"a tokenizer\"}"),
        Err(Error::Tokenizer { .. })
    ));
    for bad in [0.0, 1.0, f64::NAN] {
        let opts = DetectOptions {
            alpha: bad,
            ..DetectOptions::default()
        };
        assert!(matches!(
            Detector::new(&key, &cfg, vocab, opts),
            Err(Error::InvalidOption { name: "alpha", .. })
        ));
    }
    // Too few scored tokens: a typed inconclusive verdict, no p-value, nothing NaN.
    let r = d.detect_ids(&[1], &[2, 3, 4]).expect("ok");
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(r.outcome.log10_p().is_none() && r.outcome.test().is_none() && r.verdict_log10_p().is_none());
    assert!(matches!(&r.outcome, Outcome::Inconclusive { reason } if reason.contains("at least 10")));
    let json = serde_json::to_string(&r).expect("serializes");
    assert!(!json.contains("NaN") && !json.contains("null,\"log10_p\":NaN"));
    let back: tracemark_verifier::Detection = serde_json::from_str(&json).expect("round-trips");
    assert_eq!(back, r);
}
