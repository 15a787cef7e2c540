//! Windowed detection: the most significant contiguous span of a longer text
//! (a watermarked paragraph pasted into human text), SPEC §16 (version 4).
//!
//! Windows are runs of consecutive scored observations, examined on a
//! dyadic grid: at scale `B = min_scored · 2^j` (every `j` with `B <= n`) the
//! grid step is `g = ceil(B / 4)`; windows start at every multiple of `g`
//! (and once flush with the end) and have the lengths `B, B + g, ...` below
//! `2B` that fit. Each end of a span of any length `S >= min_scored` is then
//! within `g/2 <= S/8` observations of an examined window's end (within `g`
//! at the top of a scale), so the closest examined window leaves out or adds
//! at most about a quarter of a span, on average an eighth. There are about
//! `2 · 4² · n / min_scored` windows (about `n` for the default 32, against
//! `n²/2` spans): every one gets its exact p-value.
//!
//! The correction is a weighted Bonferroni (version 3): every window of
//! scale `j` has the weight `c_j` ([`scale_weight`]: 1 for the scales of
//! typical answers, `j = 1..=4`, i.e. 64 to 1,023 observations by default,
//! and 1/4 for the shortest scale and the scales above), and a window's
//! corrected p-value is its own times `W / c_j`, `W` the sum of the weights
//! of all windows examined. The reported window is the one with the smallest
//! corrected p-value. The weights sum to 1 after division by `W`, so the
//! family-wise false-positive rate is at most alpha whatever the dependence
//! between windows; the set and the weights depend on `n` and `min_scored`
//! only, never on the scores. (Version 2 gave every window the weight 1.)
//!
//! Version 4 adds, for text of several paragraphs, the runs of whole
//! paragraphs ([`paragraph_starts`]: a paragraph begins after a blank line)
//! of `min_scored` to `32 · min_scored - 1` observations, at most 64
//! paragraphs each: a quoted answer is usually pasted as paragraphs of its
//! own, and such a segment matches its ends exactly instead of to a
//! quarter of the scale. When there are `S > 0` segments, the grid and the
//! segments share the search's weight half and half (a grid window's factor
//! is `2W / c_j`, a segment's `2S`). The paragraph starts come from the
//! text and the tokenizer alone, so the search stays valid.
//!
//! The verdict of a detection with a window search stands on a family of two
//! tests, the whole text and the window search, split 1/5 and 4/5 (version
//! 3; 1/2 and 1/2 before): its p-value is the smaller of `5 · p_whole` and
//! `5/4 · p_window`, so a significant window decides the verdict and the
//! family-wise false-positive rate stays at most alpha.

use serde::{Deserialize, Serialize};

use super::observe::{Scored, Scorer};
use crate::error::{Error, Result};
use crate::stats;
use crate::text::Deadline;

/// Options of the window search.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowOptions {
    /// The shortest window, in scored tokens.
    pub min_scored: usize,
    /// Whether runs of whole paragraphs of a text are examined beside the
    /// grid (SPEC §16 v4; the default). `false` gives version 3's search,
    /// the grid alone, for comparisons.
    pub paragraphs: bool,
}

impl Default for WindowOptions {
    fn default() -> Self {
        Self {
            min_scored: 32,
            paragraphs: true,
        }
    }
}

impl WindowOptions {
    /// The default search with the shortest window `min_scored`.
    pub fn with_min_scored(min_scored: usize) -> Self {
        Self {
            min_scored,
            ..Self::default()
        }
    }
}

impl WindowOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.min_scored < 2 {
            return Err(Error::InvalidOption {
                name: "window min_scored",
                message: "a window needs at least 2 scored tokens (32 is a good default)".into(),
            });
        }
        Ok(())
    }
}

/// The most significant window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WindowReport {
    /// First completion token of the window.
    pub start: usize,
    /// One past the last completion token of the window.
    pub end: usize,
    /// Byte range in the input text, when the input was text.
    pub span: Option<(usize, usize)>,
    /// Scored tokens in the window.
    pub scored: usize,
    /// The window's statistic.
    pub statistic: f64,
    /// `log10` of the window's own exact p-value (not corrected).
    pub log10_p_uncorrected: f64,
    /// How many windows were examined.
    pub windows_examined: usize,
    /// The multiple-testing correction applied.
    pub correction: String,
    /// `log10` of the corrected p-value.
    pub log10_p: f64,
    /// The corrected p-value (0 if it underflows `f64`).
    pub p_value: f64,
    /// `log10` of the p-value the verdict stands on when a window is
    /// searched: the smaller of the whole text's p-value times 5 and the
    /// window's corrected p-value times 5/4 (weighted Bonferroni over the
    /// two tests, valid whatever their dependence; SPEC §16).
    pub family_log10_p: f64,
    /// Whether the window, rather than the whole text, gave the family p-value.
    pub decides_verdict: bool,
    /// Which windows were examined, in words (SPEC §16); empty in reports
    /// written before the field existed.
    #[serde(default)]
    pub search: String,
    /// How many paragraph segments (runs of whole paragraphs, SPEC §16 v4)
    /// were examined beside the grid; 0 for ids, for text of one paragraph,
    /// and in reports written before version 4.
    #[serde(default)]
    pub segments_examined: usize,
    /// Whether the reported window is a paragraph segment rather than a grid window.
    #[serde(default)]
    pub paragraphs: bool,
}

/// The window family of SPEC §16, in words (the report's `search` field).
pub(crate) const SEARCH: &str = "dyadic grid and paragraph segments (SPEC §16 v4): at each scale B = min_scored·2^j, windows of B to 2B scored tokens whose starts and lengths are multiples of B/4, weighted 1 at B = 2·min_scored to 16·min_scored and 1/4 at the other scales; for text of several paragraphs, also every run of 1 to 64 whole paragraphs of min_scored to 32·min_scored - 1 scored tokens, weighted equally, the grid and the segments half each; weighted Bonferroni";

/// The whole text's share of alpha in the verdict's family (SPEC §16 v3);
/// the window search has the rest.
pub(crate) const WHOLE_SHARE: f64 = 0.2;

impl WindowReport {
    /// The family p-value in natural log.
    pub(crate) fn family_ln_p(&self) -> f64 {
        self.family_log10_p * core::f64::consts::LN_10
    }

    /// The family correction in words.
    pub fn family_correction(&self) -> &'static str {
        "weighted Bonferroni over 2 tests (the whole text 1/5, the window search 4/5)"
    }
}

/// The grid of the window search: at scale `B` the starts and lengths are
/// multiples of `ceil(B / GRID)` (SPEC §16).
const GRID: usize = 4;

/// The weight of every window of scale `j` (`B = min_scored · 2^j`) in the
/// weighted Bonferroni correction (SPEC §16 v3): 1 for the scales of typical
/// quoted answers (`j = 1..=4`: 64 to 1,023 observations at the default
/// `min_scored`), 1/4 for the shortest scale (the most windows, the least
/// evidence) and for the scales above.
pub(crate) fn scale_weight(j: u32) -> f64 {
    if (1..=4).contains(&j) {
        1.0
    } else {
        0.25
    }
}

/// Calls `f(start, length, j)` for every window of the search over `n`
/// scored observations whose shortest window is `min` (SPEC §16), `j` the
/// window's scale (`B = min · 2^j`), and returns how many there were. The set
/// depends on `n` and `min` only.
fn for_each_window(n: usize, min: usize, mut f: impl FnMut(usize, usize, u32)) -> usize {
    let mut examined = 0;
    let mut base = min.max(1);
    let mut j = 0u32;
    while base <= n {
        let g = base.div_ceil(GRID);
        let mut len = base;
        while len < 2 * base && len <= n {
            let last = n - len;
            let mut start = 0;
            while start <= last {
                f(start, len, j);
                examined += 1;
                start += g;
            }
            if !last.is_multiple_of(g) {
                f(last, len, j);
                examined += 1;
            }
            len += g;
        }
        j += 1;
        match base.checked_mul(2) {
            Some(b) => base = b,
            None => break,
        }
    }
    examined
}

/// The sum `W` of the weights of the windows over `n` observations (SPEC
/// §16 v3): a window of scale `j` is corrected by `W / scale_weight(j)`.
pub(crate) fn total_weight(n: usize, min: usize) -> f64 {
    let mut w = 0.0;
    for_each_window(n, min, |_, _, j| w += scale_weight(j));
    w
}

/// Searches the windows of `scored`; `None` if there are fewer than `min_scored`
/// observations, or once `deadline` has passed (checked every
/// [`CHECK_EVERY`](crate::text::deadline::CHECK_EVERY) windows; the caller turns that into
/// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded)). `whole_ln_p`
/// is the whole text's p-value, which forms the verdict's family with the
/// window search.
pub(crate) fn search(
    scorer: &Scorer,
    scored: &[Scored],
    options: &WindowOptions,
    paragraphs: &[u32],
    whole_ln_p: f64,
    deadline: Deadline,
) -> Option<WindowReport> {
    let n = scored.len();
    if n < options.min_scored {
        return None;
    }
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for s in scored {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + s.score);
    }
    // The paragraph segments (version 4): when there are any, the grid and
    // the segments share the search's weight half and half.
    let bounds = paragraph_bounds(scored, if options.paragraphs { paragraphs } else { &[] });
    let segments = count_segments(&bounds, options.min_scored);
    let ln_half = if segments > 0 { 2f64.ln() } else { 0.0 };
    // The weighted Bonferroni factor of each scale, ln(W / c_j) (and the half).
    let ln_total = total_weight(n, options.min_scored).ln();
    // The null mean of one observation's score: windows at or below their
    // expectation cannot be the most significant unless every window is, so
    // their exact tails (about half of them) are not computed.
    let mean = scorer.test(1, 0.0).expected;
    // (corrected ln p, ln p, start, length, total, a paragraph segment)
    let mut best: Option<(f64, f64, usize, usize, f64, bool)> = None;
    let (mut seen, mut stopped) = (0usize, false);
    // Examines the window `[s, s + l)` whose Bonferroni factor is `ln_factor`.
    let mut consider = |s: usize, l: usize, ln_factor: f64, segment: bool| {
        seen += 1;
        if stopped || deadline.every(seen).is_err() {
            stopped = true;
            return;
        }
        let total = prefix[s + l] - prefix[s];
        if best.is_some() && total <= mean * l as f64 {
            return;
        }
        let ln_p = scorer.test(l as u64, total).ln_p;
        let corrected = ln_p + ln_factor;
        if best.is_none_or(|(b, ..)| corrected < b) {
            best = Some((corrected, ln_p, s, l, total, segment));
        }
    };
    let examined = for_each_window(n, options.min_scored, |s, l, j| {
        consider(s, l, ln_total - scale_weight(j).ln() + ln_half, false);
    });
    let ln_segments = (segments as f64).ln() + ln_half;
    for_each_segment(&bounds, options.min_scored, |s, l| consider(s, l, ln_segments, true));
    if stopped {
        return None;
    }
    let (corrected, ln_p, s, l, total, paragraph) = best?;
    let corrected = corrected.min(0.0);
    let family = (corrected - (1.0 - WHOLE_SHARE).ln())
        .min(whole_ln_p - WHOLE_SHARE.ln())
        .min(0.0);
    Some(WindowReport {
        start: scored[s].position as usize,
        end: scored[s + l - 1].position as usize + 1,
        span: None,
        scored: l,
        statistic: total,
        log10_p_uncorrected: stats::log10(ln_p),
        windows_examined: examined,
        correction: if paragraph {
            format!(
                "weighted Bonferroni: a run of whole paragraphs, 1 of {segments} such segments (weight 1/2 of the search), beside {examined} grid windows (weight 1/2)"
            )
        } else if segments > 0 {
            format!(
                "weighted Bonferroni over {examined} grid windows (total weight {:.1}, this window's {}; weight 1/2 of the search), beside {segments} paragraph segments (weight 1/2)",
                ln_total.exp(),
                scale_weight(scale_of(l, options.min_scored))
            )
        } else {
            format!(
                "weighted Bonferroni over {examined} windows (total weight {:.1}, this window's {})",
                ln_total.exp(),
                scale_weight(scale_of(l, options.min_scored))
            )
        },
        log10_p: stats::log10(corrected),
        p_value: stats::p_from_ln(corrected),
        family_log10_p: stats::log10(family),
        decides_verdict: corrected - (1.0 - WHOLE_SHARE).ln() < whole_ln_p - WHOLE_SHARE.ln(),
        search: SEARCH.to_string(),
        segments_examined: segments,
        paragraphs: paragraph,
    })
}

/// The most paragraphs one segment spans (SPEC §16 v4): bounds the work on
/// texts of many short paragraphs (at most 64 segments per paragraph).
pub(crate) const MAX_SEGMENT_PARAGRAPHS: usize = 64;

/// The observation indices where paragraphs begin (SPEC §16 v4): 0, the
/// index of the first kept observation at or after each paragraph's first
/// token, and `n`, sorted, each once (a paragraph without kept observations
/// adds no bound).
fn paragraph_bounds(scored: &[Scored], paragraphs: &[u32]) -> Vec<usize> {
    let n = scored.len();
    let mut bounds = Vec::with_capacity(paragraphs.len() + 2);
    bounds.push(0);
    for &p in paragraphs {
        bounds.push(scored.partition_point(|s| s.position < p));
    }
    bounds.push(n);
    bounds.sort_unstable();
    bounds.dedup();
    bounds
}

/// Calls `f(start, length)` for every paragraph segment (SPEC §16 v4): the
/// runs of 1 to [`MAX_SEGMENT_PARAGRAPHS`] consecutive paragraphs (between
/// two of `bounds`) of `min` to `32 · min - 1` observations, except the
/// whole text (the family's other test).
fn for_each_segment(bounds: &[usize], min: usize, mut f: impl FnMut(usize, usize)) {
    let (n, max) = (bounds.last().copied().unwrap_or(0), min.saturating_mul(32));
    for (a, &s) in bounds.iter().enumerate() {
        for &e in bounds.iter().skip(a + 1).take(MAX_SEGMENT_PARAGRAPHS) {
            let l = e - s;
            if l >= max {
                break;
            }
            if l >= min && !(s == 0 && e == n) {
                f(s, l);
            }
        }
    }
}

/// How many paragraph segments there are: the Bonferroni factor of each.
fn count_segments(bounds: &[usize], min: usize) -> usize {
    let mut k = 0;
    for_each_segment(bounds, min, |_, _| k += 1);
    k
}

/// The byte offsets where the paragraphs of `text` after the first begin
/// (SPEC §16 v4): the first character that is not white space after a line
/// (`\n`-terminated) that is empty or white space only; the text's first
/// paragraph starts at 0 and is not listed.
pub(crate) fn paragraph_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let (mut seen_text, mut blank_before) = (false, false);
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        match line.find(|c: char| !c.is_whitespace()) {
            None => blank_before = true,
            Some(i) => {
                if seen_text && blank_before {
                    starts.push(offset + i);
                }
                seen_text = true;
                blank_before = false;
            }
        }
        offset += line.len();
    }
    starts
}

/// The scale `j` of a window of `len` observations (`min · 2^j <= len < min · 2^(j+1)`).
fn scale_of(len: usize, min: usize) -> u32 {
    let mut j = 0;
    let mut base = min.max(1);
    while base.saturating_mul(2) <= len {
        base *= 2;
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use tracemark_core::{Key, SchemeConfig};

    use super::*;

    fn scorer(scheme: &str) -> Scorer {
        let config: SchemeConfig = scheme.parse().expect("scheme");
        let key = Key::from_bytes([0x3c; 32]); // a fixed test key: only the null distribution is used
        Scorer::new(config.build(&key, 1000).expect("scheme").as_ref()).expect("scorer")
    }

    fn observations(scores: impl IntoIterator<Item = f64>) -> Vec<Scored> {
        scores
            .into_iter()
            .enumerate()
            .map(|(i, score)| Scored {
                position: i as u32,
                context_key: i as u64,
                seed: i as u64,
                token: 0,
                score,
            })
            .collect()
    }

    /// SPEC §16's coverage claim: each end of any span of `S >= min` scored
    /// observations is within `ceil(B / 4)` of an examined window's end
    /// (`B` the largest scale at most `S`), by brute force over every span.
    #[test]
    fn every_span_has_an_examined_window_close_to_it() {
        for (n, min) in [(200, 8), (157, 5), (64, 32)] {
            let mut windows = Vec::new();
            let examined = for_each_window(n, min, |s, l, _| windows.push((s, s + l)));
            assert_eq!(examined, windows.len());
            assert!(windows.iter().all(|&(s, e)| e <= n && e - s >= min));
            for s in 0..n {
                for e in s + min..=n {
                    let len = e - s;
                    let mut base = min;
                    while base * 2 <= len {
                        base *= 2;
                    }
                    let g = base.div_ceil(GRID);
                    let off = windows
                        .iter()
                        .map(|&(a, b)| a.abs_diff(s).max(b.abs_diff(e)))
                        .min()
                        .expect("windows");
                    assert!(
                        off <= g,
                        "n {n}, min {min}: span {s}..{e} is {off} from every window (g {g})"
                    );
                }
            }
        }
    }

    /// About `2 · 4² · n / min` windows, whatever the scores.
    #[test]
    fn the_number_of_windows_follows_n_and_min_only() {
        for (n, min) in [(2_000usize, 32usize), (20_000, 32), (5_000, 64)] {
            let examined = for_each_window(n, min, |_, _, _| {});
            let expected = 32.0 * n as f64 / min as f64;
            let ratio = examined as f64 / expected;
            assert!((0.75..=1.1).contains(&ratio), "n {n}, min {min}: {examined} windows");
        }
        assert_eq!(for_each_window(10, 32, |_, _, _| {}), 0);
        let s = scorer("kgw:gamma=0.25,delta=2,context=lefthash:1");
        let a = search(
            &s,
            &observations(vec![0.0; 300]),
            &WindowOptions::default(),
            &[],
            0.0,
            Deadline::NONE,
        )
        .expect("window");
        let b = search(
            &s,
            &observations(vec![1.0; 300]),
            &WindowOptions::default(),
            &[],
            0.0,
            Deadline::NONE,
        )
        .expect("window");
        assert_eq!(a.windows_examined, b.windows_examined);
    }

    /// A search past its deadline stops at its next look at the clock and
    /// reports nothing; without a deadline the same search runs to its end.
    #[test]
    fn a_search_past_its_deadline_stops() {
        let s = scorer("kgw:gamma=0.25,delta=2,context=lefthash:1");
        let scores = observations(vec![1.0; 4_000]);
        let past = Deadline::after(std::time::Duration::ZERO);
        assert!(past.is_past());
        assert!(search(&s, &scores, &WindowOptions::default(), &[], 0.0, past).is_none());
        let w = search(&s, &scores, &WindowOptions::default(), &[], 0.0, Deadline::NONE).expect("window");
        assert!(w.windows_examined > crate::text::deadline::CHECK_EVERY);
    }

    /// Under the null (independent scores from the scheme's null distribution)
    /// the corrected window p-value is conservative: over 2,000 documents of
    /// 600 observations per scheme (fixed seed), the rate at which it is at
    /// most 0.05 stays below 0.05 plus 3 binomial standard deviations.
    #[test]
    fn the_corrected_p_value_is_conservative_under_the_null() {
        let docs = 2_000;
        for (scheme, kgw) in [
            ("kgw:gamma=0.25,delta=2,context=lefthash:1", true),
            ("gumbel:temperature=1,context=lefthash:4", false),
        ] {
            let s = scorer(scheme);
            let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0015);
            let mut hits = 0usize;
            for _ in 0..docs {
                let scores = (0..600).map(|_| {
                    let u: f64 = rng.random();
                    if kgw {
                        f64::from(u8::from(u < 0.25))
                    } else {
                        -(1.0 - u).ln()
                    }
                });
                let w = search(
                    &s,
                    &observations(scores),
                    &WindowOptions::default(),
                    &[],
                    0.0,
                    Deadline::NONE,
                )
                .expect("window");
                hits += usize::from(w.log10_p <= 0.05f64.log10());
            }
            let bound = 0.05 + 3.0 * (0.05 * 0.95 / docs as f64).sqrt();
            assert!(
                (hits as f64 / docs as f64) <= bound,
                "{scheme}: {hits} of {docs} null documents at corrected p <= 0.05"
            );
        }
    }

    /// A watermarked run inside null observations is found where it is: the
    /// window's own p-value keeps at least 80% of the run's evidence (ends on
    /// the grid of `B / 4`), and the correction is exactly the Bonferroni factor.
    #[test]
    fn a_pasted_run_is_found_where_it_is() {
        let s = scorer("kgw:gamma=0.25,delta=2,context=lefthash:1");
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0016);
        let scores: Vec<f64> = (0..3_000)
            .map(|i| {
                let green = if (1_300..1_450).contains(&i) { 0.7 } else { 0.25 };
                f64::from(u8::from(rng.random::<f64>() < green))
            })
            .collect();
        let run_total: f64 = scores[1_300..1_450].iter().sum();
        let run_ln_p = s.test(150, run_total).ln_p;
        let w = search(
            &s,
            &observations(scores),
            &WindowOptions::default(),
            &[],
            0.0,
            Deadline::NONE,
        )
        .expect("window");
        assert!(
            w.start.abs_diff(1_300) <= 20 && w.end.abs_diff(1_450) <= 20,
            "{}..{}",
            w.start,
            w.end
        );
        assert!(
            w.log10_p_uncorrected <= 0.8 * stats::log10(run_ln_p),
            "window {} ({}..{}), run {}",
            w.log10_p_uncorrected,
            w.start,
            w.end,
            stats::log10(run_ln_p)
        );
        // The weighted Bonferroni factor W / c_j of the window's scale (150
        // observations: scale 2, weight 1).
        let factor = (total_weight(3_000, 32) / scale_weight(scale_of(w.scored, 32))).log10();
        assert!((w.log10_p - w.log10_p_uncorrected - factor).abs() < 1e-9);
        assert_eq!(scale_of(w.scored, 32), 2);
        assert!(w.decides_verdict);
        assert!((w.family_log10_p - w.log10_p - 1.25f64.log10()).abs() < 1e-9);
        assert!(w.search.contains("SPEC §16"));
    }

    /// SPEC §16 v3's weights: 1 at scales 1 to 4, 1/4 elsewhere, and the
    /// factor of a window is `W / c_j`, so the factors' reciprocals sum to 1
    /// (a weighted Bonferroni); with `min = 32` the preferred scales pay
    /// about 0.2 decades less than version 2's `log10(windows)`.
    #[test]
    fn the_weights_sum_to_one_and_favour_typical_answers() {
        assert_eq!(
            (0..8).map(scale_weight).collect::<Vec<_>>(),
            [0.25, 1.0, 1.0, 1.0, 1.0, 0.25, 0.25, 0.25]
        );
        for (n, min) in [(2_000usize, 32usize), (20_000, 32), (157, 5)] {
            let w = total_weight(n, min);
            let mut shares = 0.0;
            let mut count = 0usize;
            for_each_window(n, min, |_, l, j| {
                assert_eq!(scale_of(l, min), j);
                shares += scale_weight(j) / w;
                count += 1;
            });
            assert!((shares - 1.0).abs() < 1e-9, "n {n}: shares sum to {shares}");
            if min == 32 {
                let gain = (count as f64).log10() - w.log10();
                assert!((0.15..0.3).contains(&gain), "n {n}: {gain} decades");
            }
        }
    }

    /// The null with a closed-form expectation: gumbel scores are continuous
    /// and each window's tail is exact, so a window of scale `j` has
    /// p-value at most `a · c_j / W` with probability exactly `a · c_j / W`,
    /// and the expected number of windows rejected per document is exactly
    /// `a` (linearity, whatever the dependence). Over 400 null documents of
    /// 600 observations (fixed seed), the mean count is within 4 standard
    /// errors of `a = 0.05`; the share of documents whose corrected window
    /// p-value and family p-value (whole text included) are at most `a` is
    /// at most `a` plus 3 binomial standard deviations, and is exactly the
    /// share with at least one rejected window.
    #[test]
    fn the_weighted_correction_has_its_closed_form_expectation_under_the_null() {
        let s = scorer("gumbel:temperature=1,context=lefthash:4");
        let (docs, n, a) = (400usize, 600usize, 0.05f64);
        let w = total_weight(n, 32);
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0017);
        let mut counts = Vec::with_capacity(docs);
        let (mut any, mut window_hits, mut family_hits) = (0usize, 0usize, 0usize);
        for _ in 0..docs {
            let scores: Vec<f64> = (0..n).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
            let mut prefix = vec![0.0];
            for x in &scores {
                prefix.push(prefix.last().copied().unwrap_or(0.0) + x);
            }
            let mut rejected = 0usize;
            for_each_window(n, 32, |st, l, j| {
                let ln_p = s.test(l as u64, prefix[st + l] - prefix[st]).ln_p;
                rejected += usize::from(ln_p <= (a * scale_weight(j) / w).ln());
            });
            counts.push(rejected as f64);
            any += usize::from(rejected > 0);
            let whole = s.test(n as u64, prefix[n]).ln_p;
            let r = search(
                &s,
                &observations(scores),
                &WindowOptions::default(),
                &[],
                whole,
                Deadline::NONE,
            )
            .expect("window");
            window_hits += usize::from(r.log10_p <= a.log10());
            family_hits += usize::from(r.family_log10_p <= a.log10());
        }
        let mean = counts.iter().sum::<f64>() / docs as f64;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (docs - 1) as f64;
        let se = (var / docs as f64).sqrt();
        assert!(
            (mean - a).abs() <= 4.0 * se,
            "mean rejections {mean} (se {se}), expected {a}"
        );
        assert_eq!(
            any, window_hits,
            "the corrected p-value is the smallest corrected window p-value"
        );
        let bound = a + 3.0 * (a * (1.0 - a) / docs as f64).sqrt();
        for (what, hits) in [("window", window_hits), ("family", family_hits)] {
            assert!(
                hits as f64 / docs as f64 <= bound,
                "{what}: {hits} of {docs} null documents at p <= {a}"
            );
        }
    }

    /// SPEC §16 v4's paragraphs: a paragraph begins at the first character
    /// that is not white space after a blank line (empty or white space
    /// only, `\r\n` included); the first paragraph is not listed, and
    /// blank lines at the start or the end add nothing.
    #[test]
    fn paragraphs_begin_after_blank_lines() {
        let text = "\n\nFirst line\nsecond line\n\nSecond\r\n \t\r\n  Third\n\n\n";
        let starts = paragraph_starts(text);
        let words: Vec<&str> = starts.iter().map(|&i| &text[i..i + 5]).collect();
        assert_eq!(words, ["Secon", "Third"]);
        assert!(paragraph_starts("one paragraph\nof two lines\n").is_empty());
        assert!(paragraph_starts("").is_empty());
        assert_eq!(paragraph_starts("a\n\nb\n\n\u{2003}c"), [3, 9]);
    }

    /// The segments are the runs of whole paragraphs of `min` to
    /// `32·min - 1` observations other than the whole text, each once, and
    /// a paragraph without kept observations adds no bound.
    #[test]
    fn the_segments_are_runs_of_whole_paragraphs() {
        let scored = observations(vec![0.0; 100]);
        // Paragraphs begin at tokens 10, 10 (twice), 30, 60 and past the end.
        let bounds = paragraph_bounds(&scored, &[10, 10, 30, 60, 500]);
        assert_eq!(bounds, [0, 10, 30, 60, 100]);
        let mut segs = Vec::new();
        for_each_segment(&bounds, 20, |s, l| segs.push((s, s + l)));
        assert_eq!(
            segs,
            [
                (0, 30),
                (0, 60),
                (10, 30),
                (10, 60),
                (10, 100),
                (30, 60),
                (30, 100),
                (60, 100)
            ]
        );
        assert_eq!(count_segments(&bounds, 20), 8);
        // Lengths of 32·min and more are left to the grid.
        let mut long = Vec::new();
        for_each_segment(&bounds, 2, |s, l| long.push((s, s + l)));
        assert!(long.iter().all(|&(s, e)| e - s < 64) && long.contains(&(60, 100)));
        assert!(!long.contains(&(0, 100)));
        // One paragraph, or paragraphs switched off: no segments, version 3.
        assert_eq!(count_segments(&paragraph_bounds(&scored, &[]), 20), 0);
    }

    /// A watermarked run that is a paragraph of its own is found exactly,
    /// with the factor `2 · S` (S segments, half the search's weight), and
    /// the grid alone (paragraphs off) pays for its alignment instead.
    #[test]
    fn a_pasted_paragraph_is_found_exactly() {
        let s = scorer("kgw:gamma=0.25,delta=2,context=lefthash:1");
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0018);
        let scores: Vec<f64> = (0..3_000)
            .map(|i| {
                let green = if (1_310..1_455).contains(&i) { 0.6 } else { 0.25 };
                f64::from(u8::from(rng.random::<f64>() < green))
            })
            .collect();
        let run_ln_p = s.test(145, scores[1_310..1_455].iter().sum()).ln_p;
        let paragraphs: Vec<u32> = (1..30).map(|k| 97 * k).chain([1_310, 1_455]).collect();
        let obs = observations(scores);
        let w = search(&s, &obs, &WindowOptions::default(), &paragraphs, 0.0, Deadline::NONE).expect("window");
        assert!(
            w.paragraphs && (w.start, w.end) == (1_310, 1_455),
            "{}..{}",
            w.start,
            w.end
        );
        assert!((w.log10_p_uncorrected - stats::log10(run_ln_p)).abs() < 1e-9);
        let bounds = paragraph_bounds(&obs, &paragraphs);
        assert_eq!(w.segments_examined, count_segments(&bounds, 32));
        let factor = (2.0 * w.segments_examined as f64).log10();
        assert!((w.log10_p - w.log10_p_uncorrected - factor).abs() < 1e-9);
        assert!(w.correction.contains("whole paragraphs"));
        let grid = WindowOptions {
            paragraphs: false,
            ..WindowOptions::default()
        };
        let v3 = search(&s, &obs, &grid, &paragraphs, 0.0, Deadline::NONE).expect("window");
        assert!(!v3.paragraphs && v3.segments_examined == 0);
        assert!(
            w.log10_p < v3.log10_p,
            "v4 {} against the grid's {}",
            w.log10_p,
            v3.log10_p
        );
    }

    /// Version 4's closed form: with paragraphs (drawn apart from the
    /// scores), a grid window of scale `j` rejects at `a · c_j / (2W)` and a
    /// segment at `a / (2S)`, so the expected number of rejections per null
    /// document is exactly `a`; the reported window is rejected exactly when
    /// any is, and the share of such documents is at most `a` (fixed seed,
    /// 1,000 gumbel documents of 600 observations, `a = 0.5`, 4 standard
    /// errors and 3 binomial standard deviations).
    #[test]
    fn paragraph_segments_keep_the_closed_form_expectation_under_the_null() {
        let s = scorer("gumbel:temperature=1,context=lefthash:4");
        // A large `a`, so that documents with rejections (which come in
        // clusters of overlapping windows) are common enough for the
        // sample's standard error to mean something.
        let (docs, n, a) = (1_000usize, 600usize, 0.5f64);
        let w = total_weight(n, 32);
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0019);
        let (mut counts, mut any, mut window_hits) = (Vec::with_capacity(docs), 0usize, 0usize);
        for _ in 0..docs {
            let scores: Vec<f64> = (0..n).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
            let mut paragraphs = Vec::new();
            let mut at = 0u32;
            loop {
                at += rng.random_range(5..120);
                if at as usize >= n {
                    break;
                }
                paragraphs.push(at);
            }
            let obs = observations(scores.clone());
            let bounds = paragraph_bounds(&obs, &paragraphs);
            let segments = count_segments(&bounds, 32) as f64;
            let mut prefix = vec![0.0];
            for x in &scores {
                prefix.push(prefix.last().copied().unwrap_or(0.0) + x);
            }
            let mut rejected = 0usize;
            for_each_window(n, 32, |st, l, j| {
                let ln_p = s.test(l as u64, prefix[st + l] - prefix[st]).ln_p;
                rejected += usize::from(ln_p <= (a * scale_weight(j) / (2.0 * w)).ln());
            });
            for_each_segment(&bounds, 32, |st, l| {
                let ln_p = s.test(l as u64, prefix[st + l] - prefix[st]).ln_p;
                rejected += usize::from(ln_p <= (a / (2.0 * segments)).ln());
            });
            assert!(segments > 0.0);
            counts.push(rejected as f64);
            any += usize::from(rejected > 0);
            let r = search(&s, &obs, &WindowOptions::default(), &paragraphs, 0.0, Deadline::NONE).expect("window");
            window_hits += usize::from(r.log10_p <= a.log10());
        }
        let mean = counts.iter().sum::<f64>() / docs as f64;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (docs - 1) as f64;
        let se = (var / docs as f64).sqrt();
        assert!(
            (mean - a).abs() <= 4.0 * se,
            "mean rejections {mean} (se {se}), expected {a}"
        );
        assert_eq!(any, window_hits);
        let bound = a + 3.0 * (a * (1.0 - a) / docs as f64).sqrt();
        assert!(window_hits as f64 / docs as f64 <= bound, "{window_hits} of {docs}");
    }
}
