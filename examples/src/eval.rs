//! Pieces of the evaluation harness (`make eval`): the arms, cached
//! generations, attacks and a text metric. (The summary statistics are
//! `tracemark_verifier::stats`'.)

use serde::{Deserialize, Serialize};
use tracemark_core::SchemeConfig;

use tracemark_candle::{Rng, Sampling};

/// One arm of the evaluation: a name and a scheme (none for the baseline).
#[derive(Clone, Debug, PartialEq)]
pub struct ArmSpec {
    /// Short name used in tables.
    pub name: &'static str,
    /// The watermark, if any.
    pub scheme: Option<SchemeConfig>,
    /// How the arm samples after its watermark.
    pub sampling: Sampling,
    /// Skip contexts already watermarked in the sequence (on for the
    /// schemes that select the token themselves, see [`arms`]).
    pub skip_repeated: bool,
}

/// Whether an arm with this scheme skips contexts it already watermarked. On
/// for the distortion-free schemes (as in SynthID-Text): with a fixed key
/// their choice is a function of the context, and a repeated context would
/// otherwise repeat itself.
// contract: the core's scheme contract answers.
fn skips_repeated_contexts(scheme: &SchemeConfig) -> bool {
    scheme.contract().skip_repeated
}

/// The arms of the published evaluation.
pub fn arms() -> Vec<ArmSpec> {
    let spec = |name, s: Option<&str>| {
        let scheme: Option<SchemeConfig> = s.map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")));
        let skip_repeated = scheme.as_ref().is_some_and(skips_repeated_contexts);
        ArmSpec {
            name,
            scheme,
            skip_repeated,
            sampling: Sampling::default(),
        }
    };
    vec![
        spec("none", None),
        spec("kgw d=1 h=1", Some("kgw:gamma=0.25,delta=1,context=lefthash:1")),
        spec("kgw d=2 h=1", Some("kgw:gamma=0.25,delta=2,context=lefthash:1")),
        spec("kgw d=4 h=1", Some("kgw:gamma=0.25,delta=4,context=lefthash:1")),
        spec("kgw d=1 self4", Some("kgw:gamma=0.25,delta=1,context=selfhash:4")),
        spec("kgw d=2 self4", Some("kgw:gamma=0.25,delta=2,context=selfhash:4")),
        spec("kgw d=4 self4", Some("kgw:gamma=0.25,delta=4,context=selfhash:4")),
        spec(
            "tournament",
            Some("tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4"),
        ),
        spec("gumbel", Some("gumbel:temperature=1,context=lefthash:4")),
        // The tournament samples among its top 40 candidates: its quality baseline does too.
        ArmSpec {
            name: "none top-40",
            scheme: None,
            skip_repeated: false,
            sampling: Sampling {
                temperature: 1.0,
                top_k: Some(40),
                top_p: None,
            },
        },
    ]
}

/// One cached generation of one arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmRecord {
    /// The arm's name.
    pub arm: String,
    /// New token ids.
    pub ids: Vec<u32>,
    /// `-ln P(token)` under the unwatermarked model, per new token.
    pub nll: Vec<f32>,
    /// Whether a stop token ended it.
    pub stopped: bool,
    /// Watermark processing time in nanoseconds.
    pub watermark_ns: u64,
}

/// All arms of one prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Index in the prompt set.
    pub prompt_index: usize,
    /// The prompt ids (chat template applied).
    pub prompt_ids: Vec<u32>,
    /// One record per arm, in [`arms`] order.
    pub arms: Vec<ArmRecord>,
    /// Wall time of the batched forward passes, nanoseconds.
    pub forward_ns: u64,
    /// Decode steps.
    pub steps: usize,
}

/// Replaces a `fraction` of the tokens by uniformly random ones.
pub fn substitute(ids: &[u32], fraction: f64, vocab: u32, rng: &mut Rng) -> Vec<u32> {
    ids.iter()
        .map(|&t| {
            if rng.uniform() < fraction {
                (rng.next_u64() % u64::from(vocab)) as u32
            } else {
                t
            }
        })
        .collect()
}

/// Deletes a `fraction` of the tokens.
pub fn delete(ids: &[u32], fraction: f64, rng: &mut Rng) -> Vec<u32> {
    ids.iter().copied().filter(|_| rng.uniform() >= fraction).collect()
}

/// Inserts a random token after a `fraction` of the tokens.
pub fn insert(ids: &[u32], fraction: f64, vocab: u32, rng: &mut Rng) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    for &t in ids {
        out.push(t);
        if rng.uniform() < fraction {
            out.push((rng.next_u64() % u64::from(vocab)) as u32);
        }
    }
    out
}

/// Distinct-n: unique n-grams over all n-grams of a text (1 when too short).
pub fn distinct_n(ids: &[u32], n: usize) -> f64 {
    if ids.len() < n || n == 0 {
        return 1.0;
    }
    let grams: std::collections::HashSet<&[u32]> = ids.windows(n).collect();
    grams.len() as f64 / (ids.len() - n + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_change_about_the_asked_fraction() {
        let ids: Vec<u32> = (0..10_000).collect();
        let mut rng = Rng::new(1);
        let s = substitute(&ids, 0.3, 50_000, &mut rng);
        let changed = s.iter().zip(&ids).filter(|(a, b)| a != b).count() as f64 / ids.len() as f64;
        assert!((changed - 0.3).abs() < 0.03, "{changed}");
        assert!((delete(&ids, 0.3, &mut rng).len() as f64 / 7000.0 - 1.0).abs() < 0.05);
        assert!((insert(&ids, 0.3, 50_000, &mut rng).len() as f64 / 13_000.0 - 1.0).abs() < 0.05);
    }

    #[test]
    fn metrics() {
        assert_eq!(distinct_n(&[1, 2, 1, 2], 2), 2.0 / 3.0);
        assert_eq!(arms().len(), 10);
        let skipping: Vec<&str> = arms().iter().filter(|a| a.skip_repeated).map(|a| a.name).collect();
        assert_eq!(skipping, ["tournament", "gumbel"]);
    }
}
