//! How cost grows with the work (issue 27, deliverable 5): one process,
//! every point timed next to its own baseline in the same run.
//!
//! - decode step against V (8,192 .. 256,000) and batch (1, 8, 64): kgw h=1
//!   and the floor (`x += d` over the same rows);
//! - detection on ids against document length (100 .. 100,000 tokens): kgw
//!   h=1 next to a bare SipHash per token;
//! - keyrings of 1 .. 1,024 keys on one 1,000-token document;
//! - account attribution over 100 .. 1,000,000 derived account keys on one
//!   200-token answer (every key derived, as `tracemark accounts` does).
//!
//! `cargo bench -p tracemark-benches --bench scaling` prints one JSON object
//! per point on stdout; `make bench-scaling` turns them into the plots and
//! the table of benches/RESULTS.md (`benches/scaling.py`). `--quick` times
//! fewer points for a smoke run.
//!
//! Each point is the median of several samples; a sample repeats the call
//! until it has run for at least `SAMPLE` (one call for the slow points).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ndarray::Array2;
use tracemark_benches::{floor_add, lm_like_logits, random_ids};
use tracemark_core::internal::siphash_words;
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::accounts::{attribute_accounts, AccountForms};
use tracemark_verifier::{DetectOptions, Detector, Keyring, KeyringDetector};

const KGW: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const SAMPLE: Duration = Duration::from_millis(60);

/// Median seconds per call of `f`, over `samples` samples.
fn time(samples: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm caches and lazily built tables
    let mut per_call: Vec<f64> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            let mut calls = 0u32;
            while started.elapsed() < SAMPLE || calls == 0 {
                f();
                calls += 1;
            }
            started.elapsed().as_secs_f64() / f64::from(calls)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

fn emit(kind: &str, fields: &[(&str, f64)]) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!("{{\"kind\": \"{kind}\", {}}}", body.join(", "));
}

fn key(byte: u8) -> Key {
    // Fixed keys keep runs comparable; benches never ship keys.
    Key::from_bytes([byte; 32])
}

fn decode_step(quick: bool) {
    let config: SchemeConfig = KGW.parse().expect("scheme");
    let vocabs: &[usize] = if quick {
        &[8_192, 128_256]
    } else {
        &[8_192, 32_768, 49_152, 128_256, 256_000]
    };
    let batches: &[usize] = if quick { &[1, 8] } else { &[1, 8, 64] };
    for &vocab in vocabs {
        let scheme = config.build(&key(1), vocab).expect("scheme");
        let row = lm_like_logits(vocab, 1);
        for &batch in batches {
            let mut rows = Array2::from_shape_fn((batch, vocab), |(_, j)| row[j]);
            let histories: Vec<Vec<u32>> = (0..batch as u32).map(|r| vec![r, r + 1, r + 2, r + 3]).collect();
            let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
            let floor = time(11, || {
                for mut r in rows.rows_mut() {
                    floor_add(r.as_slice_mut().expect("contiguous"), 0.0);
                }
            });
            let kgw = time(11, || {
                black_box(scheme.process_batch(&refs, rows.view_mut()).expect("ok"));
            });
            emit(
                "decode_step",
                &[
                    ("vocab", vocab as f64),
                    ("batch", batch as f64),
                    ("floor_s", floor),
                    ("kgw_s", kgw),
                ],
            );
        }
    }
}

fn detect_length(quick: bool) {
    let config: SchemeConfig = KGW.parse().expect("scheme");
    let vocab = 128_256;
    let detector = Detector::new(&key(3), &config, vocab, DetectOptions::default()).expect("detector");
    let lengths: &[usize] = if quick {
        &[100, 1_000, 10_000]
    } else {
        &[100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
    };
    for &n in lengths {
        let doc = random_ids(n + 1, vocab, n as u64);
        let hash = time(11, || {
            black_box(
                doc.windows(2)
                    .map(|w| siphash_words(1, 2, 0x0100_0001, &w[..1]))
                    .fold(0, u64::wrapping_add),
            );
        });
        let kgw = time(11, || {
            black_box(detector.detect_ids(&doc[..1], &doc[1..]).expect("ok"));
        });
        emit(
            "detect_length",
            &[("tokens", n as f64), ("siphash_s", hash), ("kgw_s", kgw)],
        );
    }
}

fn keyrings(quick: bool) {
    let config: SchemeConfig = KGW.parse().expect("scheme");
    let vocab = 128_256;
    let doc = random_ids(1_001, vocab, 7);
    let single = Detector::new(&key(4), &config, vocab, DetectOptions::default()).expect("detector");
    let one = time(11, || {
        black_box(single.detect_ids(&doc[..1], &doc[1..]).expect("ok"));
    });
    let sizes: &[usize] = if quick { &[1, 16] } else { &[1, 4, 16, 64, 256, 1_024] };
    for &keys in sizes {
        let labels: Vec<String> = (0..keys).map(|i| format!("cohort/{i}")).collect();
        let ring = Keyring::derived(&key(4), &labels).expect("ring");
        let kd = KeyringDetector::new(&ring, &config, vocab, DetectOptions::default()).expect("detector");
        let t = time(if keys >= 256 { 5 } else { 11 }, || {
            black_box(kd.detect_ids(&doc[..1], &doc[1..]).expect("ok"));
        });
        emit(
            "keyring",
            &[
                ("keys", keys as f64),
                ("tokens", 1_000.0),
                ("one_key_s", one),
                ("ring_s", t),
            ],
        );
    }
}

fn accounts(quick: bool) {
    let config: SchemeConfig = KGW.parse().expect("scheme");
    let vocab = 128_256;
    let doc = random_ids(201, vocab, 11);
    let forms = AccountForms::ids(doc[..1].to_vec(), doc[1..].to_vec());
    let master = key(5);
    let counts: &[u64] = if quick {
        &[100, 1_000]
    } else {
        &[100, 1_000, 10_000, 100_000, 1_000_000]
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &n in counts {
        let samples = if n >= 100_000 { 1 } else { 3 };
        let mut walls: Vec<f64> = (0..samples)
            .map(|_| {
                let found = attribute_accounts(&master, &config, vocab, &DetectOptions::default(), &forms, n, |i| {
                    format!("account/{i}")
                })
                .expect("attribution");
                assert!(found.named.is_empty(), "random ids name no account");
                found.seconds
            })
            .collect();
        walls.sort_by(f64::total_cmp);
        emit(
            "accounts",
            &[
                ("accounts", n as f64),
                ("tokens", 200.0),
                ("threads", threads as f64),
                ("seconds", walls[walls.len() / 2]),
            ],
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let quick = args.iter().any(|a| a == "--quick");
    decode_step(quick);
    detect_length(quick);
    keyrings(quick);
    accounts(quick);
}
