//! The report of one detection ([`Detection`]): the test that was run, its
//! exact p-value or the reason there was none, and the verdict.

use core::fmt;

use serde::{Deserialize, Serialize};
use tracemark_core::KeyId;

use super::forgery::ForgeryTest;
use super::layered::LayeredVerdict;
use super::observe::{Counts, Dedup, Mark};
use super::semantic::SemanticDetection;
use super::window::WindowReport;
use crate::text::canonical::CanonicalReport;
use crate::text::TokenizerInfo;

/// The test that was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TestReport {
    /// What the test is.
    pub name: String,
    /// The null distribution of the statistic.
    pub null_distribution: String,
    /// The observed statistic (green count, g-value count, or score sum).
    pub statistic: f64,
    /// Its expectation under the null hypothesis.
    pub expected: f64,
    /// `(statistic - expected) / sd`: informational only, never the test.
    pub z_score: f64,
}

/// The verdict at the report's significance level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// p < alpha: the text carries this key's watermark.
    Detected,
    /// p >= alpha: the evidence does not reach the significance level
    /// (see [`Detection::evidence`] for how strong it is).
    NotDetected,
    /// Too few tokens could be scored to test.
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Detected => "WATERMARK DETECTED",
            Self::NotDetected => "not detected",
            Self::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// Whether a detection was tested, and if so its test and exact p-value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The exact test of the whole text.
    Tested {
        /// The test that was run.
        test: TestReport,
        /// The exact p-value (0 if it underflows `f64`; see `log10_p`).
        p_value: f64,
        /// `log10` of the exact p-value, finite however small the p-value.
        log10_p: f64,
    },
    /// Too few tokens could be scored to test.
    Inconclusive {
        /// Why, in words.
        reason: String,
    },
}

impl Outcome {
    /// `log10` of the whole text's exact p-value, if it was tested.
    pub fn log10_p(&self) -> Option<f64> {
        match self {
            Self::Tested { log10_p, .. } => Some(*log10_p),
            Self::Inconclusive { .. } => None,
        }
    }

    /// `log10` of the p-value, or 0 (p = 1) when inconclusive: the
    /// conservative value where an untested text must count as "not
    /// detected" (detection rates, families of tests).
    pub fn conservative_log10_p(&self) -> f64 {
        self.log10_p().unwrap_or(0.0)
    }

    /// The test, if one was run.
    pub fn test(&self) -> Option<&TestReport> {
        match self {
            Self::Tested { test, .. } => Some(test),
            Self::Inconclusive { .. } => None,
        }
    }
}

/// The report of one detection: everything needed to reproduce and audit it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Detection {
    /// The tool and version that computed this report.
    pub tool: String,
    /// The spec version of every keyed value.
    pub spec: String,
    /// The scheme and its parameters, as a scheme string (`kgw:gamma=0.25,...`).
    pub scheme: String,
    /// The public id of the key tested.
    pub key_id: KeyId,
    /// The tokenizer, when the input was text.
    pub tokenizer: Option<TokenizerInfo>,
    /// SHA-256 of the input bytes, when known.
    pub input_sha256: Option<String>,
    /// Deduplication mode.
    pub dedup: Dedup,
    /// Token counts.
    pub counts: Counts,
    /// The whole text's test and p-value, or why there was none.
    pub outcome: Outcome,
    /// The significance level of the verdict.
    pub alpha: f64,
    /// The verdict: from the whole text's p-value, or, when a window was
    /// searched, from the family p-value of the whole text and the window
    /// ([`WindowReport::family_log10_p`]).
    pub verdict: Verdict,
    /// The most significant window, when a window search was asked for.
    pub window: Option<WindowReport>,
    /// Where the scheme tested came from (the key's serving manifest, or
    /// given by hand), and a warning when it is not the one served; set by
    /// the caller that resolved the scheme.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scheme_source: Option<crate::serving::SchemeSource>,
    /// Why a window search that was asked for did not run (too few scored
    /// tokens for the shortest window, or no per-token scores).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub window_skipped: Option<String>,
    /// One mark per completion token, when asked for.
    pub marks: Option<Vec<Mark>>,
    /// What canonicalisation changed and the tests of both forms, when the
    /// input was text and canonicalisation was on.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub canonical: Option<CanonicalReport>,
    /// The spoof-artifact test, when the detector holds a forgery reference
    /// and the text had both dense and sparse observations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub forgery: Option<ForgeryTest>,
    /// The semantic layer's exact test of the same text under the same key
    /// (SPEC §15.3), when a semantic scheme was given
    /// ([`Detection::add_semantic`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub semantic: Option<SemanticDetection>,
    /// The layered verdict's p-value (SPEC §15.4), when a semantic layer was
    /// tested: `verdict` then stands on it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layered: Option<LayeredVerdict>,
}

impl Detection {
    /// `log10` of the p-value the verdict stands on: the layered p-value
    /// when a semantic layer was tested ([`LayeredVerdict::log10_p`]), else
    /// the token layer's ([`Detection::token_log10_p`]): the family p-value
    /// of the forms tested when the input was text
    /// ([`CanonicalReport::family_log10_p`]), else of the whole text and its
    /// window when a window was searched, else the whole text's; `None` when
    /// inconclusive.
    pub fn verdict_log10_p(&self) -> Option<f64> {
        match &self.layered {
            Some(l) => l.log10_p,
            None => self.token_log10_p(),
        }
    }

    /// `log10` of this form's own p-value: the window family's when a window
    /// was searched, else the whole text's.
    pub(crate) fn form_log10_p(&self) -> Option<f64> {
        let whole = self.outcome.log10_p()?;
        Some(self.window.as_ref().map_or(whole, |w| w.family_log10_p))
    }

    /// Whether the watermark was detected and its evidence sits where a
    /// spoofer could have learned it (the spoof-artifact test fired).
    pub fn looks_forged(&self) -> bool {
        self.verdict == Verdict::Detected && self.forgery.as_ref().is_some_and(|f| f.artifact)
    }

    /// [`Detection::verdict_log10_p`], or 0 (p = 1) when inconclusive.
    pub fn conservative_verdict_log10_p(&self) -> f64 {
        self.verdict_log10_p().unwrap_or(0.0)
    }
}
