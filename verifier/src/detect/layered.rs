//! The layered verdict (SPEC §15.4): the token layer's p-value and the
//! semantic layer's ([`super::semantic`]) combined into one, by a weighted
//! Bonferroni correction that holds whatever the dependence between the
//! layers.
//!
//! The semantic layer is tested on the form of the text a detector would
//! embed ([`Detector::semantic_form`]): its canonical form when
//! canonicalisation is on (a function of the text alone, so the test stays
//! exact), the text as given otherwise; the sentences' spans are mapped back
//! into the text as given. The caller embeds the form's scored sentences
//! (this crate has no embedder) and attaches the result with
//! [`Detection::add_semantic`], which sets the layered verdict.
//!
//! ```
//! use tracemark_verifier::detect::layered::{combine, Layer};
//!
//! // Token layer p = 1e-9, semantic layer p = 1e-3: the layered p-value is
//! // min(1e-9 / (1/2), 1e-3 / (1/2)) = 2e-9, decided by the token layer.
//! let l = combine(Some(-9.0), Some(-3.0));
//! assert!((l.log10_p.unwrap() - (2e-9f64).log10()).abs() < 1e-12);
//! assert_eq!(l.decided_by, Some(Layer::Token));
//! // A layer that could not be tested gives its weight to the other.
//! let l = combine(None, Some(-3.0));
//! assert_eq!(l.log10_p, Some(-3.0));
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use tracemark_core::Semantic;

use super::detection::{Detection, Verdict};
use super::detector::Detector;
use super::semantic::{self, SemanticDetection};
use crate::error::{Error, Result};
use crate::text::canonical::{canonicalize, Canonical};

/// The version of the layered verdict's rule (SPEC §15.4).
pub const LAYERED_VERSION: u32 = 1;

/// The token layer's share of alpha when both layers are tested; the
/// semantic layer has `1 - TOKEN_WEIGHT`. Fixed by the spec, before any data
/// (SPEC §15.4 argues the value).
pub const TOKEN_WEIGHT: f64 = 0.5;

/// A layer of signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Layer {
    /// The token-level watermark (kgw, tournament, gumbel, ...).
    Token,
    /// The semantic layer: sentences in keyed regions of an embedding space.
    Semantic,
}

/// The layered verdict's p-value: each layer's p-value, the weights the
/// correction gave them, and the combined p-value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LayeredVerdict {
    /// [`LAYERED_VERSION`].
    pub version: u32,
    /// `log10` of the token layer's p-value (its own family: forms and
    /// window), `None` when it could not be tested.
    pub token_log10_p: Option<f64>,
    /// `log10` of the semantic layer's exact p-value, `None` when it could
    /// not be tested.
    pub semantic_log10_p: Option<f64>,
    /// The token layer's weight as applied: [`TOKEN_WEIGHT`] when both layers
    /// were tested, 1 or 0 when only one was.
    pub token_weight: f64,
    /// The semantic layer's weight as applied (`1 - token_weight`).
    pub semantic_weight: f64,
    /// `log10` of `min(p_token / w_token, p_semantic / w_semantic)`, capped
    /// at 1; `None` when neither layer was tested.
    pub log10_p: Option<f64>,
    /// The layer that gave the minimum.
    pub decided_by: Option<Layer>,
}

impl LayeredVerdict {
    /// The correction in words: `weighted Bonferroni over 2 layers (token 1/2, semantic 1/2)`.
    pub fn correction(&self) -> String {
        match (self.token_log10_p, self.semantic_log10_p) {
            (Some(_), Some(_)) => format!(
                "weighted Bonferroni over 2 layers (token {}, semantic {})",
                fraction(self.token_weight),
                fraction(self.semantic_weight)
            ),
            (Some(_), None) => "the token layer alone (the semantic layer could not be tested)".into(),
            (None, Some(_)) => "the semantic layer alone (the token layer could not be tested)".into(),
            (None, None) => "neither layer could be tested".into(),
        }
    }
}

/// A weight as a short fraction (`1/2`, `3/4`) or a decimal.
fn fraction(w: f64) -> String {
    for d in [1u32, 2, 3, 4, 5, 8, 10] {
        let n = (w * f64::from(d)).round();
        if (n / f64::from(d) - w).abs() < 1e-12 {
            return if d == 1 { format!("{n}") } else { format!("{n}/{d}") };
        }
    }
    format!("{w}")
}

/// The layered p-value of a token layer's and a semantic layer's
/// `log10` p-values (`None`: the layer could not be tested), with the
/// spec's weights ([`TOKEN_WEIGHT`]).
pub fn combine(token_log10_p: Option<f64>, semantic_log10_p: Option<f64>) -> LayeredVerdict {
    combine_weighted(token_log10_p, semantic_log10_p, TOKEN_WEIGHT)
}

/// [`combine`] with the token layer's weight `token_weight` in (0, 1),
/// fixed before the data. Weighted Bonferroni: with weights `w` and `1 - w`,
/// `P(min(p_t / w, p_s / (1 - w)) <= a) <= w a + (1 - w) a = a` under the
/// null hypothesis whatever the dependence between `p_t` and `p_s`, as long
/// as each is valid. A layer that cannot be tested (a function of the text
/// alone: no scored sentence, too few tokens) gives its weight to the other.
pub fn combine_weighted(
    token_log10_p: Option<f64>,
    semantic_log10_p: Option<f64>,
    token_weight: f64,
) -> LayeredVerdict {
    let (wt, ws) = match (token_log10_p, semantic_log10_p) {
        (Some(_), Some(_)) => (token_weight, 1.0 - token_weight),
        (Some(_), None) => (1.0, 0.0),
        (None, Some(_)) => (0.0, 1.0),
        (None, None) => (0.0, 0.0),
    };
    let corrected = |l: Option<f64>, w: f64| l.filter(|_| w > 0.0).map(|l| l - w.log10());
    let t = corrected(token_log10_p, wt);
    let s = corrected(semantic_log10_p, ws);
    let (log10_p, decided_by) = match (t, s) {
        (Some(t), Some(s)) if s < t => (Some(s), Some(Layer::Semantic)),
        (Some(t), _) => (Some(t), Some(Layer::Token)),
        (None, Some(s)) => (Some(s), Some(Layer::Semantic)),
        (None, None) => (None, None),
    };
    LayeredVerdict {
        version: LAYERED_VERSION,
        token_log10_p,
        semantic_log10_p,
        token_weight: wt,
        semantic_weight: ws,
        log10_p: log10_p.map(|l| l.min(0.0)),
        decided_by,
    }
}

/// The form of a text the semantic layer tests: the text to cut into
/// sentences and embed, and the map of its spans back to the text as given.
#[derive(Debug)]
pub struct SemanticForm<'a> {
    text: Cow<'a, str>,
    canonical: Option<Canonical>,
}

impl<'a> SemanticForm<'a> {
    /// The form of `text`: canonical ([`canonicalize`]) when `canonical`,
    /// else as given.
    pub fn new(text: &'a str, canonical: bool) -> Self {
        if !canonical {
            return Self {
                text: Cow::Borrowed(text),
                canonical: None,
            };
        }
        let c = canonicalize(text);
        if c.text() == text {
            return Self {
                text: Cow::Borrowed(text),
                canonical: None,
            };
        }
        Self {
            text: Cow::Owned(c.text().to_string()),
            canonical: Some(c),
        }
    }

    /// The text of this form.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The sentences to embed, in order: the form's
    /// [`scored_spans`](semantic::scored_spans) for `scheme`.
    pub fn scored_sentences(&self, scheme: &Semantic) -> Vec<&str> {
        semantic::scored_spans(scheme.config(), &self.text)
            .into_iter()
            .map(|s| &self.text[s])
            .collect()
    }

    /// The semantic test of this form, given the embeddings of its
    /// [`scored_sentences`](Self::scored_sentences) in order; the sentences'
    /// spans point into the text as given.
    pub fn detect<E: AsRef<[f32]>>(&self, scheme: &Semantic, embeddings: &[E]) -> Result<SemanticDetection> {
        let mut d = semantic::detect_text(scheme, &self.text, embeddings)?;
        if let Some(c) = &self.canonical {
            for s in &mut d.sentences {
                let (start, end) = c.original_span((s.span.start, s.span.end));
                s.span = start..end;
            }
        }
        Ok(d)
    }
}

impl Detector {
    /// The form of `completion` the semantic layer tests with this
    /// detector's options: canonical when canonicalisation is on.
    pub fn semantic_form<'a>(&self, completion: &'a str) -> SemanticForm<'a> {
        SemanticForm::new(completion, self.options().canonicalize)
    }
}

impl Detection {
    /// `log10` of the token layer's p-value the verdict stood on before any
    /// semantic layer was added (forms and window corrected); `None` when
    /// inconclusive.
    pub fn token_log10_p(&self) -> Option<f64> {
        if let Some(c) = &self.canonical {
            return c.family_log10_p;
        }
        self.form_log10_p()
    }

    /// Adds the semantic layer's test of the same text under the same key and
    /// sets the layered verdict (SPEC §15.4): `verdict` and
    /// [`verdict_log10_p`](Detection::verdict_log10_p) then stand on both
    /// layers. Fails when `semantic` was computed under another key.
    pub fn add_semantic(&mut self, semantic: SemanticDetection) -> Result<()> {
        if semantic.key_id != self.key_id.to_string() {
            return Err(Error::InvalidOption {
                name: "semantic",
                message: format!(
                    "the semantic layer was tested under key {} and the token layer under {}: use one key for both",
                    semantic.key_id, self.key_id
                ),
            });
        }
        let layered = combine(self.token_log10_p(), semantic.outcome.log10_p());
        self.verdict = match layered.log10_p {
            None => Verdict::Inconclusive,
            Some(l) if l < self.alpha.log10() => Verdict::Detected,
            Some(_) => Verdict::NotDetected,
        };
        self.semantic = Some(semantic);
        self.layered = Some(layered);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Closed-form values of the correction.
    #[test]
    fn weighted_bonferroni_closed_form() {
        // min(2 p_t, 2 p_s).
        let l = combine(Some(-9.0), Some(-3.0));
        assert!(close(l.log10_p.expect("tested"), 2e-9f64.log10()));
        assert_eq!(l.decided_by, Some(Layer::Token));
        assert_eq!((l.token_weight, l.semantic_weight), (0.5, 0.5));
        let l = combine(Some(-2.0), Some(-5.0));
        assert!(close(l.log10_p.expect("tested"), 2e-5f64.log10()));
        assert_eq!(l.decided_by, Some(Layer::Semantic));
        // Other weights: p_t / 0.9 and p_s / 0.1.
        let l = combine_weighted(Some(-4.0), Some(-4.5), 0.9);
        assert!(close(l.log10_p.expect("tested"), (1e-4f64 / 0.9).log10()));
        assert_eq!(l.decided_by, Some(Layer::Token));
        let l = combine_weighted(Some(-4.0), Some(-6.0), 0.9);
        assert!(close(l.log10_p.expect("tested"), (1e-6f64 / 0.1).log10()));
        // Capped at 1.
        let l = combine(Some(-0.1), Some(-0.2));
        assert_eq!(l.log10_p, Some(0.0));
        // An untested layer gives its weight to the other.
        let l = combine(Some(-7.0), None);
        assert_eq!((l.log10_p, l.token_weight, l.semantic_weight), (Some(-7.0), 1.0, 0.0));
        assert_eq!(l.decided_by, Some(Layer::Token));
        let l = combine(None, Some(-3.0));
        assert_eq!((l.log10_p, l.decided_by), (Some(-3.0), Some(Layer::Semantic)));
        let l = combine(None, None);
        assert_eq!((l.log10_p, l.decided_by), (None, None));
        assert_eq!(l.correction(), "neither layer could be tested");
        assert_eq!(
            combine(Some(-1.0), Some(-1.0)).correction(),
            "weighted Bonferroni over 2 layers (token 1/2, semantic 1/2)"
        );
    }

    /// The level under the null, by simulation with a fixed seed: two
    /// independent uniform p-values, and two identical ones (the most
    /// positive dependence); Bonferroni's bound `a` holds for both, and is
    /// nearly attained when the layers are independent (`1 - (1 - a/2)^2`).
    #[test]
    fn level_under_the_null() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(25);
        let trials = 200_000;
        let a: f64 = 0.01;
        let (mut independent, mut identical) = (0usize, 0usize);
        for _ in 0..trials {
            let (u, v): (f64, f64) = (rng.random(), rng.random());
            let l = |x: f64| Some(x.max(f64::MIN_POSITIVE).log10());
            independent += usize::from(combine(l(u), l(v)).log10_p.expect("tested") <= a.log10());
            identical += usize::from(combine(l(u), l(u)).log10_p.expect("tested") <= a.log10());
        }
        // Independent: P = 1 - (1 - a/2)^2 = 0.009975, expected 1,995 of
        // 200,000 (sd 44.5); identical: P = a/2, expected 1,000 (sd 31.5).
        // Within 4 sd.
        assert!((1817..=2173).contains(&independent), "{independent}");
        assert!((874..=1126).contains(&identical), "{identical}");
    }
}
