//! Stage 2, the students: trained on growing shares of watermarked answers
//! and tested three ways (black box, filtered, reading mode).

use tracemark_candle::reading_doc;

use crate::students::{answers, Answer, MlpLm, NGram, Student, TrainOptions};
use tracemark_core::Key;
use tracemark_verifier::{
    reading_mode, ContextFilter, DetectOptions, Detection, Detector, Document, ReadingDoc, Scanner,
};

use super::{mixture, Harvested, Plan, StudentKind, TestMode, FRACTIONS, SCHEME};
use crate::Result;

/// The first answers of a student's outputs holding at least `tokens` tokens.
pub(super) fn prefix(docs: &[Answer], tokens: usize) -> &[Answer] {
    let mut total = 0;
    for (i, d) in docs.iter().enumerate() {
        total += d.ids.len();
        if total >= tokens {
            return &docs[..=i];
        }
    }
    docs
}

/// What a student leaves for the tests: its outputs (black box) and its
/// predictions on our watermarked texts (reading mode).
pub struct Evidence {
    /// The student's answers to the student prompts.
    pub outputs: Vec<Answer>,
    /// Its next-token predictions on our watermarked texts.
    pub predictions: Vec<ReadingDoc>,
}

/// The common ground of every test: the setup, our watermarked texts, the student prompts.
pub struct Lab<'a> {
    /// The sizes of the run.
    pub plan: &'a Plan,
    /// The teacher's vocabulary size.
    pub vocab: usize,
    /// The token that ends an answer.
    pub eos: u32,
    /// The detector options of every test.
    pub opts: DetectOptions,
    /// Our cohort-1 answers: the filter's contexts.
    pub ours: Vec<&'a Harvested>,
    /// Our texts the students read (reading mode).
    pub reading_texts: Vec<&'a Harvested>,
    /// The prompts the students answer (different from the harvest's, but alike).
    pub student_prompts: Vec<Vec<u32>>,
}

impl Lab<'_> {
    /// The detector of [`SCHEME`] under `key`.
    pub fn detector(&self, key: &Key) -> Result<Detector> {
        Ok(Detector::new(key, &SCHEME.parse()?, self.vocab, self.opts.clone())?)
    }

    /// A student's outputs and predictions, sampled with `seed`.
    pub fn evidence(&self, kind: StudentKind, student: &dyn Student, seed: u64) -> Result<Evidence> {
        let outputs = answers(
            student,
            &self.student_prompts,
            self.plan.max_budget(kind),
            self.eos,
            seed,
        )?;
        let predictions = self
            .reading_texts
            .iter()
            .map(|h| reading_doc(student, &h.prompt_ids, &h.ids))
            .collect::<tracemark_candle::Result<_>>()?;
        Ok(Evidence { outputs, predictions })
    }

    /// The black-box test of `outputs` under `key`, optionally only at the contexts of `filter`.
    pub fn black_box(&self, key: &Key, outputs: &[Answer], filter: Option<&ContextFilter>) -> Result<Detection> {
        let d = self.detector(key)?;
        let mut scanner = Scanner::new(&d, None);
        if let Some(f) = filter {
            scanner = scanner.filter(f);
        }
        let docs = outputs.iter().map(|a| Document::ids(a.prompt.clone(), a.ids.clone()));
        Ok(scanner.scan_documents(docs, |_| ())?.aggregate)
    }

    /// The test of a student's evidence in one mode under `key`.
    pub fn test(&self, mode: TestMode, key: &Key, evidence: &Evidence) -> Result<Detection> {
        match mode {
            TestMode::BlackBox => self.black_box(key, &evidence.outputs, None),
            TestMode::Filtered => {
                let filter =
                    ContextFilter::from_documents(&self.detector(key)?, None, self.ours.iter().map(|h| h.document()))?;
                self.black_box(key, &evidence.outputs, Some(&filter))
            }
            TestMode::Reading => Ok(reading_mode(&self.detector(key)?, &evidence.predictions)?),
        }
    }
}

/// The detection's conservative log10 p.
pub(super) fn lp(d: &Detection) -> f64 {
    d.outcome.conservative_log10_p()
}

/// A student trained on a share of watermarked answers, and its test results under the cohort-1 key.
#[derive(Clone, Debug, PartialEq)]
pub struct StudentRow {
    /// The kind of student.
    pub kind: StudentKind,
    /// The watermarked share of its training data.
    pub fraction: f64,
    /// log10 p of the black-box test per budget of the plan (None: beyond what this student generated).
    pub black_box: Vec<Option<f64>>,
    /// log10 p of the test filtered to the contexts of our answers.
    pub filtered: f64,
    /// log10 p of the reading-mode test.
    pub reading: f64,
}

impl StudentRow {
    /// The plot's label: kind and watermarked share.
    pub fn label(&self) -> String {
        format!("{} {:.0}%", self.kind.name(), self.fraction * 100.0)
    }

    /// `(budget, log10 p)` of the black-box tests this student was given.
    pub fn points(&self, plan: &Plan) -> Vec<(f64, f64)> {
        plan.budgets
            .iter()
            .zip(&self.black_box)
            .filter_map(|(&b, l)| l.map(|l| (b as f64, l)))
            .collect()
    }
}

/// A trained student and its kind.
pub struct Trained {
    /// The kind of student.
    pub kind: StudentKind,
    /// The student.
    pub model: Box<dyn Student>,
}

/// Stage 2: students trained on growing shares of watermarked answers, tested three ways.
/// Returns their rows and the students that saw no watermarked text (the controls).
pub fn student_rows(lab: &Lab<'_>, key1: &Key, plain: &[&Harvested]) -> Result<(Vec<StudentRow>, Vec<Trained>)> {
    let plan = lab.plan;
    let mut rows = Vec::new();
    let mut controls = Vec::new();
    for kind in [StudentKind::Trigram, StudentKind::Neural] {
        let fractions = match kind {
            StudentKind::Trigram => FRACTIONS.to_vec(),
            StudentKind::Neural => plan.neural_fractions.clone(),
        };
        for fraction in fractions {
            let data = mixture(&lab.ours, plain, fraction, plan.train_tokens, lab.eos);
            let student: Box<dyn Student> = match kind {
                StudentKind::Trigram => Box::new(NGram::train(lab.vocab, &data)),
                StudentKind::Neural => {
                    let opts = TrainOptions {
                        budget: plan.neural_budget,
                        max_steps: plan.neural_steps,
                        ..TrainOptions::default()
                    };
                    let (m, rep) = MlpLm::train(&data, opts)?;
                    eprintln!(
                        "neural student {:.0}%: {} steps, {:.1} epochs, loss {:.2}",
                        fraction * 100.0,
                        rep.steps,
                        rep.epochs,
                        rep.loss
                    );
                    Box::new(m)
                }
            };
            let ev = lab.evidence(kind, student.as_ref(), 77)?;
            let black_box = plan
                .budgets
                .iter()
                .map(|&b| {
                    (b <= plan.max_budget(kind))
                        .then(|| -> Result<f64> { Ok(lp(&lab.black_box(key1, prefix(&ev.outputs, b), None)?)) })
                        .transpose()
                })
                .collect::<Result<_>>()?;
            rows.push(StudentRow {
                kind,
                fraction,
                black_box,
                filtered: lp(&lab.test(TestMode::Filtered, key1, &ev)?),
                reading: lp(&lab.test(TestMode::Reading, key1, &ev)?),
            });
            if fraction == 0.0 {
                controls.push(Trained { kind, model: student });
            }
        }
    }
    Ok((rows, controls))
}

/// Tokens needed at 10%: the smallest budget from which every larger budget stays below
/// p = 1e-3 (and the first budget that reached it, which can be luck).
pub fn tokens_needed(points: &[(f64, f64)]) -> String {
    let sustained = (0..points.len())
        .find(|&i| points[i..].iter().all(|p| p.1 < -3.0))
        .map(|i| points[i].0 as usize);
    let first = points.iter().find(|p| p.1 < -3.0).map(|p| p.0 as usize);
    match (sustained, first) {
        (Some(s), Some(f)) => format!("p < 1e-3 at every budget from {s} student tokens on (first reached at {f})"),
        (None, Some(f)) => format!("p < 1e-3 reached at {f} student tokens but not kept at larger budgets"),
        _ => "p < 1e-3 not reached within the budgets".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_needed_tells_sustained_from_lucky() {
        let sustained = [(500.0, -1.0), (1_000.0, -4.0), (3_000.0, -9.0)];
        assert_eq!(
            tokens_needed(&sustained),
            "p < 1e-3 at every budget from 1000 student tokens on (first reached at 1000)"
        );
        let lucky = [(500.0, -4.0), (1_000.0, -2.0), (3_000.0, -5.0)];
        assert_eq!(
            tokens_needed(&lucky),
            "p < 1e-3 at every budget from 3000 student tokens on (first reached at 500)"
        );
        let lost = [(500.0, -4.0), (1_000.0, -2.0)];
        assert_eq!(
            tokens_needed(&lost),
            "p < 1e-3 reached at 500 student tokens but not kept at larger budgets"
        );
        assert_eq!(
            tokens_needed(&[(500.0, -1.0)]),
            "p < 1e-3 not reached within the budgets"
        );
    }

    #[test]
    fn prefix_stops_at_the_answer_that_reaches_the_budget() {
        let docs: Vec<Answer> = [3, 4, 5]
            .iter()
            .map(|&n| Answer {
                prompt: vec![],
                ids: vec![1; n],
            })
            .collect();
        assert_eq!(prefix(&docs, 3).len(), 1);
        assert_eq!(prefix(&docs, 4).len(), 2);
        assert_eq!(prefix(&docs, 100).len(), 3);
    }
}
