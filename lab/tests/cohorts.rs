//! Window-cohort keys (SPEC §13): golden vectors of the assignment, its
//! uniformity, and the group test's false-accusation rate on simulated
//! campaigns where no account's answers reached the student.

mod support;

use support::Rng;
use tracemark_core::Key;
use tracemark_lab::campaign::cohorts::{score_tail, window_cohort_label, Cohorts, KeyScores};

/// Golden vectors, computed from SPEC §13's text with Python's `hmac`
/// (`hmac.new(K, b"tracemark/v1/derive/assign/window/<w>/account/<a>", sha256)`,
/// first 8 bytes little-endian, times C, high 64 bits) under the key `00 01 .. 1f`.
#[test]
fn the_assignment_matches_the_golden_vectors() {
    let master = Key::from_bytes(std::array::from_fn(|i| i as u8));
    let cases: [(u32, u64, u32, u32); 6] = [
        (0, 0, 16, 2),
        (0, 1, 16, 14),
        (3, 42, 16, 11),
        (11, 23_999, 16, 0),
        (7, 1_000_000, 256, 154),
        (u32::MAX, u64::MAX, 1000, 106),
    ];
    for (w, a, c, want) in cases {
        let design = Cohorts::new(w.saturating_add(1), c).expect("design");
        assert_eq!(
            design.cohort(&master, w, a).expect("cohort"),
            want,
            "window {w}, account {a}, {c} cohorts"
        );
    }
    // The window-cohort key is an ordinary derived key (SPEC §2.4).
    assert_eq!(window_cohort_label(3, 11), "window/3/cohort/11");
    let key = Cohorts::new(4, 16).expect("design").key(&master, 3, 11).expect("key");
    assert_eq!(key.id().to_string(), "28c4d69b5fec9128477f48328e2f86b4");
    assert!(Cohorts::new(0, 16).is_err() && Cohorts::new(4, 0).is_err());
}

/// 24,000 accounts over 16 cohorts: every cohort's count is within 5 standard
/// deviations of 1,500, in every window, and two windows' assignments agree at
/// the rate 1/16 of independent draws (within 5 standard deviations).
#[test]
fn cohorts_are_uniform_and_independent_across_windows() {
    let master = Key::from_bytes([0x5a; 32]);
    let design = Cohorts::new(3, 16).expect("design");
    let n = 24_000u64;
    let table: Vec<Vec<u32>> = (0..n)
        .map(|a| design.assignment(&master, a).expect("assignment"))
        .collect();
    let sd = (n as f64 / 16.0 * (15.0 / 16.0)).sqrt();
    for w in 0..3 {
        let mut counts = [0u64; 16];
        for row in &table {
            counts[row[w] as usize] += 1;
        }
        for c in counts {
            assert!((c as f64 - n as f64 / 16.0).abs() < 5.0 * sd, "window {w}: {counts:?}");
        }
    }
    let same = table.iter().filter(|r| r[0] == r[1]).count() as f64;
    let (mean, sd) = (n as f64 / 16.0, (n as f64 / 16.0 * 15.0 / 16.0).sqrt());
    assert!((same - mean).abs() < 5.0 * sd, "{same} agreements");
}

/// The false-accusation bound, tested: 400 campaigns of 2,000 accounts, none of
/// whose answers reached the student, each with a fresh master key, under
/// adversarial scores (a third to all of each window's cohorts lit, graded
/// scores up to 20). At family-wise alpha = 0.05 at most 5% of campaigns may
/// name anyone; with 400 campaigns, more than 33 would reject that at 1e-3
/// (Binomial(400, 0.05)). In practice the count is far below: the test is
/// conservative when scores tie.
#[test]
fn innocent_accounts_are_named_at_most_at_alpha() {
    let mut rng = Rng::new(0xc0_4a);
    let design = Cohorts::new(6, 8).expect("design");
    let mut campaigns_with_accusation = [0usize; 2];
    for _ in 0..400 {
        let master = rng.key();
        let lit: Vec<Vec<u32>> = (0..6)
            .map(|_| {
                let k = 3 + (rng.next_u64() % 6) as usize;
                (0..8).map(|c| u32::from(c < k)).collect()
            })
            .collect();
        let graded: Vec<Vec<u32>> = (0..6)
            .map(|_| (0..8).map(|_| (rng.next_u64() % 21) as u32).collect())
            .collect();
        for (i, rows) in [lit, graded].into_iter().enumerate() {
            let verdict = design
                .accuse(&master, &KeyScores { rows }, 2_000, 0.05)
                .expect("accuse");
            campaigns_with_accusation[i] += usize::from(!verdict.named.is_empty());
        }
    }
    assert!(
        campaigns_with_accusation.iter().all(|&n| n <= 33),
        "campaigns with a false accusation (lit, graded): {campaigns_with_accusation:?}"
    );
}

/// The other side: harvesting accounts whose cohorts light up in every window
/// are named, and their p-value is the Poisson-binomial tail.
#[test]
fn harvesting_accounts_whose_cohorts_light_up_are_named() {
    let master = Key::from_bytes([9; 32]);
    let design = Cohorts::new(12, 32).expect("design");
    let harvesters = [17u64, 4_000, 23_999];
    let mut log10_p = vec![vec![0.0; 32]; 12];
    for w in 0..12 {
        for &a in &harvesters {
            log10_p[w as usize][design.cohort(&master, w, a).expect("cohort") as usize] = -12.0;
        }
    }
    let scores = KeyScores::lit(&log10_p, 1e-3);
    let verdict = design.accuse(&master, &scores, 24_000, 1e-3).expect("accuse");
    let mut named: Vec<u64> = verdict.named.iter().map(|n| n.account).collect();
    named.sort_unstable();
    assert_eq!(named, harvesters);
    // Each window has at most 3 of 32 cohorts lit: P(S = 12) = prod |L_w| / 32.
    let want: f64 = scores.lit_per_window().iter().map(|&l| (l as f64 / 32.0).log10()).sum();
    assert!((score_tail(&scores.rows)[12] - want).abs() < 1e-9);
    assert!(verdict
        .named
        .iter()
        .all(|n| n.score == 12 && (n.log10_p - want).abs() < 1e-9));
}
