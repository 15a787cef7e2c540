//! Corpus scans: many documents, a verdict for each, and one aggregate test
//! over all of them with deduplication across documents (the basis of the
//! radioactivity test).
//!
//! A corpus is JSON Lines, one document per line, either text
//! (`{"text": "...", "prompt": "..."}`, needs a tokenizer) or ids
//! (`{"ids": [...], "prompt_ids": [...]}`); an optional `"id"` is echoed back
//! and other fields are ignored. A line that is not a valid document is
//! reported with its line number and counted; the scan goes on.
//!
//! Documents are processed in parallel in batches; the aggregate merges them
//! in file order, so results do not depend on the number of threads.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detect::{Counts, Dedup, Deduplicator, Detection, Detector, Observations, PrfSet, Scored, Verdict};
use crate::error::{Error, Result};
use crate::text::TextTokenizer;

/// Lines per parallel batch.
const BATCH: usize = 512;

/// The per-document line of a scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DocResult {
    /// 1-based line number in the corpus.
    pub line: usize,
    /// The document's `"id"`, if it had one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<Value>,
    /// The verdict (absent on error).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verdict: Option<Verdict>,
    /// `log10` of the document's exact p-value.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log10_p: Option<f64>,
    /// Completion tokens seen.
    pub tokens: usize,
    /// Tokens scored.
    pub scored: usize,
    /// Why the line could not be tested.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The summary of a scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanSummary {
    /// Lines holding a document (blank lines are not counted).
    pub documents: usize,
    /// Documents that could not be tested (bad JSON, bad ids, ...).
    pub errors: usize,
    /// Documents with each verdict.
    pub detected: usize,
    /// Documents with no watermark detected.
    pub not_detected: usize,
    /// Documents too short to test.
    pub inconclusive: usize,
    /// SHA-256 of the corpus bytes.
    pub corpus_sha256: String,
    /// The aggregate test over every document, deduplicated across documents.
    pub aggregate: Detection,
}

/// A set of context keys (from our own watermarked outputs) to restrict scoring to.
#[derive(Clone, Debug, Default)]
pub struct ContextFilter {
    keys: PrfSet<u64>,
}

impl ContextFilter {
    /// An empty filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a context key.
    pub fn insert(&mut self, context_key: u64) -> bool {
        self.keys.insert(context_key)
    }

    /// Whether a context key is in the filter.
    pub fn contains(&self, context_key: u64) -> bool {
        self.keys.contains(&context_key)
    }

    /// The number of context keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the filter is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One parsed document.
#[derive(Debug)]
struct Doc {
    id: Option<Value>,
    prompt: Vec<u32>,
    ids: Vec<u32>,
}

fn ids_field(v: &Value, name: &str) -> std::result::Result<Vec<u32>, String> {
    v.as_array()
        .ok_or_else(|| format!("`{name}` must be an array of token ids"))?
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| format!("`{name}` holds {x}, not a token id"))
        })
        .collect()
}

fn parse_doc(line: &str, tokenizer: Option<&TextTokenizer>) -> std::result::Result<Doc, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("a document must be a JSON object")?;
    let id = obj.get("id").cloned();
    match (obj.get("text"), obj.get("ids")) {
        (Some(text), None) => {
            let text = text.as_str().ok_or("`text` must be a string")?;
            let tok = tokenizer.ok_or("text documents need a tokenizer (--tokenizer)")?;
            let ids = tok.encode(text).map_err(|e| e.to_string())?.ids;
            let prompt = match obj.get("prompt") {
                Some(p) => {
                    tok.encode(p.as_str().ok_or("`prompt` must be a string")?)
                        .map_err(|e| e.to_string())?
                        .ids
                }
                None => Vec::new(),
            };
            Ok(Doc { id, prompt, ids })
        }
        (None, Some(ids)) => {
            let prompt = match obj.get("prompt_ids") {
                Some(p) => ids_field(p, "prompt_ids")?,
                None => Vec::new(),
            };
            Ok(Doc {
                id,
                prompt,
                ids: ids_field(ids, "ids")?,
            })
        }
        (Some(_), Some(_)) => Err("a document has `text` or `ids`, not both".into()),
        (None, None) => Err("a document needs a `text` or an `ids` field".into()),
    }
}

/// Scans corpora with one detector.
pub struct Scanner<'a> {
    detector: &'a Detector,
    tokenizer: Option<&'a TextTokenizer>,
    filter: Option<&'a ContextFilter>,
    jobs: usize,
}

impl core::fmt::Debug for Scanner<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Scanner({:?}, jobs {})", self.detector, self.jobs)
    }
}

impl<'a> Scanner<'a> {
    /// A scanner; `tokenizer` is needed for text documents.
    pub fn new(detector: &'a Detector, tokenizer: Option<&'a TextTokenizer>) -> Self {
        Self {
            detector,
            tokenizer,
            filter: None,
            jobs: 0,
        }
    }

    /// Threads to use (0 = one per core).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// Scores only observations whose context key is in `filter` (e.g. the
    /// contexts of our own watermarked outputs).
    pub fn filter(mut self, filter: &'a ContextFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    fn process(&self, line_no: usize, raw: &[u8]) -> (DocResult, Option<Observations>) {
        let mut result = DocResult {
            line: line_no,
            id: None,
            verdict: None,
            log10_p: None,
            tokens: 0,
            scored: 0,
            error: None,
        };
        let doc = core::str::from_utf8(raw)
            .map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to()))
            .and_then(|line| parse_doc(line, self.tokenizer));
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                result.error = Some(e);
                return (result, None);
            }
        };
        result.id = doc.id;
        if doc.ids.is_empty() {
            result.error = Some(Error::EmptyInput.to_string());
            return (result, None);
        }
        match self.detector.observe(&doc.prompt, &doc.ids, false) {
            Err(e) => {
                result.error = Some(e.to_string());
                (result, None)
            }
            Ok(mut obs) => {
                if let Some(filter) = self.filter {
                    let before = obs.scored.len();
                    obs.scored.retain(|s| filter.contains(s.context_key));
                    obs.counts.scored = obs.scored.len();
                    obs.counts.skipped_by_filter += before - obs.scored.len();
                }
                let report = self.detector.report(obs.clone());
                result.verdict = Some(report.verdict);
                result.log10_p = report.verdict_log10_p();
                result.tokens = report.counts.seen;
                result.scored = report.counts.scored;
                (result, Some(obs))
            }
        }
    }

    /// Scans a JSONL corpus. `on_doc` sees each document's result, in order,
    /// as soon as its batch is done. I/O errors on the reader abort the scan;
    /// bad lines do not.
    pub fn scan<R: BufRead>(&self, mut reader: R, mut on_doc: impl FnMut(&DocResult)) -> Result<ScanSummary> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs)
            .build()
            .map_err(|e| Error::InvalidOption {
                name: "jobs",
                message: e.to_string(),
            })?;
        let mut hasher = sha2::Sha256::default();
        let mut merged = Merger::new(self.detector.options().dedup);
        let mut summary_counts = [0usize; 5]; // documents, errors, detected, not detected, inconclusive
        let mut line_no = 0usize;
        let mut done = false;
        while !done {
            let mut batch: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                let mut buf = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| Error::io("corpus", &e))?;
                if n == 0 {
                    done = true;
                    break;
                }
                sha2::Digest::update(&mut hasher, &buf);
                line_no += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                batch.push((line_no, buf));
            }
            let results: Vec<(DocResult, Option<Observations>)> = pool.install(|| {
                use rayon::prelude::*;
                batch.par_iter().map(|(n, raw)| self.process(*n, raw)).collect()
            });
            for (result, obs) in results {
                summary_counts[0] += 1;
                match (&result.error, result.verdict) {
                    (Some(_), _) => summary_counts[1] += 1,
                    (None, Some(Verdict::Detected)) => summary_counts[2] += 1,
                    (None, Some(Verdict::NotDetected)) => summary_counts[3] += 1,
                    _ => summary_counts[4] += 1,
                }
                if let Some(obs) = obs {
                    merged.add(obs);
                }
                on_doc(&result);
            }
        }
        let digest = sha2::Digest::finalize(hasher);
        let corpus_sha256 = format!(
            "sha256:{}",
            digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut aggregate = self.detector.report(merged.finish());
        aggregate.tokenizer = self.tokenizer.map(|t| t.info().clone());
        aggregate.input_sha256 = Some(corpus_sha256.clone());
        Ok(ScanSummary {
            documents: summary_counts[0],
            errors: summary_counts[1],
            detected: summary_counts[2],
            not_detected: summary_counts[3],
            inconclusive: summary_counts[4],
            corpus_sha256,
            aggregate,
        })
    }
}

/// Merges per-document observations in document order, deduplicating across documents.
struct Merger {
    dedup: Dedup,
    seen: Deduplicator,
    scored: Vec<Scored>,
    counts: Counts,
}

impl Merger {
    fn new(dedup: Dedup) -> Self {
        Self {
            dedup,
            seen: Deduplicator::default(),
            scored: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn add(&mut self, obs: Observations) {
        self.counts.prompt += obs.counts.prompt;
        self.counts.seen += obs.counts.seen;
        self.counts.skipped_short_context += obs.counts.skipped_short_context;
        self.counts.skipped_duplicate += obs.counts.skipped_duplicate;
        self.counts.skipped_by_filter += obs.counts.skipped_by_filter;
        for s in obs.scored {
            if !self.seen.is_new(self.dedup, s.context_key, s.seed, s.token) {
                self.counts.skipped_duplicate += 1;
            } else {
                self.scored.push(s);
            }
        }
    }

    fn finish(mut self) -> Observations {
        self.counts.scored = self.scored.len();
        Observations {
            scored: self.scored,
            counts: self.counts,
            marks: None,
        }
    }
}

/// Reads a corpus file (or `-` for stdin) and scans it.
pub fn scan_path(scanner: &Scanner<'_>, path: &std::path::Path, on_doc: impl FnMut(&DocResult)) -> Result<ScanSummary> {
    if path.as_os_str() == "-" {
        scanner.scan(std::io::stdin().lock(), on_doc)
    } else {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
        scanner.scan(std::io::BufReader::new(file), on_doc)
    }
}

/// The context keys of a corpus of our own watermarked outputs, for
/// [`Scanner::filter`].
pub fn context_keys(
    detector: &Detector,
    tokenizer: Option<&TextTokenizer>,
    reader: impl BufRead,
) -> Result<ContextFilter> {
    let mut keys = ContextFilter::default();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io("reference corpus", &e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = core::str::from_utf8(&line).map_err(|e| Error::BadDocument {
            line: i + 1,
            message: format!("not valid UTF-8 (byte {})", e.valid_up_to()),
        })?;
        let doc = parse_doc(text, tokenizer).map_err(|message| Error::BadDocument { line: i + 1, message })?;
        detector.check_ids(&doc.prompt, 0)?;
        detector.check_ids(&doc.ids, doc.prompt.len())?;
        let mut history = doc.prompt;
        for &t in &doc.ids {
            if let Some(cs) = detector.scheme().seeder().context_seed(&history) {
                keys.insert(cs.key);
            }
            history.push(t);
        }
    }
    Ok(keys)
}
