//! The PRF choice of SPEC §4: SipHash-2-4 vs HMAC-SHA256 on the message of a
//! width-1 and a width-4 context, and the per-token mix for scale.

use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hint::black_box;
use tracemark_core::internal::{siphash_words, siphash_words_x8};
use tracemark_core::mix::mix;

fn prf(c: &mut Criterion) {
    let mut group = c.benchmark_group("prf");
    for (name, words) in [
        ("h1", vec![0x0100_0001u32, 1234]),
        ("h4", vec![0x0100_0004u32, 1, 2, 3, 4]),
    ] {
        group.bench_function(format!("siphash24/{name}"), |b| {
            b.iter(|| siphash_words(black_box(0x0123), black_box(0x4567), words[0], black_box(&words[1..])))
        });
        // Eight messages of this length at once in vector lanes, the batch
        // path of detection (time for eight hashes: compare with eight times
        // the line above).
        group.bench_function(format!("siphash24-x8/{name}"), |b| {
            let m = black_box(&words[1..]);
            b.iter(|| siphash_words_x8(black_box(0x0123), black_box(0x4567), words[0], [m; 8]))
        });
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        // HMAC with the pads precomputed once, as a verifier would keep it.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&[7u8; 32]).expect("any key length");
        group.bench_function(format!("hmac-sha256/{name}"), |b| {
            b.iter(|| {
                let mut m = keyed.clone();
                m.update(black_box(&bytes));
                m.finalize().into_bytes()
            })
        });
    }
    group.bench_function("mix32", |b| {
        b.iter(|| mix(black_box(0x0123_4567_89ab_cdef), black_box(42)))
    });
    group.finish();
}

criterion_group!(benches, prf);
criterion_main!(benches);
