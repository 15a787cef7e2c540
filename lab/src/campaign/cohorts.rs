//! Group testing: naming the accounts a student model learned from, with
//! window-cohort keys re-drawn per time window (SPEC §13). The campaign
//! experiment ([`super`]) runs it on a simulated harvest; the keyed
//! assignment and its golden vectors are in `docs/SPEC.md`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracemark_core::Key;
use tracemark_verifier::{Error, Result};

/// The label of the key that watermarks answers served in `window` to the
/// accounts of `cohort` (SPEC §13): `window/<w>/cohort/<c>`.
pub fn window_cohort_label(window: u32, cohort: u32) -> String {
    format!("window/{window}/cohort/{cohort}")
}

/// Window-cohort keys re-drawn per time window (SPEC §13): the design that
/// names the accounts a *student model* learned from, where one account's own
/// key would be diluted away among thousands.
///
/// In window `w` account `a` belongs to cohort [`Cohorts::cohort`], a keyed
/// uniform draw under the master key (the harvester can neither see nor steer
/// it), and its answers are watermarked with
/// `derive(master, "window/<w>/cohort/<c>")`. Nothing is stored per account.
/// A student's outputs are tested under all `windows × cohorts` keys; each key
/// gets an integer score ([`KeyScores`]); an account's statistic is the sum of
/// the scores of its own cohort in each window, and [`Cohorts::accuse`] names
/// the accounts whose sum is improbably high for an account whose cohorts were
/// drawn independently of the student ([`score_tail`], Holm over all accounts).
///
/// ```
/// use tracemark_core::Key;
/// use tracemark_lab::campaign::cohorts::{Cohorts, KeyScores};
///
/// let master = Key::from_bytes([7; 32]);
/// let design = Cohorts::new(12, 16)?;
/// let c = design.cohort(&master, 3, 42)?;
/// assert!(c < 16);
/// assert_eq!(design.assignment(&master, 42)?[3], c);
/// // A student lit exactly account 42's cohort in every window (log10 p = -30 there, 0 elsewhere).
/// let log10_p: Vec<Vec<f64>> = (0..12)
///     .map(|w| (0..16).map(|k| if k == design.cohort(&master, w, 42).unwrap() { -30.0 } else { 0.0 }).collect())
///     .collect();
/// let scores = KeyScores::lit(&log10_p, 1e-3);
/// let verdict = design.accuse(&master, &scores, 1000, 1e-3)?;
/// assert!(verdict.named.iter().any(|n| n.account == 42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cohorts {
    windows: u32,
    cohorts: u32,
}

impl Cohorts {
    /// `windows` time windows of `cohorts` cohorts each (both at least 1).
    pub fn new(windows: u32, cohorts: u32) -> Result<Self> {
        if windows == 0 || cohorts == 0 {
            return Err(Error::InvalidOption {
                name: "cohorts",
                message: format!(
                    "{windows} windows of {cohorts} cohorts: both must be at least 1 (e.g. 12 windows of 16 cohorts)"
                ),
            });
        }
        Ok(Cohorts { windows, cohorts })
    }

    /// Time windows.
    pub fn windows(&self) -> u32 {
        self.windows
    }

    /// Cohorts per window.
    pub fn cohorts(&self) -> u32 {
        self.cohorts
    }

    /// Account `account`'s cohort in `window` (SPEC §13):
    /// `D = derive(master, "assign/window/<w>/account/<a>")`,
    /// `cohort = floor(LE64⁻¹(D[0..8]) · C / 2^64)`.
    pub fn cohort(&self, master: &Key, window: u32, account: u64) -> Result<u32> {
        let d = master.derive(&format!("assign/window/{window}/account/{account}"))?;
        let mut x = [0u8; 8];
        x.copy_from_slice(&d.secret_bytes()[..8]);
        let wide = u128::from(u64::from_le_bytes(x)) * u128::from(self.cohorts);
        // The high 64 bits of a 64-bit value times a 32-bit count are below the count.
        Ok((wide >> 64) as u32)
    }

    /// Account `account`'s cohort in every window, window 0 first.
    pub fn assignment(&self, master: &Key, account: u64) -> Result<Vec<u32>> {
        (0..self.windows).map(|w| self.cohort(master, w, account)).collect()
    }

    /// The key of `cohort` in `window`: `derive(master, "window/<w>/cohort/<c>")`.
    pub fn key(&self, master: &Key, window: u32, cohort: u32) -> Result<Key> {
        Ok(master.derive(&window_cohort_label(window, cohort))?)
    }

    /// Every window-cohort key, `[window][cohort]`.
    pub fn keys(&self, master: &Key) -> Result<Vec<Vec<Key>>> {
        (0..self.windows)
            .map(|w| (0..self.cohorts).map(|c| self.key(master, w, c)).collect())
            .collect()
    }

    /// Names the accounts among `0 .. accounts` whose score sum under `scores`
    /// is significant at family-wise `alpha` (Holm over all `accounts`).
    ///
    /// **The guarantee.** Take an account whose answers are not in the
    /// student's training data. Its cohorts were drawn by a keyed PRF,
    /// independently of the student, so given the scores its statistic
    /// `s_a = Σ_w score[w][cohort(w, a)]` is a sum of independent draws, one
    /// uniform over each window's row; [`score_tail`] is that distribution's
    /// exact upper tail, a valid p-value whatever the scores are (calibrated,
    /// wrong, or chosen by an adversary who never saw the assignment).
    /// Holm's step-down over all accounts then names any such account with
    /// probability at most `alpha`.
    pub fn accuse(&self, master: &Key, scores: &KeyScores, accounts: u64, alpha: f64) -> Result<GroupVerdict> {
        if scores.rows.len() != self.windows as usize || scores.rows.iter().any(|r| r.len() != self.cohorts as usize) {
            return Err(Error::InvalidOption {
                name: "scores",
                message: format!(
                    "scores must have {} windows of {} cohorts, one per window-cohort key",
                    self.windows, self.cohorts
                ),
            });
        }
        if !(alpha > 0.0 && alpha < 1.0) || accounts == 0 {
            return Err(Error::InvalidOption {
                name: "alpha",
                message: format!("alpha {alpha} must be in (0, 1), over at least one account"),
            });
        }
        let tail = score_tail(&scores.rows);
        let sums: Vec<u32> = (0..accounts)
            .into_par_iter()
            .map(|a| -> Result<u32> {
                let mut s = 0;
                for w in 0..self.windows {
                    s += scores.rows[w as usize][self.cohort(master, w, a)? as usize];
                }
                Ok(s)
            })
            .collect::<Result<_>>()?;
        // Holm over all accounts: sort by p (= by score sum, descending).
        let mut order: Vec<u64> = (0..accounts).collect();
        order.sort_by(|&x, &y| sums[y as usize].cmp(&sums[x as usize]).then(x.cmp(&y)));
        let m = accounts as f64;
        let alpha_log10 = alpha.log10();
        let mut running = f64::NEG_INFINITY;
        let mut named = Vec::new();
        for (j, &a) in order.iter().enumerate() {
            let s = sums[a as usize];
            let log10_p = tail[s as usize];
            running = running.max(((m - j as f64).log10() + log10_p).min(0.0));
            if running >= alpha_log10 {
                break;
            }
            named.push(Accused {
                account: a,
                score: s,
                log10_p,
                log10_p_adjusted: running,
            });
        }
        Ok(GroupVerdict {
            accounts,
            alpha,
            log10_needed: alpha_log10 - m.log10(),
            max_score: scores.rows.iter().map(|r| r.iter().copied().max().unwrap_or(0)).sum(),
            named,
        })
    }
}

/// The integer score of every window-cohort key, `rows[window][cohort]`,
/// from the key's black-box test of the student.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyScores {
    /// The scores, one row per window.
    pub rows: Vec<Vec<u32>>,
}

impl KeyScores {
    /// Lit or not: 1 for the keys that Holm's step-down over all
    /// `windows × cohorts` keys rejects at family-wise `alpha_keys`, 0 for the
    /// others. An account's sum is then the number of windows whose lit set
    /// holds its cohort, and its null distribution is Poisson-binomial with
    /// success probabilities `|L_w| / C`.
    pub fn lit(log10_p: &[Vec<f64>], alpha_keys: f64) -> Self {
        let flat: Vec<f64> = log10_p.iter().flatten().map(|l| l * std::f64::consts::LN_10).collect();
        let adjusted = tracemark_verifier::stats::holm_adjust_ln(&flat);
        let cut = alpha_keys.ln();
        let mut i = 0;
        let rows = log10_p
            .iter()
            .map(|r| {
                r.iter()
                    .map(|_| {
                        i += 1;
                        u32::from(adjusted[i - 1] < cut)
                    })
                    .collect()
            })
            .collect();
        KeyScores { rows }
    }

    /// Graded: `min(floor(-log10 p), cap)` per key, so that many moderately
    /// significant keys add up. No key-level threshold: the account test is
    /// exact for any scores (see [`Cohorts::accuse`]).
    pub fn graded(log10_p: &[Vec<f64>], cap: u32) -> Self {
        let rows = log10_p
            .iter()
            .map(|r| r.iter().map(|&l| ((-l).max(0.0).floor() as u32).min(cap)).collect())
            .collect();
        KeyScores { rows }
    }

    /// The keys with a non-zero score, per window.
    pub fn lit_per_window(&self) -> Vec<usize> {
        self.rows.iter().map(|r| r.iter().filter(|&&s| s > 0).count()).collect()
    }
}

/// One account named by [`Cohorts::accuse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Accused {
    /// The account.
    pub account: u64,
    /// Its score sum over the windows.
    pub score: u32,
    /// `log10 P(S >= score)` for an account independent of the student.
    pub log10_p: f64,
    /// Holm-adjusted over every account.
    pub log10_p_adjusted: f64,
}

/// The accounts named by the group test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupVerdict {
    /// Accounts tested.
    pub accounts: u64,
    /// The family-wise level over accounts.
    pub alpha: f64,
    /// `log10(alpha / accounts)`: what the first account's p-value must be below.
    pub log10_needed: f64,
    /// The highest score sum an account could have.
    pub max_score: u32,
    /// The accounts named, most significant first.
    pub named: Vec<Accused>,
}

/// `log10 P(S >= s)` for `s = 0 ..= Σ_w max(rows[w])`, where
/// `S = Σ_w rows[w][U_w]` and the `U_w` are independent and uniform over each
/// row's indices: the null distribution of an account's score sum
/// (exact, by dynamic programming over the windows, in log space, so that
/// tails far below `f64`'s range stay finite).
pub fn score_tail(rows: &[Vec<u32>]) -> Vec<f64> {
    let max: usize = rows.iter().map(|r| r.iter().copied().max().unwrap_or(0) as usize).sum();
    // ln P(S = s) after each window.
    let mut dist = vec![f64::NEG_INFINITY; max + 1];
    dist[0] = 0.0;
    let mut top = 0;
    for row in rows {
        if row.is_empty() {
            continue;
        }
        // ln P(row score = v).
        let row_max = row.iter().copied().max().unwrap_or(0) as usize;
        let mut counts = vec![0u64; row_max + 1];
        for &v in row {
            counts[v as usize] += 1;
        }
        let ln_n = (row.len() as f64).ln();
        let step: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(v, &c)| (v, (c as f64).ln() - ln_n))
            .collect();
        let mut next = vec![f64::NEG_INFINITY; max + 1];
        for (s, &ls) in dist.iter().enumerate().take(top + 1) {
            if ls == f64::NEG_INFINITY {
                continue;
            }
            for &(v, lv) in &step {
                next[s + v] = log_add(next[s + v], ls + lv);
            }
        }
        dist = next;
        top += row_max;
    }
    // Upper tails, from the top down.
    let mut tail = vec![f64::NEG_INFINITY; max + 1];
    let mut acc = f64::NEG_INFINITY;
    for s in (0..=max).rev() {
        acc = log_add(acc, dist[s]);
        tail[s] = (acc / std::f64::consts::LN_10).min(0.0);
    }
    tail
}

/// `ln(e^a + e^b)`.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_lit_sets_is_poisson_binomial() {
        // Three windows of 4 cohorts with 1, 2 and 4 lit: success probabilities 1/4, 1/2, 1.
        let rows = vec![vec![1, 0, 0, 0], vec![0, 1, 1, 0], vec![1, 1, 1, 1]];
        let tail = score_tail(&rows);
        let p = |s: usize| 10f64.powf(tail[s]);
        // S = 1 + X1 + X2 with X1 ~ B(1/4), X2 ~ B(1/2).
        assert!((p(0) - 1.0).abs() < 1e-12 && (p(1) - 1.0).abs() < 1e-12);
        assert!((p(2) - (1.0 - 0.75 * 0.5)).abs() < 1e-12);
        assert!((p(3) - 0.125).abs() < 1e-12);
        assert_eq!(tail.len(), 4);
    }

    #[test]
    fn graded_tails_match_enumeration_and_stay_finite_far_out() {
        let rows = vec![vec![0, 3, 1], vec![2, 0], vec![5, 5, 0, 1]];
        let tail = score_tail(&rows);
        for (s, &got) in tail.iter().enumerate() {
            let mut hits = 0;
            let mut all = 0;
            for a in &rows[0] {
                for b in &rows[1] {
                    for c in &rows[2] {
                        all += 1;
                        hits += usize::from((a + b + c) as usize >= s);
                    }
                }
            }
            assert!((10f64.powf(got) - hits as f64 / all as f64).abs() < 1e-12, "s = {s}");
        }
        // 400 windows of 1,000 cohorts, one lit each: P(S = 400) = 1e-1200.
        let rows: Vec<Vec<u32>> = (0..400)
            .map(|_| (0..1000).map(|c| u32::from(c == 0)).collect())
            .collect();
        assert!((score_tail(&rows)[400] + 1200.0).abs() < 1e-6);
    }

    #[test]
    fn lit_scores_follow_holm_over_all_keys() {
        // 2 x 3 keys at alpha 0.01: -3 is rejected (6 x 1e-3 < 1e-2), -2.5 is not (5 x 3.2e-3 > 1e-2).
        let scores = KeyScores::lit(&[vec![-3.0, -2.5, 0.0], vec![-2.0, -0.1, -1.0]], 0.01);
        assert_eq!(scores.rows, vec![vec![1, 0, 0], vec![0, 0, 0]]);
        assert_eq!(scores.lit_per_window(), vec![1, 0]);
        let graded = KeyScores::graded(&[vec![-3.7, -0.2, -40.0]], 20);
        assert_eq!(graded.rows, vec![vec![3, 0, 20]]);
    }
}
