//! Reports for people who were not in the room: one self-contained HTML file
//! and the JSON it is made from, for a detection, a keyring, a corpus scan or
//! a radioactivity test.
//!
//! A [`Report`] holds the full result of the test (the same structures as the
//! CLI's `--json`), the input's text when there was one (so that every scored
//! token can be shown), what was tested in words, the command that reproduces
//! it, and its own SHA-256 ([`Report::seal`]). [`html`] writes the page, one
//! function per section, every text that came from the input escaped by one
//! rule: the verdict and what it does and does not mean, the p-value with its
//! exact test and its size in words, the text with each token marked, the
//! most significant window, what canonicalisation changed, and the facts that
//! make it reproducible. Nothing in the page is fetched: the style sheet
//! (`templates/report.css`) and the few lines of script
//! (`templates/report.js`) are inline.
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

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use super::receipt::Timestamp;
use super::render::p_value;
use crate::corpus::{Attribution, DocResult, KeyResult, KeyringDetection, ScanSummary};
use crate::detect::layered::{Layer, LayeredVerdict};
use crate::detect::semantic::{SemanticDetection, SemanticOutcome, SentenceStatus};
use crate::detect::{Detection, Mark, Outcome, Strength, TokenStatus, Verdict};
use crate::error::{Error, Result};
use crate::text::canonical::FormPlan;
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
struct Piece<'a> {
    /// The characters (or the token id, for id input).
    t: &'a str,
    /// CSS class: `g` counts for the watermark, `r` scored but not for it,
    /// `d` a repeat, `s` without enough context, `` text between tokens;
    /// ` w` appended inside the most significant window.
    c: String,
}

/// The marked text in blocks the browser lays out lazily.
struct Block<'a> {
    pieces: Vec<Piece<'a>>,
}

/// Counts per mark class, for the legend.
#[derive(Default)]
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
/// The fields that hold HTML (`headline`, `p`, `p_words`, `needed`) are
/// markup this module wrote ([`powers`]); the others are plain text.
struct Words {
    verdict: &'static str,
    headline: String,
    p: Option<String>,
    p_words: Option<String>,
    alpha: String,
    /// The grade of the evidence (`none`, `faint`, `weak`, `moderate`, `strong`).
    strength: Option<Strength>,
    /// For a text that was not detected: what a text of this length needs.
    needed: Option<String>,
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
        (Verdict::NotDetected, true, Some(d)) => d.needed_to_detect().map(|n| powers(&(capitalise(&n.words) + "."))),
        _ => None,
    };
    Words {
        verdict,
        headline: powers(&capitalise(&headline)),
        p: log10_p.map(p_page),
        p_words: log10_p.map(p_words_page),
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

/// The page's style sheet and script, inline: the page fetches nothing.
const STYLE: &str = include_str!("templates/report.css");
const SCRIPT: &str = include_str!("templates/report.js");

/// Text for the page, HTML-escaped: the one escaping rule of the page. `&`,
/// `<`, `>`, `"`, `'` and `/` become character references, so text from the
/// input (a file name, a document id, the text itself) can neither open a
/// tag, nor end an attribute, nor close an element; every other character
/// is written as it is. Markup this module writes itself is pushed raw.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'', '/']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#x27;",
                _ => "&#x2f;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A p-value as page markup, from its `log10` ([`p_html`] with powers as superscripts).
fn p_page(log10_p: f64) -> String {
    powers(&p_html(log10_p))
}

/// "about 1 in ..." as page markup, from a p-value's `log10`.
fn p_words_page(log10_p: f64) -> String {
    powers(&p_in_words(log10_p))
}

/// A number in scientific notation (`1e-6`).
fn sci(x: f64) -> String {
    format!("{x:e}")
}

/// The name a value serialises to (`not_detected`, a key id), for an enum
/// or newtype that serialises as a string.
fn name<T: Serialize>(x: &T) -> String {
    match serde_json::to_value(x) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A text that is present and not empty.
fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A document's id as the page has always written it (before escaping):
/// numbers as decimals (a float always with a point), `True`/`False`, a
/// string as it is, lists and maps in brackets with quoted strings.
fn id_text(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    /// One float: Rust's shortest form, with `.0` when it has no point.
    fn float(x: f64) -> String {
        let s = x.to_string();
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    }
    /// An item inside a list or map.
    fn item(v: &J) -> String {
        match v {
            J::Null => "None".into(),
            J::String(s) => format!("{s:?}"),
            J::Number(n) if n.is_f64() => n.as_f64().map_or_else(String::new, |x| format!("{x:?}")),
            _ => id_text(v),
        }
    }
    match v {
        J::Null => "None".into(),
        J::Bool(b) => if *b { "True" } else { "False" }.into(),
        J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(i), _) => i.to_string(),
            (None, None, Some(x)) => float(x),
            _ => n.to_string(),
        },
        J::String(s) => s.clone(),
        J::Array(items) => format!("[{}]", items.iter().map(item).collect::<Vec<_>>().join(", ")),
        J::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k:?}: {}", item(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Everything a page section reads.
struct Page<'a> {
    r: &'a Report,
    /// The detection shown in detail ([`Report::main_detection`]).
    d: Option<&'a Detection>,
    w: Words,
    /// `detected`, `not_detected` or `inconclusive`.
    verdict_class: &'static str,
}

/// The self-contained HTML page of a report.
pub fn html(r: &Report) -> Result<String> {
    let d = r.main_detection();
    let page = Page {
        r,
        d,
        w: words(r, d),
        verdict_class: match r.verdict {
            Verdict::Detected => "detected",
            Verdict::NotDetected => "not_detected",
            _ => "inconclusive",
        },
    };
    let mut o = String::with_capacity(64 << 10);
    write_page(&mut o, &page).map_err(|_| Error::InvalidOption {
        name: "report",
        message: "cannot write the page".into(),
    })?;
    Ok(o)
}

/// The page, section by section, top to bottom.
fn write_page(o: &mut String, p: &Page<'_>) -> fmt::Result {
    head(o, p)?;
    meaning(o, p)?;
    checklist(o, p)?;
    if let Some(d) = p.d {
        test(o, p, d)?;
    }
    o.push_str("\n\n");
    keys(o, p)?;
    o.push_str("\n\n");
    cohorts(o, p)?;
    o.push_str("\n\n");
    documents(o, p)?;
    o.push_str("\n\n");
    text(o, p)?;
    o.push_str("\n\n");
    reproduce(o, p)
}

/// The head, the title bar, the verdict and its headline, the scheme
/// warning and the input.
fn head(o: &mut String, p: &Page<'_>) -> fmt::Result {
    let r = p.r;
    let kind = name(&r.kind);
    o.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    );
    writeln!(o, "<meta name=\"generator\" content=\"{}\">", Esc(&r.tool))?;
    writeln!(
        o,
        "<title>{} · tracemark {} report · {}</title>",
        Esc(p.w.verdict),
        Esc(&kind),
        Esc(&r.subject.name)
    )?;
    writeln!(o, "<style>\n{STYLE}</style>\n</head>")?;
    writeln!(
        o,
        "<body data-kind=\"{}\" data-verdict=\"{}\">\n<main>\n<header class=\"top\">",
        Esc(&kind),
        p.verdict_class
    )?;
    let title = match r.kind {
        ReportKind::Detection => "detection report",
        ReportKind::Keyring => "keyring report",
        ReportKind::Scan => "corpus scan report",
        ReportKind::Radioactivity => "radioactivity report",
    };
    writeln!(o, "  <div class=\"brand\">tracemark · {title}</div>")?;
    writeln!(
        o,
        "  <div class=\"meta\">{} · {}</div>\n</header>\n",
        Esc(&r.created),
        Esc(&r.tool)
    )?;
    writeln!(
        o,
        "<section class=\"verdict {}\" aria-live=\"polite\">",
        p.verdict_class
    )?;
    writeln!(o, "  <h1 id=\"verdict\">{}</h1>", Esc(p.w.verdict))?;
    writeln!(o, "  <p id=\"headline\">{}</p>\n</section>", p.w.headline)?;
    let warning =
        p.d.and_then(|d| d.scheme_source.as_ref())
            .and_then(|s| given(&s.warning));
    if let Some(warning) = warning {
        writeln!(
            o,
            "\n<div class=\"note alarm\" id=\"scheme-warning\"><p><strong>Warning: the scheme tested is not the one \
             this key was served with.</strong> {}.</p></div>",
            Esc(warning)
        )?;
    }
    writeln!(
        o,
        "\n<p class=\"meta\">Input <strong>{}</strong> ({} bytes, SHA-256 <code>{}</code>).</p>",
        Esc(&r.subject.name),
        r.subject.bytes,
        Esc(&r.subject.sha256)
    )
}

/// What was tested, what the verdict means, and what it does not mean.
fn meaning(o: &mut String, p: &Page<'_>) -> fmt::Result {
    let (r, w, d) = (p.r, &p.w, p.d);
    o.push_str("\n<h2>What was tested, and what the verdict means</h2>\n");
    match r.kind {
        ReportKind::Detection | ReportKind::Keyring => {
            o.push_str(
                "\n<p>A text generated with a tracemark watermark carries a statistical signal that only the holder \
                 of the secret key can test for: the model was nudged, token by token, towards choices that the key \
                 marks as favoured. This report asks whether the favoured choices in <em>this</em> text are more \
                 frequent than chance.\n",
            );
            if r.kind == ReportKind::Keyring {
                o.push_str(
                    "Several keys were tested (for example one per API-account cohort); each key's p-value is \
                     corrected for the number of keys (Holm), so that naming a key stays rare by chance however many \
                     keys are tried.",
                );
            }
            o.push_str("</p>\n");
        }
        ReportKind::Scan => o.push_str(
            "\n<p>Every document of the corpus was tested on its own, and all of them together in one exact test. \
             Repeated observations are counted once across the whole corpus, so copying the same answer many times \
             does not add evidence.</p>\n",
        ),
        ReportKind::Radioactivity => writeln!(
            o,
            "\n<p>A model trained on our watermarked answers inherits a faint preference for the tokens our key \
             favours (“radioactivity”). This test scores the suspect model's text ({}) with our key in one exact test \
             over the whole corpus; repeated observations count once.</p>",
            Esc(r.radioactivity.as_ref().map_or("", |t| &t.mode))
        )?,
    }
    o.push_str("\n<div class=\"cols\">\n  <div class=\"note\">\n    <h3>What it means</h3>\n    ");
    let p_words = w.p_words.as_deref().unwrap_or("None");
    match r.verdict {
        Verdict::Detected => {
            write!(
                o,
                "\n    <p>Text written without this key would score this high {p_words}. The significance level ({}) \
                 was fixed before the test, so a verdict of “detected” on text that does not carry the watermark \
                 happens at most that often. The result is consistent with text generated under this key's \
                 watermark; on its own it does not say who generated or submitted the text.</p>\n    ",
                Esc(&w.alpha)
            )?;
            if let Some(d) = d {
                write!(
                    o,
                    "<p id=\"fixed-before\">The scheme (<code>{}</code>) and the key (id <code>{}</code>) were fixed \
                     before the test",
                    Esc(&d.scheme),
                    Esc(&name(&d.key_id))
                )?;
                if let Some(s) = &d.scheme_source {
                    write!(o, ": the scheme came from {}", Esc(&s.origin))?;
                }
                o.push('.');
                if d.scheme_source.as_ref().is_some_and(|s| given(&s.warning).is_some()) {
                    o.push_str(
                        " It is <strong>not</strong> the scheme the key was served with; see the warning above.",
                    );
                }
                o.push_str("</p>");
            }
            o.push_str("\n    ");
        }
        Verdict::NotDetected
            if matches!(
                w.strength,
                Some(Strength::Weak | Strength::Moderate | Strength::Strong)
            ) =>
        {
            write!(
                o,
                "\n    <p id=\"not-cleared\">The text scores higher than text without the watermark usually does \
                 ({p_words}), but not as high as the significance level ({}) fixed before the test demands. This is \
                 <strong>not</strong> a finding that the text lacks the watermark: a short or partly rewritten \
                 watermarked text often lands here. More text from the same source, or the whole document, can \
                 settle it.</p>\n    ",
                Esc(&w.alpha)
            )?;
        }
        Verdict::NotDetected => o.push_str(
            "\n    <p>The text scores about as text without the watermark does. Either it does not carry this key's \
             watermark, or too little of it survives (heavy rewriting, a short excerpt) to show at this level.</p>\n    ",
        ),
        _ => o.push_str(
            "\n    <p>Too few tokens could be scored for a test (too short, or mostly repeated). The tool does not \
             guess: there is no verdict either way.</p>\n    ",
        ),
    }
    o.push_str("\n    ");
    if let Some(needed) = w.needed.as_deref().filter(|n| !n.is_empty()) {
        o.push_str("<p id=\"short-text\">");
        if w.short {
            o.push_str("<strong>A short text for this test.</strong> ");
        }
        write!(o, "{needed}</p>")?;
    }
    o.push_str("\n    ");
    if let Some(skipped) = d.and_then(|d| given(&d.window_skipped)) {
        write!(
            o,
            "<p id=\"window-skipped\">A window search was asked for: {}.</p>",
            Esc(skipped)
        )?;
    }
    o.push_str(
        "\n  </div>\n  <div class=\"note warn\">\n    <h3>What it does not mean</h3>\n    <p>A p-value is \
         <strong>not</strong> the probability that a person cheated or that the text was machine-written. It is the \
         chance of a result at least this extreme <em>if</em> the text did not carry the watermark. It says nothing \
         about who submitted the text, how it was edited, or why.",
    );
    if r.verdict != Verdict::Detected {
        o.push_str(" “Not detected” is not proof that no model wrote the text.");
    }
    o.push_str("</p>\n    ");
    if r.verdict == Verdict::Detected {
        o.push_str(
            "<p id=\"forgery-caveat\"><strong>Forgery.</strong> A party that collected many answers served under \
             this key can learn to imitate its watermark in text it writes itself \
             (<code>eval/results/spoof-2026-11-30.md</code> measures how much text that takes). ",
        );
        if d.is_some_and(|d| d.forgery.is_some()) {
            o.push_str(
                "The spoof-artifact test below checks whether the watermark sits where such a party could have \
                 learned it.",
            );
        } else {
            o.push_str(
                "The spoof-artifact test, which checks whether the watermark sits where such a party could have \
                 learned it, was not run for this report: run the same command with \
                 <code>--forgery-reference</code> and a sample of the answers served under this key.",
            );
        }
        o.push_str("</p>");
    }
    o.push_str("\n  </div>\n</div>\n\n");
    Ok(())
}

/// What to check when a detection was expected (not detected only).
fn checklist(o: &mut String, p: &Page<'_>) -> fmt::Result {
    if !p.w.checklist.is_empty() {
        o.push_str("\n<h2>If you expected a detection</h2>\n<ul id=\"checklist\">");
        for item in &p.w.checklist {
            write!(o, "<li>{}</li>", Esc(item))?;
        }
        o.push_str("</ul>\n");
    }
    o.push_str("\n\n");
    Ok(())
}

/// The main detection's test, counts, window, canonicalisation and forgery test.
fn test(o: &mut String, p: &Page<'_>, d: &Detection) -> fmt::Result {
    o.push_str("\n<h2>The test</h2>\n<table>\n  ");
    match &d.outcome {
        Outcome::Tested { test, log10_p, .. } => {
            let l = *log10_p;
            writeln!(o, "\n  <tr><th>Exact test</th><td>{}</td></tr>", Esc(&test.name))?;
            writeln!(
                o,
                "  <tr><th>Null distribution</th><td>{}</td></tr>",
                Esc(&test.null_distribution)
            )?;
            writeln!(
                o,
                "  <tr><th>Observed</th><td>{:.2} (expected {:.2} without the watermark; z = {:.2}, for information \
                 only: the p-value is exact, not from a normal approximation)</td></tr>",
                test.statistic, test.expected, test.z_score
            )?;
            o.push_str("  <tr><th>p-value</th><td>");
            match p.w.p.as_deref().filter(|w| !w.is_empty() && *w != p_page(l)) {
                Some(verdict_p) => write!(
                    o,
                    "{} (log<sub>10</sub> p = {l:.3}) for the whole text as tested, before the corrections below; \
                     the verdict stands on <strong>p = {verdict_p}</strong>",
                    p_page(l)
                )?,
                None => write!(
                    o,
                    "<strong>{}</strong> (log<sub>10</sub> p = {l:.3}): {}",
                    p_page(l),
                    p_words_page(l)
                )?,
            }
            o.push_str("</td></tr>\n  ");
        }
        Outcome::Inconclusive { reason } => {
            write!(o, "\n  <tr><th>Not tested</th><td>{}</td></tr>\n  ", Esc(reason))?;
        }
    }
    let c = &d.counts;
    writeln!(o, "\n  <tr><th>Significance level</th><td>{}</td></tr>", sci(d.alpha))?;
    write!(
        o,
        "  <tr><th>Tokens</th><td>{} seen, <strong>{} scored</strong>, {} repeats not counted again \
         (deduplication: {}), {} without enough context",
        c.seen,
        c.scored,
        c.skipped_duplicate,
        Esc(&name(&d.dedup)),
        c.skipped_short_context
    )?;
    if c.prompt > 0 {
        write!(o, ", {} prompt tokens used as context only", c.prompt)?;
    }
    if c.skipped_by_filter > 0 {
        write!(o, ", {} outside the reference's contexts", c.skipped_by_filter)?;
    }
    o.push_str("</td></tr>\n</table>\n");
    if let Some(w) = &d.window {
        window(o, p, w)?;
    }
    o.push('\n');
    if let Some(c) = &d.canonical {
        canonical(o, c)?;
    }
    o.push('\n');
    if let Some(f) = &d.forgery {
        forgery(o, p, f)?;
    }
    if let Some(s) = &d.semantic {
        semantic(o, p, s, d.layered.as_ref())?;
    }
    o.push('\n');
    Ok(())
}

/// The semantic layer's test, the layered verdict and the text marked
/// sentence by sentence (SPEC §15.3-15.4).
fn semantic(o: &mut String, p: &Page<'_>, s: &SemanticDetection, layered: Option<&LayeredVerdict>) -> fmt::Result {
    let c = &s.counts;
    o.push_str("\n<h3>The semantic layer: sentences in keyed regions</h3>\n<table id=\"semantic\">\n");
    writeln!(
        o,
        "  <tr><th>Scheme</th><td><code>{}</code> (key id <code>{}</code>, sentence segmentation v{})</td></tr>",
        Esc(&s.scheme),
        Esc(&s.key_id),
        s.sentences_version
    )?;
    writeln!(
        o,
        "  <tr><th>Sentences</th><td>{} in the text, <strong>{} scored</strong>, {} too short to score, {} in a \
         region an earlier sentence already counted; <strong>{} of {} distinct regions green</strong> (γ = {})</td></tr>",
        c.sentences,
        c.scored,
        c.short,
        c.scored - c.distinct,
        c.green,
        c.distinct,
        s.gamma
    )?;
    match &s.outcome {
        SemanticOutcome::Tested { null, log10_p, .. } => writeln!(
            o,
            "  <tr><th>Exact test</th><td>binomial upper tail of the green regions under {}: p = {} (log<sub>10</sub> \
             p = {log10_p:.3})</td></tr>",
            Esc(null),
            p_page(*log10_p)
        )?,
        SemanticOutcome::Inconclusive { reason } => {
            writeln!(o, "  <tr><th>Not tested</th><td>{}</td></tr>", Esc(reason))?
        }
    }
    o.push_str("</table>\n");
    if let Some(l) = layered {
        let pv = |x: Option<f64>| x.map_or_else(|| "untested".to_string(), p_page);
        let by = match l.decided_by {
            Some(Layer::Token) => ", decided by the token layer",
            Some(Layer::Semantic) => ", decided by the semantic layer",
            None => "",
        };
        writeln!(
            o,
            "<p id=\"layered\">The layered verdict: token layer p = {}, semantic layer p = {}; together \
             <strong>p = {}</strong> after {}{by}. The verdict stands on it.</p>",
            pv(l.token_log10_p),
            pv(l.semantic_log10_p),
            pv(l.log10_p),
            Esc(&l.correction())
        )?;
    }
    let Some(text) = given(&p.r.text) else {
        return Ok(());
    };
    o.push_str(
        "<p class=\"legend\">\n  <span><i style=\"background: var(--green)\"></i>sentence in a green region</span>\n  \
         <span><i style=\"background: var(--red)\"></i>scored, not green</span>\n  <span><i style=\"background: #fff\">\
         </i><s style=\"color:#8b93a3\">region already counted</s></span>\n  <span><i style=\"background: #fff\"></i>\
         <em class=\"s\">too short to score</em></span>\n</p>\n<div class=\"text\" id=\"sentences\">",
    );
    let mut at = 0;
    for sentence in &s.sentences {
        let (start, end) = (sentence.span.start, sentence.span.end);
        if start < at || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        write!(o, "{}", Esc(&text[at..start]))?;
        let (class, title) = match sentence.status {
            SentenceStatus::Scored { region, green: true } => ("g", format!("region {region}, green")),
            SentenceStatus::Scored { region, green: false } => ("r", format!("region {region}, not green")),
            SentenceStatus::Repeated { region, .. } => ("d", format!("region {region}, already counted")),
            SentenceStatus::Short => ("s", format!("{} words: too short", sentence.words)),
        };
        write!(
            o,
            "<span class=\"{class}\" title=\"{}\">{}</span>",
            Esc(&title),
            Esc(&text[start..end])
        )?;
        at = end;
    }
    writeln!(o, "{}</div>", Esc(&text[at.min(text.len())..]))
}

/// The most significant window, and its text.
fn window(o: &mut String, p: &Page<'_>, w: &crate::detect::WindowReport) -> fmt::Result {
    write!(
        o,
        "\n<h3>The most significant window</h3>\n<p id=\"window\">Tokens {}–{}",
        w.start, w.end
    )?;
    if let Some((start, end)) = w.span {
        write!(o, " (bytes {start}–{end} of the input)")?;
    }
    write!(
        o,
        " ({} scored): p = {} after {} (uncorrected {}; {} windows",
        w.scored,
        p_page(w.log10_p),
        Esc(&w.correction),
        p_page(w.log10_p_uncorrected),
        w.windows_examined
    )?;
    if w.segments_examined > 0 {
        write!(o, " and {} runs of whole paragraphs", w.segments_examined)?;
    }
    write!(o, " examined")?;
    if !w.search.is_empty() {
        write!(o, ": {}", Esc(&w.search))?;
    }
    writeln!(
        o,
        "). The whole text and the window together: p = {}, decided by the {}. The window is underlined in blue in \
         the text below.</p>",
        p_page(w.family_log10_p),
        if w.decides_verdict { "window" } else { "whole text" }
    )?;
    let text = w
        .span
        .and_then(|(s, e)| p.r.text.as_deref().and_then(|t| t.get(s..e)))
        .map(|s| s.chars().take(2000).collect::<String>())
        .filter(|s| !s.is_empty());
    if let Some(text) = text {
        write!(o, "<blockquote class=\"note\">{}</blockquote>", Esc(&text))?;
    }
    o.push('\n');
    Ok(())
}

/// Kinds of canonicalisation change listed one by one.
const LISTED_CHANGES: usize = 20;

/// What canonicalisation changed, and the forms tested.
fn canonical(o: &mut String, r: &crate::CanonicalReport) -> fmt::Result {
    let c = &r.changes;
    o.push_str("\n<h3>Canonicalisation: what was changed before testing</h3>\n\n");
    if c.total == 0 {
        writeln!(
            o,
            "\n<p>Nothing: the text is already in canonical form (Unicode {}).</p>",
            Esc(&c.unicode_version)
        )?;
    } else {
        let tampered = c.total as i64 - c.normalisation as i64;
        let one = c.total == 1;
        write!(
            o,
            "\n\n<div class=\"note {}\" id=\"canonical-changes\"><p><strong>{} character{} {} changed</strong> \
             (canonical form v{}, Unicode {}): {} invisible or formatting characters removed, {} whitespace variants \
             made plain, {} compatibility forms folded, {} look-alike letters mapped back",
            if tampered > 0 { "alarm" } else { "" },
            c.total,
            if one { "" } else { "s" },
            if one { "was" } else { "were" },
            if c.canonical_version == 0 {
                1
            } else {
                c.canonical_version
            },
            Esc(&c.unicode_version),
            c.invisible,
            c.whitespace,
            c.compatibility,
            c.confusable
        )?;
        for (n, what) in [
            (c.blank, "blank-looking characters made spaces"),
            (c.spacing, "runs of spaces or tabs made one space"),
            (
                c.lookalike,
                "Latin look-alikes (small capitals, IPA letters) mapped back",
            ),
            (c.mark, "combining marks the text's languages do not use removed"),
            (
                c.bidi_override,
                "characters of bidi-reversed runs put back in reading order",
            ),
        ] {
            if n > 0 {
                write!(o, ", {n} {what}")?;
            }
        }
        o.push_str(".\n");
        if c.normalisation > 0 {
            if c.normalisation == c.total {
                o.push_str("All of them are");
            } else {
                write!(o, "{} of them are", c.normalisation)?;
            }
            o.push_str(
                " normalisation that ordinary software does (a leading byte-order mark, decomposed accents \
                 recomposed), not tampering.",
            );
        }
        o.push('\n');
        if tampered > 0 {
            write!(
                o,
                "{tampered} change{} of the kind tampering makes: text a model wrote rarely needs many such changes, \
                 so tampering is itself evidence.",
                if tampered == 1 { " is" } else { "s are" }
            )?;
        }
        o.push_str(
            "</p></div>\n<table class=\"list\">\n<tr><th>Change</th><th>From</th><th>To</th><th class=\"num\">Times\
             </th></tr>\n",
        );
        for k in c.characters.iter().take(LISTED_CHANGES) {
            writeln!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
                Esc(&name(&k.kind)),
                Esc(&k.from),
                Esc(if k.to.is_empty() { "removed" } else { &k.to }),
                k.count
            )?;
        }
        o.push_str("\n</table>\n");
        if c.characters.len() > LISTED_CHANGES {
            write!(
                o,
                "<p>… {} more kinds of change, all in the JSON.</p>",
                c.characters.len() - LISTED_CHANGES
            )?;
        }
        o.push('\n');
    }
    o.push('\n');
    if r.forms.len() > 1 {
        o.push_str("\n<p>Both forms were tested:\n");
        for (i, f) in r.forms.iter().enumerate() {
            write!(o, "{} ({} tokens, ", Esc(&name(&f.form).replace('_', " ")), f.tokens)?;
            match f.log10_p {
                Some(l) => write!(o, "p = {}", p_page(l))?,
                None => o.push_str("inconclusive"),
            }
            o.push(')');
            if i + 1 < r.forms.len() {
                o.push_str("; ");
            }
        }
        o.push_str(".\nThe verdict stands on the smaller p-value times 2 (Bonferroni)");
        if let Some(l) = r.family_log10_p {
            write!(o, " = {}", p_page(l))?;
        }
        writeln!(
            o,
            ", from the {} form.</p>",
            Esc(&name(&r.decided_by).replace('_', " "))
        )?;
    }
    o.push('\n');
    Ok(())
}

/// The spoof-artifact test.
fn forgery(o: &mut String, p: &Page<'_>, f: &crate::detect::ForgeryTest) -> fmt::Result {
    let detected = p.r.verdict == Verdict::Detected;
    write!(
        o,
        "\n<h3>Could this be a forgery?</h3>\n\n<div class=\"note {}\"><p>Spoof-artifact test against {} reference \
         documents: {} of {} observations common in the reference are hits, {} of {} elsewhere; p = {} (one-sided \
         Fisher exact).\n",
        if f.artifact && detected { "alarm" } else { "" },
        f.reference_documents,
        f.dense_hits,
        f.dense,
        f.sparse_hits,
        f.sparse,
        p_page(f.log10_p)
    )?;
    if f.artifact && detected {
        o.push_str(
            "<strong>Looks forged:</strong> the watermark sits where a spoofer could have learned it; treat the \
             detection as a possible forgery.",
        );
    } else if f.artifact {
        o.push_str("The artifact is present, but the watermark was not detected.");
    } else {
        write!(o, "No sign of forgery at {}.", sci(f.alpha))?;
    }
    o.push_str("</p></div>\n");
    Ok(())
}

/// One row per key: its label, id, p-values and whether it is named.
fn key_rows(o: &mut String, keys: &[KeyResult], best: Option<usize>) -> fmt::Result {
    for (i, k) in keys.iter().enumerate() {
        write!(o, "<tr><td>{}", Esc(&k.label))?;
        if best == Some(i) {
            o.push_str(" (best match)");
        }
        write!(o, "</td><td><code>{}</code></td>", Esc(&name(&k.key_id)))?;
        match &k.tested {
            Some(t) => write!(
                o,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>",
                p_page(t.log10_p),
                p_page(t.log10_p_adjusted),
                if t.detected { "yes" } else { "no" }
            )?,
            None => o.push_str("<td class=\"num\">–</td><td class=\"num\">–</td><td>inconclusive</td>"),
        }
        o.push_str("</tr>\n");
    }
    o.push_str("\n</table>\n");
    Ok(())
}

/// The keys of a keyring report.
fn keys(o: &mut String, p: &Page<'_>) -> fmt::Result {
    if let Some(k) = &p.r.keyring {
        write!(
            o,
            "\n<h2>Keys tested</h2>\n<p>{}; family-wise significance level {}.</p>\n<table class=\"list\">\n\
             <tr><th>Key</th><th>Key id</th><th class=\"num\">p</th><th class=\"num\">adjusted p</th><th>Named</th>\
             </tr>\n",
            Esc(&k.correction),
            sci(k.alpha)
        )?;
        key_rows(o, &k.keys, k.best)?;
    }
    Ok(())
}

/// The cohorts of a radioactivity attribution.
fn cohorts(o: &mut String, p: &Page<'_>) -> fmt::Result {
    if let Some(a) = p.r.radioactivity.as_ref().and_then(|t| t.attribution.as_ref()) {
        let named = if a.named.is_empty() {
            "none".to_string()
        } else {
            a.named.join(", ")
        };
        write!(
            o,
            "\n\n<h2>Cohorts</h2>\n<p>{}; family-wise significance level {}. Named: <strong>{}</strong>.</p>\n\
             <table class=\"list\">\n<tr><th>Cohort</th><th>Key id</th><th class=\"num\">p</th><th class=\"num\">\
             adjusted p</th><th>Named</th></tr>\n",
            Esc(&a.correction),
            sci(a.alpha),
            Esc(&named)
        )?;
        key_rows(o, &a.keys, None)?;
    }
    Ok(())
}

/// The documents of a scan, one row each.
fn documents(o: &mut String, p: &Page<'_>) -> fmt::Result {
    let Some(scan) = &p.r.scan else { return Ok(()) };
    let s = &scan.summary;
    write!(
        o,
        "\n\n<h2>Documents</h2>\n<p>{} documents: <strong>{} detected</strong>, {} not detected, {} inconclusive, {} \
         could not be read. Each document's verdict is at the significance level {} on its own; with many \
         documents, some “detected” by chance are possible only at that rate per document.</p>\n\
         <table class=\"list\" id=\"documents\">\n<tr><th class=\"num\">Line</th><th>Id</th><th>Verdict</th>\
         <th class=\"num\">p</th><th class=\"num\">Tokens</th><th class=\"num\">Scored</th><th>Note</th></tr>\n",
        s.documents,
        s.detected,
        s.not_detected,
        s.inconclusive,
        s.errors,
        sci(s.aggregate.alpha)
    )?;
    for doc in &scan.documents {
        let id = doc
            .id
            .as_ref()
            .filter(|v| !v.is_null())
            .map(id_text)
            .unwrap_or_default();
        let verdict = match doc.verdict {
            Some(Verdict::Detected) => "detected",
            Some(Verdict::NotDetected) => "not detected",
            Some(_) => "inconclusive",
            None => "error",
        };
        write!(
            o,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{verdict}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}",
            doc.line,
            Esc(&id),
            doc.log10_p.map_or_else(|| "–".to_string(), p_page),
            doc.tokens,
            doc.scored,
            Esc(doc.error.as_deref().unwrap_or(""))
        )?;
        if doc.canonical_changes > 0 {
            write!(o, "{} characters canonicalised", doc.canonical_changes)?;
        }
        if let Some(plan) = doc.plan {
            let sep = if doc.canonical_changes > 0 { "; " } else { "" };
            match plan {
                FormPlan::Both => write!(o, "{sep}both forms tested (the smaller p-value × 2)")?,
                plan => write!(o, "{sep}form tested: {plan}")?,
            }
        }
        o.push_str("</td></tr>\n");
    }
    o.push_str("\n</table>\n");
    if scan.documents_not_listed > 0 {
        write!(
            o,
            "<p>… and {} more documents, not listed here; the counts and the aggregate test cover all of them.</p>",
            scan.documents_not_listed
        )?;
    }
    o.push('\n');
    Ok(())
}

/// The text, each token marked, with its legend; or the plain text.
fn text(o: &mut String, p: &Page<'_>) -> fmt::Result {
    let (r, d) = (p.r, p.d);
    let ids: Vec<String> = match (&r.text, d.and_then(|d| d.marks.as_ref())) {
        (None, Some(marks)) => marks.iter().map(|m| m.token.to_string()).collect(),
        _ => Vec::new(),
    };
    let (blocks, legend) = d.map_or_else(
        || (Vec::new(), Legend::default()),
        |d| marked(d, r.text.as_deref(), &ids),
    );
    let text = given(&r.text);
    if let (false, Some(d)) = (blocks.is_empty(), d) {
        write!(
            o,
            "\n<h2>The text, token by token</h2>\n<p class=\"legend\">\n  <span><i style=\"background: var(--green)\">\
             </i>counts for the watermark ({})</span>\n  <span><i style=\"background: var(--red)\"></i>scored, counts \
             against ({})</span>\n  <span><i style=\"background: #fff\"></i><s style=\"color:#8b93a3\">repeat</s>, \
             not counted again ({})</span>\n  <span><i style=\"background: #fff\"></i><em class=\"s\">not scored</em> \
             (too little context: {})</span>\n  ",
            legend.green, legend.red, legend.duplicate, legend.short
        )?;
        if d.window.is_some() {
            o.push_str("<span><i style=\"box-shadow: inset 0 -3px 0 var(--win)\"></i>most significant window</span>");
        }
        o.push_str("\n</p>\n<p><button type=\"button\" id=\"toggle\">Hide colours</button></p>\n<p class=\"meta\">");
        // When each scored token is one Bernoulli draw under the null (a
        // green list), the share of scored tokens green without the
        // watermark, as the scheme's contract says; not stated for other nulls.
        let green_null = d
            .scheme
            .parse::<tracemark_core::SchemeConfig>()
            .ok()
            .and_then(|c| match c.contract().null {
                tracemark_core::Null::Binomial { trials: 1, p } => Some(p),
                _ => None,
            });
        if let Some(g) = green_null {
            let red = ((1.0 - g) * 100.0).round() as i128;
            let share = legend.green + legend.red;
            write!(
                o,
                "Without the watermark about {red}% of scored tokens would be red; here "
            )?;
            match share {
                0 => o.push_str("None"),
                n => write!(o, "{}", (100 * legend.green) / n)?,
            }
            o.push_str("% are green. ");
        }
        write!(
            o,
            "A single green token means nothing; only the count over the whole text does.</p>\n\
             <div class=\"text{}\" id=\"marked\">",
            if text.is_some() { "" } else { " ids" }
        )?;
        for b in &blocks {
            o.push_str("<div class=\"blk\">");
            for piece in &b.pieces {
                if piece.c.is_empty() {
                    write!(o, "{}", Esc(piece.t))?;
                } else {
                    write!(o, "<span class=\"{}\">{}</span>", Esc(&piece.c), Esc(piece.t))?;
                }
            }
            o.push_str("</div>");
        }
        o.push_str("</div>\n");
    } else if let Some(text) = text {
        write!(o, "\n<h2>The text</h2>\n<div class=\"text\">{}</div>\n", Esc(text))?;
    }
    Ok(())
}

/// The facts that make the report reproducible, the command, the footer and the script.
fn reproduce(o: &mut String, p: &Page<'_>) -> fmt::Result {
    let r = p.r;
    o.push_str("<h2>Reproduce and check</h2>\n<table>\n  ");
    if let Some(d) = p.d {
        write!(o, "\n  <tr><th>Scheme</th><td><code>{}</code>", Esc(&d.scheme))?;
        if let Some(s) = &d.scheme_source {
            write!(o, " (from {}", Esc(&s.origin))?;
            if let Some(served) = given(&s.served).filter(|served| *served != d.scheme) {
                write!(o, "; served: <code>{}</code>", Esc(served))?;
            }
            o.push(')');
        }
        o.push_str("</td></tr>\n");
        writeln!(o, "  <tr><th>Spec version</th><td>{}</td></tr>", Esc(&d.spec))?;
        write!(
            o,
            "  <tr><th>Key id</th><td><code>{}</code> (public: it names the key without revealing it)</td></tr>\n  ",
            Esc(&name(&d.key_id))
        )?;
        if let Some(t) = &d.tokenizer {
            write!(
                o,
                "<tr><th>Tokenizer</th><td><code>{}</code> (vocabulary {})</td></tr>",
                Esc(&t.fingerprint),
                t.vocab_size
            )?;
        }
        o.push_str("\n  ");
    }
    o.push_str("\n  ");
    match &r.scan {
        Some(s) => write!(
            o,
            "<tr><th>Corpus SHA-256</th><td><code>{}</code></td></tr>\n  ",
            Esc(&s.summary.corpus_sha256)
        )?,
        None => write!(
            o,
            "\n  <tr><th>Input SHA-256</th><td><code>{}</code></td></tr>",
            Esc(&r.subject.sha256)
        )?,
    }
    write!(
        o,
        "\n  <tr><th>Tool</th><td>{} (report format {})</td></tr>\n  <tr><th>Created</th><td>{}</td></tr>\n  \
         <tr><th>Report SHA-256</th><td><code>{}</code> (of the JSON beside this page, with this field empty)</td>\
         </tr>\n</table>\n<p>Anyone who holds the key file can run this command on the same input and get the same \
         numbers:</p>\n<pre class=\"cmd\" id=\"command\">{}</pre>\n<footer>Made by {}. The statistics are exact \
         (log-space binomial and gamma tails); the JSON file beside this page holds every number shown here.\
         </footer>\n</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>",
        Esc(&r.tool),
        Esc(&r.format),
        Esc(&r.created),
        Esc(&r.report_sha256),
        Esc(&r.command),
        Esc(&r.tool)
    )
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

    #[test]
    fn the_escaping_rule() {
        assert_eq!(
            Esc(r#"<a href='x'>&"/"#).to_string(),
            "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;&#x2f;"
        );
        assert_eq!(Esc("plain text, é \u{202e}").to_string(), "plain text, é \u{202e}");
        assert_eq!(Esc("").to_string(), "");
    }

    #[test]
    fn document_ids_as_the_page_writes_them() {
        let id = |j: &str| id_text(&serde_json::from_str(j).expect("test input"));
        assert_eq!(id("3"), "3");
        assert_eq!(id("-3"), "-3");
        assert_eq!(id("3.0"), "3.0");
        assert_eq!(id("1e21"), "1000000000000000000000.0");
        assert_eq!(id("true"), "True");
        assert_eq!(id(r#""<b>""#), "<b>");
        assert_eq!(
            id(r#"[1, "a", null, 2.5, {"k": [1.0]}]"#),
            r#"[1, "a", None, 2.5, {"k": [1.0]}]"#
        );
    }

    /// Input that tries to break out of the page (a script, quotes that
    /// would end an attribute, `&`, bidi controls) is shown as text: the
    /// page's markup is the same as for a harmless input.
    #[test]
    fn hostile_input_stays_text() {
        use crate::detect::{DetectOptions, Detector};
        use tracemark_core::{Key, SchemeConfig};
        let hostile =
            "<script>alert(\"x&y\")</script> 'q' \"><img src=x onerror=alert(1)> &amp; \u{202e}evil\u{202c} </div>";
        let key = Key::from_bytes([9; 32]);
        let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("test input");
        let options = DetectOptions {
            marks: true,
            ..DetectOptions::default()
        };
        let detector = Detector::new(&key, &config, 1000, options).expect("test input");
        let ids: Vec<u32> = (0..300u32).map(|i| i * 7 % 1000).collect();
        let d = detector.detect_ids(&[], &ids).expect("test input");
        let page = |text: &str| {
            let mut r = Report::detection(
                d.clone(),
                Some(text.to_string()),
                Subject::of_bytes(text, text.as_bytes()),
                format!("tracemark detect {text}"),
            );
            r.tool = text.to_string();
            html(&r).expect("test input")
        };
        let bad = page(hostile);
        let good = page("harmless");
        for tag in ["<script", "<img", "<div", "</div", "\""] {
            assert_eq!(bad.matches(tag).count(), good.matches(tag).count(), "{tag}");
        }
        assert!(!bad.contains("<script>alert") && !bad.contains("<img src=x"), "{bad}");
        assert!(bad.contains("&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;&#x2f;script&gt;"));
        assert!(bad.contains("&#x27;q&#x27; &quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp;amp;"));
        // Bidi controls stay characters of the text, inside their element.
        assert!(bad.contains("\u{202e}evil\u{202c} &lt;&#x2f;div&gt;"));
    }
}
