//! Corpus scans: many documents, a verdict for each, and one aggregate test
//! over all of them with deduplication across documents (the basis of the
//! radioactivity test).
//!
//! A corpus is a sequence of [`Document`]s: in memory
//! ([`Scanner::scan_documents`]), or JSON Lines ([`Scanner::scan`]), one
//! document per line, either text
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

use crate::detect::observe::{Counts, Dedup, Deduplicator, Observations, Scored};
use crate::detect::{Detection, Detector, ForgeryReference, Verdict};
use crate::error::{Error, Result};
use crate::text::canonical::{plan_forms, Canonical, Form, FormFamily, FormPlan};
use crate::text::{Deadline, TextTokenizer};

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
    /// Characters canonicalisation changed in a text document (its
    /// completion and prompt together).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub canonical_changes: usize,
    /// The forms of a changed text document that were tested, decided from
    /// the text alone as `tracemark detect` decides them (SPEC §14.1; the
    /// `plan` of detect's `canonical` section): `as_given`, `canonical`, or
    /// `both` (then `log10_p` is the smaller p-value times 2). Absent for
    /// ids, for text that did not change (tested as given) and for scans
    /// without canonicalisation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plan: Option<FormPlan>,
    /// Why the line could not be tested.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

/// A set of context keys (from our own watermarked outputs) to restrict scoring to:
/// the core's context-key set ([`tracemark_core::SeenContexts`]), read as a filter.
#[derive(Clone, Debug, Default)]
pub struct ContextFilter {
    keys: tracemark_core::SeenContexts,
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
        self.keys.contains(context_key)
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

/// One document of a corpus: token ids, or text for a tokenizer to encode.
/// The prompt (if any) is context only: it seeds the first contexts and is
/// never scored.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Document {
    /// Token ids.
    Ids {
        /// Echoed back in the document's [`DocResult`].
        id: Option<Value>,
        /// Context-only prefix (may be empty).
        prompt_ids: Vec<u32>,
        /// The completion to test.
        ids: Vec<u32>,
    },
    /// Text (needs a [`TextTokenizer`]).
    Text {
        /// Echoed back in the document's [`DocResult`].
        id: Option<Value>,
        /// Context-only prefix.
        prompt: Option<String>,
        /// The completion to test.
        text: String,
    },
}

impl Document {
    /// A document of ids (without an id of its own).
    pub fn ids(prompt_ids: Vec<u32>, ids: Vec<u32>) -> Self {
        Self::Ids {
            id: None,
            prompt_ids,
            ids,
        }
    }

    /// A text document (without an id of its own).
    pub fn text(prompt: Option<String>, text: String) -> Self {
        Self::Text { id: None, prompt, text }
    }

    /// The same document carrying `id`, echoed back in its [`DocResult`].
    pub fn with_id(mut self, new_id: Value) -> Self {
        match &mut self {
            Self::Ids { id, .. } | Self::Text { id, .. } => *id = Some(new_id),
        }
        self
    }

    /// The document as one JSON Lines line (keys sorted, with the newline):
    /// what [`Scanner::scan`] reads, and what an in-memory scan hashes.
    pub fn to_json_line(&self) -> String {
        let mut v = match self {
            Self::Ids { prompt_ids, ids, .. } => serde_json::json!({"prompt_ids": prompt_ids, "ids": ids}),
            Self::Text { prompt, text, .. } => match prompt {
                Some(p) => serde_json::json!({"prompt": p, "text": text}),
                None => serde_json::json!({ "text": text }),
            },
        };
        if let (Self::Ids { id: Some(id), .. } | Self::Text { id: Some(id), .. }, Some(obj)) = (self, v.as_object_mut())
        {
            obj.insert("id".into(), id.clone());
        }
        v.to_string() + "\n"
    }

    /// Its id, prompt ids and completion ids (text encoded by `tokenizer`).
    /// With `canonical`, a text's forms are those [`Forms`] asks for: the
    /// plan's (SPEC §14.1, as `Detector::detect_text`), or for a reference
    /// corpus its canonical form and the form as given when it differs.
    /// Canonicalisation and tokenisation stop at `deadline`
    /// ([`TextTokenizer::encode_until`]).
    pub(crate) fn resolve(
        self,
        tokenizer: Option<&TextTokenizer>,
        canonical: bool,
        forms: Forms,
        deadline: Deadline,
    ) -> std::result::Result<Doc, String> {
        match self {
            Self::Ids { id, prompt_ids, ids } => Ok(Doc {
                id,
                prompt: prompt_ids,
                ids,
                second: None,
                changes: 0,
                plan: None,
                changed: false,
            }),
            Self::Text { id, prompt, text } => {
                // As `Detector::detect_text`: a text of white space only is
                // empty input, whatever its tokens.
                if forms == Forms::Planned && text.trim().is_empty() {
                    return Err(Error::EmptyInput.to_string());
                }
                let tok = tokenizer.ok_or("text documents need a tokenizer (--tokenizer)")?;
                let encode = |text: &str| {
                    tok.encode_until(text, deadline)
                        .map(|e| e.ids)
                        .map_err(|e| e.to_string())
                };
                let encode_prompt = |p: Option<&str>| p.map_or(Ok(Vec::new()), encode);
                let given = || Ok::<_, String>((encode_prompt(prompt.as_deref())?, encode(&text)?));
                if !canonical {
                    let (prompt, ids) = given()?;
                    return Ok(Doc {
                        id,
                        prompt,
                        ids,
                        second: None,
                        changes: 0,
                        plan: None,
                        changed: false,
                    });
                }
                let planned = plan_forms(prompt.as_deref(), &text, deadline).map_err(|e| e.to_string())?;
                let changes = planned.completion.changes().len();
                let changed = planned.changes() > 0;
                let canonical_form = || {
                    Ok::<_, String>((
                        encode_prompt(planned.prompt.as_ref().map(Canonical::text))?,
                        encode(planned.completion.text())?,
                    ))
                };
                // The form first tested (and entering the aggregate): the
                // canonical one when it is tested; then the other, when both are.
                let ((prompt, ids), second) = match forms {
                    Forms::Planned => match planned.plan {
                        FormPlan::Both => (canonical_form()?, Some(given()?)),
                        plan if plan.tests(Form::Canonical) => (canonical_form()?, None),
                        _ => (given()?, None),
                    },
                    Forms::Reference if !changed || planned.completion.text().trim().is_empty() => (given()?, None),
                    Forms::Reference => (canonical_form()?, Some(given()?)),
                };
                Ok(Doc {
                    id,
                    prompt,
                    ids,
                    second,
                    changes,
                    plan: matches!(forms, Forms::Planned).then_some(planned.plan),
                    changed,
                })
            }
        }
    }
}

/// Which forms of a text document [`Document::resolve`] encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forms {
    /// The forms `form_plan` says to test (SPEC §14.1): a document scanned.
    Planned,
    /// The canonical form, and the form as given when it differs: a corpus
    /// of our own outputs (context filter, forgery reference), whose contexts
    /// are gathered from both forms and which is not tested.
    Reference,
}

/// One document, resolved to ids.
#[derive(Debug)]
pub(crate) struct Doc {
    id: Option<Value>,
    /// Prompt ids of the form tested first: the canonical form when the
    /// plan tests it, else the text as given.
    pub(crate) prompt: Vec<u32>,
    /// Completion ids of that form; its observations enter the aggregate.
    pub(crate) ids: Vec<u32>,
    /// The prompt and completion ids of the text as given, when it is tested
    /// too (plan `both`; for a reference corpus, whenever the text changed).
    second: Option<(Vec<u32>, Vec<u32>)>,
    /// Characters canonicalisation changed in the completion.
    changes: usize,
    /// The forms tested, for a scanned text with canonicalisation on.
    plan: Option<FormPlan>,
    /// Whether canonicalisation changed the completion or the prompt.
    changed: bool,
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

/// A JSONL line as a [`Document`] (its shape only: text is not encoded here).
fn parse_doc(line: &str) -> std::result::Result<Document, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("a document must be a JSON object")?;
    let id = obj.get("id").cloned();
    match (obj.get("text"), obj.get("ids")) {
        (Some(text), None) => {
            let text = text.as_str().ok_or("`text` must be a string")?.to_string();
            let prompt = match obj.get("prompt") {
                Some(p) => Some(p.as_str().ok_or("`prompt` must be a string")?.to_string()),
                None => None,
            };
            Ok(Document::Text { id, prompt, text })
        }
        (None, Some(ids)) => {
            let prompt_ids = match obj.get("prompt_ids") {
                Some(p) => ids_field(p, "prompt_ids")?,
                None => Vec::new(),
            };
            Ok(Document::Ids {
                id,
                prompt_ids,
                ids: ids_field(ids, "ids")?,
            })
        }
        (Some(_), Some(_)) => Err("a document has `text` or `ids`, not both".into()),
        (None, None) => Err("a document needs a `text` or an `ids` field".into()),
    }
}

/// A document waiting in a batch: a raw JSONL line, or one given in memory.
pub(crate) enum Pending {
    Line(Vec<u8>),
    Doc(Document),
}

/// Scans corpora with one detector.
pub struct Scanner<'a> {
    detector: &'a Detector,
    tokenizer: Option<&'a TextTokenizer>,
    filter: Option<&'a ContextFilter>,
    jobs: usize,
    deadline: Deadline,
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
            deadline: Deadline::NONE,
        }
    }

    /// Stops each text document's canonicalisation and tokenisation at
    /// `deadline` (a document past it, or with a stretch too long to encode
    /// under one, is a document error); the caller stops reading documents
    /// at it. Default: none.
    pub fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
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

    pub(crate) fn process(&self, line_no: usize, pending: Pending) -> (DocResult, Option<Observations>) {
        let mut result = DocResult {
            line: line_no,
            id: None,
            verdict: None,
            log10_p: None,
            tokens: 0,
            scored: 0,
            canonical_changes: 0,
            plan: None,
            error: None,
        };
        let doc = match pending {
            Pending::Line(raw) => core::str::from_utf8(&raw)
                .map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to()))
                .and_then(parse_doc),
            Pending::Doc(doc) => Ok(doc),
        }
        .and_then(|doc| {
            doc.resolve(
                self.tokenizer,
                self.detector.options().canonicalize,
                Forms::Planned,
                self.deadline,
            )
        });
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                result.error = Some(e);
                return (result, None);
            }
        };
        result.id = doc.id;
        result.canonical_changes = doc.changes;
        result.plan = doc.plan.filter(|_| doc.changed);
        if doc.ids.is_empty() {
            result.error = Some(Error::EmptyInput.to_string());
            return (result, None);
        }
        let obs = match self.observe(&doc.prompt, &doc.ids) {
            Err(e) => {
                result.error = Some(e.to_string());
                return (result, None);
            }
            Ok(obs) => obs,
        };
        let report = self.detector.report(obs.clone());
        let Some(plan) = doc.plan else {
            // Ids, or text without canonicalisation: one form, its own
            // verdict (as `detect_ids` and `detect_text` without it).
            result.verdict = Some(report.verdict);
            result.log10_p = report.verdict_log10_p();
            result.tokens = report.counts.seen;
            result.scored = report.counts.scored;
            return (result, Some(obs));
        };
        // Text: the forms its plan names (the text as given alone when
        // nothing changed), tested and combined as `Detector::detect_text`
        // does, the text as given first. The
        // aggregate takes the first form's observations (the canonical form
        // when it is tested), chosen before any test.
        let mut forms = vec![(report.form_log10_p(), report.counts)];
        if let Some((prompt, ids)) = &doc.second {
            let given = if ids.is_empty() {
                Err(Error::EmptyInput)
            } else {
                self.observe(prompt, ids).map(|o| self.detector.report(o))
            };
            match given {
                Err(e) => {
                    result.error = Some(e.to_string());
                    return (result, None);
                }
                Ok(given) => forms.insert(0, (given.form_log10_p(), given.counts)),
            }
        }
        debug_assert_eq!(forms.len(), plan.forms());
        let family = FormFamily::of(&forms.iter().map(|f| f.0).collect::<Vec<_>>());
        result.verdict = Some(self.detector.family_verdict(&family));
        result.log10_p = family.family_log10_p;
        result.tokens = forms[family.decided].1.seen;
        result.scored = forms[family.decided].1.scored;
        (result, Some(obs))
    }

    /// The observations of one form of a document, through the context filter.
    fn observe(&self, prompt: &[u32], ids: &[u32]) -> Result<Observations> {
        let mut obs = self.detector.observe(prompt, ids, false)?;
        if let Some(filter) = self.filter {
            let before = obs.scored.len();
            obs.scored.retain(|s| filter.contains(s.context_key));
            obs.counts.scored = obs.scored.len();
            obs.counts.skipped_by_filter += before - obs.scored.len();
        }
        Ok(obs)
    }

    /// Scans a JSONL corpus. `on_doc` sees each document's result, in order,
    /// as soon as its batch is done. I/O errors on the reader abort the scan;
    /// bad lines do not. The summary's hash is that of the corpus bytes.
    pub fn scan<R: BufRead>(&self, mut reader: R, on_doc: impl FnMut(&DocResult)) -> Result<ScanSummary> {
        let mut hasher = sha2::Sha256::default();
        let mut line_no = 0usize;
        let mut failed = None;
        let lines = std::iter::from_fn(|| loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    failed = Some(Error::io("corpus", e));
                    return None;
                }
            }
            sha2::Digest::update(&mut hasher, &buf);
            line_no += 1;
            if !buf.iter().all(u8::is_ascii_whitespace) {
                return Some((line_no, Pending::Line(buf)));
            }
        });
        let scan = self.run(lines, on_doc);
        if let Some(e) = failed {
            return Err(e);
        }
        scan?.finish(sha2::Digest::finalize(hasher))
    }

    /// Scans documents held in memory, exactly as [`scan`](Self::scan) scans
    /// their JSONL form: `on_doc` sees each result in order (`line` is the
    /// 1-based position of the document), and a document that cannot be
    /// tested is reported and counted, not fatal. The summary's hash is that
    /// of the documents' [`Document::to_json_line`] forms.
    pub fn scan_documents(
        &self,
        documents: impl IntoIterator<Item = Document>,
        on_doc: impl FnMut(&DocResult),
    ) -> Result<ScanSummary> {
        let mut hasher = sha2::Sha256::default();
        let docs = documents.into_iter().enumerate().map(|(i, doc)| {
            sha2::Digest::update(&mut hasher, doc.to_json_line().as_bytes());
            (i + 1, Pending::Doc(doc))
        });
        let scan = self.run(docs, on_doc)?;
        scan.finish(sha2::Digest::finalize(hasher))
    }

    /// Processes documents in parallel batches, merging them in order.
    fn run(
        &self,
        mut docs: impl Iterator<Item = (usize, Pending)>,
        mut on_doc: impl FnMut(&DocResult),
    ) -> Result<Scanned<'_>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs)
            .build()
            .map_err(|e| Error::InvalidOption {
                name: "jobs",
                message: e.to_string(),
            })?;
        let mut scanned = Scanned {
            detector: self.detector,
            tokenizer: self.tokenizer,
            merged: Merger::new(self.detector.options().dedup),
            counts: [0; 5],
        };
        loop {
            let batch: Vec<(usize, Pending)> = docs.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let results: Vec<(DocResult, Option<Observations>)> = pool.install(|| {
                use rayon::prelude::*;
                batch.into_par_iter().map(|(n, doc)| self.process(n, doc)).collect()
            });
            for (result, obs) in results {
                scanned.counts[0] += 1;
                match (&result.error, result.verdict) {
                    (Some(_), _) => scanned.counts[1] += 1,
                    (None, Some(Verdict::Detected)) => scanned.counts[2] += 1,
                    (None, Some(Verdict::NotDetected)) => scanned.counts[3] += 1,
                    _ => scanned.counts[4] += 1,
                }
                if let Some(obs) = obs {
                    scanned.merged.add(obs);
                }
                on_doc(&result);
            }
        }
        Ok(scanned)
    }
}

/// What a scan gathered, before its summary.
struct Scanned<'a> {
    detector: &'a Detector,
    tokenizer: Option<&'a TextTokenizer>,
    merged: Merger,
    /// Documents, errors, detected, not detected, inconclusive.
    counts: [usize; 5],
}

impl Scanned<'_> {
    fn finish(self, digest: impl AsRef<[u8]>) -> Result<ScanSummary> {
        let corpus_sha256 = format!(
            "sha256:{}",
            digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut aggregate = self.detector.report(self.merged.finish());
        aggregate.tokenizer = self.tokenizer.map(|t| t.info().clone());
        aggregate.input_sha256 = Some(corpus_sha256.clone());
        let [documents, errors, detected, not_detected, inconclusive] = self.counts;
        Ok(ScanSummary {
            documents,
            errors,
            detected,
            not_detected,
            inconclusive,
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
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        scanner.scan(std::io::BufReader::new(file), on_doc)
    }
}

/// The context keys of a corpus of our own watermarked outputs (JSONL), for
/// [`Scanner::filter`].
pub fn context_keys(
    detector: &Detector,
    tokenizer: Option<&TextTokenizer>,
    reader: impl BufRead,
) -> Result<ContextFilter> {
    let mut keys = ContextFilter::default();
    for_each_document(reader, "reference corpus", |line, doc| {
        add_context_keys(&mut keys, detector, tokenizer, line, doc)
    })?;
    Ok(keys)
}

impl ForgeryReference {
    /// [`ForgeryReference::from_ids`] over a JSONL corpus in the scan format
    /// (`{"text": ..., "prompt": ...}` or `{"ids": [...], "prompt_ids": [...]}`
    /// per line; text encoded by `tokenizer`, in canonical form when the
    /// detector canonicalises), read one line at a time; a bad line is an
    /// error naming it.
    pub fn from_jsonl(
        detector: &Detector,
        tokenizer: Option<&TextTokenizer>,
        reader: impl BufRead,
        dense_at: u32,
        alpha: f64,
    ) -> Result<Self> {
        let mut reference = Self::from_ids(detector, std::iter::empty(), dense_at, alpha)?;
        for_each_document(reader, "forgery reference", |line, doc| {
            let doc = doc
                .resolve(
                    tokenizer,
                    detector.options().canonicalize,
                    Forms::Reference,
                    Deadline::NONE,
                )
                .map_err(|message| Error::BadDocument { line, message })?;
            reference.add(detector, &doc.prompt, &doc.ids)
        })?;
        Ok(reference)
    }
}

/// Calls `f` with the 1-based line number and the document of each non-blank
/// line of a JSONL corpus (`what` names it in I/O errors), one line at a
/// time; a line that is not a document is [`Error::BadDocument`] naming it.
pub(crate) fn for_each_document(
    reader: impl BufRead,
    what: &str,
    mut f: impl FnMut(usize, Document) -> Result<()>,
) -> Result<()> {
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io(what, e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = core::str::from_utf8(&line).map_err(|e| Error::BadDocument {
            line: i + 1,
            message: format!("not valid UTF-8 (byte {})", e.valid_up_to()),
        })?;
        let doc = parse_doc(text).map_err(|message| Error::BadDocument { line: i + 1, message })?;
        f(i + 1, doc)?;
    }
    Ok(())
}

impl ContextFilter {
    /// The context keys of our own watermarked outputs held in memory (the
    /// in-memory [`context_keys`]); a bad document is an error naming its
    /// 1-based position.
    pub fn from_documents(
        detector: &Detector,
        tokenizer: Option<&TextTokenizer>,
        documents: impl IntoIterator<Item = Document>,
    ) -> Result<Self> {
        let mut keys = Self::default();
        for (i, doc) in documents.into_iter().enumerate() {
            add_context_keys(&mut keys, detector, tokenizer, i + 1, doc)?;
        }
        Ok(keys)
    }
}

fn add_context_keys(
    keys: &mut ContextFilter,
    detector: &Detector,
    tokenizer: Option<&TextTokenizer>,
    line: usize,
    doc: Document,
) -> Result<()> {
    // Both forms of a text (when they differ) contribute their contexts.
    let doc = doc
        .resolve(
            tokenizer,
            detector.options().canonicalize,
            Forms::Reference,
            Deadline::NONE,
        )
        .map_err(|message| Error::BadDocument { line, message })?;
    for (prompt, ids) in std::iter::once((doc.prompt, doc.ids)).chain(doc.second) {
        detector.check_ids(&prompt, 0)?;
        detector.check_ids(&ids, prompt.len())?;
        let mut history = prompt;
        for &t in &ids {
            if let Some(cs) = detector.scheme().seeder().context_seed(&history) {
                keys.insert(cs.key);
            }
            history.push(t);
        }
    }
    Ok(())
}
