//! `report`: a self-contained HTML report and the JSON it is made from.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tracemark_verifier::internal::sha256_hex;
use tracemark_verifier::report::{self, RadioactivityReport, Report, ScanReport, Subject, LISTED_DOCUMENTS};
use tracemark_verifier::{Detector, Scanner};

use super::{detect, radioactivity, Setup};
use crate::args::{DetectArgs, InputKind, RadioArgs, ScanArgs};
use crate::exit::{Exit, Failure};
use crate::input::source_name;
use crate::progress;

/// What `report` takes: where to write, and the test.
#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The HTML file to write; the JSON goes beside it (same name, .json)
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The test to report on, with its usual arguments
    #[command(subcommand)]
    pub(crate) test: ReportTest,
}

/// The tests a report can be about.
#[derive(Subcommand)]
pub(crate) enum ReportTest {
    /// A text (or ids) against a key or a keyring (the arguments of `tracemark detect`)
    Detect(DetectArgs),
    /// A JSONL corpus: every document and one aggregate test (the arguments of `tracemark scan`)
    Scan(ScanArgs),
    /// A radioactivity test (the arguments of `tracemark radioactivity`)
    Radioactivity(RadioArgs),
}

/// The command line that made this report, quoted for a POSIX shell.
fn command_line() -> String {
    let quote = |a: String| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    let mut args = std::env::args();
    let mut out = vec!["tracemark".to_string()];
    args.next();
    out.extend(args.map(quote));
    out.join(" ")
}

/// The subject of a corpus file: its name, SHA-256 and size.
fn corpus_subject(path: &Path) -> Result<Subject, Failure> {
    let name = source_name(path);
    if path.as_os_str() == "-" {
        return Err(Failure::Usage(
            "a report reads its corpus from a file (it records the file's SHA-256): give a path, not -".into(),
        ));
    }
    let bytes = std::fs::read(path).map_err(|error| Failure::Read {
        source: name.clone(),
        error,
    })?;
    Ok(Subject::of_digest(&name, sha256_hex(&bytes), bytes.len()))
}

/// Writes `r` sealed, as `out` (HTML) and its JSON beside it.
fn write(mut r: Report, out: &Path) -> Result<(), Failure> {
    r.seal()?;
    let json_path = out.with_extension("json");
    let json = serde_json::to_vec_pretty(&r).map_err(|e| Failure::Write {
        target: json_path.display().to_string(),
        error: e.into(),
    })?;
    let page = report::html(&r)?;
    for (path, bytes) in [(&json_path, json.as_slice()), (&out.to_path_buf(), page.as_bytes())] {
        std::fs::write(path, bytes).map_err(|error| Failure::Write {
            target: path.display().to_string(),
            error,
        })?;
    }
    progress::note(&format!(
        "wrote {} and {} (report SHA-256 {}); open the HTML file in any browser",
        out.display(),
        json_path.display(),
        r.report_sha256
    ));
    Ok(())
}

/// Runs `report`: the test, then the page and its JSON. The exit code is the verdict's, as the test's own command gives.
pub(crate) fn run(a: ReportArgs) -> Result<Exit, Failure> {
    if a.out.extension().is_none_or(|e| e != "html") {
        return Err(Failure::Usage(format!(
            "--out {}: name the HTML file, ending in .html (the JSON is written beside it)",
            a.out.display()
        )));
    }
    let command = command_line();
    let report = match &a.test {
        ReportTest::Detect(d) => {
            let (found, input, _) = detect::evaluate(d, true)?;
            match found {
                detect::Found::Single(det) => Report::detection(det, input.text, input.subject, command),
                detect::Found::Keyring(k) => Report::keyring(k, input.text, input.subject, command),
            }
        }
        ReportTest::Scan(s) => scan(s, command)?,
        ReportTest::Radioactivity(r) => {
            if r.api.api.is_some() {
                return Err(Failure::Usage(
                    "radioactivity --api writes its own report (OUT.json and OUT.html): run it without `report`".into(),
                ));
            }
            let subject = corpus_subject(r.corpus()?)?;
            let t = radioactivity::evaluate(r)?;
            Report::radioactivity(
                RadioactivityReport::new(t.description, t.detection, t.attribution),
                subject,
                command,
            )
        }
    };
    let verdict = report.verdict;
    write(report, &a.out)?;
    Ok(Exit::from(verdict))
}

/// A scan, keeping the first documents for the report.
fn scan(a: &ScanArgs, command: String) -> Result<Report, Failure> {
    let subject = corpus_subject(&a.corpus)?;
    let s = Setup::new(&a.common, InputKind::Text)?;
    let key = s.only_key("scans")?;
    let detector = Detector::new(key, &s.scheme, s.vocab, s.options.clone())?;
    let scanner = Scanner::new(&detector, s.tokenizer.as_ref()).jobs(a.jobs);
    let mut documents = Vec::new();
    let mut summary = progress::scan(&scanner, &a.corpus, |doc| {
        if documents.len() <= LISTED_DOCUMENTS {
            documents.push(doc.clone());
        }
    })?;
    summary.aggregate.scheme_source = Some(s.scheme_source.clone());
    let mut r = ScanReport::new(summary, documents);
    r.documents_not_listed = r.summary.documents.saturating_sub(r.documents.len());
    Ok(Report::scan(r, subject, command))
}
