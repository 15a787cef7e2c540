//! Stages 3 and 4: cohort attribution, the control students, and what the
//! quick run requires of them.

use tracemark_candle::Rng;

use crate::students::{answers, NGram};
use crate::summary::ks_uniform;
use tracemark_core::Key;
use tracemark_verifier::{attribute, Attribution};

use super::students::lp;
use super::{
    mixture, Harvested, Lab, Plan, StudentKind, StudentRow, TestMode, Trained, COHORTS, CONTROL_KEYS, HARVESTED,
};
use crate::Result;

/// Stage 3: a trigram student trained on everything harvested from cohorts 1, 4 and 6, tested
/// under all cohort keys. Returns the attribution and the training tokens.
pub fn attribution(lab: &Lab<'_>, keys: &[Key], harvested: &[Harvested]) -> Result<(Attribution, usize)> {
    let mut data = Vec::new();
    for (c, _) in HARVESTED {
        let from: Vec<&Harvested> = harvested.iter().filter(|h| h.cohort == Some(c)).collect();
        data.extend(mixture(&from, &[], 1.0, lab.plan.train_tokens / 3, lab.eos));
    }
    let student = NGram::train(lab.vocab, &data);
    let outputs = answers(&student, &lab.student_prompts, lab.plan.last_budget(), lab.eos, 78)?;
    let labels: Vec<String> = (0..COHORTS).map(|c| format!("cohort/{c}")).collect();
    let reports = keys
        .iter()
        .map(|k| lab.black_box(k, &outputs, None))
        .collect::<Result<Vec<_>>>()?;
    Ok((attribute(&labels, &reports, 0.01), data.iter().map(|d| d.1.len()).sum()))
}

/// One control student under one test mode: its p-values under every control key.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlRow {
    /// The kind of student.
    pub kind: StudentKind,
    /// The test.
    pub mode: TestMode,
    /// Its p-values: the control keys first, then the calibration keys of the plan.
    pub p: Vec<f64>,
}

impl ControlRow {
    /// The table's verdict on the first `CONTROL_KEYS` p-values: (min p, KS distance, critical value).
    pub fn table(&self) -> (f64, f64, f64) {
        let p = &self.p[..CONTROL_KEYS.min(self.p.len())];
        let (d, crit) = ks_uniform(p);
        (p.iter().copied().fold(1.0, f64::min), d, crit)
    }

    /// Whether the row looks like chance: uniform, and no p-value below 1e-3.
    pub fn ok(&self) -> bool {
        let (min, d, crit) = self.table();
        d < crit && min >= 1e-3
    }
}

/// Stage 4: the control students (no watermarked text seen) under the cohort keys and fresh ones.
pub fn controls(lab: &Lab<'_>, cohort_keys: &[Key], students: &[Trained]) -> Result<Vec<ControlRow>> {
    let mut keys = cohort_keys.to_vec();
    let mut rng = Rng::new(0xc0_47_01);
    while keys.len() < CONTROL_KEYS.max(lab.plan.calibration_keys) {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        keys.push(Key::from_bytes(b));
    }
    let mut rows = Vec::new();
    for Trained { kind, model } in students {
        let ev = lab.evidence(*kind, model.as_ref(), 79)?;
        for mode in TestMode::ALL {
            let p = keys
                .iter()
                .map(|k| -> Result<f64> { Ok(10f64.powf(lp(&lab.test(mode, k, &ev)?))) })
                .collect::<Result<_>>()?;
            rows.push(ControlRow { kind: *kind, mode, p });
        }
    }
    Ok(rows)
}

/// What the quick run requires: the fully watermarked trigram student caught, the controls
/// quiet (every row uniform, no p-value below 0.01 / their number: family-wise, Bonferroni),
/// and no unharvested cohort named.
#[derive(Clone, Debug, PartialEq)]
pub struct QuickChecks {
    /// The fully watermarked trigram student is caught (log10 p < -3 at the last budget).
    pub caught: bool,
    /// The controls are quiet.
    pub controls_quiet: bool,
    /// A cohort the competitor did not harvest from was named.
    pub wrongly_named: bool,
}

impl QuickChecks {
    /// Judges the results of stages 2 to 4.
    pub fn new(rows: &[StudentRow], controls: &[ControlRow], attribution: &Attribution, plan: &Plan) -> Self {
        let caught = rows
            .iter()
            .find(|r| r.kind == StudentKind::Trigram && r.fraction == 1.0)
            .and_then(|r| r.points(plan).last().map(|p| p.1))
            .is_some_and(|l| l < -3.0);
        let all_p: Vec<f64> = controls
            .iter()
            .flat_map(|c| c.p.iter().take(CONTROL_KEYS).copied())
            .collect();
        let uniform = controls.iter().all(|c| c.table().1 < c.table().2);
        let controls_quiet = uniform && all_p.iter().all(|&p| p >= 0.01 / all_p.len() as f64);
        let wrongly_named = attribution.named.iter().any(|n| !expected_cohorts().contains(n));
        Self {
            caught,
            controls_quiet,
            wrongly_named,
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.caught && self.controls_quiet && !self.wrongly_named
    }
}

/// The labels of the harvested cohorts.
pub(super) fn expected_cohorts() -> Vec<String> {
    HARVESTED.iter().map(|h| format!("cohort/{}", h.0)).collect()
}
