//! The terminal form of the evidence: a detection's verdict, its marked text
//! and its tests, an attribution, a scan's summary, as the CLI and the demo
//! print them (ANSI colour optional). The HTML page and the sealed JSON of
//! [`super::report`] carry the same facts for people who were not at the terminal.

use core::fmt::Write as _;

use crate::corpus::{Attribution, KeyResult, KeyringDetection, ScanSummary};
use crate::detect::layered::{Layer, LayeredVerdict};
use crate::detect::semantic::{SemanticDetection, SemanticOutcome, SentenceStatus};
use crate::detect::{Detection, ForgeryTest, Mark, Outcome, TokenStatus, Verdict};
use crate::text::canonical::CanonicalReport;

const GREEN: &str = "\x1b[42;30m";
const RED: &str = "\x1b[41;30m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// A p-value from its `log10`, readable at any size: `3.162e-45`, or
/// `10^-2000.37` below the range of `f64`.
pub fn p_value(log10_p: f64) -> String {
    if log10_p > -300.0 {
        format!("{:.4e}", 10f64.powf(log10_p))
    } else {
        format!("10^{log10_p:.2}")
    }
}

fn paint(s: &str, style: &str, color: bool) -> String {
    if color {
        format!("{style}{s}{RESET}")
    } else {
        s.to_string()
    }
}

/// The report of one detection. With `text` (the input the marks' spans point
/// into) and `color`, the text is printed with scored tokens highlighted:
/// green for tokens that count for the watermark, red for those that count
/// against, dim for tokens not scored.
pub fn detection(d: &Detection, text: Option<&str>, color: bool) -> String {
    let mut out = String::new();
    let verdict = match (d.verdict, d.verdict_log10_p()) {
        (Verdict::Inconclusive, _) => paint(&d.verdict.to_string(), BOLD, color),
        (v, Some(l)) => {
            let cmp = if v == Verdict::Detected { "<" } else { ">=" };
            let style = if v == Verdict::Detected { GREEN } else { BOLD };
            format!(
                "{} (p = {} {cmp} alpha = {:e})",
                paint(&v.to_string(), style, color),
                p_value(l),
                d.alpha
            )
        }
        (v, None) => v.to_string(),
    };
    let _ = writeln!(out, "verdict    {verdict}");
    if let Some(e) = d.evidence() {
        let _ = writeln!(out, "evidence   {e}");
    }
    match &d.scheme_source {
        Some(src) => {
            let _ = writeln!(out, "scheme     {}  (spec {}; from {})", d.scheme, d.spec, src.origin);
            if let Some(w) = &src.warning {
                let _ = writeln!(out, "{}", paint(&format!("WARNING    {w}"), BOLD, color));
            }
        }
        None => {
            let _ = writeln!(out, "scheme     {}  (spec {})", d.scheme, d.spec);
        }
    }
    let _ = writeln!(out, "key id     {}", d.key_id);
    if let Some(t) = &d.tokenizer {
        let _ = writeln!(out, "tokenizer  {} (vocab {})", t.fingerprint, t.vocab_size);
    }
    if let Some(h) = &d.input_sha256 {
        let _ = writeln!(out, "input      {h}");
    }
    let c = &d.counts;
    let _ = write!(
        out,
        "tokens     {} seen, {} scored, {} repeated (dedup {}), {} without enough context",
        c.seen, c.scored, c.skipped_duplicate, d.dedup, c.skipped_short_context
    );
    if c.prompt > 0 {
        let _ = write!(out, "; {} prompt tokens as context", c.prompt);
    }
    if c.skipped_by_filter > 0 {
        let _ = write!(out, "; {} outside the context filter", c.skipped_by_filter);
    }
    out.push('\n');
    match &d.outcome {
        Outcome::Tested { test: t, log10_p, .. } => {
            let _ = writeln!(
                out,
                "test       {}: {} observed, {:.2} expected under {}; z = {:.2} (informational)",
                t.name, t.statistic, t.expected, t.null_distribution, t.z_score
            );
            let _ = writeln!(
                out,
                "p-value    {} (log10 p = {log10_p:.3}), whole text",
                p_value(*log10_p)
            );
        }
        Outcome::Inconclusive { reason } => {
            let _ = writeln!(out, "reason     {reason}");
        }
    }
    if let Some(w) = &d.window {
        let _ = writeln!(
            out,
            "window     tokens {}..{} ({} scored): p = {} after {} (uncorrected {})",
            w.start,
            w.end,
            w.scored,
            p_value(w.log10_p),
            w.correction,
            p_value(w.log10_p_uncorrected)
        );
        let _ = writeln!(
            out,
            "family     p = {} after {}; the {} stands on it (decided by the {})",
            p_value(w.family_log10_p),
            w.family_correction(),
            if d.layered.is_some() { "token layer" } else { "verdict" },
            if w.decides_verdict { "window" } else { "whole text" }
        );
    }
    if let Some(why) = &d.window_skipped {
        let _ = writeln!(out, "window     {why}");
    }
    if let Some(c) = &d.canonical {
        out.push_str(&canonical(c));
    }
    if let Some(f) = &d.forgery {
        out.push_str(&forgery(d, f));
    }
    if let Some(s) = &d.semantic {
        out.push_str(&semantic(s, d.layered.as_ref()));
    }
    if d.verdict == Verdict::NotDetected {
        let _ = writeln!(out, "check      if you expected a detection:");
        for item in d.checklist() {
            let _ = writeln!(out, "           - {item}");
        }
    }
    let _ = writeln!(out, "tool       {}", d.tool);
    if let (Some(text), Some(marks)) = (text, &d.marks) {
        out.push('\n');
        out.push_str(&highlight(d, text, marks, color));
        out.push('\n');
    }
    if let (Some(text), Some(s)) = (text, &d.semantic) {
        out.push('\n');
        out.push_str(&sentences(s, text, color));
    }
    out
}

/// The semantic layer's test and the layered verdict (SPEC §15.3-15.4).
fn semantic(s: &SemanticDetection, layered: Option<&LayeredVerdict>) -> String {
    let c = &s.counts;
    let mut out = format!(
        "semantic   {} (key id {}): {} of {} sentences scored, {} short, {} in a region already counted; \
         {} of {} distinct regions green\n",
        s.scheme,
        s.key_id,
        c.scored,
        c.sentences,
        c.short,
        c.scored - c.distinct,
        c.green,
        c.distinct
    );
    match &s.outcome {
        SemanticOutcome::Tested { null, log10_p, .. } => {
            let _ = writeln!(
                out,
                "           exact test under {null}: p = {} (log10 p = {log10_p:.3})",
                p_value(*log10_p)
            );
        }
        SemanticOutcome::Inconclusive { reason } => {
            let _ = writeln!(out, "           not tested: {reason}");
        }
    }
    if let Some(l) = layered {
        let p = |x: Option<f64>| x.map_or_else(|| "untested".to_string(), p_value);
        let by = match l.decided_by {
            Some(Layer::Token) => "; decided by the token layer",
            Some(Layer::Semantic) => "; decided by the semantic layer",
            None => "",
        };
        let _ = writeln!(
            out,
            "layered    token p = {}, semantic p = {}: p = {} after {}; the verdict stands on it{by}",
            p(l.token_log10_p),
            p(l.semantic_log10_p),
            p(l.log10_p),
            l.correction()
        );
    }
    out
}

/// The sentences of the text, one a line: `+` green region, `-` red, `=` a
/// region already counted, `.` too short to score (coloured when `color`).
fn sentences(s: &SemanticDetection, text: &str, color: bool) -> String {
    let mut out = String::from("sentences  + green region, - not green, = region already counted, . too short\n");
    for sentence in &s.sentences {
        let span = sentence.span.clone();
        let Some(t) = text.get(span) else { continue };
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let (mark, style) = match sentence.status {
            SentenceStatus::Scored { green: true, .. } => ('+', GREEN),
            SentenceStatus::Scored { green: false, .. } => ('-', RED),
            SentenceStatus::Repeated { .. } => ('=', DIM),
            SentenceStatus::Short => ('.', DIM),
        };
        let _ = writeln!(out, "  {mark} {}", paint(&t, style, color));
    }
    out
}

/// The spoof-artifact test and what it says about the verdict.
fn forgery(d: &Detection, f: &ForgeryTest) -> String {
    let share = |k: usize, n: usize| if n == 0 { 0.0 } else { 100.0 * k as f64 / n as f64 };
    let mut out = format!(
        "forgery    spoof-artifact test: {} of {} observations common in the reference ({} documents, pairs seen {}+ times) are hits ({:.0}%), \
         {} of {} elsewhere ({:.0}%); p = {} (one-sided Fisher exact)\n",
        f.dense_hits,
        f.dense,
        f.reference_documents,
        f.dense_at,
        share(f.dense_hits, f.dense),
        f.sparse_hits,
        f.sparse,
        share(f.sparse_hits, f.sparse),
        p_value(f.log10_p)
    );
    let verdict = if d.looks_forged() {
        format!(
            "LOOKS FORGED: the watermark sits where a spoofer could have learned it (p <= {:e}); treat the detection as a possible forgery",
            f.alpha
        )
    } else if f.artifact {
        "the artifact is present, but the watermark was not detected".to_string()
    } else {
        format!("no sign of forgery at {:e}", f.alpha)
    };
    let _ = writeln!(out, "           {verdict}");
    out
}

/// `n` and the noun, singular or plural: `1 character`, `3 characters`.
pub(crate) fn count_noun(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What canonicalisation changed, in one sentence: normalisation that
/// ordinary software does (a byte-order mark, decomposed accents) apart
/// from the changes tampering would make.
pub(crate) fn change_sentence(s: &crate::ChangeSummary) -> String {
    let tampering = s.total - s.normalisation.min(s.total);
    let mut out = format!(
        "{} changed (canonical form v{}, Unicode {}): {} invisible removed, {} whitespace made plain, {} compatibility folded, \
         {} look-alike mapped back",
        count_noun(s.total, "character", "characters"),
        s.canonical_version,
        s.unicode_version,
        s.invisible,
        s.whitespace,
        s.compatibility,
        s.confusable
    );
    // The kinds of canonical form v2, named only when they occur.
    for (n, what) in [
        (s.blank, "blank-looking characters made spaces"),
        (s.spacing, "runs of spaces or tabs made one space"),
        (
            s.lookalike,
            "Latin look-alikes (small capitals, IPA letters) mapped back",
        ),
        (s.mark, "combining marks the text's languages do not use removed"),
        (
            s.bidi_override,
            "characters of bidi-reversed runs put back in reading order",
        ),
    ] {
        if n > 0 {
            out.push_str(&format!(", {n} {what}"));
        }
    }
    out.push('.');
    if s.normalisation > 0 {
        out.push_str(&format!(
            " {} normalisation that ordinary software does (a leading byte-order mark, decomposed \
             accents recomposed), not tampering.",
            if s.normalisation == s.total {
                "All are".to_string()
            } else {
                format!("{} of them are", s.normalisation)
            }
        ));
    }
    if tampering > 0 {
        out.push_str(&format!(
            " {} of the kind tampering makes: text a model wrote rarely needs many, so tampering is itself evidence.",
            count_noun(tampering, "change is", "changes are")
        ));
    }
    out
}

/// What canonicalisation changed, and the tests of both forms.
fn canonical(c: &CanonicalReport) -> String {
    let mut out = String::new();
    let s = &c.changes;
    if s.total == 0 {
        let _ = writeln!(
            out,
            "canonical  no changes: the text is in canonical form (Unicode {})",
            s.unicode_version
        );
        return out;
    }
    let _ = writeln!(out, "canonical  {}", change_sentence(s));
    for k in s.characters.iter().take(6) {
        let to = if k.to.is_empty() { "removed" } else { &k.to };
        let _ = writeln!(out, "           {} {} -> {to}  x{}", k.kind, k.from, k.count);
    }
    if s.characters.len() > 6 {
        let _ = writeln!(
            out,
            "           ... {} more kinds of change (all listed in --json)",
            s.characters.len() - 6
        );
    }
    if let (Some(first), Some(last)) = (s.listed.first(), s.listed.last()) {
        let more = if s.total > s.listed.len() {
            " (first listed)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "           at bytes {}..{} to {}..{}{more}",
            first.span.0, first.span.1, last.span.0, last.span.1
        );
    }
    let forms: Vec<String> = c
        .forms
        .iter()
        .map(|f| match f.log10_p {
            Some(l) => format!("{} p = {}", f.form, p_value(l)),
            None => format!("{} inconclusive", f.form),
        })
        .collect();
    let family = c.family_log10_p.map_or_else(|| "inconclusive".to_string(), p_value);
    let _ = writeln!(
        out,
        "forms      {}; the verdict stands on the smaller times {} = {family} (Bonferroni; decided by the {} form)",
        forms.join(", "),
        c.forms.len(),
        c.decided_by
    );
    out
}

fn highlight(d: &Detection, text: &str, marks: &[Mark], color: bool) -> String {
    // A score counts for the watermark when it is above its null mean (the
    // test's expectation per scored token); untested scores count for neither.
    let mean = d
        .outcome
        .test()
        .map_or(f64::INFINITY, |t| t.expected / d.counts.scored.max(1) as f64);
    let mut out = String::with_capacity(text.len() * 2);
    let mut at = 0;
    for m in marks {
        let Some((start, end)) = m.span else { continue };
        if start < at || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[at..start]);
        let piece = &text[start..end];
        if color {
            let style = match m.status {
                TokenStatus::Scored if m.score > mean => GREEN,
                TokenStatus::Scored if mean.is_finite() => RED,
                _ => DIM,
            };
            out.push_str(&paint(piece, style, true));
        } else {
            out.push_str(piece);
        }
        at = end;
    }
    out.push_str(&text[at.min(text.len())..]);
    out
}

/// A keyring result, one line per key.
pub fn keyring(k: &KeyringDetection, color: bool) -> String {
    family(&k.keys, &k.correction, k.alpha, k.best, color)
}

/// A cohort attribution, one line per key, then the cohorts named.
pub fn attribution(a: &Attribution, color: bool) -> String {
    let mut out = family(&a.keys, &a.correction, a.alpha, None, color);
    let named = if a.named.is_empty() {
        "none".to_string()
    } else {
        a.named.join(", ")
    };
    let _ = writeln!(out, "named: {named}");
    out
}

/// One line per key of a family of tests.
fn family(keys: &[KeyResult], correction: &str, alpha: f64, best: Option<usize>, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "keyring    {correction}; family-wise alpha = {alpha:e}");
    for (i, key) in keys.iter().enumerate() {
        let p = match &key.tested {
            Some(t) => format!("{}, adjusted {}", p_value(t.log10_p), p_value(t.log10_p_adjusted)),
            None => "inconclusive".to_string(),
        };
        let mark = if key.detected() {
            paint("DETECTED", GREEN, color)
        } else {
            "-".to_string()
        };
        let best = if best == Some(i) { " (best match)" } else { "" };
        let _ = writeln!(out, "  {:<24} {}  p = {p}  {mark}{best}", key.label, key.key_id);
    }
    out
}

/// The summary of a scan.
pub fn scan_summary(s: &ScanSummary, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "documents  {} ({} detected, {} not detected, {} inconclusive, {} errors)",
        s.documents, s.detected, s.not_detected, s.inconclusive, s.errors
    );
    let _ = writeln!(out, "corpus     {}", s.corpus_sha256);
    let _ = writeln!(out, "aggregate test over all documents, deduplicated across documents:");
    out.push_str(&detection(&s.aggregate, None, color));
    out
}
