//! One simulated campaign: actors harvest through their accounts over the
//! windows, a student learns from everything harvested, and the group test
//! names accounts.

use std::time::Instant;

use tracemark_candle::Rng;

use super::cohorts::{Cohorts, KeyScores};
use crate::students::{answers, Answer, NGram};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{DetectOptions, Detector, Document, Scanner};

use super::teacher::Teacher;
use super::{Plan, SCHEME};
use crate::Result;

/// One harvesting actor.
#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    /// Its name in the report.
    pub name: &'static str,
    /// Its exchanges in the seeds' campaign, in millions (13, 3.4, 0.15): its share of the harvest.
    pub exchanges: f64,
    /// The accounts it harvests through.
    pub accounts: usize,
}

/// How answers are keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Design {
    /// Window-cohort keys (SPEC §13), tested by the group test.
    WindowCohorts,
    /// One key per account (`derive(master, "account/<id>")`), for comparison:
    /// the harvesting accounts' keys are tested, named at Bonferroni over all
    /// accounts (valid without testing the others), plus control keys of
    /// accounts that harvested nothing.
    PerAccount,
}

/// Control keys (accounts that harvested nothing) tested per repetition of a [`Design::PerAccount`] scenario.
pub const CONTROL_ACCOUNTS: usize = 100;

/// A campaign's set-up: the design, the actors and the harvest's size.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name in the report.
    pub label: String,
    /// How answers are keyed.
    pub design: Design,
    /// Time windows.
    pub windows: u32,
    /// Cohorts per window.
    pub cohorts: u32,
    /// The actors.
    pub actors: Vec<Actor>,
    /// Harvested tokens of all actors together.
    pub harvest_tokens: usize,
    /// Repetitions, each with a fresh master key, accounts and harvest.
    pub repetitions: usize,
}

/// How accounts are named from the window-cohort keys' p-values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Lit or not (Holm over the keys at `alpha_keys`); an account's score is
    /// the number of windows that lit its cohort (Poisson-binomial null).
    Lit,
    /// Every key scores `min(floor(-log10 p), cap)`; an account's score is the
    /// sum over its windows (exact null by convolution).
    Graded,
}

impl Rule {
    /// Both rules, in the report's order.
    pub const ALL: [Rule; 2] = [Rule::Lit, Rule::Graded];

    /// The report's name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Lit => "lit sets",
            Rule::Graded => "graded",
        }
    }

    fn scores(self, log10_p: &[Vec<f64>], plan: &Plan) -> KeyScores {
        match self {
            Rule::Lit => KeyScores::lit(log10_p, plan.alpha_keys),
            Rule::Graded => KeyScores::graded(log10_p, plan.graded_cap),
        }
    }
}

/// What one rule named in one repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Named {
    /// Per actor: how many of its accounts were named.
    pub per_actor: Vec<usize>,
    /// Accounts named that harvested nothing: false accusations.
    pub innocent: usize,
    /// Mean number of keys with a non-zero score per window.
    pub lit_per_window: f64,
}

/// One repetition's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Repetition {
    /// Per rule, in [`Rule::ALL`]'s order.
    pub named: Vec<Named>,
    /// Per actor: the median log10 p of the keys its accounts were served under.
    pub actor_key_log10_p: Vec<f64>,
    /// [`Design::PerAccount`]: the smallest log10 p of the control keys.
    pub control_min_log10_p: Option<f64>,
    /// Harvested and student tokens.
    pub tokens: (usize, usize),
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A scenario's repetitions.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The set-up.
    pub scenario: Scenario,
    /// Its repetitions.
    pub repetitions: Vec<Repetition>,
}

/// `k` distinct accounts below `n`, not in `taken`.
fn draw_accounts(k: usize, n: u64, taken: &mut Vec<u64>, rng: &mut Rng) -> Vec<u64> {
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let a = rng.next_u64() % n;
        if !taken.contains(&a) {
            taken.push(a);
            out.push(a);
        }
    }
    out
}

/// One campaign under `master`: harvest, student, tests under every window-cohort key, accusations.
pub fn repetition(plan: &Plan, teacher: &Teacher, scenario: &Scenario, master: &Key, seed: u64) -> Result<Repetition> {
    let started = Instant::now();
    let config: SchemeConfig = SCHEME.parse()?;
    let design = Cohorts::new(scenario.windows, scenario.cohorts)?;
    let mut rng = Rng::new(seed);
    let mut taken = Vec::new();
    let accounts: Vec<Vec<u64>> = scenario
        .actors
        .iter()
        .map(|a| draw_accounts(a.accounts, plan.accounts, &mut taken, &mut rng))
        .collect();
    if scenario.design == Design::PerAccount {
        return per_account(
            plan, teacher, scenario, master, &accounts, &mut taken, rng, seed, started,
        );
    }
    // Tokens each window-cohort key serves to harvesting accounts.
    let total_exchanges: f64 = scenario.actors.iter().map(|a| a.exchanges).sum();
    let (w_n, c_n) = (scenario.windows as usize, scenario.cohorts as usize);
    let mut served = vec![vec![0usize; c_n]; w_n];
    for (actor, ids) in scenario.actors.iter().zip(&accounts) {
        let per = scenario.harvest_tokens as f64 * actor.exchanges / total_exchanges / (ids.len() * w_n) as f64;
        for &a in ids {
            for (w, row) in served.iter_mut().enumerate() {
                row[design.cohort(master, w as u32, a)? as usize] += per.round().max(1.0) as usize;
            }
        }
    }
    let mut data = Vec::new();
    for (w, row) in served.iter().enumerate() {
        for (c, &tokens) in row.iter().enumerate() {
            if tokens > 0 {
                let scheme = config.build(&design.key(master, w as u32, c as u32)?, teacher.vocab)?;
                data.extend(teacher.answers(scheme.as_ref(), tokens, &mut rng)?);
            }
        }
    }
    let harvested: usize = data.iter().map(|d| d.1.len()).sum();
    let student = NGram::train(teacher.vocab, &data);
    drop(data);
    let outputs = answers(
        &student,
        &teacher.student_prompts(),
        plan.student_tokens,
        teacher.eos,
        seed ^ 0x5157,
    )?;
    let produced: usize = outputs.iter().map(|a| a.ids.len()).sum();
    let log10_p = key_log10_p(&design, master, teacher.vocab, &outputs)?;
    let named = Rule::ALL
        .iter()
        .map(|&rule| -> Result<Named> {
            let scores = rule.scores(&log10_p, plan);
            let verdict = design.accuse(master, &scores, plan.accounts, plan.alpha_accounts)?;
            let per_actor = accounts
                .iter()
                .map(|ids| verdict.named.iter().filter(|n| ids.contains(&n.account)).count())
                .collect::<Vec<_>>();
            let lit = scores.lit_per_window();
            Ok(Named {
                innocent: verdict.named.len() - per_actor.iter().sum::<usize>(),
                per_actor,
                lit_per_window: lit.iter().sum::<usize>() as f64 / lit.len() as f64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let actor_key_log10_p = accounts
        .iter()
        .map(|ids| -> Result<f64> {
            let mut v = Vec::new();
            for &a in ids {
                for (w, row) in log10_p.iter().enumerate() {
                    v.push(row[design.cohort(master, w as u32, a)? as usize]);
                }
            }
            v.sort_by(f64::total_cmp);
            Ok(v[v.len() / 2])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Repetition {
        named,
        actor_key_log10_p,
        control_min_log10_p: None,
        tokens: (harvested, produced),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A [`Design::PerAccount`] repetition: every harvesting account served under its own key.
#[allow(clippy::too_many_arguments)]
fn per_account(
    plan: &Plan,
    teacher: &Teacher,
    scenario: &Scenario,
    master: &Key,
    accounts: &[Vec<u64>],
    taken: &mut Vec<u64>,
    mut rng: Rng,
    seed: u64,
    started: Instant,
) -> Result<Repetition> {
    let config: SchemeConfig = SCHEME.parse()?;
    let key = |a: u64| master.derive(&format!("account/{a}"));
    let total_exchanges: f64 = scenario.actors.iter().map(|a| a.exchanges).sum();
    let mut data = Vec::new();
    for (actor, ids) in scenario.actors.iter().zip(accounts) {
        let per = scenario.harvest_tokens as f64 * actor.exchanges / total_exchanges / ids.len() as f64;
        for &a in ids {
            let scheme = config.build(&key(a)?, teacher.vocab)?;
            data.extend(teacher.answers(scheme.as_ref(), per.round().max(1.0) as usize, &mut rng)?);
        }
    }
    let harvested: usize = data.iter().map(|d| d.1.len()).sum();
    let student = NGram::train(teacher.vocab, &data);
    drop(data);
    let outputs = answers(
        &student,
        &teacher.student_prompts(),
        plan.student_tokens,
        teacher.eos,
        seed ^ 0x5157,
    )?;
    let produced: usize = outputs.iter().map(|a| a.ids.len()).sum();
    let test = |a: u64| -> Result<f64> { one_key_log10_p(&key(a)?, teacher.vocab, &outputs) };
    // Bonferroni over every account: valid whatever the untested keys would say.
    let needed = plan.alpha_accounts.log10() - (plan.accounts as f64).log10();
    let mut per_actor = Vec::new();
    let mut actor_key_log10_p = Vec::new();
    for ids in accounts {
        let mut l = ids.iter().map(|&a| test(a)).collect::<Result<Vec<f64>>>()?;
        per_actor.push(l.iter().filter(|&&x| x < needed).count());
        l.sort_by(f64::total_cmp);
        actor_key_log10_p.push(l[l.len() / 2]);
    }
    let controls = draw_accounts(CONTROL_ACCOUNTS, plan.accounts, taken, &mut rng)
        .into_iter()
        .map(test)
        .collect::<Result<Vec<f64>>>()?;
    Ok(Repetition {
        named: vec![Named {
            per_actor,
            innocent: controls.iter().filter(|&&x| x < needed).count(),
            lit_per_window: 0.0,
        }],
        actor_key_log10_p,
        control_min_log10_p: Some(controls.iter().copied().fold(0.0, f64::min)),
        tokens: (harvested, produced),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The black-box test (exact, dedup across all outputs) of the student's outputs under one key.
fn one_key_log10_p(key: &Key, vocab: usize, outputs: &[Answer]) -> Result<f64> {
    let config: SchemeConfig = SCHEME.parse()?;
    let opts = DetectOptions {
        min_scored: 1,
        ..DetectOptions::default()
    };
    let d = Detector::new(key, &config, vocab, opts)?;
    let docs = outputs.iter().map(|a| Document::ids(a.prompt.clone(), a.ids.clone()));
    let scan = Scanner::new(&d, None).scan_documents(docs, |_| ())?;
    Ok(scan.aggregate.outcome.conservative_log10_p())
}

/// The black-box test (exact, dedup across all outputs) of the student's
/// outputs under every window-cohort key: `log10 p`, `[window][cohort]`.
pub fn key_log10_p(design: &Cohorts, master: &Key, vocab: usize, outputs: &[Answer]) -> Result<Vec<Vec<f64>>> {
    let config: SchemeConfig = SCHEME.parse()?;
    let opts = DetectOptions {
        min_scored: 1,
        ..DetectOptions::default()
    };
    let docs: Vec<Document> = outputs
        .iter()
        .map(|a| Document::ids(a.prompt.clone(), a.ids.clone()))
        .collect();
    (0..design.windows())
        .map(|w| {
            (0..design.cohorts())
                .map(|c| -> Result<f64> {
                    let d = Detector::new(&design.key(master, w, c)?, &config, vocab, opts.clone())?;
                    let scan = Scanner::new(&d, None).scan_documents(docs.iter().cloned(), |_| ())?;
                    Ok(scan.aggregate.outcome.conservative_log10_p())
                })
                .collect()
        })
        .collect()
}

/// Every repetition of `scenario`: fresh master keys from the OS RNG, or, for
/// the quick run (a test), fixed ones.
pub fn run_scenario(plan: &Plan, teacher: &Teacher, scenario: &Scenario) -> Result<Outcome> {
    let mut repetitions = Vec::new();
    for r in 0..scenario.repetitions {
        let master = if plan.quick {
            crate::quick_test_key(&format!("campaign/{}/{r}", scenario.label))
        } else {
            Key::generate()?
        };
        let rep = repetition(plan, teacher, scenario, &master, 0xca4e_0000 + r as u64)?;
        eprintln!(
            "[{} {}/{}] named {:?}, innocent {:?}, key log10 p {:?}, {:.0} s",
            scenario.label,
            r + 1,
            scenario.repetitions,
            rep.named.iter().map(|n| n.per_actor.clone()).collect::<Vec<_>>(),
            rep.named.iter().map(|n| n.innocent).collect::<Vec<_>>(),
            rep.actor_key_log10_p
                .iter()
                .map(|l| (l * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            rep.seconds
        );
        repetitions.push(rep);
    }
    Ok(Outcome {
        scenario: scenario.clone(),
        repetitions,
    })
}
