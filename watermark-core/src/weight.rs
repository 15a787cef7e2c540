//! How much watermark a position can carry, from the model's logits there
//! (before the watermark): the weights of model-assisted detection
//! (`tracemark_verifier::weighted`). Each scheme config answers for itself
//! ([`SchemeConfig::token_weight`](crate::SchemeConfig::token_weight)); these
//! are the shared pieces.

/// Entropy (nats) at which a token of a scheme without a bias model gets full
/// weight: eight equally likely choices.
pub const ENTROPY_CAP: f64 = 2.079_441_541_679_835_7; // ln 8

/// The softmax of `logits`, non-finite logits as impossible tokens; `None`
/// when no logit is finite.
pub(crate) fn softmax(logits: &[f32]) -> Option<Vec<f64>> {
    let max = logits
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let mut probs: Vec<f64> = logits
        .iter()
        .map(|&x| if x.is_finite() { f64::from(x - max).exp() } else { 0.0 })
        .collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= z);
    Some(probs)
}

/// The Shannon entropy of the distribution over [`ENTROPY_CAP`], capped at 1
/// (0 for an empty or all-impossible row).
pub(crate) fn entropy_weight(logits: &[f32]) -> f64 {
    let Some(probs) = softmax(logits) else { return 0.0 };
    let h: f64 = probs.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum();
    (h / ENTROPY_CAP).clamp(0.0, 1.0)
}
