//! The spoof-artifact test (`tracemark_verifier::forgery`) on a toy language:
//! its false-alarm rate on unwatermarked text is at most its level, genuine
//! watermarked text does not look forged, and a spoofer who knows the green
//! lists only of common (context, token) pairs is caught.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use support::Rng;
use tracemark_core::{Key, Scheme, SchemeConfig};
use tracemark_verifier::{DetectOptions, Detector, Error, ForgeryReference, Verdict};

const VOCAB: usize = 300;
const TOKENS: usize = 200;

fn config() -> SchemeConfig {
    "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("config")
}

/// A Zipf-like unigram language: token t has logit -ln(t + 1).
fn language() -> Vec<f32> {
    (0..VOCAB).map(|t| -((t + 1) as f32).ln()).collect()
}

/// One document of `TOKENS` tokens after a one-token prompt, each step's row
/// changed by `change(history, row)`.
fn document(rng: &mut Rng, mut change: impl FnMut(&[u32], &mut [f32])) -> (Vec<u32>, Vec<u32>) {
    let mut history = vec![rng.below(VOCAB as u32)];
    for _ in 0..TOKENS {
        let mut row = language();
        change(&history, &mut row);
        history.push(rng.sample_logits(&row) as u32);
    }
    let ids = history.split_off(1);
    (history, ids)
}

struct World {
    key: Key,
    scheme: Box<dyn Scheme>,
    detector: Detector,
    /// (previous token, token) counts of the reference.
    pairs: HashMap<(u32, u32), u32>,
}

fn world(seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let key = rng.key();
    let scheme = config().build(&key, VOCAB).expect("scheme");
    let reference: Vec<(Vec<u32>, Vec<u32>)> = (0..150).map(|_| document(&mut rng, |_, _| {})).collect();
    let mut pairs = HashMap::new();
    for (p, ids) in &reference {
        let seq: Vec<u32> = p.iter().chain(ids).copied().collect();
        for w in seq.windows(2) {
            *pairs.entry((w[0], w[1])).or_default() += 1;
        }
    }
    let options = DetectOptions {
        alpha: 1e-6,
        ..DetectOptions::default()
    };
    let detector = Detector::new(&key, &config(), VOCAB, options).expect("detector");
    let r = ForgeryReference::from_ids(
        &detector,
        reference.iter().map(|(p, d)| (p.as_slice(), d.as_slice())),
        2,
        1e-3,
    )
    .expect("reference");
    assert_eq!(r.documents(), 150);
    let detector = detector.with_forgery_reference(Arc::new(r)).expect("same key");
    World {
        key,
        scheme,
        detector,
        pairs,
    }
}

#[test]
fn false_alarms_on_unwatermarked_text_stay_below_the_level() {
    let w = world(1);
    let mut rng = Rng::new(2);
    let (trials, alpha) = (2000, 0.01);
    let mut tested = 0;
    let mut alarms = 0;
    for _ in 0..trials {
        let (p, ids) = document(&mut rng, |_, _| {});
        let d = w.detector.detect_ids(&p, &ids).expect("detect");
        if let Some(f) = &d.forgery {
            tested += 1;
            alarms += usize::from(f.p_value <= alpha);
            assert!(!d.looks_forged(), "unwatermarked text is never detected at 1e-6 here");
        }
    }
    assert!(
        tested > trials * 9 / 10,
        "{tested} of {trials} had both dense and sparse pairs"
    );
    // Exact conditional test: the rate is at most alpha (it is conservative,
    // being discrete), up to 4.5 standard errors of sampling.
    let bound = alpha * tested as f64 + 4.5 * (alpha * tested as f64).sqrt();
    assert!((alarms as f64) <= bound, "{alarms} alarms in {tested} tests at {alpha}");
}

#[test]
fn genuine_answers_do_not_look_forged_and_spoofs_do() {
    let w = world(3);
    let mut rng = Rng::new(4);
    let green = |scheme: &dyn Scheme, history: &[u32]| {
        let mut row = vec![0.0f32; VOCAB];
        scheme.process(history, &mut row).expect("process");
        row
    };
    let (mut genuine_detected, mut genuine_forged) = (0, 0);
    let (mut spoof_detected, mut spoof_forged) = (0, 0);
    let trials = 200;
    for _ in 0..trials {
        // Genuine: the watermark everywhere.
        let (p, ids) = document(&mut rng, |h, row| {
            w.scheme.process(h, row).expect("process");
        });
        let d = w.detector.detect_ids(&p, &ids).expect("detect");
        if d.verdict == Verdict::Detected {
            genuine_detected += 1;
            genuine_forged += usize::from(d.looks_forged());
        }
        // Spoof: the green list known (and pushed by +4) only for pairs common in the reference.
        let (p, ids) = document(&mut rng, |h, row| {
            let prev = *h.last().expect("history");
            let g = green(w.scheme.as_ref(), h);
            for (t, x) in row.iter_mut().enumerate() {
                if g[t] > 0.0 && w.pairs.get(&(prev, t as u32)).copied().unwrap_or(0) >= 2 {
                    *x += 4.0;
                }
            }
        });
        let d = w.detector.detect_ids(&p, &ids).expect("detect");
        if d.verdict == Verdict::Detected {
            spoof_detected += 1;
            spoof_forged += usize::from(d.looks_forged());
        }
    }
    eprintln!(
        "genuine: {genuine_forged} of {genuine_detected} detected look forged; \
         spoofs: {spoof_forged} of {spoof_detected} detected look forged"
    );
    assert!(
        genuine_detected > trials * 9 / 10,
        "genuine detected {genuine_detected}"
    );
    assert!(
        spoof_detected > trials / 2,
        "the spoofer must succeed without the test: {spoof_detected}"
    );
    assert!(
        genuine_forged * 50 <= genuine_detected,
        "false alarms {genuine_forged} of {genuine_detected}"
    );
    assert!(
        spoof_forged * 10 >= spoof_detected * 8,
        "power {spoof_forged} of {spoof_detected}"
    );
    let _ = &w.key;
}

#[test]
fn a_reference_counted_under_another_key_is_refused() {
    let a = world(5);
    let b = world(6);
    let reference = ForgeryReference::from_ids(&b.detector, std::iter::empty(), 2, 1e-3).expect("empty reference");
    let detector = Detector::new(&a.key, &config(), VOCAB, DetectOptions::default()).expect("detector");
    let err = detector
        .with_forgery_reference(Arc::new(reference))
        .expect_err("another key");
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    let bad = ForgeryReference::from_ids(&a.detector, std::iter::empty(), 0, 1e-3);
    assert!(matches!(bad, Err(Error::InvalidOption { .. })));
}
