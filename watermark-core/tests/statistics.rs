//! Statistical properties of the schemes, checked against closed forms with
//! fixed seeds and stated tolerances.

mod common;

use common::{chi_square, chi_square_critical_001, softmax, Rng};
use tracemark_core::internal::tournament_g_sum;
use tracemark_core::{Context, Gumbel, GumbelConfig, Kgw, KgwConfig, Scheme, Tournament, TournamentConfig};

fn history(rng: &mut Rng, len: usize, vocab: u32) -> Vec<u32> {
    (0..len).map(|_| rng.below(vocab)).collect()
}

/// Green fraction over many (key, context) pairs is gamma_eff, within 5 standard errors.
#[test]
fn green_fraction_is_gamma() {
    let vocab = 4096;
    let trials = 600;
    for (gamma, ctx) in [
        (0.1, "lefthash:1"),
        (0.25, "lefthash:1"),
        (0.5, "lefthash:0"),
        (0.25, "minhash:4"),
        (0.25, "selfhash:4"),
    ] {
        let mut rng = Rng::new(0x5eed_0001);
        let config = KgwConfig::new(gamma, 1.0, ctx.parse().expect("ctx")).expect("cfg");
        let mut green = 0u64;
        for _ in 0..trials {
            // A fresh key per trial makes the trials independent, self-hash included.
            let kgw = Kgw::new(&rng.key(), config.clone(), vocab).expect("kgw");
            let mut row = vec![0.0f32; vocab];
            kgw.process(&history(&mut rng, 6, vocab as u32), &mut row).expect("ok");
            green += row.iter().filter(|&&x| x == 1.0).count() as u64;
        }
        let n = (trials * vocab) as f64;
        let g = config.effective_gamma();
        let se = (g * (1.0 - g) / n).sqrt();
        let got = green as f64 / n;
        assert!(
            (got - g).abs() < 5.0 * se,
            "{ctx} gamma {gamma}: {got} vs {g} (se {se})"
        );
    }
}

/// For one key, every token is green in a gamma share of contexts: the
/// per-token counts follow Binomial(C, gamma) (chi-square over tokens), and
/// the two tokens that share a mix output are independent.
#[test]
fn green_lists_are_unbiased_per_token_and_pairwise_independent() {
    let vocab = 512usize;
    let contexts = 4000u64;
    let mut rng = Rng::new(0x5eed_0002);
    let kgw = Kgw::new(
        &rng.key(),
        KgwConfig::new(0.25, 1.0, Context::left_hash(2).expect("ctx")).expect("cfg"),
        vocab,
    )
    .expect("kgw");
    let mut per_token = vec![0u64; vocab];
    let (mut both_pair, mut both_far) = (0u64, 0u64);
    for _ in 0..contexts {
        let mut row = vec![0.0f32; vocab];
        kgw.process(&history(&mut rng, 2, vocab as u32), &mut row).expect("ok");
        for (c, x) in per_token.iter_mut().zip(&row) {
            *c += u64::from(*x == 1.0);
        }
        both_pair += (0..vocab / 2)
            .filter(|j| row[2 * j] == 1.0 && row[2 * j + 1] == 1.0)
            .count() as u64;
        both_far += (0..vocab / 2)
            .filter(|j| row[*j] == 1.0 && row[j + vocab / 2] == 1.0)
            .count() as u64;
    }
    let g = 0.25;
    let stat: f64 = per_token
        .iter()
        .map(|&c| (c as f64 - contexts as f64 * g).powi(2) / (contexts as f64 * g * (1.0 - g)))
        .sum();
    assert!(
        stat < chi_square_critical_001(vocab),
        "chi-square {stat} over {vocab} tokens"
    );
    let n = (contexts * vocab as u64 / 2) as f64;
    let se = (g * g * (1.0 - g * g) / n).sqrt();
    for (name, both) in [("pair", both_pair), ("far", both_far)] {
        let got = both as f64 / n;
        assert!((got - g * g).abs() < 5.0 * se, "{name}: {got} vs {}", g * g);
    }
}

/// The bias moves exactly the closed-form share of probability mass onto
/// the green list: mass' = m e^d / (1 + m (e^d - 1)) for pre-bias green mass m.
#[test]
fn kgw_green_mass_matches_closed_form_exactly() {
    let vocab = 10_000;
    let mut rng = Rng::new(0x5eed_0003);
    let logits: Vec<f32> = (0..vocab)
        .map(|i| -((i as f32) + 1.0).ln() * 1.1 + (i % 7) as f32 * 0.1)
        .collect();
    for delta in [0.5f32, 1.0, 2.0, 4.0] {
        let kgw = Kgw::new(
            &rng.key(),
            KgwConfig::new(0.25, delta, Context::left_hash(1).expect("ctx")).expect("cfg"),
            vocab,
        )
        .expect("kgw");
        let h = history(&mut rng, 3, vocab as u32);
        let mut row = logits.clone();
        kgw.process(&h, &mut row).expect("ok");
        let before = softmax(&logits, 1.0);
        let after = softmax(&row, 1.0);
        let green: Vec<bool> = (0..vocab as u32)
            .map(|t| kgw.is_green(&h, t).expect("ok").expect("seed"))
            .collect();
        let m: f64 = before.iter().zip(&green).filter(|(_, g)| **g).map(|(p, _)| p).sum();
        let m_after: f64 = after.iter().zip(&green).filter(|(_, g)| **g).map(|(p, _)| p).sum();
        let e = f64::from(delta).exp();
        let want = m * e / (1.0 + m * (e - 1.0));
        assert!((m_after - want).abs() < 1e-5, "delta {delta}: {m_after} vs {want}");
    }
}

/// Sampling from kgw-processed uniform logits gives a green token with
/// probability gamma e^d / (1 + gamma (e^d - 1)), within 5 standard errors.
#[test]
fn kgw_sampling_green_rate_matches_closed_form() {
    let vocab = 2000;
    let samples = 20_000;
    let mut rng = Rng::new(0x5eed_0004);
    let delta = 2.0f32;
    let kgw = Kgw::new(
        &rng.key(),
        KgwConfig::new(0.25, delta, Context::left_hash(2).expect("ctx")).expect("cfg"),
        vocab,
    )
    .expect("kgw");
    let mut green = 0u64;
    for _ in 0..samples {
        let h = history(&mut rng, 2, vocab as u32);
        let mut row = vec![0.0f32; vocab];
        kgw.process(&h, &mut row).expect("ok");
        let t = rng.sample_logits(&row) as u32;
        green += u64::from(kgw.is_green(&h, t).expect("ok").expect("seed"));
    }
    let g = 0.25;
    let e = f64::from(delta).exp();
    let want = g * e / (1.0 + g * (e - 1.0));
    let got = green as f64 / samples as f64;
    let se = (want * (1.0 - want) / samples as f64).sqrt();
    assert!((got - want).abs() < 5.0 * se, "{got} vs {want} (se {se})");
}

/// One sample under a fresh random key and context, so that samples are independent
/// even though a small vocabulary has few distinct contexts.
fn sample_tournament(config: &TournamentConfig, rng: &mut Rng, logits: &[f32]) -> (u32, u32) {
    let t = Tournament::new(&rng.key(), config.clone(), logits.len()).expect("t");
    let h = history(rng, config.context().width(), logits.len() as u32);
    let mut row = logits.to_vec();
    t.process(&h, &mut row).expect("ok");
    let tok = rng.sample_logits(&row) as u32;
    let value = t.observe(&h, tok).expect("ok").expect("seed").value;
    (tok, value)
}

/// Exact expectation over all g-value configurations of (output distribution,
/// mean g-value of the winner), for a small vocabulary.
fn tournament_exact(p: &[f64], layers: usize, leaves: i32) -> (Vec<f64>, f64) {
    let v = p.len();
    let bits = v * layers;
    let configs = 1u64 << bits;
    let mut mean_out = vec![0.0; v];
    let mut mean_g = 0.0;
    for c in 0..configs {
        let g = |tok: usize, layer: usize| (c >> (layer * v + tok)) & 1 == 1;
        let mut q = p.to_vec();
        for layer in 0..layers {
            let p1: f64 = (0..v).filter(|&t| g(t, layer)).map(|t| q[t]).sum();
            if p1 <= 0.0 || p1 >= 1.0 {
                continue;
            }
            let f1 = (1.0 - (1.0 - p1).powi(leaves)) / p1;
            let f0 = (1.0 - p1).powi(leaves - 1);
            for (t, x) in q.iter_mut().enumerate() {
                *x *= if g(t, layer) { f1 } else { f0 };
            }
        }
        for t in 0..v {
            mean_out[t] += q[t] / configs as f64;
            let gs = (0..layers).filter(|&l| g(t, l)).count() as f64 / layers as f64;
            mean_g += q[t] * gs / configs as f64;
        }
    }
    (mean_out, mean_g)
}

/// First layer: E[g] = 1/2 + (1 - sum p^2) / 4 (SynthID's closed form); three
/// layers: the exact expectation by enumeration of all 2^12 g-configurations.
#[test]
fn tournament_mean_g_matches_closed_form() {
    let logits = [1.2f32, 0.4, 0.0, -0.3, -1.0, 0.8];
    let p = softmax(&logits, 1.0);
    let samples = 40_000;
    let mut rng = Rng::new(0x5eed_0005);
    let one = TournamentConfig::new(1, logits.len(), 1.0, Context::left_hash(2).expect("ctx")).expect("cfg");
    let mut sum = 0u64;
    for _ in 0..samples {
        sum += u64::from(tournament_g_sum(sample_tournament(&one, &mut rng, &logits).1, 1));
    }
    let want = 0.5 + 0.25 * (1.0 - p.iter().map(|x| x * x).sum::<f64>());
    let got = sum as f64 / samples as f64;
    let se = (want * (1.0 - want) / samples as f64).sqrt();
    assert!((got - want).abs() < 5.0 * se, "one layer: {got} vs {want}");

    let logits = [0.9f32, 0.1, -0.4, 0.3];
    let p = softmax(&logits, 1.0);
    let (_, want) = tournament_exact(&p, 3, 2);
    let three = TournamentConfig::new(3, 4, 1.0, Context::left_hash(2).expect("ctx")).expect("cfg");
    let mut sum = 0.0;
    for _ in 0..samples {
        sum += f64::from(tournament_g_sum(sample_tournament(&three, &mut rng, &logits).1, 3)) / 3.0;
    }
    let got = sum / samples as f64;
    // A mean of 3 bits has variance at most 1/4.
    let se = (0.25 / samples as f64).sqrt();
    assert!((got - want).abs() < 5.0 * se, "three layers: {got} vs {want}");
}

/// Two candidates per match is single-sample distortion-free: sampled tokens
/// over many contexts follow the input distribution (chi-square), and the
/// exact expectation equals it. Three per match is measurably distorting.
#[test]
fn tournament_distortion_free_variant_is_and_the_other_is_not() {
    let logits = [1.0f32, 0.5, 0.0, -0.5, f32::NEG_INFINITY, -1.0];
    let finite: Vec<f32> = logits.iter().copied().filter(|x| x.is_finite()).collect();
    let p = softmax(&finite, 1.0);
    let p4 = softmax(&finite[..4], 1.0);
    let (mean2, _) = tournament_exact(&p4, 2, 2);
    for (a, b) in mean2.iter().zip(&p4) {
        assert!((a - b).abs() < 1e-12, "N=2 exact expectation {a} vs {b}");
    }
    let (mean3, _) = tournament_exact(&p4, 2, 3);
    let worst = mean3.iter().zip(&p4).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst > 0.01, "N=3 should distort, max deviation {worst}");

    let samples = 30_000;
    for (leaves, should_pass) in [(2usize, true), (3, false)] {
        let mut rng = Rng::new(0x5eed_0006 + leaves as u64);
        let config = TournamentConfig::new(8, logits.len(), 1.0, Context::left_hash(3).expect("ctx"))
            .expect("cfg")
            .with_leaves(leaves)
            .expect("leaves");
        assert_eq!(config.is_distortion_free(), should_pass);
        let mut counts = vec![0u64; logits.len()];
        for _ in 0..samples {
            counts[sample_tournament(&config, &mut rng, &logits).0 as usize] += 1;
        }
        assert_eq!(counts[4], 0, "a banned token was sampled");
        let observed: Vec<u64> = counts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, c)| *c)
            .collect();
        let stat = chi_square(&observed, &p);
        let crit = chi_square_critical_001(p.len() - 1);
        assert_eq!(stat < crit, should_pass, "leaves {leaves}: chi-square {stat} vs {crit}");
    }
}

/// Gumbel selection over many contexts samples exactly softmax(logits / T):
/// chi-square at the 0.001 level, for several temperatures and context modes.
#[test]
fn gumbel_samples_softmax() {
    let logits = [2.0f32, 1.5, 1.0, 0.2, 0.0, f32::NEG_INFINITY, -0.5, -1.0, -2.0, 0.7];
    let samples = 30_000;
    for (temp, ctx) in [
        (1.0f32, "lefthash:1"),
        (0.7, "lefthash:3"),
        (1.5, "minhash:2"),
        (1.0, "selfhash:2"),
    ] {
        let mut rng = Rng::new(0x5eed_0007);
        let config = GumbelConfig::new(temp, ctx.parse().expect("ctx")).expect("cfg");
        let mut counts = vec![0u64; logits.len()];
        for _ in 0..samples {
            // A fresh key per sample: the claim is about the distribution over keys.
            let g = Gumbel::new(&rng.key(), config.clone(), logits.len()).expect("g");
            let h = history(&mut rng, config.context().width(), logits.len() as u32);
            counts[g.select(&h, &logits).expect("ok").expect("seed") as usize] += 1;
        }
        assert_eq!(counts[5], 0, "banned token selected");
        let p = softmax(&logits, f64::from(temp));
        let (obs, exp): (Vec<u64>, Vec<f64>) = counts
            .iter()
            .zip(&p)
            .filter(|(_, p)| **p > 0.0)
            .map(|(c, p)| (*c, *p))
            .unzip();
        let stat = chi_square(&obs, &exp);
        let crit = chi_square_critical_001(obs.len() - 1);
        assert!(stat < crit, "T={temp} {ctx}: chi-square {stat} vs {crit}");
    }
}

/// On a realistic 50k vocabulary the pruned selection equals the brute-force
/// argmax of l/T - ln(-ln u) over every token.
#[test]
fn gumbel_pruned_selection_equals_brute_force() {
    let vocab = 50_000usize;
    let mut rng = Rng::new(0x5eed_0008);
    for (temp, ctx) in [(1.0f32, "lefthash:1"), (0.3, "lefthash:2"), (3.0, "selfhash:2")] {
        let g = Gumbel::new(
            &rng.key(),
            GumbelConfig::new(temp, ctx.parse().expect("ctx")).expect("cfg"),
            vocab,
        )
        .expect("g");
        for trial in 0..20 {
            // Zipf-like logits with noise, some banned tokens, and a flat row.
            let logits: Vec<f32> = (0..vocab)
                .map(|i| {
                    if trial == 0 {
                        0.0
                    } else if i % 1009 == 5 {
                        f32::NEG_INFINITY
                    } else {
                        -1.2 * ((i as f32) + 1.0).ln() + (rng.uniform() as f32) * 2.0
                    }
                })
                .collect();
            let h = history(&mut rng, 2, vocab as u32);
            let got = g.select(&h, &logits).expect("ok").expect("seed");
            let mut best = (f64::NEG_INFINITY, 0usize);
            for (i, &l) in logits.iter().enumerate() {
                if l == f32::NEG_INFINITY {
                    continue;
                }
                let u =
                    tracemark_core::internal::gumbel_uniform(g.observe(&h, i as u32).expect("ok").expect("seed").value);
                let s = f64::from(l) / f64::from(temp) - (-u.ln()).ln();
                if s > best.0 {
                    best = (s, i);
                }
            }
            assert_eq!(got as usize, best.1, "T={temp} {ctx} trial {trial}");
        }
    }
}
