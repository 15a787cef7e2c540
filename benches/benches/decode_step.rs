//! One decode step's watermark work, next to the floor (`x += d` over the
//! same row), for V = 49,152 / 128,256 / 256,000 and batch 1 / 8 / 64.
//!
//! `cargo bench -p tracemark-benches --bench decode_step`; `make bench` also
//! writes the ratios to benches/RESULTS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tracemark_benches::{floor_add, lm_like_logits};
use tracemark_core::internal::Isa;
use tracemark_core::{ndarray, Key, Kgw, KgwConfig, Scheme, SchemeConfig};

const VOCABS: [usize; 3] = [49_152, 128_256, 256_000];
const BATCHES: [usize; 3] = [1, 8, 64];

const SCHEMES: [(&str, &str); 6] = [
    ("kgw-lefthash1", "kgw:gamma=0.25,delta=2,context=lefthash:1"),
    ("kgw-minhash4", "kgw:gamma=0.25,delta=2,context=minhash:4"),
    ("kgw-selfhash4", "kgw:gamma=0.25,delta=2,context=selfhash:4"),
    (
        "tournament-m30-k40",
        "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    ),
    ("gumbel", "gumbel:temperature=1,context=lefthash:4"),
    ("gumbel-t0.7", "gumbel:temperature=0.7,context=lefthash:4"),
];

fn key() -> Key {
    // A fixed key keeps runs comparable; benches never ship keys.
    Key::from_bytes([0x5a; 32])
}

fn single_row(c: &mut Criterion) {
    let history: Vec<u32> = vec![101, 2024, 7, 99];
    for vocab in VOCABS {
        let mut group = c.benchmark_group(format!("step/v{vocab}/b1"));
        group.throughput(Throughput::Elements(vocab as u64));
        let base = lm_like_logits(vocab, 1);
        let mut row = base.clone();
        group.bench_function("floor", |b| b.iter(|| floor_add(&mut row, 0.0)));
        // kgw h=1 through each instruction-set path this CPU has, to show the dispatch matters.
        let config = KgwConfig::new(0.25, 2.0, "lefthash:1".parse().expect("ctx")).expect("cfg");
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            let Some(kgw) = Kgw::new(&key(), config.clone(), vocab).expect("kgw").with_isa(isa) else {
                continue;
            };
            let mut row = base.clone();
            group.bench_function(BenchmarkId::new("kgw-lefthash1-isa", format!("{isa:?}")), |b| {
                b.iter(|| kgw.process(&history, &mut row).expect("ok"))
            });
        }
        for (name, config) in SCHEMES {
            let scheme = config
                .parse::<SchemeConfig>()
                .expect("cfg")
                .build(&key(), vocab)
                .expect("scheme");
            if name.starts_with("kgw") {
                // kgw only adds: process the same row in place, like the floor.
                let mut row = base.clone();
                group.bench_function(name, |b| b.iter(|| scheme.process(&history, &mut row).expect("ok")));
            } else {
                // These rewrite the row: every iteration restores it first (not timed), into the same
                // buffer, so that the row is in cache as the floor's is (a fresh allocation per
                // iteration measured page faults and cache misses, not the scheme).
                let mut row = base.clone();
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        restored(iters, &mut row, &base, |row| {
                            scheme.process(&history, row).expect("ok");
                        })
                    })
                });
            }
        }
        group.finish();
    }
}

fn batches(c: &mut Criterion) {
    for vocab in VOCABS {
        for batch in BATCHES.into_iter().filter(|&b| b > 1) {
            let mut group = c.benchmark_group(format!("step/v{vocab}/b{batch}"));
            group.throughput(Throughput::Elements((vocab * batch) as u64));
            group.sample_size(20);
            let base = Array2::from_shape_fn((batch, vocab), |(r, i)| lm_like_logits(1, (r * vocab + i) as u64)[0]);
            let histories: Vec<Vec<u32>> = (0..batch as u32).map(|r| vec![r, r + 1, r + 2, r + 3]).collect();
            let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
            let mut rows = base.clone();
            group.bench_function("floor", |b| {
                b.iter(|| {
                    for mut row in rows.rows_mut() {
                        floor_add(row.as_slice_mut().expect("contiguous"), 0.0);
                    }
                })
            });
            for (name, config) in SCHEMES.iter().filter(|(n, _)| *n != "gumbel-t0.7") {
                let scheme = config
                    .parse::<SchemeConfig>()
                    .expect("cfg")
                    .build(&key(), vocab)
                    .expect("scheme");
                if name.starts_with("kgw") {
                    let mut rows = base.clone();
                    group.bench_function(*name, |b| {
                        b.iter(|| scheme.process_batch(&refs, rows.view_mut()).expect("ok"))
                    });
                } else {
                    let base = base.as_slice().expect("contiguous");
                    let mut rows = base.to_vec();
                    group.bench_function(*name, |b| {
                        b.iter_custom(|iters| {
                            restored(iters, &mut rows, base, |rows| {
                                let view = ndarray::ArrayViewMut2::from_shape((batch, vocab), rows).expect("shape");
                                scheme.process_batch(&refs, view).expect("ok");
                            })
                        })
                    });
                }
            }
            group.finish();
        }
    }
}

/// The time of `iters` calls of `f`, each on `row` restored from `base` first (the copy not timed).
fn restored(iters: u64, row: &mut [f32], base: &[f32], mut f: impl FnMut(&mut [f32])) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        row.copy_from_slice(base);
        let started = Instant::now();
        f(black_box(&mut *row));
        total += started.elapsed();
    }
    total
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = single_row, batches }
criterion_main!(benches);
