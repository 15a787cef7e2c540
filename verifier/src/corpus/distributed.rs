//! Corpus scans split across machines (Spark, a batch queue, ...): what a
//! worker computes from its share of the corpus and what the driver computes
//! from the workers' output, such that together they give exactly the
//! per-document results and the aggregate test of one [`Scanner`] run over
//! the whole corpus.
//!
//! **Workers.** [`observe_line`] turns one JSONL line (or [`observe_document`]
//! one [`Document`]) into an [`ObservedDocument`]: the [`DocResult`] the scan
//! writes for it, computed by the scan's own code (parsing, canonical forms
//! of text, errors per line, the context filter), and, when the document
//! enters the aggregate, its [`Contribution`]: its token counts and its scored
//! [`Observation`]s after the within-document deduplication.
//!
//! **Across documents.** The scan keeps an observation when it is new in the
//! corpus order (line, then position), as [`Dedup`](crate::Dedup) says. Over the
//! contributions of all documents that is, without any sequential state:
//! - `pair`: the first observation of each `(seed, token)` pair (its score is
//!   a function of the pair, so a set of distinct `(seed, token, score)`
//!   triples has the same count and scores);
//! - `context`: an observation that is the first of its `(seed, token)` pair
//!   *and* the first of its `context_key`;
//! - `none`: every observation.
//!
//! **The driver.** It adds the contributions' counts, counts the observations
//! kept as `scored` and the others as `skipped_duplicate`, sums their scores,
//! and calls [`corpus_report`]. The scan adds the scores in corpus order; when
//! the scores are integers (binomial nulls, [`total_is_order_free`]) any
//! order gives the same total, else (`gumbel`'s exponential scores) the
//! driver adds them in corpus order with [`sum_in_order`] to get the same
//! bits.
//!
//! ```
//! use std::collections::HashSet;
//! use tracemark_core::{Key, SchemeConfig};
//! use tracemark_verifier::distributed::{corpus_report, observe_line, total_is_order_free};
//! use tracemark_verifier::{Counts, DetectOptions, Detector, Scanner};
//!
//! let key = Key::generate()?;
//! let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse()?;
//! let detector = Detector::new(&key, &config, 100, DetectOptions::default())?;
//! let scanner = Scanner::new(&detector, None);
//! let corpus = "{\"ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}\nnot json\n{\"ids\": [1, 2, 3, 4, 50]}\n";
//!
//! // Each line on any worker; dedup of (seed, token) pairs across the corpus; the test.
//! let mut counts = Counts::default();
//! let mut pairs = HashSet::new();
//! let mut total = 0.0;
//! for (i, line) in corpus.lines().enumerate() {
//!     let Some(doc) = observe_line(&scanner, i + 1, line.as_bytes()) else { continue };
//!     let Some(c) = doc.contribution else { continue }; // an error line
//!     counts.prompt += c.counts.prompt;
//!     counts.seen += c.counts.seen;
//!     counts.skipped_short_context += c.counts.skipped_short_context;
//!     counts.skipped_by_filter += c.counts.skipped_by_filter;
//!     counts.skipped_duplicate += c.counts.skipped_duplicate;
//!     for o in c.observations {
//!         if pairs.insert((o.seed, o.token)) {
//!             counts.scored += 1;
//!             total += o.score;
//!         } else {
//!             counts.skipped_duplicate += 1;
//!         }
//!     }
//! }
//! assert!(total_is_order_free(&detector));
//! let report = corpus_report(&detector, counts, total, None, None)?;
//! let scan = scanner.scan(corpus.as_bytes(), |_| {})?;
//! assert_eq!(report.counts, scan.aggregate.counts);
//! assert_eq!(report.outcome, scan.aggregate.outcome);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use tracemark_core::Null;

use super::scan::{for_each_document, DocResult, Document, Forms, Pending, Scanner};
use crate::detect::observe::{Counts, Observations};
use crate::detect::{Detection, Detector};
use crate::error::{Error, Result};
use crate::text::{Deadline, TextTokenizer, TokenizerInfo};

/// One scored observation of a document, after the within-document
/// deduplication (and the context filter).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Observation {
    /// Index of the token in the document's completion (the scan's order
    /// inside a document).
    pub position: u32,
    /// The key of its context (what `context` deduplication and the
    /// context filter look at).
    pub context_key: u64,
    /// The keyed seed of its context.
    pub seed: u64,
    /// The token.
    pub token: u32,
    /// Its score under the scheme (a function of `(seed, token)`).
    pub score: f64,
}

/// What a document adds to the aggregate before deduplication across documents.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Contribution {
    /// Its token counts: `scored` is `observations.len()`; `skipped_duplicate`
    /// counts the repeats inside the document only.
    pub counts: Counts,
    /// Its scored observations, in order (the canonical form's, for a text
    /// whose canonical form differs).
    pub observations: Vec<Observation>,
}

/// One document as a worker sees it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ObservedDocument {
    /// The per-document line of the scan, exactly.
    pub result: DocResult,
    /// What it adds to the aggregate; `None` when it could not be tested
    /// (`result.error` says why) and so adds nothing.
    pub contribution: Option<Contribution>,
}

fn observed(result: DocResult, obs: Option<Observations>) -> ObservedDocument {
    ObservedDocument {
        result,
        contribution: obs.map(|o| Contribution {
            counts: o.counts,
            observations: o
                .scored
                .iter()
                .map(|s| Observation {
                    position: s.position,
                    context_key: s.context_key,
                    seed: s.seed,
                    token: s.token,
                    score: s.score,
                })
                .collect(),
        }),
    }
}

/// Line `line` (1-based) of a JSONL corpus, with or without its newline, as
/// [`Scanner::scan`] processes it; `None` for a blank line (the scan skips
/// it, and counts it only in the line numbers).
///
/// A line without its newline is parsed as if it had one: only where it is
/// the corpus's last line, unterminated and cut short inside a JSON value,
/// does the position in the error message then differ from the scan's.
pub fn observe_line(scanner: &Scanner<'_>, line: usize, bytes: &[u8]) -> Option<ObservedDocument> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let mut raw = Vec::with_capacity(bytes.len() + 1);
    raw.extend_from_slice(bytes);
    if raw.last() != Some(&b'\n') {
        raw.push(b'\n');
    }
    let (result, obs) = scanner.process(line, Pending::Line(raw));
    Some(observed(result, obs))
}

/// A document held in memory, as [`Scanner::scan_documents`] processes it at
/// 1-based position `position`.
pub fn observe_document(scanner: &Scanner<'_>, position: usize, document: Document) -> ObservedDocument {
    let (result, obs) = scanner.process(position, Pending::Doc(document));
    observed(result, obs)
}

/// The context keys of line `line` (1-based) of a reference corpus (our own
/// watermarked outputs), as [`context_keys`](crate::context_keys) collects
/// them: both forms of a text whose canonical form differs. Empty for a
/// blank line; a line that is not a document is [`Error::BadDocument`]
/// naming `line`. The union over all lines, in any order, is the scan's
/// [`ContextFilter`](crate::ContextFilter).
pub fn reference_context_keys(
    detector: &Detector,
    tokenizer: Option<&TextTokenizer>,
    line: usize,
    bytes: &[u8],
) -> Result<Vec<u64>> {
    let mut keys = Vec::new();
    let renumber = |e| match e {
        Error::BadDocument { message, .. } => Error::BadDocument { line, message },
        e => e,
    };
    for_each_document(bytes, "reference corpus", |_, doc| {
        // The canonical form, then the form as given (the same ids when
        // canonicalisation changed nothing: a set does not mind).
        let canonical = detector.options().canonicalize;
        let forms = [canonical.then(|| doc.clone()), Some(doc)]
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, d)| d.resolve(tokenizer, canonical && i == 0, Forms::Reference, Deadline::NONE))
            .map(|r| {
                r.map(|d| (d.prompt, d.ids))
                    .map_err(|message| Error::BadDocument { line, message })
            })
            .collect::<Result<Vec<_>>>()?;
        for (prompt, ids) in forms {
            detector.check_ids(&prompt, 0)?;
            detector.check_ids(&ids, prompt.len())?;
            let mut history = prompt;
            for &t in &ids {
                if let Some(cs) = detector.scheme().seeder().context_seed(&history) {
                    keys.push(cs.key);
                }
                history.push(t);
            }
        }
        Ok(())
    })
    .map_err(renumber)?;
    Ok(keys)
}

/// Whether the aggregate's total of scores is the same in any order of
/// addition: true when the scores are integers (binomial nulls: `kgw`,
/// `tournament`); false for real-valued scores (`gumbel`), which the driver
/// must add in corpus order ([`sum_in_order`]) to reproduce the scan's total
/// to the last bit.
pub fn total_is_order_free(detector: &Detector) -> bool {
    matches!(detector.scheme().contract().null, Null::Binomial { .. })
}

/// Bytes of one packed observation in a [`pair_buckets`] blob: the seed
/// (u64), the token (u32) and the score (f64), little-endian.
pub const PACKED_PAIR: usize = 20;

/// The bucket of a `(seed, token)` pair among `buckets`: the same on every
/// worker, so that every copy of a pair meets the others in one bucket.
fn bucket_of(seed: u64, token: u32, buckets: usize) -> usize {
    let mut h = seed ^ u64::from(token).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 29;
    (h % buckets.max(1) as u64) as usize
}

/// `pair` deduplication across documents in two steps, for totals whose
/// order of addition does not matter ([`total_is_order_free`]): a worker
/// keeps one copy of each `(seed, token)` pair among its observations and
/// splits them by the pair's bucket into `buckets` blobs of packed
/// observations ([`PACKED_PAIR`] bytes each); the blobs of one bucket from
/// every worker then go to [`merge_pair_bucket`]. Instead of one row per
/// observation through a distributed `distinct`, each worker sends
/// `buckets` rows. `seeds`, `tokens` and `scores` are the observations'
/// columns (equal lengths; a pair's score is a function of the pair).
pub fn pair_buckets(seeds: &[u64], tokens: &[u32], scores: &[f64], buckets: usize) -> Vec<Vec<u8>> {
    let mut out = PairBuckets::new(buckets);
    for ((&seed, &token), &score) in seeds.iter().zip(tokens).zip(scores) {
        out.add(seed, token, score);
    }
    out.into_blobs()
}

/// [`pair_buckets`] one observation at a time: a worker adds its
/// observations as they come, with no columns built first. Each bucket
/// keeps its own set of the pairs it holds, so no set is sized for every
/// observation (most are repeats).
#[derive(Debug)]
pub struct PairBuckets {
    seen: Vec<rustc_hash::FxHashSet<(u64, u32)>>,
    blobs: Vec<Vec<u8>>,
}

impl PairBuckets {
    /// Empty buckets (at least one).
    pub fn new(buckets: usize) -> Self {
        let buckets = buckets.max(1);
        Self {
            seen: vec![rustc_hash::FxHashSet::default(); buckets],
            blobs: vec![Vec::new(); buckets],
        }
    }

    /// Adds an observation: packed into its pair's bucket the first time the pair comes.
    pub fn add(&mut self, seed: u64, token: u32, score: f64) {
        let b = bucket_of(seed, token, self.blobs.len());
        if self.seen[b].insert((seed, token)) {
            let blob = &mut self.blobs[b];
            blob.extend_from_slice(&seed.to_le_bytes());
            blob.extend_from_slice(&token.to_le_bytes());
            blob.extend_from_slice(&score.to_le_bytes());
        }
    }

    /// The blobs, one per bucket (empty where no pair fell).
    pub fn into_blobs(self) -> Vec<Vec<u8>> {
        self.blobs
    }
}

/// The distinct `(seed, token)` pairs of one bucket's blobs (from
/// [`pair_buckets`], any number of workers): how many, and the sum of their
/// scores (exact for integer scores in any order). A blob whose length is
/// not a multiple of [`PACKED_PAIR`] is refused.
pub fn merge_pair_bucket<'a>(blobs: impl IntoIterator<Item = &'a [u8]>) -> Result<(u64, f64)> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut total = 0.0;
    for blob in blobs {
        if blob.len() % PACKED_PAIR != 0 {
            return Err(Error::InvalidOption {
                name: "blobs",
                message: format!(
                    "a packed pair blob of {} bytes: not a multiple of {PACKED_PAIR}",
                    blob.len()
                ),
            });
        }
        for obs in blob.chunks_exact(PACKED_PAIR) {
            let seed = u64::from_le_bytes(obs[..8].try_into().unwrap_or_default());
            let token = u32::from_le_bytes(obs[8..12].try_into().unwrap_or_default());
            if seen.insert((seed, token)) {
                total += f64::from_le_bytes(obs[12..].try_into().unwrap_or_default());
            }
        }
    }
    Ok((seen.len() as u64, total))
}

/// `start` plus `scores`, added one by one from left to right: the scan's
/// order of addition, resumable chunk by chunk. Start the corpus at `-0.0`
/// (the neutral element of IEEE addition, as Rust's float sum).
pub fn sum_in_order(start: f64, scores: &[f64]) -> f64 {
    scores.iter().fold(start, |acc, &s| acc + s)
}

/// The aggregate test of a corpus from its totals: `counts` over every
/// document that entered the aggregate, after the deduplication across
/// documents (`counts.scored` observations kept), and `total`, the sum of
/// their scores. The same report, field for field, as the `aggregate` of a
/// [`Scanner`] run of `detector` over the whole corpus, given the same
/// `tokenizer` and `input_sha256` (its [`ScanSummary`](crate::ScanSummary)'s
/// `corpus_sha256`).
///
/// The scan's aggregate holds no per-token marks, and a detector that
/// searches windows is refused: a window search needs every observation in
/// order. (A detector with a forgery reference would run the spoof-artifact
/// test on the scan's aggregate; it is not run here.)
pub fn corpus_report(
    detector: &Detector,
    counts: Counts,
    total: f64,
    tokenizer: Option<&TokenizerInfo>,
    input_sha256: Option<String>,
) -> Result<Detection> {
    let options = detector.options();
    if options.window.is_some() {
        return Err(Error::InvalidOption {
            name: "window",
            message: "a corpus test from totals cannot search windows: use a detector without one".into(),
        });
    }
    // The scan's aggregate has no marks; without a window search and with no
    // observations to look at, the report stands on the totals alone.
    let mut d = detector.report_totals(counts, total, None, &[]);
    d.tokenizer = tokenizer.cloned();
    d.input_sha256 = input_sha256;
    Ok(d)
}

#[cfg(test)]
mod tests {

    /// Two-step pair dedup gives the distinct pairs' count and score sum,
    /// however the observations are split among workers and buckets.
    #[test]
    fn pair_buckets_merge_to_the_distinct_pairs() {
        let mut next = crate::test_rng::xorshift(0x1234_5678_9abc_def1);
        let obs: Vec<(u64, u32)> = (0..20_000)
            .map(|_| ((next(300) as u64) << 40, next(50) as u32))
            .collect();
        let score = |(s, t): (u64, u32)| ((s >> 40) + u64::from(t)) as f64 % 7.0;
        let distinct: std::collections::HashSet<(u64, u32)> = obs.iter().copied().collect();
        let want = (distinct.len() as u64, distinct.iter().map(|&p| score(p)).sum::<f64>());
        for (workers, buckets) in [(1, 1), (3, 7), (10, 64)] {
            let per = obs.len().div_ceil(workers);
            let parts: Vec<Vec<Vec<u8>>> = obs
                .chunks(per)
                .map(|c| {
                    let seeds: Vec<u64> = c.iter().map(|p| p.0).collect();
                    let tokens: Vec<u32> = c.iter().map(|p| p.1).collect();
                    let scores: Vec<f64> = c.iter().map(|&p| score(p)).collect();
                    pair_buckets(&seeds, &tokens, &scores, buckets)
                })
                .collect();
            let mut got = (0, 0.0);
            for b in 0..buckets {
                let (n, t) = merge_pair_bucket(parts.iter().map(|p| p[b].as_slice())).expect("merge");
                got = (got.0 + n, got.1 + t);
            }
            assert_eq!(got, want, "{workers} workers, {buckets} buckets");
        }
        assert!(merge_pair_bucket([&[0u8; 19][..]]).is_err());
    }

    use std::collections::HashMap;

    use tracemark_core::{Key, SchemeConfig};

    use super::*;
    use crate::{ContextFilter, Dedup, DetectOptions};

    fn word_tokenizer(n: usize) -> TextTokenizer {
        let vocab: serde_json::Map<String, serde_json::Value> =
            (0..n).map(|i| (format!("w{i}"), serde_json::Value::from(i))).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"},
        });
        TextTokenizer::from_bytes(json.to_string().as_bytes()).expect("a word-level tokenizer")
    }

    /// A small deterministic generator (no RNG dependency in the tests).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % u64::from(n)) as u32
        }
    }

    /// Greedy watermarked ids from pseudo-random logits.
    fn watermarked(
        key: &Key,
        config: &SchemeConfig,
        vocab: usize,
        prompt: &[u32],
        n: usize,
        rng: &mut Lcg,
    ) -> Vec<u32> {
        let scheme = config.build(key, vocab).expect("scheme");
        let mut ids = prompt.to_vec();
        for _ in 0..n {
            let mut logits: Vec<f32> = (0..vocab).map(|_| rng.next(1000) as f32 / 300.0).collect();
            // A scheme that controls sampling leaves only its choice finite.
            scheme.process(&ids, &mut logits).expect("process");
            let next = (0..vocab).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
            ids.push(next as u32);
        }
        ids.split_off(prompt.len())
    }

    fn words(ids: &[u32]) -> String {
        ids.iter().map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
    }

    /// A corpus with text and ids documents, repeats across documents,
    /// canonical forms that differ, bad lines, blank lines, short documents.
    fn corpus(key: &Key, config: &SchemeConfig, vocab: usize) -> String {
        let mut rng = Lcg(7);
        let mut lines = Vec::new();
        let marked: Vec<Vec<u32>> = (0..6)
            .map(|i| watermarked(key, config, vocab, &[i + 1, i + 2], 60, &mut rng))
            .collect();
        let plain: Vec<Vec<u32>> = (0..6)
            .map(|_| (0..80).map(|_| rng.next(vocab as u32)).collect())
            .collect();
        for (i, ids) in marked.iter().enumerate() {
            if i % 2 == 0 {
                lines.push(serde_json::json!({"ids": ids, "prompt_ids": [i + 1, i + 2], "id": i}).to_string());
            } else {
                lines.push(
                    serde_json::json!({"text": words(ids), "prompt": words(&[i as u32 + 1, i as u32 + 2])}).to_string(),
                );
            }
        }
        // Repeats across documents, and a repeat inside one.
        lines.push(serde_json::json!({"ids": marked[0]}).to_string());
        let twice: Vec<u32> = marked[2].iter().chain(&marked[2]).copied().collect();
        lines.push(serde_json::json!({"text": words(&twice)}).to_string());
        // A text whose canonical form differs (zero-width space, no-break space).
        let mut tampered = words(&marked[3]);
        tampered.insert(tampered.find(' ').unwrap_or(0), '\u{200b}');
        lines.push(serde_json::json!({"text": tampered.replacen(' ', "\u{a0}", 3), "id": "tampered"}).to_string());
        lines.push(String::new());
        lines.push("{\"ids\": [1, 2,".into());
        lines.push("[1, 2, 3]".into());
        lines.push(serde_json::json!({"ids": [1, vocab + 5]}).to_string());
        lines.push(serde_json::json!({"ids": []}).to_string());
        lines.push(serde_json::json!({"ids": [3, 4]}).to_string());
        lines.push("   ".into());
        for (i, ids) in plain.iter().enumerate() {
            if i % 2 == 0 {
                lines.push(serde_json::json!({"ids": ids}).to_string());
            } else {
                lines.push(serde_json::json!({"text": words(ids), "id": [i]}).to_string());
            }
        }
        lines.push(serde_json::json!({"text": words(&plain[1])}).to_string());
        lines.join("\n") + "\n"
    }

    /// The aggregate as a distributed run computes it: per line, then the
    /// set-based rule of the module documentation (no sequential state
    /// across documents), then the sum in corpus order.
    fn distributed(scanner: &Scanner<'_>, detector: &Detector, corpus: &str) -> (Vec<DocResult>, Detection) {
        let mut docs = Vec::new();
        let mut all = Vec::new();
        let mut counts = Counts::default();
        // Workers see lines in any order: process them back to front.
        let lines: Vec<(usize, &str)> = corpus.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
        for &(line, text) in lines.iter().rev() {
            let Some(doc) = observe_line(scanner, line, text.as_bytes()) else {
                continue;
            };
            if let Some(c) = doc.contribution {
                counts.prompt += c.counts.prompt;
                counts.seen += c.counts.seen;
                counts.skipped_short_context += c.counts.skipped_short_context;
                counts.skipped_by_filter += c.counts.skipped_by_filter;
                counts.skipped_duplicate += c.counts.skipped_duplicate;
                assert_eq!(c.counts.scored, c.observations.len());
                all.extend(c.observations.iter().map(|o| ((line, o.position), *o)));
            }
            docs.push(doc.result);
        }
        docs.reverse();
        let mut first_pair = HashMap::new();
        let mut first_context = HashMap::new();
        for (order, o) in &all {
            let p = first_pair.entry((o.seed, o.token)).or_insert(*order);
            *p = (*p).min(*order);
            let c = first_context.entry(o.context_key).or_insert(*order);
            *c = (*c).min(*order);
        }
        let mut kept: Vec<_> = all
            .iter()
            .filter(|(order, o)| match detector.options().dedup {
                Dedup::None => true,
                Dedup::Pair => first_pair[&(o.seed, o.token)] == *order,
                Dedup::Context => first_pair[&(o.seed, o.token)] == *order && first_context[&o.context_key] == *order,
            })
            .collect();
        counts.skipped_duplicate += all.len() - kept.len();
        counts.scored = kept.len();
        let total = if total_is_order_free(detector) {
            // Any order: add them back to front.
            kept.iter().rev().map(|(_, o)| o.score).sum()
        } else {
            kept.sort_by_key(|(order, _)| *order);
            let scores: Vec<f64> = kept.iter().map(|(_, o)| o.score).collect();
            let (a, b) = scores.split_at(scores.len() / 3);
            sum_in_order(sum_in_order(-0.0, a), b)
        };
        (
            docs,
            corpus_report(detector, counts, total, None, None).expect("report"),
        )
    }

    fn check(config: &str, options: DetectOptions, filtered: bool) {
        let vocab = 400;
        let key = Key::from_slice(&[7; 32]).expect("key");
        let config: SchemeConfig = config.parse().expect("config");
        let tok = word_tokenizer(vocab);
        let detector = Detector::new(&key, &config, vocab, options).expect("detector");
        let corpus = corpus(&key, &config, vocab);
        let reference: String = corpus.lines().take(3).collect::<Vec<_>>().join("\n");
        let filter = crate::context_keys(&detector, Some(&tok), reference.as_bytes()).expect("filter");
        let mut scanner = Scanner::new(&detector, Some(&tok)).jobs(2);
        if filtered {
            scanner = scanner.filter(&filter);
        }
        let mut expected_docs = Vec::new();
        let expected = scanner
            .scan(corpus.as_bytes(), |d| expected_docs.push(d.clone()))
            .expect("scan");
        let (docs, report) = distributed(&scanner, &detector, &corpus);
        assert_eq!(docs, expected_docs);
        let mut aggregate = expected.aggregate.clone();
        aggregate.tokenizer = None;
        aggregate.input_sha256 = None;
        assert_eq!(report, aggregate, "{config} filtered {filtered}");
        assert!(
            expected.errors >= 4 && expected.detected >= 1 && (filtered || expected.not_detected >= 1),
            "{config}: {} errors, {} detected, {} not detected",
            expected.errors,
            expected.detected,
            expected.not_detected
        );
        assert_eq!(
            expected_docs.iter().any(|d| d.canonical_changes > 0),
            detector.options().canonicalize
        );
        // Bit for bit, through JSON too.
        assert_eq!(
            serde_json::to_string(&report).expect("json"),
            serde_json::to_string(&aggregate).expect("json")
        );
    }

    #[test]
    fn kgw_pair_none_context_filtered() {
        let kgw = "kgw:gamma=0.25,delta=3,context=lefthash:1";
        check(kgw, DetectOptions::default(), false);
        check(kgw, DetectOptions::default(), true);
        for dedup in [Dedup::None, Dedup::Context] {
            check(
                kgw,
                DetectOptions {
                    dedup,
                    ..DetectOptions::default()
                },
                false,
            );
        }
        check(
            "kgw:gamma=0.5,delta=3,context=selfhash:3",
            DetectOptions {
                canonicalize: false,
                ..DetectOptions::default()
            },
            false,
        );
    }

    #[test]
    fn tournament_and_gumbel() {
        check(
            "tournament:layers=4,top_k=20,temperature=1,context=lefthash:2",
            DetectOptions::default(),
            false,
        );
        for dedup in [Dedup::Pair, Dedup::None, Dedup::Context] {
            let options = DetectOptions {
                dedup,
                ..DetectOptions::default()
            };
            check("gumbel:temperature=0.7,context=lefthash:2", options.clone(), false);
            check("gumbel:temperature=0.7,context=lefthash:2", options, true);
        }
    }

    #[test]
    fn inconclusive_corpus() {
        let key = Key::from_slice(&[9; 32]).expect("key");
        let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("config");
        let detector = Detector::new(&key, &config, 100, DetectOptions::default()).expect("detector");
        let scanner = Scanner::new(&detector, None);
        let corpus = "{\"ids\": [1, 2, 3, 1, 2, 3]}\n{\"ids\": [1, 2, 3]}\n";
        let expected = scanner.scan(corpus.as_bytes(), |_| {}).expect("scan");
        let (_, report) = distributed(&scanner, &detector, corpus);
        assert!(matches!(report.outcome, crate::Outcome::Inconclusive { .. }));
        assert_eq!(report.outcome, expected.aggregate.outcome);
        assert_eq!(report.counts, expected.aggregate.counts);
    }

    #[test]
    fn reference_keys_are_the_filter() {
        let vocab = 400;
        let key = Key::from_slice(&[3; 32]).expect("key");
        let config: SchemeConfig = "kgw:gamma=0.25,delta=3,context=lefthash:2".parse().expect("config");
        let tok = word_tokenizer(vocab);
        let detector = Detector::new(&key, &config, vocab, DetectOptions::default()).expect("detector");
        let reference = "{\"text\": \"w1 w2\u{200b} w3 w4 w5\"}\n\n{\"ids\": [5, 6, 7, 8], \"prompt_ids\": [9]}\n";
        let filter = crate::context_keys(&detector, Some(&tok), reference.as_bytes()).expect("filter");
        let mut mine = ContextFilter::new();
        for (i, line) in reference.lines().enumerate() {
            for k in reference_context_keys(&detector, Some(&tok), i + 1, line.as_bytes()).expect("keys") {
                assert!(filter.contains(k));
                mine.insert(k);
            }
        }
        assert_eq!(mine.len(), filter.len());
        let bad = reference_context_keys(&detector, Some(&tok), 17, b"{\"ids\": 3}");
        let expected = crate::context_keys(&detector, Some(&tok), &b"\n{\"ids\": 3}"[..]).map(|_| ());
        match (bad, expected) {
            (Err(Error::BadDocument { line: 17, message }), Err(Error::BadDocument { line: 2, message: m })) => {
                assert_eq!(message, m);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn windows_are_refused_and_sums_resume() {
        let key = Key::from_slice(&[1; 32]).expect("key");
        let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("config");
        let options = DetectOptions {
            window: Some(crate::WindowOptions::with_min_scored(16)),
            ..DetectOptions::default()
        };
        let detector = Detector::new(&key, &config, 100, options).expect("detector");
        assert!(corpus_report(&detector, Counts::default(), 0.0, None, None).is_err());
        let xs: Vec<f64> = (1..1000).map(|i| 1.0 / f64::from(i)).collect();
        let whole: f64 = xs.iter().sum();
        assert_eq!(
            sum_in_order(sum_in_order(-0.0, &xs[..10]), &xs[10..]).to_bits(),
            whole.to_bits()
        );
    }
}
