//! The arms of the evaluation and the records of their cached generations.

use serde::{Deserialize, Serialize};
use tracemark_core::SchemeConfig;

use tracemark_candle::Sampling;

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
        // The other context widths and modes of the robustness rows: no context (one fixed
        // green list) and min-hash over the last four tokens.
        spec("kgw d=2 h=0", Some("kgw:gamma=0.25,delta=2,context=lefthash:0")),
        spec("kgw d=2 min4", Some("kgw:gamma=0.25,delta=2,context=minhash:4")),
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
    /// Wall time of generating the arms, nanoseconds (0 in caches written before it was recorded).
    #[serde(default)]
    pub wall_ns: u64,
}

/// One paraphrase of a watermarked answer by the unwatermarked model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParaphraseRecord {
    /// The arm whose answer was paraphrased.
    pub arm: String,
    /// 1: a paraphrase of the answer; 2: a paraphrase of that paraphrase.
    pub round: usize,
    /// The paraphrase's token ids.
    pub ids: Vec<u32>,
    /// Whether a stop token ended it.
    pub stopped: bool,
}

/// The attack generations of one prompt: the emoji attack's answers and the
/// paraphrases of every watermarked arm's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackRecord {
    /// Index in the prompt set.
    pub prompt_index: usize,
    /// The emoji attack: each watermarked arm's answer to the prompt with
    /// the emoji instruction, in [`arms`] order once complete.
    pub emoji: Vec<ArmRecord>,
    /// Two rounds of paraphrase per watermarked arm, in [`arms`] order once complete.
    pub paraphrases: Vec<ParaphraseRecord>,
    /// Wall time of the emoji generations, nanoseconds.
    pub emoji_ns: u64,
    /// Wall time of the paraphrase generations, nanoseconds.
    pub paraphrase_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_and_the_ones_that_skip_repeated_contexts() {
        assert_eq!(arms().len(), 12);
        let skipping: Vec<&str> = arms().iter().filter(|a| a.skip_repeated).map(|a| a.name).collect();
        assert_eq!(skipping, ["tournament", "gumbel"]);
    }
}
