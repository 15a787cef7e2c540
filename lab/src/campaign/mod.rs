//! The simulated harvesting campaign behind `make campaign`: can window-cohort
//! keys name the accounts a student model learned from?
//!
//! Three actors harvest answers in the seeds' proportions (13M, 3.4M and 150k
//! exchanges, scaled down) through a few accounts each, among 24,000
//! accounts. In each time window every account belongs to a keyed random
//! cohort ([`Cohorts`](cohorts::Cohorts), SPEC §13) and
//! is served answers watermarked under its window-cohort key. One trigram
//! student learns from everything harvested; its outputs are tested under
//! every window-cohort key, and the group test names accounts
//! ([`Rule::Lit`], the design as proposed, and [`Rule::Graded`]). Every
//! repetition draws a fresh master key, fresh accounts and a fresh harvest;
//! the report counts, per actor, the accounts named, and the accounts named
//! that harvested nothing.
//!
//! The teacher is a stand-in ([`teacher`]): a trigram model of human text
//! watermarked by the core's real kgw scheme, because SmolLM2 is far too slow
//! on this machine for fresh harvests per repetition.

pub mod cohorts;
mod report;
mod sim;
pub mod teacher;

use std::path::PathBuf;
use std::time::Instant;

pub use report::report;
pub use sim::{
    key_log10_p, repetition, run_scenario, Actor, Design, Named, Outcome, Repetition, Rule, Scenario, CONTROL_ACCOUNTS,
};
use teacher::Teacher;
use tracemark_candle::gguf_tokenizer;

use crate::{cache_dir, io, model_path, today, Error, Result};

/// The teacher's watermark (the distillation experiment's).
pub const SCHEME: &str = crate::distill::SCHEME;

/// The seeds' actors: exchanges in millions, and the accounts each harvests through.
pub fn actors(accounts: [usize; 3]) -> Vec<Actor> {
    vec![
        Actor {
            name: "A (13M)",
            exchanges: 13.0,
            accounts: accounts[0],
        },
        Actor {
            name: "B (3.4M)",
            exchanges: 3.4,
            accounts: accounts[1],
        },
        Actor {
            name: "C (150k)",
            exchanges: 0.15,
            accounts: accounts[2],
        },
    ]
}

/// The sizes of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The small version (a test).
    pub quick: bool,
    /// Accounts tested (harvesting or not).
    pub accounts: u64,
    /// Tokens of human text the teacher learns from.
    pub teacher_tokens: usize,
    /// Tokens of the student's outputs that are tested.
    pub student_tokens: usize,
    /// Family-wise level over the window-cohort keys ([`Rule::Lit`]).
    pub alpha_keys: f64,
    /// Family-wise level over the accounts.
    pub alpha_accounts: f64,
    /// The largest score of one key ([`Rule::Graded`]).
    pub graded_cap: u32,
    /// The scenarios: the main one first, then the sweeps.
    pub scenarios: Vec<Scenario>,
}

impl Plan {
    /// The full run's plan, or the quick one's.
    pub fn new(quick: bool) -> Self {
        let scenario = |label: &str, windows, cohorts, accounts, harvest_tokens, repetitions| Scenario {
            label: label.to_string(),
            design: Design::WindowCohorts,
            windows,
            cohorts,
            actors: actors(accounts),
            harvest_tokens,
            repetitions,
        };
        if quick {
            return Plan {
                quick,
                accounts: 24_000,
                teacher_tokens: 200_000,
                student_tokens: 100_000,
                alpha_keys: 1e-3,
                alpha_accounts: 1e-3,
                graded_cap: 20,
                scenarios: vec![scenario("quick", 8, 32, [1, 1, 1], 300_000, 4)],
            };
        }
        let sweep = |label: &str, accounts, c_times: f64, repetitions| {
            let mut s = scenario(label, 8, 64, accounts, 1_000_000, repetitions);
            s.actors[2].exchanges *= c_times;
            s.actors[2].name = if c_times == 1.0 {
                "C (150k)"
            } else if c_times < 20.0 {
                "C x10 (1.5M)"
            } else {
                "C x40 (6M)"
            };
            // The harvest grows with C's volume: A and B keep theirs.
            s.harvest_tokens = (1_000_000.0 * (16.4 + 0.15 * c_times) / 16.55) as usize;
            s
        };
        let per_account = |label: &str, accounts, repetitions| Scenario {
            design: Design::PerAccount,
            ..scenario(label, 1, 1, accounts, 1_000_000, repetitions)
        };
        Plan {
            quick,
            accounts: 24_000,
            teacher_tokens: 1_000_000,
            student_tokens: 500_000,
            alpha_keys: 1e-3,
            alpha_accounts: 1e-3,
            graded_cap: 20,
            scenarios: vec![
                sweep("main", [3, 1, 1], 1.0, 20),
                scenario("reference: one key", 1, 1, [1, 1, 1], 1_000_000, 1),
                sweep("sweep A=1", [1, 1, 1], 1.0, 2),
                sweep("sweep A=10", [10, 1, 1], 1.0, 2),
                sweep("sweep A=30", [30, 1, 1], 1.0, 2),
                sweep("sweep C x10", [3, 1, 1], 10.0, 2),
                sweep("sweep C x40", [3, 1, 1], 40.0, 2),
                per_account("per-account keys", [3, 1, 1], 5),
                per_account("per-account keys A=10", [10, 1, 1], 2),
                per_account("per-account keys A=30", [30, 1, 1], 2),
            ],
        }
    }
}

/// The options of a run (the `campaign` binary's flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// The small version (a minute or two) that fails unless [`QuickChecks`] pass.
    pub quick: bool,
    /// Repetitions of every scenario instead of the plan's.
    pub repetitions: Option<usize>,
    /// Only the scenarios whose label contains this.
    pub only: Option<String>,
    /// Where to write the report (default: `eval/results/campaign-DATE.md`, or the cache with `quick`).
    pub out: Option<PathBuf>,
}

/// What the quick run requires: no false accusation in any repetition, and the largest actor named in every one.
#[derive(Clone, Debug, PartialEq)]
pub struct QuickChecks {
    /// Accounts named that harvested nothing, over all repetitions and rules.
    pub false_accusations: usize,
    /// Repetitions where the largest actor had an account named (by either rule), of all.
    pub largest_named: (usize, usize),
}

impl QuickChecks {
    /// The checks of `outcomes`.
    pub fn new(outcomes: &[Outcome]) -> Self {
        let reps = outcomes.iter().flat_map(|o| &o.repetitions);
        QuickChecks {
            false_accusations: reps.clone().flat_map(|r| &r.named).map(|n| n.innocent).sum(),
            largest_named: (
                reps.clone()
                    .filter(|r| r.named.iter().any(|n| n.per_actor[0] > 0))
                    .count(),
                reps.count(),
            ),
        }
    }

    /// Whether they pass.
    pub fn passed(&self) -> bool {
        self.false_accusations == 0 && self.largest_named.0 == self.largest_named.1
    }
}

/// The whole run: teacher, every scenario's repetitions, the report; with
/// [`Options::quick`], fail unless [`QuickChecks`] pass.
pub fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut plan = Plan::new(options.quick);
    if let Some(r) = options.repetitions {
        plan.scenarios.iter_mut().for_each(|s| s.repetitions = r);
    }
    if let Some(only) = &options.only {
        plan.scenarios.retain(|s| s.label.contains(only.as_str()));
    }
    let path = model_path()?;
    let tok = gguf_tokenizer::from_gguf(&path)?;
    let eos = gguf_tokenizer::token_id(&tok, "<|endoftext|>")?;
    let vocab = tok.get_vocab_size(true);
    let teacher = Teacher::new(&tok, eos, vocab, plan.teacher_tokens, &SCHEME.parse()?)?;
    eprintln!(
        "teacher: trigram on {} tokens of human text, {:.0} s",
        teacher.tokens(),
        started.elapsed().as_secs_f64()
    );
    let outcomes = plan
        .scenarios
        .iter()
        .map(|s| run_scenario(&plan, &teacher, s))
        .collect::<Result<Vec<_>>>()?;
    let checks = QuickChecks::new(&outcomes);
    let dir = cache_dir().join("campaign-quick");
    let out = options.out.clone().unwrap_or_else(|| {
        if options.quick {
            dir.join("report.md")
        } else {
            PathBuf::from(format!("eval/results/campaign-{}.md", today()))
        }
    });
    if let Some(parent) = out.parent() {
        io(parent, std::fs::create_dir_all(parent))?;
    }
    io(&out, std::fs::write(&out, report(&plan, &teacher, &outcomes, started)))?;
    eprintln!("report: {}", out.display());
    if options.quick && !checks.passed() {
        return Err(Error::Usage(format!(
            "campaign check failed (false accusations {}, largest actor named in {} of {} repetitions): see {}",
            checks.false_accusations,
            checks.largest_named.0,
            checks.largest_named.1,
            out.display()
        )));
    }
    Ok(())
}
