//! The scheme contract: a scheme defined outside `tracemark-core` is generated
//! and detected through the verifier without any verifier code knowing it,
//! and a significant window decides the verdict.

mod support;

use support::{generate, random_tokens, Rng};
use tracemark_core::{mix, Context, ContextSeed, Contract, Generation, Key, KeyId, Null, Scheme, SchemeConfig, Seeder};
use tracemark_verifier::{DetectOptions, Detector, Outcome, Verdict, WindowOptions};

/// A toy fourth scheme: a token is "odd" when the low bit of its keyed mix is
/// 1; generation adds `delta` to odd tokens. Null: Binomial(n, 1/2).
struct Parity {
    seeder: Seeder,
    key_id: KeyId,
    vocab: usize,
    delta: f32,
}

impl Parity {
    fn new(key: &Key, vocab: usize, delta: f32) -> Self {
        Self {
            seeder: Seeder::for_scheme(key, "toy-parity", Context::left_hash(1).expect("ctx")).expect("seeder"),
            key_id: key.id(),
            vocab,
            delta,
        }
    }
}

impl Scheme for Parity {
    fn describe(&self) -> String {
        format!("toy-parity:delta={},context=lefthash:1", self.delta)
    }
    fn key_id(&self) -> KeyId {
        self.key_id
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn seeder(&self) -> &Seeder {
        &self.seeder
    }
    fn contract(&self) -> Contract {
        Contract::new(
            Null::Binomial { trials: 1, p: 0.5 },
            "odd count",
            Generation::Bias,
            false,
        )
    }
    fn value(&self, seed: u64, token: u32) -> u32 {
        mix::mix(seed, token)
    }
    fn score(&self, value: u32) -> f64 {
        f64::from(value & 1)
    }
    fn apply(&self, cs: &ContextSeed, row: &mut [f32]) {
        for (t, x) in row.iter_mut().enumerate() {
            if mix::mix(self.seeder.token_seed(cs, t as u32), t as u32) & 1 == 1 {
                *x += self.delta;
            }
        }
    }
}

#[test]
fn a_scheme_from_outside_the_core_is_detected_by_its_contract() {
    let vocab = 5_000;
    let mut rng = Rng::new(901);
    let key = rng.key();
    let toy = Parity::new(&key, vocab, 3.0);
    let marked = generate(&toy, &[7], 200, &mut rng, |_, _| vec![0.0; vocab]);
    let detector =
        Detector::from_scheme(Box::new(Parity::new(&key, vocab, 3.0)), DetectOptions::default()).expect("detector");
    let d = detector.detect_ids(&[7], &marked).expect("ok");
    assert_eq!(d.verdict, Verdict::Detected);
    assert_eq!(d.scheme, "toy-parity:delta=3,context=lefthash:1");
    let Outcome::Tested { test, .. } = &d.outcome else {
        panic!("tested")
    };
    assert_eq!(test.name, "binomial upper tail of the odd count");
    assert_eq!(
        test.null_distribution,
        format!("Binomial(n={}, p=0.5)", d.counts.scored)
    );
    // Every biasing scheme has a bias to add elsewhere: here, delta on odd tokens.
    let bias = toy.bias(&[7]).expect("bias").expect("watermarked");
    assert!(bias.iter().all(|&b| b == 0.0 || b == 3.0));

    // Another key, or unwatermarked text: nothing.
    let other = Detector::from_scheme(Box::new(Parity::new(&rng.key(), vocab, 3.0)), DetectOptions::default())
        .expect("detector");
    assert_ne!(other.detect_ids(&[7], &marked).expect("ok").verdict, Verdict::Detected);
    let human = random_tokens(vocab, 200, &mut rng);
    assert_ne!(
        detector.detect_ids(&[7], &human).expect("ok").verdict,
        Verdict::Detected
    );
}

#[test]
fn built_in_contracts() {
    let kgw: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("cfg");
    let t: SchemeConfig = "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4"
        .parse()
        .expect("cfg");
    let g: SchemeConfig = "gumbel:temperature=1,context=lefthash:4".parse().expect("cfg");
    assert_eq!(kgw.contract().generation, Generation::Bias);
    assert!(!kgw.contract().skip_repeated);
    assert_eq!(kgw.contract().null, Null::Binomial { trials: 1, p: 0.25 });
    assert_eq!(t.contract().generation, Generation::Distribution);
    assert_eq!(t.contract().null, Null::Binomial { trials: 30, p: 0.5 });
    assert!(t.contract().skip_repeated && g.contract().skip_repeated);
    assert_eq!(g.contract().generation, Generation::Selection);
    assert_eq!(g.contract().null, Null::Exponential);
    // The built scheme states the same contract as its configuration.
    let key = Rng::new(902).key();
    for c in [&kgw, &t, &g] {
        assert_eq!(c.build(&key, 100).expect("build").contract(), c.contract());
        assert_eq!(c.build(&key, 100).expect("build").describe(), c.to_string());
    }
    // Only biasing schemes have a bias on their own.
    assert!(g.build(&key, 100).expect("build").bias(&[1, 2, 3, 4]).is_err());
}

/// Regression: 80 watermarked tokens inside 3,000 human ones. The window
/// search finds them, and the window now decides the verdict (before, the
/// verdict ignored it: "window p = 1e-40 ... no watermark detected").
#[test]
fn a_significant_window_decides_the_verdict() {
    let vocab = 20_000;
    let cfg: SchemeConfig = "kgw:gamma=0.25,delta=4,context=lefthash:1".parse().expect("cfg");
    let mut rng = Rng::new(903);
    let key = rng.key();
    let scheme = cfg.build(&key, vocab).expect("scheme");
    let marked = generate(scheme.as_ref(), &[3], 80, &mut rng, |_, _| vec![0.0; vocab]);
    let mut text = random_tokens(vocab, 1_500, &mut rng);
    text.extend_from_slice(&marked);
    text.extend(random_tokens(vocab, 1_500, &mut rng));

    let whole = Detector::new(&key, &cfg, vocab, DetectOptions::default())
        .expect("detector")
        .detect_ids(&[], &text)
        .expect("ok");
    assert_eq!(
        whole.verdict,
        Verdict::NotDetected,
        "80 in 3,080 is too few for the whole text"
    );

    let opts = DetectOptions {
        window: Some(WindowOptions::default()),
        ..DetectOptions::default()
    };
    let d = Detector::new(&key, &cfg, vocab, opts)
        .expect("detector")
        .detect_ids(&[], &text)
        .expect("ok");
    let w = d.window.as_ref().expect("window");
    assert!(w.log10_p < -12.0, "window p {}", w.log10_p);
    assert!(w.decides_verdict);
    // The family (SPEC §16, version 3): min(5 x whole, 5/4 x window).
    let whole_l = d.outcome.log10_p().expect("tested");
    let expected = (w.log10_p + 1.25f64.log10()).min(whole_l + 5f64.log10()).min(0.0);
    assert!((w.family_log10_p - expected).abs() < 1e-9);
    assert_eq!(d.verdict_log10_p(), Some(w.family_log10_p));
    assert_eq!(d.verdict, Verdict::Detected);
}

/// Under the null, the family (whole text + windows) keeps its level: at
/// alpha = 0.05 over 400 random texts, at most a binomial-noise excess.
#[test]
fn the_family_verdict_keeps_its_level() {
    let vocab = 20_000;
    let cfg: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("cfg");
    let mut rng = Rng::new(904);
    let trials = 400;
    let mut fp = 0;
    for _ in 0..trials {
        let text = random_tokens(vocab, 300, &mut rng);
        let opts = DetectOptions {
            window: Some(WindowOptions::default()),
            alpha: 0.05,
            ..DetectOptions::default()
        };
        let d = Detector::new(&rng.key(), &cfg, vocab, opts)
            .expect("detector")
            .detect_ids(&[], &text)
            .expect("ok");
        fp += usize::from(d.verdict == Verdict::Detected);
    }
    // Bonferroni is conservative: P(fp > 32) < 0.002 under Binomial(400, 0.05).
    assert!(fp <= 32, "{fp} of {trials} false positives at alpha 0.05");
}
