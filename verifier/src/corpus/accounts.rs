//! Naming the account a leaked answer was served to, among many accounts.
//!
//! Every API account gets its own key, derived from a master key and the
//! account's label (`derive(master, "account/<id>")`, SPEC §2.4): nothing is
//! stored per account, and any account's key can be re-derived when a text
//! turns up. [`attribute_accounts`] derives the keys on the fly (in
//! parallel), tests the text under each, and names the accounts whose
//! Holm-adjusted p-value is below `alpha`: the probability of naming any
//! account the text was not served to is at most `alpha`, however many
//! accounts are tested. Only the smallest p-values are kept
//! ([`KEPT`]), which is all Holm's procedure needs to name accounts, so the
//! memory does not grow with the number of accounts.
//!
//! The price of many accounts is evidence: the best key must reach
//! `alpha / accounts` (about 1e-12 for 1e-6 among 1,000,000 accounts), which
//! takes more tokens than 1e-6 does for one key.
//!
//! ```
//! use tracemark_core::{Key, SchemeConfig};
//! use tracemark_verifier::accounts::{attribute_accounts, AccountForms};
//! use tracemark_verifier::DetectOptions;
//!
//! let master = Key::generate()?;
//! let config: SchemeConfig = "kgw:gamma=0.25,delta=4,context=lefthash:1".parse()?;
//! let label = |i: u64| format!("account/{i}");
//! // An answer served to account 42: greedy on watermarked flat logits.
//! let scheme = config.build(&master.derive(&label(42))?, 1000)?;
//! let mut ids = vec![1u32];
//! for step in 0..150u32 {
//!     let mut logits: Vec<f32> = (0..1000u32).map(|t| ((t * 7 + step * 13) % 17) as f32 * 0.1).collect();
//!     scheme.process(&ids, &mut logits)?;
//!     let next = (0..1000).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
//!     ids.push(next as u32);
//! }
//! let forms = AccountForms::ids(ids[..1].to_vec(), ids[1..].to_vec());
//! let found = attribute_accounts(&master, &config, 1000, &DetectOptions::default(), &forms, 1000, label)?;
//! assert_eq!(found.named.iter().map(|m| m.label.as_str()).collect::<Vec<_>>(), ["account/42"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracemark_core::{Key, KeyId, SchemeConfig};

use super::attribution::{attribute_keys, KeyAttribution, KeyOutcome, KeySet};
use crate::detect::{DetectOptions, Detector};
use crate::error::{Error, Result};
use crate::text::canonical::{plan_forms, Canonical, Form, FormFamily, FormPlan};
use crate::text::Deadline;

pub use super::attribution::KEPT;

/// The forms of one text to test under each key: ids as given, or for a
/// text the forms [`Detector::detect_text`] tests, decided from the text
/// alone (SPEC §14.1). A key's p-value is the smallest of its forms' times
/// their number (Bonferroni), exactly as `detect_text`'s under that key.
#[derive(Clone, Debug)]
pub struct AccountForms {
    forms: Vec<(Vec<u32>, Vec<u32>)>,
    plan: Option<FormPlan>,
}

impl AccountForms {
    /// One form: token ids after prompt ids.
    pub fn ids(prompt: Vec<u32>, completion: Vec<u32>) -> Self {
        AccountForms {
            forms: vec![(prompt, completion)],
            plan: None,
        }
    }

    /// A text through `tokenizer`: the text as given, its canonical form, or
    /// both, as its plan says (the text as given first).
    pub fn text(tokenizer: &crate::text::TextTokenizer, prompt: Option<&str>, text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(Error::EmptyInput);
        }
        let encode = |p: Option<&str>, t: &str| -> Result<(Vec<u32>, Vec<u32>)> {
            let prompt = p
                .map(|p| tokenizer.encode(p))
                .transpose()?
                .map(|e| e.ids)
                .unwrap_or_default();
            Ok((prompt, tokenizer.encode(t)?.ids))
        };
        let planned = plan_forms(prompt, text, Deadline::NONE)?;
        let mut forms = Vec::with_capacity(planned.plan.forms());
        if planned.plan.tests(Form::AsGiven) {
            forms.push(encode(prompt, text)?);
        }
        if planned.plan.tests(Form::Canonical) {
            forms.push(encode(
                planned.prompt.as_ref().map(Canonical::text),
                planned.completion.text(),
            )?);
        }
        Ok(AccountForms {
            forms,
            plan: Some(planned.plan),
        })
    }

    /// The forms tested, decided from the text (`None` for ids).
    pub fn plan(&self) -> Option<FormPlan> {
        self.plan
    }

    /// How many forms are tested per key.
    pub fn len(&self) -> usize {
        self.forms.len()
    }

    /// Whether there is no form (never, once built).
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

/// One account's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountMatch {
    /// The account's derivation label.
    pub label: String,
    /// Its key's public id.
    pub key_id: KeyId,
    /// `log10` of its own p-value.
    pub log10_p: f64,
    /// `log10` of its Holm-adjusted p-value over every account tested.
    pub log10_p_adjusted: f64,
    /// Tokens scored under its key (of the form that decided).
    pub scored: usize,
}

/// The result of testing one text against every account's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountAttribution {
    /// Accounts tested.
    pub accounts: u64,
    /// Accounts whose key could not test the text (too few tokens scored).
    pub inconclusive: u64,
    /// The family-wise significance level.
    pub alpha: f64,
    /// The correction, in words.
    pub correction: String,
    /// `log10(alpha / accounts)`: what the best account's own p-value must be below.
    pub log10_needed: f64,
    /// Accounts named at the family-wise level, smallest p-value first.
    pub named: Vec<AccountMatch>,
    /// The smallest p-values (at most [`KEPT`]), smallest first.
    pub best: Vec<AccountMatch>,
    /// Wall time of the scan, seconds.
    pub seconds: f64,
    /// Keys tested per second, and (key, token) pairs per second.
    pub keys_per_second: f64,
    /// (key, token) observations per second.
    pub key_tokens_per_second: f64,
    /// The forms of a text that were tested under each key, decided from the
    /// text alone as `tracemark detect` decides them (SPEC §14.1; the `plan`
    /// of detect's `canonical` section); absent for ids.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plan: Option<FormPlan>,
}

/// Tests `forms` under the keys derived from `master` for the labels
/// `label(0) .. label(accounts - 1)`, and names the accounts whose
/// Holm-adjusted p-value is below `options.alpha`: [`attribute_keys`] over
/// [`KeySet::Derived`], in the shape (and JSON) accounts have always had.
pub fn attribute_accounts(
    master: &Key,
    config: &SchemeConfig,
    vocab_size: usize,
    options: &DetectOptions,
    forms: &AccountForms,
    accounts: u64,
    label: impl Fn(u64) -> String + Sync,
) -> Result<AccountAttribution> {
    if accounts == 0 || forms.is_empty() {
        return Err(Error::InvalidOption {
            name: "accounts",
            message: "no account to test".into(),
        });
    }
    let options = DetectOptions {
        marks: false,
        window: None,
        ..options.clone()
    };
    options.validate()?;
    let started = Instant::now();
    let keys = KeySet::Derived {
        master,
        count: accounts,
        label: &label,
    };
    let found = attribute_keys(&keys, options.alpha, |_, key| {
        let detector = Detector::new(key, config, vocab_size, options.clone())?;
        let mut tested = Vec::with_capacity(forms.len());
        for (prompt, completion) in &forms.forms {
            let d = detector.detect_ids(prompt, completion)?;
            tested.push((d.form_log10_p(), d.counts.scored));
        }
        // Bonferroni over the forms, as `Detector::detect_text`.
        let family = FormFamily::of(&tested.iter().map(|t| t.0).collect::<Vec<_>>());
        Ok(KeyOutcome::Score {
            log10_p: family.family_log10_p,
            scored: family.family_log10_p.map_or(0, |_| tested[family.decided].1),
        })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let m = accounts as f64;
    let tokens: usize = forms.forms.iter().map(|(_, c)| c.len()).sum();
    let mut a = AccountAttribution::from(found);
    a.correction = format!(
        "Holm step-down over {accounts} account keys (family-wise error rate){}",
        match forms.plan {
            Some(FormPlan::Both) => {
                "; each key's p-value is the smaller of the text as given and its canonical form, times 2"
            }
            Some(FormPlan::Canonical) => "; the text's canonical form is tested (SPEC 14.1)",
            _ => "",
        }
    );
    a.plan = forms.plan;
    a.seconds = seconds;
    a.keys_per_second = m / seconds.max(1e-9);
    a.key_tokens_per_second = m * tokens as f64 / seconds.max(1e-9);
    Ok(a)
}

impl From<KeyAttribution> for AccountAttribution {
    /// The accounts' view of an attribution over a derived key set (its JSON
    /// shape, unchanged); the timings are zero until the caller sets them.
    fn from(a: KeyAttribution) -> Self {
        let log10_needed = a.log10_needed();
        let best: Vec<AccountMatch> = a
            .keys
            .into_iter()
            .filter_map(|k| {
                k.tested.map(|t| AccountMatch {
                    label: k.label,
                    key_id: k.key_id,
                    log10_p: t.log10_p,
                    log10_p_adjusted: t.log10_p_adjusted,
                    scored: k.scored,
                })
            })
            .collect();
        let alpha_log10 = a.alpha.log10();
        let named = best
            .iter()
            .take_while(|m| m.log10_p_adjusted < alpha_log10)
            .cloned()
            .collect();
        AccountAttribution {
            accounts: a.tested,
            inconclusive: a.inconclusive,
            alpha: a.alpha,
            correction: a.correction,
            log10_needed,
            named,
            best,
            seconds: 0.0,
            keys_per_second: 0.0,
            key_tokens_per_second: 0.0,
            plan: None,
        }
    }
}
