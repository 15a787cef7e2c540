//! Reports for people who were not in the room: one self-contained HTML file
//! and the JSON it is made from, for a detection, a keyring, a corpus scan or
//! a radioactivity test.
//!
//! A [`Report`] holds the full result of the test (the same structures as the
//! CLI's `--json`), the input's text when there was one (so that every scored
//! token can be shown), what was tested in words, the command that reproduces
//! it, and its own SHA-256 ([`Report::seal`]). [`html`] renders it through a
//! template (minijinja, HTML auto-escaping): the verdict and what it does and
//! does not mean, the p-value with its exact test and its size in words, the
//! text with each token marked, the most significant window, what
//! canonicalisation changed, and the facts that make it reproducible. Nothing
//! in the page is fetched: styles and the few lines of script are inline.
//!
//! ```
//! use tracemark_core::{Key, SchemeConfig};
//! use tracemark_verifier::report::{self, Report, Subject};
//! use tracemark_verifier::{DetectOptions, Detector};
//!
//! let key = Key::generate()?;
//! let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse()?;
//! let options = DetectOptions { marks: true, ..DetectOptions::default() };
//! let detector = Detector::new(&key, &config, 1000, options)?;
//! let ids: Vec<u32> = (0..200).map(|i| (i * 37 % 1000) as u32).collect();
//! let detection = detector.detect_ids(&[], &ids)?;
//!
//! let subject = Subject::of_bytes("ids.txt", b"...");
//! let mut r = Report::detection(detection, None, subject, "tracemark detect ...".into());
//! r.seal()?;
//! assert!(r.check_seal()?);
//! let page = report::html(&r)?;
//! assert!(page.contains("id=\"verdict\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use minijinja::{context, AutoEscape, Environment, Value};
use serde::{Deserialize, Serialize};

use super::receipt::Timestamp;
use super::render::p_value;
use crate::corpus::{Attribution, DocResult, KeyResult, KeyringDetection, ScanSummary};
use crate::detect::{Detection, Mark, Outcome, Strength, TokenStatus, Verdict};
use crate::error::{Error, Result};
use crate::text::sha256_hex;

/// The format tag of every report this version writes.
pub const FORMAT: &str = "tracemark-report/1";

/// Documents listed one by one in a scan report; the counts and the
/// aggregate test always cover the whole corpus.
pub const LISTED_DOCUMENTS: usize = 10_000;

/// Tokens per block of the marked text: blocks the browser lays out only
/// when they scroll into view, so 100,000 tokens open at once.
const BLOCK_TOKENS: usize = 400;

/// What kind of test a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportKind {
    /// One text (or ids) against one key.
    Detection,
    /// One text against several keys (Holm's family-wise correction).
    Keyring,
    /// Every document of a corpus, and one aggregate test.
    Scan,
    /// Did the model that wrote a corpus learn from our watermarked text?
    Radioactivity,
}

/// The input a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subject {
    /// Its name as given (a file name, or `standard input`).
    pub name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: usize,
}

impl Subject {
    /// The subject `name` with contents `bytes`.
    pub fn of_bytes(name: &str, bytes: &[u8]) -> Self {
        Subject {
            name: name.to_string(),
            sha256: sha256_hex(bytes),
            bytes: bytes.len(),
        }
    }

    /// The subject `name`, of `bytes` bytes with SHA-256 `sha256` (hex).
    pub fn of_digest(name: &str, sha256: String, bytes: usize) -> Self {
        Subject {
            name: name.to_string(),
            sha256,
            bytes,
        }
    }
}

/// A scan's results: the summary and the first [`LISTED_DOCUMENTS`] documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanReport {
    /// Counts and the aggregate test over the whole corpus.
    pub summary: ScanSummary,
    /// Per document, in corpus order, at most [`LISTED_DOCUMENTS`].
    pub documents: Vec<DocResult>,
    /// Documents not listed (the corpus had more).
    pub documents_not_listed: usize,
}

impl ScanReport {
    /// The report of a scan from its summary and per-document results (only
    /// the first [`LISTED_DOCUMENTS`] are kept).
    pub fn new(summary: ScanSummary, mut documents: Vec<DocResult>) -> Self {
        let not_listed = documents.len().saturating_sub(LISTED_DOCUMENTS);
        documents.truncate(LISTED_DOCUMENTS);
        ScanReport {
            summary,
            documents,
            documents_not_listed: not_listed,
        }
    }
}

impl RadioactivityReport {
    /// The result of a test described by `mode`: one key's `detection` or an `attribution` over cohorts.
    pub fn new(mode: String, detection: Option<Detection>, attribution: Option<Attribution>) -> Self {
        RadioactivityReport {
            mode,
            detection,
            attribution,
        }
    }
}

/// A radioactivity test's result: one key's corpus test, or an attribution over cohorts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RadioactivityReport {
    /// Which test: black box, filtered black box, or reading mode, in words.
    pub mode: String,
    /// The corpus test, with one key.
    pub detection: Option<Detection>,
    /// The cohort attribution, with several keys.
    pub attribution: Option<Attribution>,
}

/// A report: the result of one test, what it means, and how to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// What was tested.
    pub kind: ReportKind,
    /// The verdict the report stands on.
    pub verdict: Verdict,
    /// When the report was made (UTC, RFC 3339).
    pub created: String,
    /// The tool and version that made it.
    pub tool: String,
    /// The input.
    pub subject: Subject,
    /// The command that reproduces the report.
    pub command: String,
    /// One text against one key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detection: Option<Detection>,
    /// One text against a keyring.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keyring: Option<KeyringDetection>,
    /// A corpus scan.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scan: Option<ScanReport>,
    /// A radioactivity test.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub radioactivity: Option<RadioactivityReport>,
    /// The text the marks' byte spans point into, when the input was text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
    /// SHA-256 of this report's compact JSON with this field empty
    /// ([`Report::seal`]); empty until sealed.
    pub report_sha256: String,
}

impl Report {
    fn new(kind: ReportKind, verdict: Verdict, subject: Subject, command: String) -> Self {
        Report {
            format: FORMAT.to_string(),
            kind,
            verdict,
            created: Timestamp::now().to_string(),
            tool: crate::TOOL.to_string(),
            subject,
            command,
            detection: None,
            keyring: None,
            scan: None,
            radioactivity: None,
            text: None,
            report_sha256: String::new(),
        }
    }

    /// The report of one detection; `text` is the input the marks' spans point into.
    pub fn detection(d: Detection, text: Option<String>, subject: Subject, command: String) -> Self {
        let mut r = Self::new(ReportKind::Detection, d.verdict, subject, command);
        r.detection = Some(d);
        r.text = text;
        r
    }

    /// The report of a keyring detection: detected when any key is named at
    /// the family-wise level, inconclusive when no key could be tested.
    pub fn keyring(k: KeyringDetection, text: Option<String>, subject: Subject, command: String) -> Self {
        let verdict = if k.keys.iter().any(KeyResult::detected) {
            Verdict::Detected
        } else if k.best.is_none() {
            Verdict::Inconclusive
        } else {
            Verdict::NotDetected
        };
        let mut r = Self::new(ReportKind::Keyring, verdict, subject, command);
        r.keyring = Some(k);
        r.text = text;
        r
    }

    /// The report of a scan; its verdict is the aggregate test's.
    pub fn scan(s: ScanReport, subject: Subject, command: String) -> Self {
        let mut r = Self::new(ReportKind::Scan, s.summary.aggregate.verdict, subject, command);
        r.scan = Some(s);
        r
    }

    /// The report of a radioactivity test: the corpus test's verdict, or
    /// detected when an attribution names any cohort.
    pub fn radioactivity(t: RadioactivityReport, subject: Subject, command: String) -> Self {
        let verdict = match (&t.detection, &t.attribution) {
            (Some(d), _) => d.verdict,
            (None, Some(a)) if !a.named.is_empty() => Verdict::Detected,
            (None, Some(a)) if a.keys.iter().all(|k| k.tested.is_none()) => Verdict::Inconclusive,
            _ => Verdict::NotDetected,
        };
        let mut r = Self::new(ReportKind::Radioactivity, verdict, subject, command);
        r.radioactivity = Some(t);
        r
    }

    /// The SHA-256 of this report's compact JSON with `report_sha256` empty.
    pub fn digest(&self) -> Result<String> {
        let mut unsealed = self.clone();
        unsealed.report_sha256.clear();
        let bytes = serde_json::to_vec(&unsealed).map_err(|e| Error::InvalidOption {
            name: "report",
            message: format!("cannot serialise: {e}"),
        })?;
        Ok(sha256_hex(&bytes))
    }

    /// Writes the report's own SHA-256 into `report_sha256`.
    pub fn seal(&mut self) -> Result<()> {
        self.report_sha256 = self.digest()?;
        Ok(())
    }

    /// Whether `report_sha256` is this report's SHA-256 (nothing in it was
    /// changed after it was sealed).
    pub fn check_seal(&self) -> Result<bool> {
        Ok(!self.report_sha256.is_empty() && self.digest()? == self.report_sha256)
    }

    /// The detection whose tokens and test the page shows in detail: the
    /// detection, the keyring's best match, the scan's aggregate or the
    /// radioactivity test.
    fn main_detection(&self) -> Option<&Detection> {
        self.detection
            .as_ref()
            .or_else(|| self.keyring.as_ref().and_then(|k| k.best_detection.as_ref()))
            .or_else(|| self.scan.as_ref().map(|s| &s.summary.aggregate))
            .or_else(|| self.radioactivity.as_ref().and_then(|r| r.detection.as_ref()))
    }
}

pub use crate::detect::p_in_words;

/// One piece of the marked text.
#[derive(Serialize)]
struct Piece<'a> {
    /// The characters (or the token id, for id input).
    t: &'a str,
    /// CSS class: `g` counts for the watermark, `r` scored but not for it,
    /// `d` a repeat, `s` without enough context, `` text between tokens;
    /// ` w` appended inside the most significant window.
    c: String,
}

/// The marked text in blocks the browser lays out lazily.
#[derive(Serialize)]
struct Block<'a> {
    pieces: Vec<Piece<'a>>,
}

/// Counts per mark class, for the legend.
#[derive(Serialize, Default)]
struct Legend {
    green: usize,
    red: usize,
    duplicate: usize,
    short: usize,
}

/// The marked text, as blocks, and the legend's counts.
fn marked<'a>(d: &Detection, text: Option<&'a str>, ids: &'a [String]) -> (Vec<Block<'a>>, Legend) {
    let mut legend = Legend::default();
    let Some(marks) = &d.marks else {
        return (Vec::new(), legend);
    };
    // A score counts for the watermark when it is above its null mean (the
    // test's expectation per scored token).
    let mean = d
        .outcome
        .test()
        .map_or(f64::INFINITY, |t| t.expected / d.counts.scored.max(1) as f64);
    let window = d.window.as_ref().map(|w| (w.start, w.end));
    let class = |i: usize, m: &Mark, legend: &mut Legend| {
        let base = match m.status {
            TokenStatus::Scored if m.score > mean => {
                legend.green += 1;
                "g"
            }
            TokenStatus::Scored => {
                legend.red += 1;
                "r"
            }
            TokenStatus::Duplicate => {
                legend.duplicate += 1;
                "d"
            }
            _ => {
                legend.short += 1;
                "s"
            }
        };
        match window {
            Some((start, end)) if (start..end).contains(&i) => format!("{base} w"),
            _ => base.to_string(),
        }
    };
    let mut blocks = Vec::new();
    let mut pieces = Vec::new();
    let mut tokens_in_block = 0;
    let mut flush = |pieces: &mut Vec<Piece<'a>>, tokens: &mut usize, force: bool, newline: bool| {
        if (*tokens >= BLOCK_TOKENS && newline) || (*tokens >= 3 * BLOCK_TOKENS) || (force && !pieces.is_empty()) {
            blocks.push(Block {
                pieces: std::mem::take(pieces),
            });
            *tokens = 0;
        }
    };
    match text {
        Some(text) => {
            let mut at = 0;
            for (i, m) in marks.iter().enumerate() {
                let Some((start, end)) = m.span else { continue };
                if start < at || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                    continue;
                }
                if start > at {
                    pieces.push(Piece {
                        t: &text[at..start],
                        c: String::new(),
                    });
                }
                let piece = &text[start..end];
                pieces.push(Piece {
                    t: piece,
                    c: class(i, m, &mut legend),
                });
                tokens_in_block += 1;
                at = end;
                flush(&mut pieces, &mut tokens_in_block, false, piece.ends_with('\n'));
            }
            if at < text.len() {
                pieces.push(Piece {
                    t: &text[at..],
                    c: String::new(),
                });
            }
        }
        None => {
            for (i, (m, id)) in marks.iter().zip(ids).enumerate() {
                pieces.push(Piece {
                    t: id,
                    c: class(i, m, &mut legend),
                });
                tokens_in_block += 1;
                let full = tokens_in_block >= BLOCK_TOKENS;
                flush(&mut pieces, &mut tokens_in_block, false, full);
            }
        }
    }
    flush(&mut pieces, &mut tokens_in_block, true, false);
    (blocks, legend)
}

/// What the verdict means and does not mean, and the headline, in words.
#[derive(Serialize)]
struct Words {
    verdict: &'static str,
    headline: Value,
    p: Option<Value>,
    p_words: Option<Value>,
    alpha: String,
    /// The grade of the evidence (`none`, `faint`, `weak`, `moderate`, `strong`).
    strength: Option<Strength>,
    /// For a text that was not detected: what a text of this length needs.
    needed: Option<Value>,
    /// Whether the text is short for its test.
    short: bool,
    /// What to check when a detection was expected (not detected only).
    checklist: Vec<String>,
}

fn words(r: &Report, d: Option<&Detection>) -> Words {
    let verdict = match r.verdict {
        Verdict::Detected => "Watermark detected",
        Verdict::NotDetected => "Not detected",
        _ => "Inconclusive",
    };
    let log10_p = match (r.kind, &r.keyring, &r.radioactivity) {
        (ReportKind::Keyring, Some(k), _) => k.best.and_then(|i| k.keys[i].tested.map(|t| t.log10_p_adjusted)),
        (ReportKind::Radioactivity, _, Some(t)) if t.attribution.is_some() => t.attribution.as_ref().and_then(|a| {
            a.keys
                .iter()
                .filter_map(|k| k.tested.map(|t| t.log10_p_adjusted))
                .reduce(f64::min)
        }),
        _ => d.and_then(Detection::verdict_log10_p),
    };
    let alpha = d.map_or_else(
        || {
            r.keyring
                .as_ref()
                .map(|k| k.alpha)
                .or(r
                    .radioactivity
                    .as_ref()
                    .and_then(|t| t.attribution.as_ref().map(|a| a.alpha)))
                .unwrap_or(1e-6)
        },
        |d| d.alpha,
    );
    let what = match r.kind {
        ReportKind::Detection => "this text",
        ReportKind::Keyring => "this text, against each key of the keyring",
        ReportKind::Scan => "this corpus as a whole",
        ReportKind::Radioactivity => "the suspect model's outputs",
    };
    // The grade of the evidence: the main detection's when the verdict is
    // its own, else from the verdict's p-value alone.
    let own = d.is_some() && matches!(r.kind, ReportKind::Detection | ReportKind::Scan)
        || (r.kind == ReportKind::Radioactivity && r.radioactivity.as_ref().is_some_and(|t| t.detection.is_some()));
    let strength = match (own, d, log10_p) {
        (true, Some(d), _) => d.strength(),
        (_, _, Some(l)) => Some(Strength::of_p_value(l)),
        _ => None,
    };
    let headline = match (r.verdict, log10_p) {
        (Verdict::Detected, Some(l)) => format!(
            "{what} is consistent with this key's watermark: text written without the key scores this high {} (p = {}), \
             below the significance level {alpha:e} fixed before the test.",
            p_in_words(l),
            p_html(l)
        ),
        (Verdict::NotDetected, Some(l)) => match strength.unwrap_or(Strength::None) {
            Strength::None => format!(
                "no evidence of the watermark in {what}: it scores at or below what text without the watermark scores (p = {}).",
                p_html(l)
            ),
            Strength::Faint => format!(
                "no meaningful signal in {what} (p = {}: results like this are common without the watermark); not detected at the level {alpha:e} fixed before the test.",
                p_html(l)
            ),
            s => format!(
                "{} in {what}, {} (p = {}), short of the significance level {alpha:e} fixed before the test: not detected. \
                 This does not clear the text.",
                s.words(),
                p_in_words(l),
                p_html(l)
            ),
        },
        _ => format!("{what} could not be tested: too few tokens could be scored. This is not evidence either way."),
    };
    let needed = match (r.verdict, own, d) {
        (Verdict::NotDetected, true, Some(d)) => d
            .needed_to_detect()
            .map(|n| Value::from_safe_string(powers(&(capitalise(&n.words) + ".")))),
        _ => None,
    };
    Words {
        verdict,
        headline: Value::from_safe_string(powers(&capitalise(&headline))),
        p: log10_p.map(|l| Value::from_safe_string(powers(&p_html(l)))),
        p_words: log10_p.map(|l| Value::from_safe_string(powers(&p_in_words(l)))),
        alpha: format!("{alpha:e}"),
        strength,
        needed,
        short: own && d.is_some_and(Detection::is_short),
        checklist: match (r.verdict, d) {
            (Verdict::NotDetected, Some(d)) if r.kind == ReportKind::Detection => d.checklist(),
            _ => Vec::new(),
        },
    }
}

/// A p-value for the page: a decimal from 0.001 up, else as [`p_value`].
fn p_html(log10_p: f64) -> String {
    if log10_p >= -3.0 {
        format!("{:.3}", 10f64.powf(log10_p))
    } else {
        p_value(log10_p)
    }
}

/// `10^N` as `10<sup>N</sup>` and `1.2e-7` as `1.2 × 10<sup>-7</sup>`, in
/// text this module wrote (never user input, which stays escaped).
fn powers(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let body = word.trim_start_matches('(');
        let lead = &word[..word.len() - body.len()];
        let head = body.trim_end_matches(|c: char| ",);.:".contains(c));
        let tail = &body[head.len()..];
        if let Some(exp) = head.strip_prefix("10^").filter(|e| e.parse::<f64>().is_ok()) {
            out.push_str(&format!("{lead}10<sup>{exp}</sup>{tail}"));
        } else if let Some((m, e)) = head.split_once('e').filter(|(m, e)| {
            m.parse::<f64>().is_ok() && e.parse::<i32>().is_ok() && m.chars().next().is_some_and(|c| c.is_ascii_digit())
        }) {
            out.push_str(&format!("{lead}{m}&#8239;×&#8239;10<sup>{e}</sup>{tail}"));
        } else {
            out.push_str(&word.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"));
        }
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The page's template.
const TEMPLATE: &str = include_str!("templates/report.html");

/// The self-contained HTML page of a report.
pub fn html(r: &Report) -> Result<String> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("p", |l: f64| Value::from_safe_string(powers(&p_html(l))));
    env.add_filter("pwords", |l: f64| Value::from_safe_string(powers(&p_in_words(l))));
    env.add_filter("sci", |x: f64| format!("{x:e}"));
    env.add_filter("fixed", |x: f64, digits: Option<usize>| {
        format!("{x:.*}", digits.unwrap_or(2))
    });
    env.add_template("report.html", TEMPLATE).map_err(template_error)?;
    let d = r.main_detection();
    let ids: Vec<String> = match (&r.text, d.and_then(|d| d.marks.as_ref())) {
        (None, Some(marks)) => marks.iter().map(|m| m.token.to_string()).collect(),
        _ => Vec::new(),
    };
    let (blocks, legend) = d.map_or_else(
        || (Vec::new(), Legend::default()),
        |d| marked(d, r.text.as_deref(), &ids),
    );
    let window_text = match (d.and_then(|d| d.window.as_ref()), &r.text) {
        (Some(w), Some(text)) => w
            .span
            .and_then(|(s, e)| text.get(s..e))
            .map(|s| s.chars().take(2000).collect::<String>()),
        _ => None,
    };
    // When each scored token is one Bernoulli draw under the null (a green
    // list), the share of scored tokens green without the watermark, as the
    // scheme's contract says; not stated for other nulls.
    let green_null = d
        .and_then(|d| d.scheme.parse::<tracemark_core::SchemeConfig>().ok())
        .and_then(|c| match c.contract().null {
            tracemark_core::Null::Binomial { trials: 1, p } => Some(p),
            _ => None,
        });
    let green_share = (legend.green + legend.red > 0).then(|| (100 * legend.green) / (legend.green + legend.red));
    let tested = d.and_then(|d| match &d.outcome {
        Outcome::Tested { test, log10_p, .. } => Some(context! { test => test, log10_p => log10_p }),
        Outcome::Inconclusive { .. } => None,
    });
    let inconclusive_reason = d.and_then(|d| match &d.outcome {
        Outcome::Inconclusive { reason } => Some(reason.clone()),
        Outcome::Tested { .. } => None,
    });
    let page = env
        .get_template("report.html")
        .map_err(template_error)?
        .render(context! {
            r => r,
            d => d,
            w => words(r, d),
            blocks => blocks,
            legend => legend,
            green_null => green_null,
            green_share => green_share,
            tested => tested,
            inconclusive_reason => inconclusive_reason,
            window_text => window_text,
            verdict_class => match r.verdict {
                Verdict::Detected => "detected",
                Verdict::NotDetected => "not_detected",
                _ => "inconclusive",
            },
        })
        .map_err(template_error)?;
    Ok(page)
}

fn template_error(e: minijinja::Error) -> Error {
    Error::InvalidOption {
        name: "report template",
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |secs| Timestamp::from_unix(secs).to_string();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_083_199), "2026-11-30T23:59:59Z");
    }

    /// A page's visible words: tags dropped, entities and spaces folded.
    fn words_of(page: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in page.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                _ if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&#8239;", " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The page of a detection whose whole-text test gave `log10_p` with the
    /// statistic `above` its expectation or not.
    fn page_at(log10_p: f64, above: bool) -> (String, Detection) {
        use crate::detect::{DetectOptions, Detector, TestReport};
        use tracemark_core::{Key, SchemeConfig};
        let key = Key::from_bytes([9; 32]);
        let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("test input");
        let detector = Detector::new(&key, &config, 1000, DetectOptions::default()).expect("test input");
        let ids: Vec<u32> = (0..300u32).map(|i| i * 7 % 1000).collect();
        let mut d = detector.detect_ids(&[], &ids).expect("test input");
        let n = d.counts.scored as f64;
        d.outcome = Outcome::Tested {
            test: TestReport {
                name: "binomial upper tail of the green count".into(),
                null_distribution: format!("Binomial(n={}, p=0.25)", d.counts.scored),
                statistic: if above { n * 0.25 + 10.0 } else { n * 0.25 - 3.0 },
                expected: n * 0.25,
                z_score: 0.0,
            },
            p_value: 10f64.powf(log10_p),
            log10_p,
        };
        d.verdict = if log10_p < -6.0 {
            Verdict::Detected
        } else {
            Verdict::NotDetected
        };
        let r = Report::detection(
            d.clone(),
            None,
            Subject::of_bytes("x", b"x"),
            "tracemark detect ...".into(),
        );
        (words_of(&html(&r).expect("test input")), d)
    }

    #[test]
    fn not_detected_pages_grade_the_evidence() {
        // p = 1e-5: a strong signal, never "no evidence", and the page says it does not clear the text.
        let (page, d) = page_at(-5.0, true);
        assert!(page.contains("Not detected"), "{page}");
        assert!(
            page.contains("A strong signal in this text, about 1 in 100,000"),
            "{page}"
        );
        assert!(
            page.contains("short of the significance level 1 × 10 -6 fixed before the test"),
            "{page}"
        );
        assert!(page.contains("This does not clear the text"), "{page}");
        assert!(
            page.contains("not a finding that the text lacks the watermark"),
            "{page}"
        );
        assert!(!page.to_lowercase().contains("no evidence"), "{page}");
        assert_eq!(d.strength(), Some(Strength::Strong));
        assert!(d
            .evidence()
            .expect("test input")
            .starts_with("a strong signal, about 1 in 100,000 (p = 1.0e-5), short of"));
        // p = 1e-2: a weak signal.
        let (page, d) = page_at(-2.0, true);
        assert!(
            page.contains("A weak signal in this text, about 1 in 100 (p = 0.010)"),
            "{page}"
        );
        assert!(!page.to_lowercase().contains("no evidence"), "{page}");
        assert_eq!(d.strength(), Some(Strength::Weak));
        // p = 0.5 above its expectation: no meaningful signal, not "no evidence".
        let (page, _) = page_at(-0.301, true);
        assert!(page.contains("No meaningful signal in this text (p = 0.500"), "{page}");
        assert!(
            page.contains("scores about as text without the watermark does"),
            "{page}"
        );
        // At or below the expectation: only then "no evidence".
        let (page, d) = page_at(-0.05, false);
        assert!(page.contains("No evidence of the watermark in this text"), "{page}");
        assert_eq!(d.strength(), Some(Strength::None));
        // Every not-detected page says what to check and what the length needs.
        for l in [-5.0, -2.0, -0.301] {
            let (page, _) = page_at(l, true);
            assert!(page.contains("If you expected a detection"), "{page}");
            assert!(
                page.contains("this test reaches 1 × 10 -6 only when at least"),
                "{page}"
            );
        }
    }

    #[test]
    fn the_detected_page_states_its_limits() {
        let (page, _) = page_at(-9.0, true);
        assert!(
            page.contains("This text is consistent with this key's watermark"),
            "{page}"
        );
        assert!(!page.contains("is present in"), "{page}");
        assert!(page.contains("fixed before the test"), "{page}");
        assert!(page.contains("Forgery."), "{page}");
        assert!(page.contains("spoof-2026-11-30.md"), "{page}");
        // One headline number: every "1 in ..." on the page is the verdict's.
        let odds: std::collections::BTreeSet<&str> = page
            .match_indices("about 1 in ")
            .map(|(i, _)| page[i..].split(['(', '.', ',']).next().unwrap_or(""))
            .collect();
        assert_eq!(odds.len(), 1, "{odds:?}");
        assert!(!page.contains("If you expected a detection"), "{page}");
    }

    #[test]
    fn powers_are_superscripts() {
        assert_eq!(
            powers("p = 3.6173e-11), below 1e-6."),
            "p = 3.6173&#8239;×&#8239;10<sup>-11</sup>), below 1&#8239;×&#8239;10<sup>-6</sup>."
        );
        assert_eq!(powers("about 1 in 4.5 × 10^32"), "about 1 in 4.5 × 10<sup>32</sup>");
        assert_eq!(powers("(10^-2000.37) <b>"), "(10<sup>-2000.37</sup>) &lt;b&gt;");
        assert_eq!(p_html(-0.1063), "0.783");
    }
}
