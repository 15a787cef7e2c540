//! The strength of a test's evidence in words, apart from its verdict.
//!
//! A verdict is a line drawn before the test (the significance level); the
//! evidence is graded. A text at p = 3.4e-6 under a 1e-6 level is "not
//! detected", and it is also a strong signal that a reader must not take for
//! a clean text. [`Detection::evidence`] says both, and
//! [`Detection::needed_to_detect`] says what a text of this length would have
//! needed, so that a short text's "not detected" reads as what it is.

use serde::{Deserialize, Serialize};
use tracemark_core::{Null, SchemeConfig};
use tracemark_stats as stats;

use super::detection::{Detection, Outcome, Verdict};

/// How strong the evidence for the watermark is, whatever the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strength {
    /// The statistic is at or below its expectation without the watermark.
    None,
    /// p above 0.05: common without the watermark.
    Faint,
    /// p from 1e-3 to 0.05.
    Weak,
    /// p from 1e-5 to 1e-3.
    Moderate,
    /// p below 1e-5 (and not below the significance level, or detected).
    Strong,
}

/// `log10` of the largest p-value that is a signal at all (0.05): above it
/// a result is [`Strength::Faint`].
const FAINT_LOG10: f64 = -1.3;

impl Strength {
    /// The grade of a p-value alone, for a result known only by it: a
    /// p-value below 0.05 means the statistic was above its expectation.
    pub fn of_p_value(log10_p: f64) -> Self {
        Self::of(log10_p, log10_p < FAINT_LOG10)
    }

    /// The grade of a test whose statistic is `above` its expectation (or
    /// not) with p-value `10^log10_p`.
    pub fn of(log10_p: f64, above: bool) -> Self {
        if !above {
            Self::None
        } else if log10_p > FAINT_LOG10 {
            Self::Faint
        } else if log10_p > -3.0 {
            Self::Weak
        } else if log10_p > -5.0 {
            Self::Moderate
        } else {
            Self::Strong
        }
    }

    /// The grade in words, as a noun phrase: `"a strong signal"`.
    pub fn words(self) -> &'static str {
        match self {
            Self::None => "no evidence",
            Self::Faint => "no meaningful signal",
            Self::Weak => "a weak signal",
            Self::Moderate => "a moderate signal",
            Self::Strong => "a strong signal",
        }
    }
}

/// What a text of this many scored tokens needs to be detected: for tests
/// whose null counts green draws, the fewest green draws that reach the
/// significance level; for score sums, the smallest sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Needed {
    /// Scored tokens of the text.
    pub scored: usize,
    /// The smallest statistic that reaches the significance level (a count of
    /// green draws, or a score sum), `None` when no statistic can.
    pub statistic: Option<f64>,
    /// That statistic as a share of its largest value (green draws over all
    /// draws) or as a multiple of its null mean (score sums).
    pub share: Option<f64>,
    /// The statistic's expectation without the watermark.
    pub expected: f64,
    /// The sentence for readers.
    pub words: String,
    /// Whether the text is short for its test ([`Detection::is_short`]).
    pub short: bool,
}

impl Detection {
    /// How strong this detection's evidence is: from the p-value the verdict
    /// stands on, and whether the whole text's statistic is above its
    /// expectation; `None` when inconclusive.
    pub fn strength(&self) -> Option<Strength> {
        let log10_p = self.verdict_log10_p()?;
        let above = match &self.outcome {
            Outcome::Tested { test, .. } => test.statistic > test.expected,
            Outcome::Inconclusive { .. } => false,
        };
        // A window or the canonical form can carry the evidence when the
        // whole text as given does not: the verdict's p-value decides then.
        let above = above || log10_p < FAINT_LOG10;
        Some(Strength::of(log10_p, above))
    }

    /// The evidence in one sentence: `"a strong signal, about 1 in 290,000,
    /// short of the 1e-6 level fixed before the test: not detected"`;
    /// `None` when inconclusive.
    pub fn evidence(&self) -> Option<String> {
        let log10_p = self.verdict_log10_p()?;
        let strength = self.strength()?;
        let alpha = self.alpha;
        Some(match (self.verdict, strength) {
            (Verdict::Detected, _) => format!(
                "{}, {}, below the {alpha:e} level fixed before the test: detected",
                Strength::Strong.words(),
                p_in_words(log10_p)
            ),
            (_, Strength::None) => format!(
                "no evidence: the text scores at or below what text without the watermark scores (p = {}): not detected",
                short_p(log10_p)
            ),
            (_, Strength::Faint) => format!(
                "{} (p = {}: results like this are common without the watermark): not detected",
                strength.words(),
                short_p(log10_p)
            ),
            (_, s) => format!(
                "{}, {} (p = {}), short of the {alpha:e} level fixed before the test: not detected",
                s.words(),
                p_in_words(log10_p),
                short_p(log10_p)
            ),
        })
    }

    /// What a text of this length needs to reach the significance level,
    /// for the unweighted tests of the scheme's contract; `None` for
    /// inconclusive or weighted tests.
    pub fn needed_to_detect(&self) -> Option<Needed> {
        let Outcome::Tested { test, .. } = &self.outcome else {
            return None;
        };
        let config: SchemeConfig = self.scheme.parse().ok()?;
        let null = config.contract().null;
        let n = self.counts.scored as u64;
        if test.null_distribution != null.total(n) {
            return None;
        }
        let alpha = self.alpha;
        let (statistic, share, words, short) = match null {
            Null::Binomial { trials, p } => {
                let draws = n * u64::from(trials);
                let k = stats::binomial_critical(draws, p, alpha);
                let words = match k {
                    Some(k) => format!(
                        "with {n} scored tokens, this test reaches {alpha:e} only when at least {k} of {draws} draws ({:.0}%) count for the watermark; \
                         without it {:.0}% do",
                        100.0 * k as f64 / draws as f64,
                        100.0 * p
                    ),
                    None => format!(
                        "with {n} scored tokens, this test cannot reach {alpha:e} even if every token counts for the watermark: the text is too short"
                    ),
                };
                let share = k.map(|k| k as f64 / draws as f64);
                (
                    k.map(|k| k as f64),
                    share,
                    words,
                    share.is_none_or(|share| share >= 0.6),
                )
            }
            Null::Exponential => {
                let s = gamma_critical(n, alpha);
                let words = format!(
                    "with {n} scored tokens, this test reaches {alpha:e} only when the scores sum to at least {s:.1}, \
                     {:.2} times their mean without the watermark",
                    s / n as f64
                );
                (Some(s), Some(s / n as f64), words, s / n as f64 >= 2.0)
            }
            _ => return None,
        };
        Some(Needed {
            scored: self.counts.scored,
            statistic,
            share,
            expected: test.expected,
            words,
            short,
        })
    }

    /// What to check when a detection was expected and did not come: the
    /// key, where the scheme came from, the tokenizer against the one served,
    /// the prompt, the length. One line per item, for the CLI, the report and
    /// the bindings.
    pub fn checklist(&self) -> Vec<String> {
        let mut out = vec![format!(
            "key: id {}; is it the key the text was served under (the account's or cohort's derived key, not the master or a sibling)?",
            self.key_id
        )];
        out.push(match &self.scheme_source {
            Some(s) if s.warning.is_some() && s.served.is_some() => format!(
                "scheme: {} was tested, but the key was served with {}; test the served scheme",
                self.scheme,
                s.served.as_deref().unwrap_or_default()
            ),
            Some(s) if s.served.is_some() => format!("scheme: {}, from {}", self.scheme, s.origin),
            _ => format!(
                "scheme: {} was given by hand; a different gamma, delta or context width than the one served gives \
                 \"not detected\" (a serving manifest beside the key fixes the scheme: `tracemark serving`)",
                self.scheme
            ),
        });
        out.push(match (&self.tokenizer, self.scheme_source.as_ref().and_then(|s| s.served_tokenizer.as_ref())) {
            (Some(t), Some(served)) if &t.fingerprint == served => {
                format!("tokenizer: {} is the one the key was served with", t.fingerprint)
            }
            (Some(t), Some(served)) => format!(
                "tokenizer: {} is NOT the one the key was served with ({served}); use the served model's tokenizer.json",
                t.fingerprint
            ),
            (Some(t), None) => format!(
                "tokenizer: {} (vocabulary {}); it must be the served model's own tokenizer.json, since another \
                 tokenizer splits the text into other tokens",
                t.fingerprint, t.vocab_size
            ),
            (None, _) => "input: token ids; they must be the served model's ids, not re-encoded by another tokenizer".into(),
        });
        out.push(if self.counts.prompt > 0 {
            format!("prompt: given ({} tokens, context only)", self.counts.prompt)
        } else {
            "prompt: not given; the first tokens of an answer are seeded by the prompt's last tokens, so give \
             --prompt-file when you have it (without it the first tokens have no context and are not scored)"
                .into()
        });
        out.push(match self.needed_to_detect() {
            Some(n) if n.short => format!("length: a short text for this test; {}", n.words),
            Some(n) => format!("length: {}", n.words),
            None => format!("length: {} tokens scored", self.counts.scored),
        });
        out
    }

    /// Whether this text is short for its test: reaching the significance
    /// level needs at least 60% of its draws green (or a score sum of at
    /// least twice the null's), more than a typical watermarked text shows.
    pub fn is_short(&self) -> bool {
        self.needed_to_detect().is_some_and(|n| n.short)
    }
}

/// The smallest `s` with `P(Gamma(n, 1) >= s) <= alpha` (bisection on the
/// exact tail).
fn gamma_critical(n: u64, alpha: f64) -> f64 {
    let target = alpha.ln();
    let (mut lo, mut hi) = (n as f64, n as f64 * 2.0 + 60.0);
    while stats::ln_gamma_upper(n, hi) > target {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if stats::ln_gamma_upper(n, mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// A p-value for a sentence: three decimals from 0.001 up, else `3.4e-6`.
fn short_p(log10_p: f64) -> String {
    if log10_p >= -3.0 {
        format!("{:.3}", 10f64.powf(log10_p))
    } else if log10_p > -300.0 {
        let p = 10f64.powf(log10_p);
        format!("{p:.1e}")
    } else {
        format!("10^{log10_p:.1}")
    }
}

/// A p-value's size in words: `"about 1 in 3.2 million"`.
pub fn p_in_words(log10_p: f64) -> String {
    if log10_p >= -0.5 {
        return "not small: results like this are common without the watermark".to_string();
    }
    let odds = -log10_p;
    if odds < 6.0 {
        let n = 10f64.powf(odds);
        let rounded = if n < 100.0 {
            format!("{n:.0}")
        } else {
            let magnitude = 10f64.powf((n.log10().floor() - 1.0).max(0.0));
            let r = (n / magnitude).round() * magnitude;
            group_thousands(r as u64)
        };
        return format!("about 1 in {rounded}");
    }
    const NAMES: [(f64, &str); 6] = [
        (6.0, "million"),
        (9.0, "billion"),
        (12.0, "trillion"),
        (15.0, "quadrillion"),
        (18.0, "quintillion"),
        (21.0, "sextillion"),
    ];
    if odds < 24.0 {
        let (exp, name) = NAMES
            .iter()
            .rev()
            .find(|(e, _)| odds >= *e)
            .copied()
            .unwrap_or(NAMES[0]);
        let mantissa = 10f64.powf(odds - exp);
        return format!("about 1 in {mantissa:.1} {name}");
    }
    let exp = odds.floor();
    format!("about 1 in {:.1} × 10^{exp:.0}", 10f64.powf(odds - exp))
}

fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades() {
        assert_eq!(Strength::of(-0.3, true), Strength::Faint);
        assert_eq!(Strength::of(-2.0, true), Strength::Weak);
        assert_eq!(Strength::of(-4.0, true), Strength::Moderate);
        assert_eq!(Strength::of(-5.46, true), Strength::Strong);
        assert_eq!(Strength::of(-0.3, false), Strength::None);
    }

    #[test]
    fn gamma_critical_is_the_tail_inverse() {
        let s = gamma_critical(50, 1e-6);
        let at = stats::ln_gamma_upper(50, s).exp();
        assert!((at - 1e-6).abs() < 1e-9, "{at}");
    }

    #[test]
    fn p_values_in_words() {
        assert_eq!(p_in_words(-2.0), "about 1 in 100");
        assert_eq!(p_in_words(-3.5), "about 1 in 3,200");
        assert_eq!(p_in_words(-5.46), "about 1 in 290,000");
        assert_eq!(p_in_words(-12.5), "about 1 in 3.2 trillion");
        assert_eq!(p_in_words(-6.0), "about 1 in 1.0 million");
        assert_eq!(p_in_words(-2000.3), "about 1 in 2.0 × 10^2000");
        assert_eq!(p_in_words(-32.651), "about 1 in 4.5 × 10^32");
        assert!(p_in_words(-0.1).starts_with("not small"));
    }
}
