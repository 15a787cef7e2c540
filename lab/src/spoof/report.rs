//! The spoofing experiment's measurements, report and plots.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use tracemark_core::KeyId;
use tracemark_verifier::stats::clopper_pearson;

use crate::summary::median;

use super::{Knowledge, Options, Tested, ALPHA};
use crate::plot::{line_chart, Series};
use crate::{io, Result};

/// The cohort bar: with the harvest spread over `K > 1` keys, is forgery
/// (exactly one key fires) at or below 1% at the largest harvest? The
/// verdict reads the one-sided 95% upper bound, next to the one-key rate.
fn write_cohort_bar(md: &mut String, results: &[SchemeResults], n_max: usize) {
    let cells: Vec<(&SchemeResults, &Cell)> = results
        .iter()
        .flat_map(|r| r.spoofs.iter().filter(|c| c.k > 1 && c.n == n_max).map(move |c| (r, c)))
        .collect();
    if cells.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## The cohort defence at N = {n_max}\n");
    let _ = writeln!(
        md,
        "Forgery under the cohort rule at the largest harvest, against the 1% bar, read off the one-sided 95% upper \
         bound (Clopper-Pearson); beside it, the same attacker's rate against one key.\n"
    );
    let _ = writeln!(
        md,
        "| scheme | K | forgery (exactly one key) | one-sided 95% upper bound | one key (K = 1) | at 1% |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (r, c) in cells {
        let n = c.tested.len();
        let k = c.exactly_one();
        let (_, hi) = clopper_pearson(k as u64, n as u64, 0.90);
        let one_key = r
            .spoofs
            .iter()
            .find(|o| o.k == 1 && o.n == c.n)
            .map_or_else(|| "–".into(), |o| rate(o.detected(), o.tested.len()));
        let verdict = if hi <= 0.01 {
            "holds".to_string()
        } else if (k as f64) <= 0.01 * n as f64 {
            format!(
                "at or below 1% as measured; {n} answers bound it to {:.1}% only",
                100.0 * hi
            )
        } else {
            "breaks".to_string()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {k}/{n} ({:.2}%) | {:.2}% | {one_key} | {verdict} |",
            r.label,
            c.k,
            100.0 * k as f64 / n.max(1) as f64,
            100.0 * hi
        );
    }
}

/// One spoofing cell: the attacker's knowledge from `n` answers harvested
/// over `k` cohort keys, and how its spoofed answers fared.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Cohort keys of the harvest.
    pub k: usize,
    /// Answers harvested.
    pub n: usize,
    /// Tokens harvested.
    pub harvest_tokens: u64,
    /// (context, token) pairs the attacker believes green.
    pub beliefs: usize,
    /// The spoofed answers, tested under cohort keys `0..k`.
    pub tested: Vec<Tested>,
    /// With one key: the artifact test against the served log (the base
    /// and the harvest) on the spoofs and on the genuine answers.
    pub served: Option<(Vec<bool>, Vec<bool>)>,
}

impl Cell {
    fn fired(&self, t: &Tested) -> usize {
        let threshold = (ALPHA / self.k as f64).log10();
        t.log10_p.iter().filter(|&&l| l <= threshold).count()
    }

    /// Spoofs that count as ours without a defence: some key fires at `ALPHA / k`.
    pub fn detected(&self) -> usize {
        self.tested.iter().filter(|t| self.fired(t) >= 1).count()
    }

    /// ... with the cohort rule: exactly one key fires.
    pub fn exactly_one(&self) -> usize {
        self.tested.iter().filter(|t| self.fired(t) == 1).count()
    }

    /// ... detected under key 0 without the spoof-artifact test firing.
    pub fn unflagged(&self) -> usize {
        self.tested.iter().filter(|t| self.fired(t) >= 1 && !t.artifact).count()
    }

    /// Spoofs detected under key 0 at `alpha` (the one-key rate at another level).
    pub fn detected_at(&self, alpha: f64) -> usize {
        self.tested
            .iter()
            .filter(|t| t.log10_p.first().is_some_and(|&l| l <= alpha.log10()))
            .count()
    }

    /// Spoofs detected under key 0 that the served-log artifact test does not flag.
    pub fn unflagged_served(&self) -> Option<usize> {
        let (spoofs, _) = self.served.as_ref()?;
        Some(
            self.tested
                .iter()
                .zip(spoofs)
                .filter(|(t, &f)| self.fired(t) >= 1 && !f)
                .count(),
        )
    }

    /// (detected spoofs the served-log artifact test flags, detected spoofs).
    pub fn served_power(&self) -> Option<(usize, usize)> {
        let (spoofs, _) = self.served.as_ref()?;
        let detected: Vec<bool> = self.tested.iter().map(|t| self.fired(t) >= 1).collect();
        let flagged = detected.iter().zip(spoofs).filter(|(&d, &f)| d && f).count();
        Some((flagged, detected.iter().filter(|&&d| d).count()))
    }

    /// Detected spoofs the artifact test flags.
    pub fn flagged(&self) -> usize {
        self.tested.iter().filter(|t| self.fired(t) >= 1 && t.artifact).count()
    }
}

/// One scrubbing cell: our genuine answers rewritten by the attacker with the
/// knowledge of `n` harvested answers (0: a plain paraphrase).
#[derive(Clone, Debug)]
pub struct ScrubCell {
    /// Answers harvested (0: no knowledge).
    pub n: usize,
    /// The rewrites, tested under key 0 (same order as the genuine answers).
    pub tested: Vec<Tested>,
}

/// Everything measured for one scheme.
#[derive(Clone, Debug)]
pub struct SchemeResults {
    /// Row label.
    pub label: String,
    /// Scheme string.
    pub config: String,
    /// Our genuine answers under cohort key 0, tested under every cohort key.
    pub genuine: Vec<Tested>,
    /// Spoofing cells.
    pub spoofs: Vec<Cell>,
    /// Scrubbing cells.
    pub scrubs: Vec<ScrubCell>,
}

impl SchemeResults {
    /// Results of one scheme with its genuine answers.
    pub fn new(label: &str, config: &str, genuine: Vec<Tested>) -> Self {
        Self {
            label: label.into(),
            config: config.into(),
            genuine,
            spoofs: Vec::new(),
            scrubs: Vec::new(),
        }
    }

    /// Adds a spoofing cell.
    pub fn add_spoof(&mut self, k: usize, n: usize, knowledge: &Knowledge, tested: Vec<Tested>) {
        self.spoofs.push(Cell {
            k,
            n,
            harvest_tokens: knowledge.harvest_tokens,
            beliefs: knowledge.beliefs,
            tested,
            served: None,
        });
    }

    /// Records the artifact test against the served log for the last spoofing cell.
    pub fn add_served_artifacts(&mut self, spoofs: &[Tested], genuine: &[Tested]) {
        if let Some(c) = self.spoofs.last_mut() {
            let flags = |t: &[Tested]| t.iter().map(|x| x.artifact).collect();
            c.served = Some((flags(spoofs), flags(genuine)));
        }
    }

    /// Adds a scrubbing cell.
    pub fn add_scrub(&mut self, n: usize, tested: &[Tested]) {
        self.scrubs.push(ScrubCell {
            n,
            tested: tested.to_vec(),
        });
    }

    fn genuine_detected(&self) -> Vec<bool> {
        self.genuine
            .iter()
            .map(|t| t.log10_p.first().is_some_and(|&l| l <= ALPHA.log10()))
            .collect()
    }

    /// Genuine answers that count as ours under `k` cohort keys (exactly one fires at `ALPHA / k`).
    fn genuine_exactly_one(&self, k: usize) -> usize {
        let threshold = (ALPHA / k as f64).log10();
        self.genuine
            .iter()
            .filter(|t| t.log10_p.iter().take(k).filter(|&&l| l <= threshold).count() == 1)
            .count()
    }

    /// (stripped, detected before) for a scrubbing cell.
    pub fn scrub_success(&self, cell: &ScrubCell) -> (usize, usize) {
        let before = self.genuine_detected();
        let mut stripped = 0;
        for (t, &b) in cell.tested.iter().zip(&before) {
            if b && t.log10_p.first().is_none_or(|&l| l > ALPHA.log10()) {
                stripped += 1;
            }
        }
        (stripped, before.iter().filter(|&&b| b).count())
    }
}

fn rate(k: usize, n: usize) -> String {
    if n == 0 {
        return "–".into();
    }
    let (_, hi) = clopper_pearson(k as u64, n as u64, 0.95);
    // Below 10% the bound keeps a decimal: a 1% bar is read off it.
    let digits = usize::from(hi < 0.1);
    format!(
        "{k}/{n} ({:.0}%, ≤ {:.digits$}%)",
        100.0 * k as f64 / n as f64,
        100.0 * hi
    )
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median_log10_p(tested: &[Tested]) -> f64 {
    median(
        &tested
            .iter()
            .map(|t| t.log10_p.first().copied().unwrap_or(0.0))
            .collect::<Vec<_>>(),
    )
}

/// Writes the report to `out` and its plots beside it.
pub fn write_report(
    out: &Path,
    options: &Options,
    results: &[SchemeResults],
    missing: &[String],
    base_nll: f64,
    master: KeyId,
    elapsed: Duration,
) -> Result<()> {
    let mut md = String::new();
    let n_max = options.checkpoints.last().copied().unwrap_or(0);
    let _ = writeln!(md, "# Watermark stealing and spoofing on SmolLM2-135M\n");
    let _ = writeln!(
        md,
        "An attacker harvests N watermarked answers ({} new tokens at most each, temperature 1) to {} prompts, \
         from accounts spread over K cohort keys (cohort keys derived from master key `{master}`), and N unwatermarked answers of the \
         open model to the same prompts; it learns which tokens are green after which contexts (Jovanović et al., ICML 2024; \
         `tracemark_lab::spoof::Knowledge`) and steers the unwatermarked model by +{s} logits at full confidence to **spoof** \
         ({} answers of up to {} tokens to prompts it never harvested; {} with K > 1 at the largest N, \
         where a forgery rate near 1% has to be bounded) or by −{s} to **scrub** (rewriting our answers, \
         the paraphrase request of `make eval`, temperature 0.7, nucleus 0.95). A text counts as ours at p ≤ {ALPHA:.0e}; \
         with K cohort keys, when exactly one key fires at {ALPHA:.0e}/K. The spoof-artifact test \
         (`tracemark_verifier::forgery`, Fisher exact, level 1e-3) compares hits on (seed, token) pairs seen at least {} \
         times in a reference of {n_max} unwatermarked SmolLM2 answers (the verifier's own text of the model, not the harvest) with hits elsewhere. \
         Rates give count/total (share, exact 95% upper bound). Regenerate with `make spoof` (every generation is cached per batch; the run that wrote this report: {:.0} min).\n",
        options.harvest_tokens,
        super::HARVEST_PROMPTS,
        options.answers,
        options.answer_tokens,
        options.cohort_answers.max(options.answers),
        options.dense_at,
        elapsed.as_secs_f64() / 60.0,
        s = options.strength,
    );
    let _ = writeln!(md, "## Genuine answers\n");
    let _ = writeln!(
        md,
        "Our own answers to the same prompts as the spoofs, under cohort key 0: how many count as ours, \
         with each defence (the artifact test's false alarms are the detected answers it flags).\n"
    );
    let mut header =
        "| scheme | detected at 1e-6 | artifact test flags | detected at 1e-3 | median log10 p | mean −ln P / token |"
            .to_string();
    let mut rule = "|---|---|---|---|---|---|".to_string();
    let cohort_ks: Vec<usize> = options.cohorts.iter().copied().filter(|&k| k > 1).collect();
    for k in &cohort_ks {
        let _ = write!(header, " ours under K={k} |");
        rule.push_str("---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for r in results {
        let detected = r.genuine_detected();
        let d = detected.iter().filter(|&&b| b).count();
        let flagged = r
            .genuine
            .iter()
            .zip(&detected)
            .filter(|(t, &b)| b && t.artifact)
            .count();
        let at_1e3 = r
            .genuine
            .iter()
            .filter(|t| t.log10_p.first().is_some_and(|&l| l <= -3.0))
            .count();
        let _ = write!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.2} |",
            r.label,
            rate(d, r.genuine.len()),
            rate(flagged, d),
            rate(at_1e3, r.genuine.len()),
            median_log10_p(&r.genuine),
            mean(r.genuine.iter().map(|t| t.nll))
        );
        for &k in &cohort_ks {
            let _ = write!(md, " {} |", rate(r.genuine_exactly_one(k), r.genuine.len()));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "\nUnwatermarked harvest-length answers (the base): mean −ln P / token {base_nll:.2}.\n"
    );
    let _ = writeln!(md, "## Spoofing\n");
    let _ = writeln!(
        md,
        "Share of the attacker's answers that count as ours, by harvest size N. *K = 1*: one key, no defence, and \
         with the artifact test (detected and not flagged), its reference either the base (text of the model the attacker never saw) \
         or the served log (the base and every harvested answer: we served them). *K > 1*: some cohort key fires, and the cohort rule (exactly one). \
         The harvest of a K > 1 row spans every cohort, as a campaign through many accounts does; an attacker who harvests N answers \
         through one account learns that cohort's key alone, which is the K = 1 row, and its forgeries then name that account's cohort.\n"
    );
    let _ = writeln!(
        md,
        "| scheme | K | N | harvested tokens | beliefs | detected | with artifact test | artifact power | artifact power, served-log reference | its false alarms on genuine | with served-log artifact test | exactly one key | detected at 1e-3 (key 0) | median log10 p (key 0) | mean −ln P / token |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        for c in &r.spoofs {
            let single = c.k == 1;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} |",
                r.label,
                c.k,
                c.n,
                c.harvest_tokens,
                c.beliefs,
                rate(c.detected(), c.tested.len()),
                if single {
                    rate(c.unflagged(), c.tested.len())
                } else {
                    "–".into()
                },
                if single {
                    rate(c.flagged(), c.detected())
                } else {
                    "–".into()
                },
                c.served_power().map_or_else(|| "–".into(), |(f, d)| rate(f, d)),
                c.served.as_ref().map_or_else(
                    || "–".into(),
                    |(_, g)| {
                        let detected = r.genuine_detected();
                        let alarms = g.iter().zip(&detected).filter(|(&f, &d)| f && d).count();
                        rate(alarms, detected.iter().filter(|&&d| d).count())
                    }
                ),
                c.unflagged_served()
                    .map_or_else(|| "–".into(), |u| rate(u, c.tested.len())),
                if single {
                    "–".into()
                } else {
                    rate(c.exactly_one(), c.tested.len())
                },
                rate(c.detected_at(1e-3), c.tested.len()),
                median_log10_p(&c.tested),
                mean(c.tested.iter().map(|t| t.nll)),
            );
        }
    }
    write_cohort_bar(&mut md, results, n_max);
    let _ = writeln!(md, "\n## Scrubbing\n");
    let _ = writeln!(
        md,
        "Share of our answers detected at 1e-6 that the attacker's rewrite brings above 1e-6, by harvest size \
         (N = 0: the same paraphrase request without knowledge).\n"
    );
    let _ = writeln!(
        md,
        "| scheme | N | scrubbed | median log10 p after | mean −ln P / token |\n|---|---|---|---|---|"
    );
    for r in results {
        for c in &r.scrubs {
            let (stripped, before) = r.scrub_success(c);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.2} |",
                r.label,
                c.n,
                rate(stripped, before),
                median_log10_p(&c.tested),
                mean(c.tested.iter().map(|t| t.nll))
            );
        }
    }
    if !missing.is_empty() {
        let _ = writeln!(
            md,
            "\n## Not in this report\n\nGenerations that were not in the cache when this report was written \
             (`--cached-only`; `make spoof` generates them), with every cell that needs them:\n"
        );
        for name in missing {
            let _ = writeln!(md, "- `{name}`");
        }
    }
    io(out, std::fs::write(out, &md))?;
    plots(out, results)
}

fn plots(out: &Path, results: &[SchemeResults]) -> Result<()> {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("spoof");
    let dir = out.parent().unwrap_or(Path::new("."));
    let share = |k: usize, n: usize| if n == 0 { f64::NAN } else { k as f64 / n as f64 };
    let mut spoof = Vec::new();
    let mut cohorts = Vec::new();
    let mut scrub = Vec::new();
    for r in results {
        let ones: Vec<&Cell> = r.spoofs.iter().filter(|c| c.k == 1).collect();
        spoof.push(Series {
            name: format!("{}, one key", r.label),
            points: ones
                .iter()
                .map(|c| (c.n as f64, share(c.detected(), c.tested.len())))
                .collect(),
        });
        spoof.push(Series {
            name: format!("{}, with artifact test", r.label),
            points: ones
                .iter()
                .map(|c| (c.n as f64, share(c.unflagged(), c.tested.len())))
                .collect(),
        });
        spoof.push(Series {
            name: format!("{}, with artifact test (served log)", r.label),
            points: ones
                .iter()
                .filter_map(|c| Some((c.n as f64, share(c.unflagged_served()?, c.tested.len()))))
                .collect(),
        });
        let mut ks: Vec<usize> = r.spoofs.iter().map(|c| c.k).filter(|&k| k > 1).collect();
        ks.dedup();
        for k in ks {
            cohorts.push(Series {
                name: format!("{}, K={k}, exactly one", r.label),
                points: r
                    .spoofs
                    .iter()
                    .filter(|c| c.k == k)
                    .map(|c| (c.n as f64, share(c.exactly_one(), c.tested.len())))
                    .collect(),
            });
        }
        scrub.push(Series {
            name: r.label.clone(),
            points: r
                .scrubs
                .iter()
                .map(|c| {
                    let (s, b) = r.scrub_success(c);
                    (c.n as f64, share(s, b))
                })
                .collect(),
        });
    }
    line_chart(
        &dir.join(format!("{stem}-spoofing.svg")),
        "Spoof success (detected at 1e-6 under our key)",
        "harvested answers N",
        "share of spoofed answers",
        &spoof,
    )?;
    if cohorts.iter().any(|s| !s.points.is_empty()) {
        line_chart(
            &dir.join(format!("{stem}-cohorts.svg")),
            "Spoof success with K cohort keys (exactly one fires)",
            "harvested answers N",
            "share of spoofed answers",
            &cohorts,
        )?;
    }
    line_chart(
        &dir.join(format!("{stem}-scrubbing.svg")),
        "Scrub success (our detected answers brought above 1e-6)",
        "harvested answers N",
        "share of scrubbed answers",
        &scrub,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tested(log10_p: &[f64], artifact: bool) -> Tested {
        Tested {
            log10_p: log10_p.to_vec(),
            artifact,
            nll: 1.0,
        }
    }

    #[test]
    fn a_spoof_counts_as_ours_under_the_cohort_rule_only_when_exactly_one_key_fires() {
        // K = 8: a key fires at 1e-6 / 8 (log10 -6.9).
        let cell = Cell {
            k: 8,
            n: 100,
            harvest_tokens: 0,
            beliefs: 0,
            tested: vec![
                tested(&[-8.0, -1.0, -0.5], false), // one key: ours
                tested(&[-8.0, -7.5, -0.5], false), // two keys: a forgery shows itself
                tested(&[-6.5, -1.0, -0.5], false), // below the corrected level: not ours
            ],
            served: None,
        };
        assert_eq!((cell.detected(), cell.exactly_one()), (2, 1));
        // One key: detected at 1e-6, and the artifact test removes flagged ones.
        let cell = Cell {
            k: 1,
            n: 100,
            harvest_tokens: 0,
            beliefs: 0,
            tested: vec![tested(&[-6.5], true), tested(&[-6.5], false), tested(&[-5.0], true)],
            served: Some((vec![true, true, false], vec![])),
        };
        assert_eq!((cell.detected(), cell.unflagged(), cell.flagged()), (2, 1, 1));
        assert_eq!(cell.detected_at(1e-3), 3);
        assert_eq!((cell.unflagged_served(), cell.served_power()), (Some(0), Some((2, 2))));
    }

    #[test]
    fn scrub_success_counts_only_answers_detected_before() {
        let mut r = SchemeResults::new("x", "kgw", vec![tested(&[-9.0], false), tested(&[-2.0], false)]);
        r.add_scrub(0, &[tested(&[-1.0], false), tested(&[-1.0], false)]);
        assert_eq!(r.scrub_success(&r.scrubs[0]), (1, 1));
    }
}
