//! The scheme contract: everything scheme-specific that the verifier, the
//! bindings and the decoders need, stated once by each scheme.
//!
//! A [`Contract`] says three things:
//! - the **null distribution** of one scored observation ([`Null`]): what a
//!   token's score looks like when the text is independent of the key. The
//!   verifier sums the scores of the scored observations and computes the
//!   exact upper tail of the sum's distribution;
//! - what the score **statistic** is called in a report;
//! - the **generation contract** ([`Generation`]): whether the scheme biases the
//!   logits for the caller's sampler, or decides the distribution (or the token)
//!   itself; and whether it skips contexts it already watermarked in a sequence
//!   by default.
//!
//! The per-observation score itself is [`Scheme::score`](crate::Scheme::score).

/// The null distribution of one scored observation's score.
///
/// Under the null hypothesis (text written without the key) distinct
/// `(seed, token)` observations are independent, so the total over `n` scored
/// observations has the distribution given by [`Null::total`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Null {
    /// The score counts successes among `trials` independent Bernoulli(`p`)
    /// draws: the total over `n` observations is Binomial(`n * trials`, `p`).
    Binomial {
        /// Bernoulli draws per observation.
        trials: u32,
        /// Success probability of one draw (exact, e.g. `G / 65536`).
        p: f64,
    },
    /// The score is Exponential(1): the total over `n` observations is Gamma(`n`, 1).
    Exponential,
}

impl Null {
    /// The mean and standard deviation of the total over `n` observations.
    pub fn total_moments(&self, n: u64) -> (f64, f64) {
        match *self {
            Self::Binomial { trials, p } => {
                let nt = (n * u64::from(trials)) as f64;
                (nt * p, (nt * p * (1.0 - p)).sqrt())
            }
            Self::Exponential => (n as f64, (n as f64).sqrt()),
        }
    }

    /// The distribution of the total over `n` observations, in words
    /// (`Binomial(n=800, p=0.25)`, `Gamma(shape=200, scale=1)`).
    pub fn total(&self, n: u64) -> String {
        match *self {
            Self::Binomial { trials, p } => format!("Binomial(n={}, p={p})", n * u64::from(trials)),
            Self::Exponential => format!("Gamma(shape={n}, scale=1)"),
        }
    }

    /// The name of the exact test of the total, given the statistic's name
    /// (`binomial upper tail of the green count`).
    pub fn test_name(&self, statistic: &str) -> String {
        match self {
            Self::Binomial { .. } => format!("binomial upper tail of the {statistic}"),
            Self::Exponential => format!("gamma upper tail of the {statistic}"),
        }
    }
}

/// How a scheme takes part in sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Generation {
    /// The scheme adds a keyed bias to the logits; the caller's own sampler
    /// (temperature, top-k, top-p) then runs as usual. The bias does not
    /// depend on the logits ([`Scheme::bias`](crate::Scheme::bias) computes it
    /// alone, e.g. to add it on an accelerator).
    Bias,
    /// The scheme replaces the row with its own sampling distribution
    /// (log-probabilities, `-inf` outside it; its temperature and top-k are
    /// scheme parameters): sample the row as it is, at temperature 1, without
    /// top-k or top-p.
    Distribution,
    /// The scheme selects the token itself: one logit stays finite, and any
    /// sampler returns it.
    Selection,
}

impl Generation {
    /// Whether the scheme decides the sampling distribution itself, so that the
    /// caller must sample the processed row as it is (temperature 1, no top-k or
    /// top-p) for the watermark to hold.
    pub fn controls_sampling(self) -> bool {
        !matches!(self, Self::Bias)
    }
}

/// What a scheme states about itself; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Contract {
    /// The null distribution of one scored observation.
    pub null: Null,
    /// The statistic's name in reports (`green count`, `g-value count`, `sum of -ln(1-u)`).
    pub statistic: &'static str,
    /// How the scheme takes part in sampling.
    pub generation: Generation,
    /// Whether generation should skip contexts already watermarked in the
    /// sequence by default: on for schemes whose choice is a function of the
    /// context, where a repeated context would otherwise repeat its token (and
    /// add no evidence, since the verifier deduplicates it).
    pub skip_repeated: bool,
}

impl Contract {
    /// A contract (for a scheme defined outside this crate).
    pub fn new(null: Null, statistic: &'static str, generation: Generation, skip_repeated: bool) -> Self {
        Self {
            null,
            statistic,
            generation,
            skip_repeated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_words() {
        let b = Null::Binomial { trials: 30, p: 0.5 };
        assert_eq!(b.total_moments(10), (150.0, 75f64.sqrt()));
        assert_eq!(b.total(10), "Binomial(n=300, p=0.5)");
        assert_eq!(Null::Exponential.total_moments(4), (4.0, 2.0));
        assert_eq!(Null::Exponential.total(4), "Gamma(shape=4, scale=1)");
        assert_eq!(
            Null::Exponential.test_name("sum of -ln(1-u)"),
            "gamma upper tail of the sum of -ln(1-u)"
        );
        assert!(!Generation::Bias.controls_sampling());
        assert!(Generation::Selection.controls_sampling());
    }
}
