//! Detection throughput: scored tokens per second for 1,000-token documents,
//! and key x token evaluations per second for keyring scans, single thread.
//! Baselines in the same run: one pass summing the ids (memory floor) and the
//! keyed PRF alone.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tracemark_benches::random_ids;
use tracemark_core::internal::siphash_words;
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{DetectOptions, Detector, Keyring, KeyringDetector};

const VOCAB: usize = 128_256;
const DOC: usize = 1000;

fn document(seed: u64) -> Vec<u32> {
    random_ids(DOC, VOCAB, seed)
}

fn detection(c: &mut Criterion) {
    let doc = document(1);
    let mut group = c.benchmark_group("detect/1000-token-doc");
    group.throughput(Throughput::Elements(DOC as u64));
    group.bench_function("baseline-sum-ids", |b| {
        b.iter(|| black_box(&doc).iter().map(|&t| u64::from(t)).sum::<u64>())
    });
    group.bench_function("baseline-siphash-h1", |b| {
        b.iter(|| {
            doc.windows(2)
                .map(|w| siphash_words(1, 2, 0x0100_0001, &w[..1]))
                .fold(0, u64::wrapping_add)
        })
    });
    let key = Key::from_bytes([3; 32]);
    for (name, scheme) in [
        ("kgw-lefthash1", "kgw:gamma=0.25,delta=2,context=lefthash:1"),
        ("kgw-selfhash4", "kgw:gamma=0.25,delta=2,context=selfhash:4"),
        (
            "tournament-lefthash4",
            "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
        ),
        ("gumbel-lefthash4", "gumbel:temperature=1,context=lefthash:4"),
    ] {
        let config: SchemeConfig = scheme.parse().expect("scheme");
        let detector = Detector::new(&key, &config, VOCAB, DetectOptions::default()).expect("detector");
        group.bench_function(name, |b| {
            b.iter(|| detector.detect_ids(&doc[..1], &doc[1..]).expect("ok"))
        });
    }
    group.finish();
}

fn keyring(c: &mut Criterion) {
    let doc = document(2);
    let keys = 16;
    let mut group = c.benchmark_group("keyring/16-keys");
    group.throughput(Throughput::Elements((keys * DOC) as u64));
    let labels: Vec<String> = (0..keys).map(|i| format!("cohort/{i}")).collect();
    let ring = Keyring::derived(&Key::from_bytes([4; 32]), &labels).expect("ring");
    let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme");
    let kd = KeyringDetector::new(&ring, &config, VOCAB, DetectOptions::default()).expect("detector");
    group.bench_function("kgw-lefthash1", |b| {
        b.iter(|| kd.detect_ids(&doc[..1], &doc[1..]).expect("ok"))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = detection, keyring }
criterion_main!(benches);
