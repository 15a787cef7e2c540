//! `scan`: a verdict per document of a JSONL corpus, and one aggregate test.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use tracemark_candle::embed::Embedder;
use tracemark_core::Semantic;
use tracemark_verifier::detect::semantic::{SemanticCorpus, SemanticDetection};
use tracemark_verifier::{render, Detector, Scanner};

use super::Setup;
use crate::args::{InputKind, ScanArgs};
use crate::exit::{Exit, Failure};
use crate::progress;
use crate::semantic::{load_embedder, semantic_scheme};

/// The semantic layer of the texts of the JSONL corpus at `path`, tested
/// together ([`SemanticCorpus`]): each text in the form `d` tests, its scored
/// sentences embedded by `embedder`. Lines that are not a text document
/// (ids, bad JSON: the token scan counted them) are skipped.
fn semantic_corpus(
    d: &Detector,
    scheme: &Semantic,
    embedder: &Embedder,
    path: &Path,
) -> Result<SemanticDetection, Failure> {
    if path == Path::new("-") {
        return Err(Failure::Usage(
            "scan --semantic reads the corpus a second time: give a file, not standard input".into(),
        ));
    }
    let read_failure = |error| Failure::Read {
        source: path.display().to_string(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_failure)?;
    let mut corpus = SemanticCorpus::new(scheme);
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.map_err(read_failure)?;
        let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice(&line) else {
            continue;
        };
        let Some(text) = doc.get("text").and_then(serde_json::Value::as_str) else {
            continue;
        };
        let form = d.semantic_form(text);
        let sentences = form.scored_sentences(scheme);
        let embeddings = embedder.embed(&sentences).map_err(|e| Failure::Malformed {
            source: "--embedder".into(),
            message: e.to_string(),
        })?;
        let rows: Vec<&[f32]> = embeddings.rows().collect();
        corpus.push_text(form.text(), &rows)?;
    }
    Ok(corpus.finish())
}

/// One JSON value on one line.
fn json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Runs `scan`. Per-document results are JSON lines on standard output (or
/// in `--out`); with `--json` the summary is one more JSON line on standard
/// output, `{"summary": ...}`, else a report for people on standard error.
pub(crate) fn run(a: ScanArgs) -> Result<Exit, Failure> {
    let s = Setup::new(&a.common, InputKind::Text)?;
    let key = s.only_key("scans")?;
    let detector = Detector::new(key, &s.scheme, s.vocab, s.options.clone())?;
    let scanner = Scanner::new(&detector, s.tokenizer.as_ref()).jobs(a.jobs);
    let (mut out, target): (Box<dyn Write>, String) = match &a.out {
        Some(p) => {
            let file = std::fs::File::create(p).map_err(|error| Failure::Write {
                target: p.display().to_string(),
                error,
            })?;
            (Box::new(std::io::BufWriter::new(file)), p.display().to_string())
        }
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            "standard output".to_string(),
        ),
    };
    let write_failure = |error| Failure::Write {
        target: format!("writing results to {target}"),
        error,
    };
    let mut write_error = None;
    let mut summary = progress::scan(&scanner, &a.corpus, |doc| {
        if write_error.is_none() {
            write_error = json_line(&mut out, doc).err();
        }
    })?;
    summary.aggregate.scheme_source = Some(s.scheme_source.clone());
    if let Some(error) = write_error {
        return Err(write_failure(error));
    }
    if let Some(scheme) = &a.semantic {
        let scheme = semantic_scheme(key, scheme)?;
        let embedder = load_embedder(a.embedder.as_deref())?;
        let layer = semantic_corpus(&detector, &scheme, &embedder, &a.corpus)?;
        summary.aggregate.add_semantic(layer)?;
    }
    if a.common.json {
        let line = serde_json::json!({ "summary": summary });
        if a.out.is_some() {
            out.flush().map_err(write_failure)?;
            out = Box::new(std::io::stdout().lock());
        }
        json_line(&mut out, &line).map_err(write_failure)?;
        out.flush().map_err(write_failure)?;
    } else {
        out.flush().map_err(write_failure)?;
        eprint!(
            "{}",
            render::scan_summary(&summary, s.color && std::io::stderr().is_terminal())
        );
    }
    Ok(Exit::Success)
}
