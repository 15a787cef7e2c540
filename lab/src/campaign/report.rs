//! The campaign's report.

use std::fmt::Write;
use std::time::Instant;

use super::teacher::Teacher;
use super::{Design, Outcome, Plan, Rule, CONTROL_ACCOUNTS, SCHEME};

/// The report: set-up, the guarantee, one table per scenario, what it does and does not show.
pub fn report(plan: &Plan, teacher: &Teacher, outcomes: &[Outcome], started: Instant) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Naming the accounts a student learned from: a simulated campaign, {}\n",
        crate::today()
    );
    let _ = writeln!(
        s,
        "Three actors harvest answers in the seeds' proportions (13M : 3.4M : 150k exchanges, scaled down to harvested \
         tokens) through a few accounts each, among {} accounts. In each time window every account belongs to a keyed \
         random cohort (SPEC §13) and is served answers watermarked with `{SCHEME}` under `derive(master, \
         \"window/<w>/cohort/<c>\")`. Each actor's volume is spread evenly over its accounts and the windows. One \
         trigram student learns from all harvested answers of all windows; its outputs ({} tokens, to prompts the \
         harvest did not use) are tested under every window-cohort key (black box, exact, dedup across all outputs). \
         Every repetition draws a fresh master key (OS RNG{}), fresh accounts and a fresh harvest. Regenerate with \
         `make campaign`.\n",
        plan.accounts,
        plan.student_tokens,
        if plan.quick { "; the quick run uses fixed test keys" } else { "" }
    );
    let _ = writeln!(s, "## The test and its false-accusation bound\n");
    let _ = writeln!(
        s,
        "Each window-cohort key gets an integer score from its p-value; an account's statistic is the sum of the \
         scores of its own cohort in each window. Two rules:\n\n\
         - **lit sets** (the design as proposed): a key scores 1 when Holm's step-down over all W x C keys rejects it \
         at alpha_keys = {:e}, else 0; an account's statistic is the number of windows whose lit set holds its cohort, \
         Poisson-binomial with success probabilities |L_w| / C under the null;\n\
         - **graded**: a key scores min(floor(-log10 p), {}), with no key-level threshold, so that many moderately \
         significant windows add up.\n\n\
         The null distribution of an account's sum is computed exactly (convolution over the windows of the uniform \
         draw of one cohort per window, in log space) and accounts are named by Holm over all {} accounts at \
         alpha_accounts = {:e}. **Bound:** an account whose answers are not in the student's training data has its \
         cohorts drawn by a keyed PRF independently of the student, so given the scores its p-value is exact, whatever \
         the scores are; the probability that any such account is named is at most alpha_accounts = {:e} (for the lit \
         rule this holds conditionally on the lit sets, so the proposal's alpha_keys + alpha_accounts = {:e} is a \
         looser valid bound; alpha_keys only controls which *keys* are called lit). \
         `lab/tests/cohorts.rs` tests the bound on 400 all-innocent campaigns per rule.\n",
        plan.alpha_keys,
        plan.graded_cap,
        plan.accounts,
        plan.alpha_accounts,
        plan.alpha_accounts,
        plan.alpha_keys + plan.alpha_accounts
    );
    let _ = writeln!(s, "## Results\n");
    for o in outcomes {
        let sc = &o.scenario;
        let reps = o.repetitions.len().max(1);
        let mean = |f: &dyn Fn(&super::Repetition) -> f64| o.repetitions.iter().map(f).sum::<f64>() / reps as f64;
        let (design, rows, last) = match sc.design {
            Design::WindowCohorts => (
                format!("{} windows x {} cohorts", sc.windows, sc.cohorts),
                Rule::ALL.iter().map(|r| r.name().to_string()).collect::<Vec<_>>(),
                "mean keys scoring > 0 per window".to_string(),
            ),
            Design::PerAccount => (
                "one key per account, `derive(master, \"account/<id>\")`".to_string(),
                vec!["per-account keys (Bonferroni over all accounts)".to_string()],
                format!("smallest log10 p of {CONTROL_ACCOUNTS} control accounts' keys"),
            ),
        };
        let _ = writeln!(s, "### {}: {design}, {} repetitions\n", sc.label, o.repetitions.len());
        let total: f64 = sc.actors.iter().map(|a| a.exchanges).sum();
        let _ = writeln!(
            s,
            "Harvest {:.0} tokens ({}), student outputs {:.0} tokens; {:.0} s per repetition. Median log10 p of the keys \
             each actor's accounts were served under: {}.\n",
            mean(&|r| r.tokens.0 as f64),
            sc.actors
                .iter()
                .map(|a| format!("{} {:.1}% through {} account(s)", a.name, 100.0 * a.exchanges / total, a.accounts))
                .collect::<Vec<_>>()
                .join(", "),
            mean(&|r| r.tokens.1 as f64),
            mean(&|r| r.seconds),
            sc.actors
                .iter()
                .enumerate()
                .map(|(j, a)| format!("{} {:.1}", a.name, mean(&|r| r.actor_key_log10_p[j])))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = write!(s, "| rule |");
        for a in &sc.actors {
            let _ = write!(s, " {} accounts named (repetitions naming one) |", a.name);
        }
        let _ = writeln!(s, " false accusations | repetitions with one | {last} |");
        let _ = writeln!(s, "|---|{}---:|---:|---:|", "---:|".repeat(sc.actors.len()));
        for (i, row) in rows.iter().enumerate() {
            let _ = write!(s, "| {row} |");
            for (j, a) in sc.actors.iter().enumerate() {
                let named: usize = o.repetitions.iter().map(|r| r.named[i].per_actor[j]).sum();
                let reps_with = o.repetitions.iter().filter(|r| r.named[i].per_actor[j] > 0).count();
                let _ = write!(
                    s,
                    " {named}/{} ({reps_with}/{}) |",
                    a.accounts * o.repetitions.len(),
                    o.repetitions.len()
                );
            }
            let fa: usize = o.repetitions.iter().map(|r| r.named[i].innocent).sum();
            let with = o.repetitions.iter().filter(|r| r.named[i].innocent > 0).count();
            let last = match sc.design {
                Design::WindowCohorts => format!("{:.1}", mean(&|r| r.named[i].lit_per_window)),
                Design::PerAccount => format!(
                    "{:.1}",
                    o.repetitions
                        .iter()
                        .filter_map(|r| r.control_min_log10_p)
                        .fold(0.0, f64::min)
                ),
            };
            let _ = writeln!(s, " {fa} | {with}/{} | {last} |", o.repetitions.len());
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## What this shows, and what it does not\n");
    let _ = writeln!(
        s,
        "- **The teacher is a stand-in.** A trigram model of {} tokens of human text, watermarked by the core's kgw \
         scheme through exact rejection sampling (a red token is kept with probability e^-delta, which is the \
         distribution of +delta on green logits), because SmolLM2 writes about 140 tokens/s on this busy 2-core \
         machine and each repetition needs a fresh harvest under fresh keys. It shows the statistics of the design \
         (the assignment, the exact account-level test, the false-accusation rate, how the evidence is diluted over \
         windows and accounts) on a real watermark with a real radioactivity signal. It does not show the signal \
         strength a transformer student would inherit from an LLM teacher: the per-key evidence here comes from a \
         trigram student of a trigram teacher, and everything about who can be named scales with that strength \
         (see the reference row: all of the harvest under one key).\n\
         - The false-accusation guarantee does not depend on the teacher, the student or the calibration of the \
         key tests: only on the assignment being a keyed draw the harvester never saw, and on innocent accounts' \
         answers being absent from the student's training data. An account whose answers reached the student by \
         another way (published, resold) is, for this test, an account the student learned from.\n\
         - Accounts are drawn among {} and cohorts are re-drawn per window; the harvest is spread evenly over each \
         actor's accounts and windows. An actor that concentrates its volume in a few windows or accounts is easier \
         to name; one that spreads it thinner is harder (the sweeps).\n",
        teacher.tokens(),
        plan.accounts
    );
    let _ = writeln!(s, "Total run time: {:.0} min.", started.elapsed().as_secs_f64() / 60.0);
    s
}
