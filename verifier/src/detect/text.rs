//! Detection on text: the text as given and its canonical form, each
//! encoded and tested, with the correction for testing both.

use super::detection::{Detection, Verdict};
use super::detector::Detector;
use crate::error::{Error, Result};
use crate::text::canonical::{plan_forms, Canonical, CanonicalReport, Form, FormFamily, FormTest, PlannedForms};
use crate::text::{sha256_hex, Deadline, TextTokenizer};

impl Detector {
    /// Tests a text: `completion` is encoded and scored, `prompt` (if any) is
    /// encoded separately and used as context only. The report carries the
    /// tokenizer fingerprint, the SHA-256 of the completion bytes, and byte
    /// spans (into `completion` as given) for the marks and the window.
    ///
    /// With [`DetectOptions::canonicalize`](crate::DetectOptions) on (the
    /// default), the forms tested are chosen from the text alone
    /// ([`form_plan`](crate::canonical::form_plan)): as given, its canonical form
    /// ([`canonicalize`](crate::canonicalize)), or
    /// both, where the verdict stands on the smaller p-value times 2; the
    /// report's
    /// [`canonical`](Detection::canonical) section says what changed, both
    /// tests and the correction.
    pub fn detect_text(&self, tokenizer: &TextTokenizer, prompt: Option<&str>, completion: &str) -> Result<Detection> {
        self.detect_text_until(tokenizer, prompt, completion, Deadline::NONE)
    }

    /// [`detect_text`](Self::detect_text), stopped with
    /// [`Error::DeadlineExceeded`] once `deadline` has passed: checked as
    /// canonicalisation goes (every thousand characters or so), between the
    /// chunks of a long text's encoding ([`TextTokenizer::encode_until`]),
    /// and before and after each form's scoring. The report is the one
    /// [`detect_text`](Self::detect_text) gives when it ends in time.
    pub fn detect_text_until(
        &self,
        tokenizer: &TextTokenizer,
        prompt: Option<&str>,
        completion: &str,
        deadline: Deadline,
    ) -> Result<Detection> {
        if completion.trim().is_empty() {
            return Err(Error::EmptyInput);
        }
        if !self.options().canonicalize {
            return self.detect_form(tokenizer, prompt, completion, None, deadline);
        }
        // Which forms to test, from the text alone, never from a p-value.
        let PlannedForms {
            prompt: canonical_prompt,
            completion: canonical,
            plan,
        } = plan_forms(prompt, completion, deadline)?;
        let mut forms = Vec::with_capacity(plan.forms());
        let mut reports = Vec::with_capacity(plan.forms());
        if plan.tests(Form::AsGiven) {
            let given = self.detect_form(tokenizer, prompt, completion, None, deadline)?;
            forms.push(FormTest {
                form: Form::AsGiven,
                sha256: sha256_hex(completion.as_bytes()),
                tokens: given.counts.seen,
                log10_p: given.form_log10_p(),
            });
            reports.push(given);
        }
        if plan.tests(Form::Canonical) {
            let report = self.detect_form(
                tokenizer,
                canonical_prompt.as_ref().map(Canonical::text),
                canonical.text(),
                Some(&canonical),
                deadline,
            )?;
            forms.push(FormTest {
                form: Form::Canonical,
                sha256: sha256_hex(canonical.text().as_bytes()),
                tokens: report.counts.seen,
                log10_p: report.form_log10_p(),
            });
            reports.push(report);
        }
        // Bonferroni over the forms tested.
        let family = FormFamily::of(&forms.iter().map(|f| f.log10_p).collect::<Vec<_>>());
        let decided_by = forms[family.decided].form;
        let Some(mut d) = reports.into_iter().nth(family.decided) else {
            return Err(Error::EmptyInput);
        };
        d.input_sha256 = Some(sha256_hex(completion.as_bytes()));
        d.verdict = self.family_verdict(&family);
        d.canonical = Some(CanonicalReport {
            changes: canonical.summary(),
            forms,
            decided_by,
            correction_log10: family.correction_log10,
            family_log10_p: family.family_log10_p,
            plan: Some(plan),
        });
        Ok(d)
    }

    /// The verdict of a family of forms at this detector's `alpha`: the one
    /// rule of [`detect_text`](Self::detect_text), corpus scans and account
    /// attribution.
    pub(crate) fn family_verdict(&self, family: &FormFamily) -> Verdict {
        match family.rejects(self.options().alpha) {
            None => Verdict::Inconclusive,
            Some(true) => Verdict::Detected,
            Some(false) => Verdict::NotDetected,
        }
    }

    /// Tests one form of a text; `canonical` maps its spans back to the
    /// original when the form is a canonical one.
    fn detect_form(
        &self,
        tokenizer: &TextTokenizer,
        prompt: Option<&str>,
        completion: &str,
        canonical: Option<&Canonical>,
        deadline: Deadline,
    ) -> Result<Detection> {
        let prompt_ids = match prompt {
            Some(p) => tokenizer.encode_until(p, deadline)?.ids,
            None => Vec::new(),
        };
        let enc = tokenizer.encode_until(completion, deadline)?;
        // Where the text's paragraphs begin, in tokens (SPEC §16 v4): only
        // the window search reads them.
        let paragraphs: Vec<u32> = if self.options().window.is_some() {
            super::window::paragraph_starts(completion)
                .into_iter()
                .map(|at| enc.spans.partition_point(|s| s.0 < at) as u32)
                .collect()
        } else {
            Vec::new()
        };
        let mut d = self.detect_paragraphs_until(&prompt_ids, &enc.ids, &paragraphs, deadline)?;
        d.tokenizer = Some(tokenizer.info().clone());
        d.input_sha256 = Some(sha256_hex(completion.as_bytes()));
        let original = |span: (usize, usize)| canonical.map_or(span, |c| c.original_span(span));
        if let Some(marks) = &mut d.marks {
            for (m, span) in marks.iter_mut().zip(&enc.spans) {
                m.span = Some(original(*span));
            }
        }
        if let Some(w) = &mut d.window {
            let start = enc.spans.get(w.start).map(|s| s.0);
            let end = enc.spans.get(w.end.saturating_sub(1)).map(|s| s.1);
            w.span = start.zip(end).map(original);
        }
        Ok(d)
    }
}
