//! The sizes of a run, the kinds of student and the ways of testing them.

use std::time::Duration;

/// The sizes of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The small version that checks the pipeline (`--quick`).
    pub quick: bool,
    /// Prompts the teacher answers for the harvest.
    pub harvest_prompts: usize,
    /// New tokens per harvested answer.
    pub new_tokens: usize,
    /// Training tokens per student.
    pub train_tokens: usize,
    /// Student tokens scanned by the black-box tests, in increasing order.
    pub budgets: Vec<usize>,
    /// The neural students sample slowly: their outputs stop at this many tokens.
    pub neural_max_budget: usize,
    /// Watermarked shares of the neural students' training data.
    pub neural_fractions: Vec<f64>,
    /// Training time per neural student.
    pub neural_budget: Duration,
    /// A step limit for the neural students (the quick run: reproducible).
    pub neural_steps: Option<usize>,
    /// Keys for the calibration of the control students' tests (0: none).
    pub calibration_keys: usize,
    /// Our watermarked texts the students read in reading mode.
    pub reading_docs: usize,
}

impl Plan {
    /// The full run's sizes (about an hour), or the quick run's (minutes).
    pub fn new(quick: bool) -> Self {
        let full = Plan {
            quick,
            harvest_prompts: 150,
            new_tokens: 150,
            train_tokens: 60_000,
            budgets: vec![1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000],
            neural_max_budget: 50_000,
            neural_fractions: vec![0.0, 0.10, 1.0],
            neural_budget: Duration::from_secs(150),
            neural_steps: None,
            calibration_keys: 1_000,
            reading_docs: 300,
        };
        if !quick {
            return full;
        }
        Plan {
            harvest_prompts: 8,
            new_tokens: 48,
            train_tokens: 1_000,
            budgets: vec![500, 1_000, 3_000],
            neural_max_budget: 3_000,
            neural_fractions: vec![0.0, 1.0],
            // The step limit alone decides, so that the quick run (a test) does not
            // depend on the machine's load: a time budget once cut it to 287 steps.
            neural_budget: Duration::MAX,
            neural_steps: Some(600),
            calibration_keys: 0,
            reading_docs: 10,
            ..full
        }
    }

    /// The largest black-box budget.
    pub fn last_budget(&self) -> usize {
        *self.budgets.last().unwrap_or(&1_000)
    }

    /// Student tokens generated for the black-box tests.
    pub fn max_budget(&self, kind: StudentKind) -> usize {
        match kind {
            StudentKind::Trigram => self.last_budget(),
            StudentKind::Neural => self.last_budget().min(self.neural_max_budget),
        }
    }
}

/// The two kinds of student.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudentKind {
    /// A smoothed trigram model.
    Trigram,
    /// A small neural language model (an MLP over 3 tokens, trained with candle).
    Neural,
}

impl StudentKind {
    /// The name used in tables and plot labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trigram => "trigram",
            Self::Neural => "neural",
        }
    }
}

/// How a suspect student is tested for radioactivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestMode {
    /// Its outputs, scored under our key.
    BlackBox,
    /// Its outputs, scored only at contexts that occur in our watermarked answers.
    Filtered,
    /// Its next-token predictions on our watermarked answers.
    Reading,
}

impl TestMode {
    /// Every mode, in table order.
    pub const ALL: [TestMode; 3] = [Self::BlackBox, Self::Filtered, Self::Reading];

    /// The name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::BlackBox => "black box",
            Self::Filtered => "filtered",
            Self::Reading => "reading mode",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neural_students_stop_at_their_own_budget() {
        for quick in [false, true] {
            let plan = Plan::new(quick);
            assert_eq!(plan.max_budget(StudentKind::Trigram), plan.last_budget());
            assert!(plan.max_budget(StudentKind::Neural) <= plan.neural_max_budget);
            assert!(plan.budgets.windows(2).all(|w| w[0] < w[1]));
        }
        // The quick run is a test: a step limit, never the clock, ends its neural training.
        let quick = Plan::new(true);
        assert_eq!((quick.neural_steps, quick.neural_budget), (Some(600), Duration::MAX));
    }
}
