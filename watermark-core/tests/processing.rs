//! Processing paths (single row, batch, parallel batch, repeated-context
//! memory) and the bad-input policy: typed errors, and nothing changed on error.

mod common;

use common::Rng;
use ndarray::{Array2, ShapeBuilder};
use proptest::prelude::*;
use tracemark_core::{
    Context, Error, Generation, GumbelConfig, Key, KgwConfig, Scheme, SchemeConfig, SeenContexts, Step,
    TournamentConfig,
};

const CONFIGS: [&str; 6] = [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.5,delta=1,context=minhash:3",
    "kgw:gamma=0.25,delta=4,context=selfhash:4",
    "tournament:layers=30,top_k=40,temperature=0.8,leaves=2,context=lefthash:2",
    "tournament:layers=4,top_k=7,temperature=1,leaves=3,context=selfhash:2",
    "gumbel:temperature=1,context=lefthash:3",
];

fn schemes(vocab: usize) -> Vec<Box<dyn Scheme>> {
    let key = Key::from_bytes([42; 32]);
    CONFIGS
        .iter()
        .map(|c| {
            c.parse::<SchemeConfig>()
                .expect("config")
                .build(&key, vocab)
                .expect("scheme")
        })
        .collect()
}

fn random_row(rng: &mut Rng, vocab: usize) -> Vec<f32> {
    (0..vocab)
        .map(|i| {
            if i % 101 == 3 {
                f32::NEG_INFINITY
            } else {
                (rng.uniform() * 20.0 - 10.0) as f32
            }
        })
        .collect()
}

fn bits(row: &[f32]) -> Vec<u32> {
    row.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn config_strings_round_trip() {
    for c in CONFIGS {
        let parsed: SchemeConfig = c.parse().expect("parses");
        assert_eq!(parsed.to_string(), c);
    }
    for bad in [
        "kgw",
        "kgw:gamma=0.25,delta=2",
        "kgw:gamma=0.25,delta=2,context=lefthash:1,extra=1",
        "kgw:gamma=0.25,gamma=0.3,delta=2,context=lefthash:1",
        "kgw:gamma=1.5,delta=2,context=lefthash:1",
        "foo:x=1",
        "gumbel:temperature=0,context=lefthash:1",
    ] {
        assert!(bad.parse::<SchemeConfig>().is_err(), "{bad}");
    }
}

/// Batched (sequential and threaded) and single-row processing agree bit for bit.
#[test]
fn batch_equals_single_rows() {
    let mut rng = Rng::new(7);
    for (vocab, rows, threads) in [
        (3000usize, 5usize, Some(1)),
        (40_000, 8, Some(1)),
        (40_000, 128, Some(3)),
        (3000, 7, None),
    ] {
        tracemark_core::set_batch_threads(threads);
        for scheme in schemes(vocab) {
            let histories: Vec<Vec<u32>> = (0..rows)
                .map(|r| (0..r % 5).map(|_| rng.below(vocab as u32)).collect())
                .collect();
            let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
            let input: Vec<Vec<f32>> = (0..rows).map(|_| random_row(&mut rng, vocab)).collect();
            let mut batch = Array2::from_shape_fn((rows, vocab), |(r, c)| input[r][c]);
            let steps = scheme.process_batch(&refs, batch.view_mut()).expect("batch");
            for r in 0..rows {
                let mut single = input[r].clone();
                let step = scheme.process(&histories[r], &mut single).expect("single");
                assert_eq!(step, steps[r]);
                assert_eq!(
                    bits(&single),
                    bits(batch.row(r).as_slice().expect("contiguous")),
                    "{scheme:?} row {r}"
                );
            }
        }
    }
}

#[test]
fn repeated_contexts_are_skipped_with_memory() {
    let vocab = 1000;
    let mut rng = Rng::new(8);
    for scheme in schemes(vocab) {
        let mut memory = SeenContexts::new();
        let row = random_row(&mut rng, vocab);
        let mut first = row.clone();
        assert!(scheme
            .process_with_memory(&[1, 2, 3, 4], &mut first, &mut memory)
            .expect("ok")
            .is_watermarked());
        let mut again = row.clone();
        assert_eq!(
            scheme
                .process_with_memory(&[9, 1, 2, 3, 4], &mut again, &mut memory)
                .expect("ok"),
            if scheme.seeder().context().width() <= 4 {
                Step::SkippedRepeatedContext
            } else {
                again_step()
            }
        );
        assert_eq!(bits(&again), bits(&row), "a skipped row must be unchanged");
        // Without memory the same context is watermarked again, identically.
        let mut plain = row.clone();
        scheme.process(&[1, 2, 3, 4], &mut plain).expect("ok");
        assert_eq!(bits(&plain), bits(&first));
        // Batch form: one memory per row.
        let mut memories = vec![memory.clone(), SeenContexts::new()];
        let mut batch = Array2::from_shape_fn((2, vocab), |(_, c)| row[c]);
        let steps = scheme
            .process_batch_with_memory(&[&[1, 2, 3, 4], &[1, 2, 3, 4]], batch.view_mut(), &mut memories)
            .expect("ok");
        assert_eq!(steps[0], Step::SkippedRepeatedContext);
        assert!(steps[1].is_watermarked());
        assert_eq!(memories[1].len(), 1);
    }
}

fn again_step() -> Step {
    unreachable!("every test config has width <= 4")
}

#[test]
fn short_history_leaves_row_unchanged() {
    let vocab = 500;
    let mut rng = Rng::new(9);
    for scheme in schemes(vocab) {
        let width = scheme.seeder().context().width();
        let row = random_row(&mut rng, vocab);
        let mut out = row.clone();
        let short: Vec<u32> = (0..width as u32 - 1).collect();
        assert_eq!(scheme.process(&short, &mut out).expect("ok"), Step::SkippedShortContext);
        assert_eq!(bits(&out), bits(&row));
        assert_eq!(scheme.observe(&short, 1).expect("ok"), None);
    }
}

#[test]
fn banned_tokens_stay_banned_and_are_never_chosen() {
    let vocab = 300;
    let mut rng = Rng::new(10);
    for scheme in schemes(vocab) {
        for _ in 0..50 {
            let mut row = random_row(&mut rng, vocab);
            // Ban everything but a handful of tokens.
            for (i, x) in row.iter_mut().enumerate() {
                if i % 37 != 0 {
                    *x = f32::NEG_INFINITY;
                }
            }
            let before = row.clone();
            let h: Vec<u32> = (0..4).map(|_| rng.below(vocab as u32)).collect();
            scheme.process(&h, &mut row).expect("ok");
            for (a, b) in row.iter().zip(&before) {
                if *b == f32::NEG_INFINITY {
                    assert_eq!(*a, f32::NEG_INFINITY, "{scheme:?}");
                }
            }
            assert!(row.iter().any(|x| x.is_finite()));
        }
    }
}

fn assert_unchanged_on_error(scheme: &dyn Scheme, history: &[u32], row: &[f32]) -> Error {
    let mut out = row.to_vec();
    let err = scheme.process(history, &mut out).expect_err("must fail");
    assert_eq!(bits(&out), bits(row), "{scheme:?} changed the row on error {err}");
    err
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let vocab = 100;
    let mut rng = Rng::new(11);
    for scheme in schemes(vocab) {
        let h = [1u32, 2, 3, 4];
        let good = random_row(&mut rng, vocab);
        for (at, bad) in [(0usize, f32::NAN), (57, f32::INFINITY), (99, -f32::NAN)] {
            let mut row = good.clone();
            row[at] = bad;
            match assert_unchanged_on_error(scheme.as_ref(), &h, &row) {
                Error::NonFiniteLogit { row: 0, index, .. } => assert_eq!(index, at),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            assert_unchanged_on_error(scheme.as_ref(), &h, &good[..99]),
            Error::VocabMismatch {
                expected: 100,
                found: 99
            }
        ));
        assert!(matches!(
            assert_unchanged_on_error(scheme.as_ref(), &h, &[]),
            Error::EmptyLogits
        ));
        assert!(matches!(
            assert_unchanged_on_error(scheme.as_ref(), &[1, 2, 3, 100], &good),
            Error::TokenOutOfRange {
                token: 100,
                vocab_size: 100
            }
        ));
        assert!(matches!(scheme.observe(&h, 100), Err(Error::TokenOutOfRange { .. })));
        let all_banned = vec![f32::NEG_INFINITY; vocab];
        let mut out = all_banned.clone();
        match scheme.contract().generation {
            Generation::Bias => assert!(scheme.process(&h, &mut out).is_ok()),
            _ => assert!(matches!(
                assert_unchanged_on_error(scheme.as_ref(), &h, &all_banned),
                Error::NoSelectableToken { .. }
            )),
        }
        // Batch: a bad row anywhere means no row changes, and the error names the row.
        let mut batch = Array2::from_shape_fn((3, vocab), |(_, c)| good[c]);
        batch[[2, 10]] = f32::NAN;
        let before = batch.clone();
        let err = scheme
            .process_batch(&[&h, &h, &h], batch.view_mut())
            .expect_err("bad row");
        assert!(
            matches!(err, Error::NonFiniteLogit { row: 2, index: 10, .. }),
            "{err:?}"
        );
        assert_eq!(bits(batch.as_slice().expect("c")), bits(before.as_slice().expect("c")));
        assert!(matches!(
            scheme.process_batch(&[&h, &h], batch.view_mut()),
            Err(Error::BatchMismatch { rows: 3, contexts: 2 })
        ));
        let mut memories = vec![SeenContexts::new()];
        assert!(matches!(
            scheme.process_batch_with_memory(&[&h, &h, &h], batch.view_mut(), &mut memories),
            Err(Error::BatchMismatch { rows: 3, contexts: 1 })
        ));
        let mut fortran = Array2::<f32>::zeros((3, vocab).f());
        assert!(matches!(
            scheme.process_batch(&[&h, &h, &h], fortran.view_mut()),
            Err(Error::NotContiguous)
        ));
    }
}

#[test]
fn out_of_range_parameters_name_the_fix() {
    let ctx = Context::left_hash(1).expect("ctx");
    let cases: Vec<(tracemark_core::Result<()>, &str)> = vec![
        (KgwConfig::new(0.0, 2.0, ctx).map(drop), "gamma"),
        (KgwConfig::new(1.0, 2.0, ctx).map(drop), "gamma"),
        (KgwConfig::new(f64::NAN, 2.0, ctx).map(drop), "gamma"),
        (KgwConfig::new(1e-7, 2.0, ctx).map(drop), "gamma"),
        (KgwConfig::new(0.25, -1.0, ctx).map(drop), "delta"),
        (KgwConfig::new(0.25, f32::INFINITY, ctx).map(drop), "delta"),
        (Context::left_hash(33).map(drop), "width"),
        (Context::self_hash(0).map(drop), "width"),
        (TournamentConfig::new(0, 40, 1.0, ctx).map(drop), "layers"),
        (TournamentConfig::new(33, 40, 1.0, ctx).map(drop), "layers"),
        (TournamentConfig::new(30, 0, 1.0, ctx).map(drop), "top_k"),
        (TournamentConfig::new(30, 40, 0.0, ctx).map(drop), "temperature"),
        (
            TournamentConfig::new(30, 40, 1.0, ctx)
                .and_then(|c| c.with_leaves(1))
                .map(drop),
            "leaves",
        ),
        (GumbelConfig::new(-1.0, ctx).map(drop), "temperature"),
        (GumbelConfig::new(f32::NAN, ctx).map(drop), "temperature"),
        (
            tracemark_core::Kgw::new(
                &Key::from_bytes([1; 32]),
                KgwConfig::new(0.25, 2.0, ctx).expect("ok"),
                0,
            )
            .map(drop),
            "vocab_size",
        ),
    ];
    for (result, name) in cases {
        match result {
            Err(Error::InvalidParameter {
                name: got, expected, ..
            }) => {
                assert_eq!(got, name);
                assert!(!expected.is_empty());
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let msg = KgwConfig::new(2.0, 1.0, ctx).expect_err("bad").to_string();
    assert!(msg.contains("gamma") && msg.contains("e.g."), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the logits, processing either succeeds or fails without touching the row.
    #[test]
    fn never_panics_and_errors_change_nothing(
        row in prop::collection::vec(prop_oneof![
            8 => -30.0f32..30.0,
            1 => Just(f32::NEG_INFINITY),
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
        ], 1..300),
        history in prop::collection::vec(0u32..320, 0..8),
        which in 0usize..CONFIGS.len(),
    ) {
        let scheme = CONFIGS[which].parse::<SchemeConfig>().expect("config").build(&Key::from_bytes([3; 32]), 300).expect("scheme");
        let mut padded = row.clone();
        padded.resize(300, 0.0);
        let mut out = padded.clone();
        match scheme.process(&history, &mut out) {
            Ok(_) => prop_assert!(out.iter().all(|x| !x.is_nan())),
            Err(_) => prop_assert_eq!(bits(&out), bits(&padded)),
        }
    }

    /// kgw only ever adds delta to a logit or leaves it bit-for-bit alone.
    #[test]
    fn kgw_adds_delta_or_nothing(row in prop::collection::vec(-1e3f32..1e3, 1..2000), seed in any::<u64>()) {
        let vocab = row.len();
        let scheme = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse::<SchemeConfig>().expect("cfg")
            .build(&Key::from_bytes([5; 32]), vocab).expect("scheme");
        let mut out = row.clone();
        let h = [(seed % vocab as u64) as u32];
        scheme.process(&h, &mut out).expect("ok");
        for (t, (a, b)) in out.iter().zip(&row).enumerate() {
            let green = scheme.observe(&h, t as u32).expect("ok").expect("seed").value < 16384;
            prop_assert_eq!(a.to_bits(), if green { (b + 2.0).to_bits() } else { b.to_bits() });
        }
    }
}
