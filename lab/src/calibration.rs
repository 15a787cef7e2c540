//! Calibration at scale: the false-positive rate of the exact tests on real
//! human text over millions of (document, key) tests, and a statistical
//! battery on the keyed per-token values.
//!
//! A [`Corpus`] is tokenized once and cut into [`Segment`]s of moderate
//! length. [`calibrate`] then tests segments under keys drawn from a
//! [`KeyStream`], through the public [`Detector::detect_ids`], and counts the
//! tests with `p < alpha` ([`Cell`]), overall and per text category, each
//! with an exact (Clopper–Pearson) interval. The exact tests of `kgw` and
//! `tournament` are discrete, so their false-positive rate may sit below
//! `alpha`; each cell also carries the *exact size*, the rate the null
//! distribution itself allows at each test's number of scored tokens, and
//! the check is whether that lies in the interval. [`battery`] runs
//! bit-frequency, uniformity, serial and avalanche tests on [`mix`],
//! [`value16`] and the schemes' values over structured inputs.
//!
//! ```
//! use tracemark_core::SchemeConfig;
//! use tracemark_lab::calibration::{calibrate, CalibrationOptions, Corpus, KeyStream, SegmentOptions};
//!
//! // Synthetic "documents" of random ids stand in for tokenized text here.
//! let mut ids = KeyStream::danger_from_seed(7).words(0);
//! let docs = (0..50).map(|i| {
//!     let doc: Vec<u32> = (0..300).map(|_| (ids.next_u64() % 1000) as u32).collect();
//!     (if i % 2 == 0 { "even" } else { "odd" }.to_string(), doc)
//! });
//! let corpus = Corpus::from_documents(docs, 1000, SegmentOptions { max_tokens: 100, min_tokens: 50 });
//! let config: SchemeConfig = "gumbel:temperature=1,context=lefthash:1".parse()?;
//! let keys = KeyStream::danger_from_seed(1); // experiment keys only: never watermark with them
//! let options = CalibrationOptions { tests: 2000, ..CalibrationOptions::default() };
//! let run = calibrate(&corpus, &config, &keys, &options)?;
//! assert_eq!(run.overall[0].tests, 2000);
//! assert!(run.overall[0].size_within(0.99)); // alpha = 1e-2
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::Value;
use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::erf::erfc;
use tracemark_candle::Rng;
use tracemark_core::mix::{mix, value16};
use tracemark_core::{Context, Key, Null, Scheme, SchemeConfig};

use tracemark_verifier::canonical::{form_plan, FormFamily, FormPlan};
use tracemark_verifier::stats;
use tracemark_verifier::{canonicalize, Dedup, DetectOptions, Detector, Error, Result, TextTokenizer};

/// Test keys derived from a seed: key `i` is `Key::from_bytes` of the 32
/// bytes at word position `8i` of stream 0 of the ChaCha8 generator seeded
/// with the seed (ChaCha is a counter-mode cipher, so any key is computed
/// directly, without the ones before it).
///
/// Distinct indices read disjoint parts of the stream, so the keys are
/// independent uniform draws (equal only with probability 2^-256). Anyone
/// who knows the seed has every key: use them for experiments only, never to
/// watermark.
#[derive(Clone, Debug)]
pub struct KeyStream {
    seed: u64,
}

impl KeyStream {
    /// The stream of `seed` (public experiment keys: hence `danger`).
    pub fn danger_from_seed(seed: u64) -> Self {
        Self { seed }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Key number `index`.
    pub fn key(&self, index: u64) -> Key {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(0);
        rng.set_word_pos(u128::from(index) * 8);
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Key::from_bytes(bytes)
    }

    /// A word stream for other draws (shuffles, battery inputs), separate from
    /// the keys: ChaCha8 stream `n + 1` of the same seed.
    pub fn words(&self, n: u64) -> Rng {
        Rng::with_stream(self.seed, n.wrapping_add(1))
    }
}

/// How documents are cut into test segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Each document is cut into consecutive segments of this many tokens.
    pub max_tokens: usize,
    /// A final piece shorter than this is dropped.
    pub min_tokens: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            min_tokens: 64,
        }
    }
}

/// A run of consecutive tokens of one document: the unit of one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`Corpus::categories`].
    pub category: usize,
    /// Index of the document it was cut from.
    pub document: usize,
    /// The token ids.
    pub ids: Vec<u32>,
    /// The token ids of the other form where a text is tested in both forms
    /// (SPEC §14.1; [`Corpus::from_texts`]): the test's p-value is then the
    /// smaller of the two times 2, as text detection computes it.
    pub second: Option<Vec<u32>>,
}

impl Segment {
    /// One document tested as text detection tests it (SPEC §14.1): the
    /// forms that [`form_plan`] chooses from the text alone, each encoded
    /// whole (no prompt). `ids` holds the form tested first (as given, else
    /// canonical), `second` the canonical form when both are tested.
    pub fn from_text(category: usize, document: usize, text: &str, tokenizer: &TextTokenizer) -> Result<Self> {
        let canonical = canonicalize(text);
        let plan = form_plan(&canonical, None);
        let encode = |t: &str| tokenizer.encode(t).map(|e| e.ids);
        let (ids, second) = match plan {
            FormPlan::Canonical => (encode(canonical.text())?, None),
            FormPlan::Both => (encode(text)?, Some(encode(canonical.text())?)),
            _ => (encode(text)?, None),
        };
        Ok(Self {
            category,
            document,
            ids,
            second,
        })
    }
}

/// A tokenized corpus, cut into segments.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// Category names, sorted.
    pub categories: Vec<String>,
    /// Documents per category (those that gave at least one segment).
    pub documents: Vec<usize>,
    /// The segments, in document order.
    pub segments: Vec<Segment>,
    /// The vocabulary size of the ids.
    pub vocab_size: usize,
    /// How the documents were cut.
    pub options: SegmentOptions,
}

impl Corpus {
    /// Reads a JSONL corpus (one `{"category": ..., "text": ...}` per line),
    /// tokenizes every document in parallel, and cuts it into segments.
    pub fn from_jsonl(path: impl AsRef<Path>, tokenizer: &TextTokenizer, options: SegmentOptions) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let docs: Vec<(String, String)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                let bad = |message: &str| Error::BadDocument {
                    line: i + 1,
                    message: message.to_string(),
                };
                let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
                let field = |name: &str| {
                    v[name]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(&format!("no string field `{name}`")))
                };
                Ok((field("category")?, field("text")?))
            })
            .collect::<Result<_>>()?;
        let encoded: Vec<(String, Vec<u32>)> = docs
            .into_par_iter()
            .map(|(category, t)| Ok((category, tokenizer.encode(&t)?.ids)))
            .collect::<Result<_>>()?;
        Ok(Self::from_documents(encoded, tokenizer.vocab_size(), options))
    }

    /// A corpus of `(category, text)` documents tested whole through the
    /// text path, one segment each ([`Segment::from_text`]): canonical form,
    /// the forms rule, and `tokenizer`. `options` is recorded only.
    pub fn from_texts(
        docs: impl IntoIterator<Item = (String, String)>,
        tokenizer: &TextTokenizer,
        options: SegmentOptions,
    ) -> Result<Self> {
        let docs: Vec<(String, String)> = docs.into_iter().collect();
        let mut categories: Vec<String> = docs.iter().map(|(c, _)| c.clone()).collect();
        categories.sort();
        categories.dedup();
        let segments: Vec<Segment> = docs
            .par_iter()
            .enumerate()
            .map(|(document, (category, text))| {
                let category = categories.binary_search(category).unwrap_or(0); // present: built from these docs
                Segment::from_text(category, document, text, tokenizer)
            })
            .collect::<Result<_>>()?;
        let mut documents = vec![0; categories.len()];
        for s in &segments {
            documents[s.category] += 1;
        }
        Ok(Self {
            categories,
            documents,
            segments,
            vocab_size: tokenizer.vocab_size(),
            options,
        })
    }

    /// A corpus from already tokenized `(category, ids)` documents.
    pub fn from_documents(
        docs: impl IntoIterator<Item = (String, Vec<u32>)>,
        vocab_size: usize,
        options: SegmentOptions,
    ) -> Self {
        let docs: Vec<(String, Vec<u32>)> = docs.into_iter().collect();
        let mut categories: Vec<String> = docs.iter().map(|(c, _)| c.clone()).collect();
        categories.sort();
        categories.dedup();
        let mut documents = vec![0; categories.len()];
        let mut segments = Vec::new();
        let max = options.max_tokens.max(1);
        for (document, (category, ids)) in docs.into_iter().enumerate() {
            let category = categories.binary_search(&category).unwrap_or(0); // present: built from these docs
            let before = segments.len();
            segments.extend(
                ids.chunks(max)
                    .filter(|c| c.len() >= options.min_tokens.max(1))
                    .map(|c| Segment {
                        category,
                        document,
                        ids: c.to_vec(),
                        second: None,
                    }),
            );
            if segments.len() > before {
                documents[category] += 1;
            }
        }
        Self {
            categories,
            documents,
            segments,
            vocab_size,
            options,
        }
    }

    /// Segments per category.
    pub fn segments_per_category(&self) -> Vec<usize> {
        let mut n = vec![0; self.categories.len()];
        for s in &self.segments {
            n[s.category] += 1;
        }
        n
    }

    /// Tokens in all segments.
    pub fn tokens(&self) -> usize {
        self.segments.iter().map(|s| s.ids.len()).sum()
    }
}

/// Options of a calibration run.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationOptions {
    /// Number of (segment, key) tests.
    pub tests: u64,
    /// Consecutive tests that share one key (each on a different segment).
    /// 1 makes every test independent given the corpus; more amortises an
    /// expensive key setup (self-hash precomputes a value per vocabulary
    /// entry) at the price of correlation between tests that share a key.
    pub tests_per_key: u64,
    /// Index of the first key in the [`KeyStream`] (separate runs use
    /// disjoint ranges, so that every test key of every run is distinct).
    pub first_key: u64,
    /// The significance levels.
    pub alphas: Vec<f64>,
    /// Deduplication of the detector.
    pub dedup: Dedup,
    /// Which word stream of the [`KeyStream`] shuffles the segments.
    pub order_stream: u64,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        Self {
            tests: 100_000,
            tests_per_key: 1,
            first_key: 0,
            alphas: vec![1e-2, 1e-3, 1e-4],
            dedup: Dedup::Pair,
            order_stream: 0,
        }
    }
}

/// The false positives of a set of tests at one significance level.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cell {
    /// Tests run.
    pub tests: u64,
    /// Tests with `p < alpha`.
    pub false_positives: u64,
    /// Sum over tests of the exact size: the probability of `p < alpha`
    /// under the null at that test's number of scored tokens (`alpha` for a
    /// continuous test; 0 for an inconclusive one). For a test of two forms
    /// at `alpha / 2` each, the Bonferroni bound: the sum of the two forms'
    /// exact sizes at `alpha / 2` (at most `alpha`).
    pub exact_size_sum: f64,
    /// The same sum with, for a test of two forms, the larger of the two
    /// forms' exact sizes at `alpha / 2` instead: the family rejects whenever
    /// either form does, so its size is at least that. The size of a test of
    /// two dependent forms lies between this floor (forms that always agree)
    /// and the bound (forms that never reject together); for one form both
    /// are its exact size.
    pub size_floor_sum: f64,
}

impl Cell {
    fn add(&mut self, other: &Cell) {
        self.tests += other.tests;
        self.false_positives += other.false_positives;
        self.exact_size_sum += other.exact_size_sum;
        self.size_floor_sum += other.size_floor_sum;
    }

    /// The false-positive rate.
    pub fn rate(&self) -> f64 {
        self.false_positives as f64 / self.tests.max(1) as f64
    }

    /// The mean exact size: the rate a perfectly calibrated test would show.
    pub fn exact_size(&self) -> f64 {
        self.exact_size_sum / self.tests.max(1) as f64
    }

    /// The exact (Clopper–Pearson) interval of the rate.
    pub fn interval(&self, confidence: f64) -> (f64, f64) {
        stats::clopper_pearson(self.false_positives, self.tests, confidence)
    }

    /// The mean size floor ([`Cell::size_floor_sum`]): the exact size when
    /// every test was of one form.
    pub fn size_floor(&self) -> f64 {
        self.size_floor_sum / self.tests.max(1) as f64
    }

    /// Whether the interval meets the range the tests' size lies in, from
    /// [`size_floor`](Self::size_floor) to [`exact_size`](Self::exact_size)
    /// (one value, the exact size, when every test was of one form).
    pub fn size_within(&self, confidence: f64) -> bool {
        let (lo, hi) = self.interval(confidence);
        lo <= self.exact_size() && self.size_floor().min(self.exact_size()) <= hi
    }
}

/// The outcome of one test of a segment.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentTest {
    /// Forms tested: 1, or 2 where the segment has a second form.
    pub forms: usize,
    /// Scored tokens of each conclusive form, in the order tested.
    pub scored: Vec<usize>,
    /// `log10` of the test's p-value: with two forms, the smaller p-value
    /// times 2 (at most 1), computed as text detection computes it.
    pub log10_p: f64,
}

/// Tests a segment under one detector (the one place that reads a
/// [`Detection`](tracemark_verifier::Detection)'s outcome): its ids, and its second form where it
/// has one (then the smaller p-value times 2, as [`Detector::detect_text`]
/// decides). `None` when no form was conclusive.
pub fn test_segment(detector: &Detector, segment: &Segment) -> Result<Option<SegmentTest>> {
    let mut scored = Vec::with_capacity(2);
    let mut forms = Vec::with_capacity(2);
    for ids in std::iter::once(&segment.ids).chain(&segment.second) {
        let d = detector.detect_ids(&[], ids)?;
        let l = d.outcome.log10_p();
        if l.is_some() {
            scored.push(d.counts.scored);
        }
        forms.push(l);
    }
    // detect_text's family of forms (SPEC §14.1), the verifier's own arithmetic.
    Ok(FormFamily::of(&forms).log10_p().map(|log10_p| SegmentTest {
        forms: forms.len(),
        scored,
        log10_p,
    }))
}

/// The exact size at each number of scored tokens `0..=max_n`: `P(p < alpha)`
/// under the scheme's null distribution.
fn exact_sizes(config: &SchemeConfig, alpha: f64, max_n: usize) -> Vec<f64> {
    let binomial = |trials: u64, p: f64| {
        (0..=max_n as u64)
            .map(|n| {
                let total = n * trials;
                stats::binomial_critical(total, p, alpha).map_or(0.0, |k| stats::ln_binomial_upper(k, total, p).exp())
            })
            .collect()
    };
    match config.contract().null {
        Null::Binomial { trials, p } => binomial(u64::from(trials), p),
        // A continuous test (up to 32-bit values) has size alpha; so has any
        // null distribution added later until it is modelled here.
        _ => vec![alpha; max_n + 1],
    }
}

/// The result of [`calibrate`] for one scheme.
#[derive(Clone, Debug)]
pub struct SchemeCalibration {
    /// The scheme.
    pub scheme: SchemeConfig,
    /// The options of the run.
    pub options: CalibrationOptions,
    /// Keys used.
    pub keys: u64,
    /// Tests that were inconclusive (too few scored tokens): counted as not rejected.
    pub inconclusive: u64,
    /// Tokens scored over all tests (after deduplication).
    pub scored_tokens: u64,
    /// One cell per alpha, over all tests.
    pub overall: Vec<Cell>,
    /// `by_category[c][a]`: category `c` of the corpus, alpha `a`.
    pub by_category: Vec<Vec<Cell>>,
    /// `by_block[b][a]`: the `b`-th of [`BLOCKS`] consecutive runs of tests, alpha `a`
    /// (drift over the run would show here).
    pub by_block: Vec<Vec<Cell>>,
    /// Per alpha: variance of the false positives per key over their binomial
    /// variance (1 for independent tests; only meaningful with several tests per key).
    pub key_dispersion: Vec<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// How many consecutive blocks of tests [`SchemeCalibration::by_block`] reports.
pub const BLOCKS: usize = 10;

#[derive(Clone, Default)]
struct Tally {
    cells: Vec<Cell>,
    per_key_sum: Vec<f64>,
    per_key_sq: Vec<f64>,
    inconclusive: u64,
    scored: u64,
}

impl Tally {
    fn new(cells: usize, alphas: usize) -> Self {
        Self {
            cells: vec![Cell::default(); cells],
            per_key_sum: vec![0.0; alphas],
            per_key_sq: vec![0.0; alphas],
            ..Self::default()
        }
    }

    fn merge(mut self, other: Self) -> Self {
        for (a, b) in self.cells.iter_mut().zip(&other.cells) {
            a.add(b);
        }
        for (a, b) in self.per_key_sum.iter_mut().zip(&other.per_key_sum) {
            *a += b;
        }
        for (a, b) in self.per_key_sq.iter_mut().zip(&other.per_key_sq) {
            *a += b;
        }
        self.inconclusive += other.inconclusive;
        self.scored += other.scored;
        self
    }
}

/// Runs `options.tests` detections of `config` on segments of `corpus` under
/// keys of `keys`, and counts the false positives at each alpha.
///
/// Test `t` uses key `first_key + t / tests_per_key` and the segment at
/// position `t mod segments` of a fixed shuffle, so the tests that share a key
/// are on distinct segments and every segment is used equally often.
pub fn calibrate(
    corpus: &Corpus,
    config: &SchemeConfig,
    keys: &KeyStream,
    options: &CalibrationOptions,
) -> Result<SchemeCalibration> {
    let start = Instant::now();
    let segments = corpus.segments.len() as u64;
    let per_key = options.tests_per_key;
    if segments == 0 || per_key == 0 || per_key > segments || options.alphas.is_empty() {
        return Err(Error::InvalidOption {
            name: "calibration",
            message: format!(
                "need segments (have {segments}), at least one alpha, and 1 <= tests_per_key <= segments \
                 (have {per_key})"
            ),
        });
    }
    let mut order: Vec<u32> = (0..segments as u32).collect();
    let mut rng = keys.words(options.order_stream);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let max_n = corpus.segments.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let sizes: Vec<Vec<f64>> = options.alphas.iter().map(|&a| exact_sizes(config, a, max_n)).collect();
    // Two forms at alpha / 2 each: the Bonferroni bound on the size, the sum
    // of the two exact sizes at alpha / 2 (at most alpha).
    let two_forms = corpus.segments.iter().any(|s| s.second.is_some());
    let half_sizes: Vec<Vec<f64>> = if two_forms {
        options
            .alphas
            .iter()
            .map(|&a| exact_sizes(config, a / 2.0, max_n))
            .collect()
    } else {
        Vec::new()
    };
    let ln_alphas: Vec<f64> = options.alphas.iter().map(|a| a.ln()).collect();
    let n_alpha = options.alphas.len();
    // Rows: the categories, then "all", then the blocks.
    let n_cells = (corpus.categories.len() + 1 + BLOCKS) * n_alpha;
    let n_keys = options.tests.div_ceil(per_key);
    let detect_options = DetectOptions {
        dedup: options.dedup,
        ..DetectOptions::default()
    };
    let tally = (0..n_keys as usize)
        .into_par_iter()
        .with_min_len(16)
        .try_fold(
            || Tally::new(n_cells, n_alpha),
            |mut tally, k| -> Result<Tally> {
                let k = k as u64;
                let detector = Detector::new(
                    &keys.key(options.first_key + k),
                    config,
                    corpus.vocab_size,
                    detect_options.clone(),
                )?;
                let mut key_fp = vec![0u64; n_alpha];
                for t in k * per_key..((k + 1) * per_key).min(options.tests) {
                    let segment = &corpus.segments[order[(t % segments) as usize] as usize];
                    let outcome = test_segment(&detector, segment)?;
                    let cat = segment.category;
                    for a in 0..n_alpha {
                        let (fp, size, floor) = match &outcome {
                            Some(t) => {
                                let (size, floor) = if t.forms == 1 {
                                    let size = t.scored.iter().map(|&n| sizes[a][n.min(max_n)]).sum();
                                    (size, size)
                                } else {
                                    let half = t.scored.iter().map(|&n| half_sizes[a][n.min(max_n)]);
                                    (
                                        half.clone().sum::<f64>().min(options.alphas[a]),
                                        half.fold(0.0, f64::max),
                                    )
                                };
                                let ln_p = t.log10_p * std::f64::consts::LN_10;
                                (u64::from(ln_p < ln_alphas[a]), size, floor)
                            }
                            None => (0, 0.0, 0.0),
                        };
                        key_fp[a] += fp;
                        let block = corpus.categories.len() + 1 + (t * BLOCKS as u64 / options.tests) as usize;
                        for row in [cat, corpus.categories.len(), block] {
                            let c = &mut tally.cells[row * n_alpha + a];
                            c.tests += 1;
                            c.false_positives += fp;
                            c.exact_size_sum += size;
                            c.size_floor_sum += floor;
                        }
                    }
                    match &outcome {
                        Some(t) => tally.scored += t.scored.iter().sum::<usize>() as u64,
                        None => tally.inconclusive += 1,
                    }
                }
                for ((sum, sq), &fp) in tally.per_key_sum.iter_mut().zip(&mut tally.per_key_sq).zip(&key_fp) {
                    *sum += fp as f64;
                    *sq += (fp * fp) as f64;
                }
                Ok(tally)
            },
        )
        .try_reduce(|| Tally::new(n_cells, n_alpha), |a, b| Ok(a.merge(b)))?;
    let cats = corpus.categories.len();
    let row = |r: usize| tally.cells[r * n_alpha..(r + 1) * n_alpha].to_vec();
    let overall = row(cats);
    let key_dispersion = (0..n_alpha)
        .map(|a| {
            let m = n_keys as f64;
            let mean = tally.per_key_sum[a] / m;
            let var = tally.per_key_sq[a] / m - mean * mean;
            let p = overall[a].rate();
            let binomial = per_key as f64 * p * (1.0 - p);
            if binomial > 0.0 {
                var / binomial
            } else {
                f64::NAN
            }
        })
        .collect();
    Ok(SchemeCalibration {
        scheme: config.clone(),
        options: options.clone(),
        keys: n_keys,
        inconclusive: tally.inconclusive,
        scored_tokens: tally.scored,
        overall,
        by_category: (0..cats).map(row).collect(),
        by_block: (cats + 1..cats + 1 + BLOCKS).map(row).collect(),
        key_dispersion,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// How a battery row is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Criterion {
    /// Passes when the p-value is at least the battery's Bonferroni level
    /// (family level over the number of p-values in the battery).
    PValue(f64),
    /// Passes when the measured deviation is at most the tolerance.
    Tolerance {
        /// The measured deviation.
        measured: f64,
        /// The largest deviation accepted.
        tolerance: f64,
    },
    /// Measured outside the function's contract (e.g. seeds that are not
    /// PRF outputs): reported, not judged.
    Informational(f64),
}

/// One line of the battery.
#[derive(Clone, Debug, PartialEq)]
pub struct BatteryRow {
    /// The function and its structured input.
    pub input: String,
    /// The test.
    pub test: String,
    /// Samples.
    pub samples: u64,
    /// What was measured (the statistic, in words).
    pub detail: String,
    /// How it is judged.
    pub criterion: Criterion,
    /// Number of p-values this row stands for (e.g. one per output bit).
    pub p_values: u32,
}

/// The statistical battery: rows and the Bonferroni level.
#[derive(Clone, Debug)]
pub struct Battery {
    /// The rows.
    pub rows: Vec<BatteryRow>,
    /// Family-wise level of all the p-value rows together.
    pub family_level: f64,
}

impl Battery {
    /// The per-p-value level: the family level over the number of p-values.
    pub fn level(&self) -> f64 {
        let m: u32 = self
            .rows
            .iter()
            .filter(|r| matches!(r.criterion, Criterion::PValue(_)))
            .map(|r| r.p_values)
            .sum();
        self.family_level / f64::from(m.max(1))
    }

    /// Whether a row passes (`None` for an informational row).
    pub fn passes(&self, row: &BatteryRow) -> Option<bool> {
        match row.criterion {
            Criterion::PValue(p) => Some(p >= self.level()),
            Criterion::Tolerance { measured, tolerance } => Some(measured <= tolerance),
            Criterion::Informational(_) => None,
        }
    }

    /// Whether every judged row passes.
    pub fn all_pass(&self) -> bool {
        self.rows.iter().all(|r| self.passes(r) != Some(false))
    }
}

/// Two-sided exact p-value of `k` successes in `n` fair coin flips.
fn monobit_p(k: u64, n: u64) -> f64 {
    let upper = stats::ln_binomial_upper(k, n, 0.5).exp();
    let lower = stats::ln_binomial_upper(n - k, n, 0.5).exp();
    (2.0 * upper.min(lower)).min(1.0)
}

/// Two-sided p-value of a standard normal statistic.
fn normal_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

fn chi_square_p(counts: &[u64]) -> (f64, f64) {
    let n: u64 = counts.iter().sum();
    let e = n as f64 / counts.len() as f64;
    let stat: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
    let df = (counts.len() - 1) as f64;
    (stat, ChiSquared::new(df).map_or(f64::NAN, |d| d.sf(stat)))
}

/// The uniformity tests of one stream of `bits`-bit values: monobit per bit,
/// chi-square of the top 8 bits, lag-1 serial correlation and a chi-square of
/// consecutive pairs of top-4-bit values. `informational` marks a stream
/// outside the function's contract.
fn stream_rows(input: &str, values: &[u32], bits: u32, informational: bool) -> Vec<BatteryRow> {
    let n = values.len() as u64;
    let judge = |p: f64| {
        if informational {
            Criterion::Informational(p)
        } else {
            Criterion::PValue(p)
        }
    };
    let mut rows = Vec::new();
    // Monobit: the worst of the output bits.
    let (worst_bit, worst_p, worst_ones) = (0..bits)
        .map(|b| {
            let ones = values.iter().filter(|&&v| (v >> b) & 1 == 1).count() as u64;
            (b, monobit_p(ones, n), ones)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 1.0, 0));
    rows.push(BatteryRow {
        input: input.into(),
        test: format!("monobit, each of {bits} bits (exact binomial)"),
        samples: n,
        detail: format!(
            "worst bit {worst_bit}: {:.5} ones, p = {worst_p:.3}",
            worst_ones as f64 / n as f64
        ),
        criterion: judge(worst_p),
        p_values: bits,
    });
    // Uniformity of the top 8 bits.
    let top = |v: u32, k: u32| (v >> (bits - k)) as usize;
    let mut counts = vec![0u64; 256];
    for &v in values {
        counts[top(v, 8)] += 1;
    }
    let (stat, p) = chi_square_p(&counts);
    rows.push(BatteryRow {
        input: input.into(),
        test: "chi-square, top 8 bits (255 df)".into(),
        samples: n,
        detail: format!("chi2 = {stat:.1}, p = {p:.3}"),
        criterion: judge(p),
        p_values: 1,
    });
    // Serial correlation of consecutive values as uniforms.
    let scale = 1.0 / f64::from(1u32 << (bits - 1)) / 2.0;
    let u: Vec<f64> = values.iter().map(|&v| (f64::from(v) + 0.5) * scale).collect();
    let m = (u.len() - 1) as f64;
    let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for w in u.windows(2) {
        sx += w[0];
        sy += w[1];
        sxx += w[0] * w[0];
        syy += w[1] * w[1];
        sxy += w[0] * w[1];
    }
    let cov = sxy / m - sx / m * sy / m;
    let r = cov / ((sxx / m - (sx / m).powi(2)) * (syy / m - (sy / m).powi(2))).sqrt();
    let z = r * m.sqrt();
    let p = normal_p(z);
    rows.push(BatteryRow {
        input: input.into(),
        test: "serial correlation, lag 1 (normal)".into(),
        samples: n,
        detail: format!("r = {r:+.2e}, z = {z:+.2}, p = {p:.3}"),
        criterion: judge(p),
        p_values: 1,
    });
    // Pairs of consecutive top-4-bit values.
    let mut pairs = vec![0u64; 256];
    for w in values.windows(2) {
        pairs[top(w[0], 4) * 16 + top(w[1], 4)] += 1;
    }
    let (stat, p) = chi_square_p(&pairs);
    rows.push(BatteryRow {
        input: input.into(),
        test: "chi-square, consecutive pairs of top 4 bits (255 df)".into(),
        samples: n - 1,
        detail: format!("chi2 = {stat:.1}, p = {p:.3}"),
        criterion: judge(p),
        p_values: 1,
    });
    rows
}

/// The exact two-sided test of the total detection score of a stream of
/// scheme values against the scheme's null distribution.
fn score_row(input: &str, scheme: &dyn Scheme, values: &[u32]) -> BatteryRow {
    let n = values.len() as u64;
    let two_sided =
        |ln_upper: f64, ln_upper_complement: f64| (2.0 * ln_upper.exp().min(ln_upper_complement.exp())).min(1.0);
    let total: f64 = values.iter().map(|&v| scheme.score(v)).sum();
    let (detail, p) = match scheme.contract().null {
        Null::Binomial { trials, p } => {
            let trials = n * u64::from(trials);
            let k = total.round() as u64;
            // P(X >= k) and P(X <= k) = P(n - X >= n - k) with n - X ~ Binomial(n, 1 - p).
            let two = two_sided(
                stats::ln_binomial_upper(k, trials, p),
                stats::ln_binomial_upper(trials - k, trials, 1.0 - p),
            );
            (format!("success share {:.5} (null {p})", k as f64 / trials as f64), two)
        }
        _ => {
            let upper = stats::ln_gamma_upper(n, total);
            let p = (2.0 * upper.exp().min(-upper.exp_m1())).min(1.0);
            (format!("mean score {:.5} (null 1)", total / n as f64), p)
        }
    };
    BatteryRow {
        input: input.into(),
        test: "total score vs the exact null (two-sided)".into(),
        samples: n,
        detail: format!("{detail}, p = {p:.3}"),
        criterion: Criterion::PValue(p),
        p_values: 1,
    }
}

/// Strict avalanche: for `samples` random inputs, flip each input bit and
/// count how often each output bit flips. Returns the largest and the root
/// mean square deviation of the flip frequencies from 1/2, over the input
/// The battery row of an avalanche measurement `(largest deviation, rms)`.
fn avalanche_row(input: &str, test: &str, samples: u64, (max, rms): (f64, f64), criterion: Criterion) -> BatteryRow {
    BatteryRow {
        input: input.into(),
        test: test.into(),
        samples,
        detail: format!("largest deviation of P(flip) from 1/2: {max:.4}, rms {rms:.4}"),
        criterion,
        p_values: 0,
    }
}

/// bits in `bits` (all output bits).
fn avalanche(samples: u64, bits: &[u32], out_bits: usize, rng: &mut Rng, f: impl Fn(u64, u32) -> u32) -> (f64, f64) {
    let mut flips = vec![[0u64; 32]; bits.len()];
    for _ in 0..samples {
        let r = rng.next_u64();
        let (seed, w) = (rng.next_u64(), r as u32);
        let base = f(seed, w);
        for (i, &b) in bits.iter().enumerate() {
            let other = if b < 32 {
                f(seed, w ^ (1 << b))
            } else {
                f(seed ^ (1 << (b - 32)), w)
            };
            let d = base ^ other;
            for (o, count) in flips[i].iter_mut().enumerate() {
                *count += u64::from((d >> o) & 1);
            }
        }
    }
    let devs: Vec<f64> = flips
        .iter()
        .flat_map(|row| &row[..out_bits])
        .map(|&c| (c as f64 / samples as f64 - 0.5).abs())
        .collect();
    let max = devs.iter().copied().fold(0.0, f64::max);
    let rms = (devs.iter().map(|d| d * d).sum::<f64>() / devs.len() as f64).sqrt();
    (max, rms)
}

/// The largest deviation from 1/2 accepted in an avalanche row.
pub const AVALANCHE_TOLERANCE: f64 = 0.05;

/// Runs the battery: [`mix`] and [`value16`] over sequential token ids,
/// sequential seeds, and random inputs (avalanche); each scheme's values
/// through [`Scheme::observe`] over sequential candidate ids after one
/// context, and over consecutive context windows of the id sequence
/// `0, 1, 2, ...`. `samples` values per stream (at most one per vocabulary
/// entry for the scheme streams, so that no window repeats); keys and inputs
/// from `keys`.
pub fn battery(schemes: &[SchemeConfig], vocab_size: usize, keys: &KeyStream, samples: usize) -> Result<Battery> {
    let n = samples as u32;
    let mut rng = keys.words(1_000);
    let seed = rng.next_u64();
    let w0 = rng.next_u64() as u32;
    let mut rows = Vec::new();
    rows.extend(stream_rows(
        "mix(s, w), w = 0, 1, 2, ... (one random s)",
        &(0..n).map(|w| mix(seed, w)).collect::<Vec<_>>(),
        32,
        false,
    ));
    rows.extend(stream_rows(
        "value16(s, t), t = 0, 1, 2, ... (one random s)",
        &(0..n).map(|t| u32::from(value16(seed, t))).collect::<Vec<_>>(),
        16,
        false,
    ));
    rows.extend(stream_rows(
        "mix(s0 + i, w), i = 0, 1, 2, ... (random s0, w)",
        &(0..u64::from(n))
            .map(|i| mix(seed.wrapping_add(i), w0))
            .collect::<Vec<_>>(),
        32,
        false,
    ));
    rows.extend(stream_rows(
        "mix(i, w), i = 0, 1, 2, ... (raw small seeds, not PRF outputs)",
        &(0..u64::from(n)).map(|i| mix(i, w0)).collect::<Vec<_>>(),
        32,
        true,
    ));
    // Enough samples that sampling noise (sd 1/(2 sqrt(samples))) stays well inside the tolerance.
    let aval = (samples / 4).max(1 << 14) as u64;
    let token_bits: Vec<u32> = (0..32).collect();
    let (max, rms) = avalanche(aval, &token_bits, 32, &mut rng, mix);
    rows.push(avalanche_row(
        "mix(s, w), random s and w: flip each bit of w",
        "avalanche, 32 x 32 flip frequencies",
        aval,
        (max, rms),
        Criterion::Tolerance {
            measured: max,
            tolerance: AVALANCHE_TOLERANCE,
        },
    ));
    let token16: Vec<u32> = (0..17).collect();
    let (max, rms) = avalanche(aval, &token16, 16, &mut rng, |s, w| u32::from(value16(s, w & 0x1_ffff)));
    rows.push(avalanche_row(
        "value16(s, t), random s, t < 2^17: flip each bit of t",
        "avalanche, 17 x 16 flip frequencies",
        aval,
        (max, rms),
        Criterion::Tolerance {
            measured: max,
            tolerance: AVALANCHE_TOLERANCE,
        },
    ));
    // Seed bit 32 is forced to 1 (b = hi32 | 1): it never changes the output, by design.
    let seed_bits: Vec<u32> = (32..96).filter(|&b| b != 64).collect();
    let (max, rms) = avalanche(aval, &seed_bits, 32, &mut rng, mix);
    rows.push(avalanche_row(
        "mix(s, w), random s and w: flip each bit of s except bit 32",
        "avalanche, 63 x 32 flip frequencies",
        aval,
        (max, rms),
        Criterion::Informational(max),
    ));
    // Ids 0, 1, 2, ... modulo the vocabulary; at most one pass of windows, so none repeats.
    let v = vocab_size as u64;
    let per_stream = vocab_size.min(samples);
    let sequence: Vec<u32> = (0..(per_stream + Context::MAX_WIDTH) as u64)
        .map(|i| (i % v) as u32)
        .collect();
    for (i, config) in schemes.iter().enumerate() {
        let scheme = config.build(&keys.key(u64::MAX - i as u64), vocab_size)?;
        let h = config.context().width();
        let value = |history: &[u32], t: u32| -> Result<u32> {
            Ok(scheme.observe(history, t)?.map(|o| o.value).unwrap_or_default())
        };
        let candidates: Vec<u32> = (0..per_stream as u32)
            .map(|t| value(&sequence[..h], t))
            .collect::<Result<_>>()?;
        // Values are 16-bit (kgw) or 32-bit wide: thousands of uniform 32-bit values never all fit 16 bits.
        let bits = if candidates.iter().all(|&v| v <= 0xFFFF) {
            16
        } else {
            32
        };
        let label = format!("{config}: candidates 0, 1, 2, ... after one context");
        rows.extend(stream_rows(&label, &candidates, bits, false));
        rows.push(score_row(&label, scheme.as_ref(), &candidates));
        if h > 0 {
            let windows: Vec<u32> = (h..h + per_stream)
                .map(|i| value(&sequence[i - h..i], sequence[i]))
                .collect::<Result<_>>()?;
            let label = format!("{config}: consecutive windows of 0, 1, 2, ...");
            rows.extend(stream_rows(&label, &windows, bits, false));
            rows.push(score_row(&label, scheme.as_ref(), &windows));
        }
    }
    Ok(Battery {
        rows,
        family_level: 1e-3,
    })
}

/// Everything one calibration run measured, for [`markdown`].
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// The corpus.
    pub corpus: &'a Corpus,
    /// Where the corpus came from, in words.
    pub corpus_source: String,
    /// The tokenizer, in words (file and fingerprint).
    pub tokenizer: String,
    /// The key stream.
    pub keys: &'a KeyStream,
    /// One run per scheme.
    pub schemes: &'a [SchemeCalibration],
    /// The battery.
    pub battery: &'a Battery,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Total wall-clock seconds.
    pub seconds: f64,
    /// Title line (e.g. with the date).
    pub title: String,
}

/// Pearson's chi-square test that blocks of `tests[i]` trials with
/// `counts[i]` successes share one rate (k - 1 degrees of freedom).
pub fn homogeneity_p(counts: &[u64], tests: &[u64]) -> f64 {
    let k: u64 = counts.iter().sum();
    let n: u64 = tests.iter().sum();
    if k == 0 || k == n || counts.len() < 2 {
        return 1.0;
    }
    let p = k as f64 / n as f64;
    let stat: f64 = counts
        .iter()
        .zip(tests)
        .map(|(&c, &t)| {
            let e = t as f64 * p;
            (c as f64 - e).powi(2) / (e * (1.0 - p))
        })
        .sum();
    ChiSquared::new((counts.len() - 1) as f64).map_or(f64::NAN, |d| d.sf(stat))
}

fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:.3e}")
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "**NO**"
    }
}

/// The results file: a table per scheme, per category, the battery, and how
/// the run was made.
pub fn markdown(r: &Report<'_>) -> String {
    let c = r.corpus;
    let pct = r.confidence * 100.0;
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", r.title);
    let _ = writeln!(
        s,
        "Produced by `make calibrate` (`lab/src/bin/calibrate.rs`, engine \
         `lab/src/calibration.rs`). Every p-value comes from `Detector::detect_ids` with \
         deduplication `{}` and the default options.\n",
        r.schemes.first().map_or(Dedup::Pair, |x| x.options.dedup)
    );
    let _ = writeln!(s, "## Setup\n");
    let per_cat = c.segments_per_category();
    let cats: Vec<String> = c
        .categories
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{name} ({} documents, {} segments)", c.documents[i], per_cat[i]))
        .collect();
    let _ = writeln!(s, "- Corpus: {}: {}.", r.corpus_source, cats.join(", "));
    let _ = writeln!(
        s,
        "- Tokenized once with {} (vocabulary {}); each document cut into consecutive segments \
         of {} tokens (a final piece under {} tokens dropped): {} segments, {} tokens.",
        r.tokenizer,
        c.vocab_size,
        c.options.max_tokens,
        c.options.min_tokens,
        c.segments.len(),
        c.tokens()
    );
    let _ = writeln!(
        s,
        "- Test `t` of a scheme: key `first_key + t / tests_per_key` of the ChaCha8 key stream \
         with seed `{:#018x}` (every key of the run distinct), on segment `t mod {}` of a fixed shuffle.",
        r.keys.seed(),
        c.segments.len()
    );
    let _ = writeln!(
        s,
        "- Intervals: exact (Clopper–Pearson) {pct}% intervals of the false-positive rate. The \
         exact tests of kgw and tournament are discrete, so they may reject less often than \
         alpha: *exact size* is the mean, over the tests, of P(p < alpha) under the null at the \
         test's number of scored tokens (alpha itself for gumbel). *Within* says whether the \
         exact size lies in the interval; *≤ alpha* whether the interval's lower end is at most alpha.",
    );
    let _ = writeln!(
        s,
        "- Total run time: {:.0} s on {} threads.\n",
        r.seconds,
        rayon::current_num_threads()
    );
    let _ = writeln!(s, "## False-positive rate per scheme\n");
    let _ = writeln!(
        s,
        "| scheme | tests | keys | alpha | false positives | FPR | {pct}% interval | exact size | within | ≤ alpha |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|---:|---|---|");
    for x in r.schemes {
        for (a, cell) in x.options.alphas.iter().zip(&x.overall) {
            let (lo, hi) = cell.interval(r.confidence);
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {a:.0e} | {} | {} | [{}, {}] | {} | {} | {} |",
                x.scheme,
                cell.tests,
                x.keys,
                cell.false_positives,
                sci(cell.rate()),
                sci(lo),
                sci(hi),
                sci(cell.exact_size()),
                yes(cell.size_within(r.confidence)),
                yes(lo <= *a)
            );
        }
    }
    let _ = writeln!(
        s,
        "\n| scheme | tests per key | inconclusive | mean scored tokens per test | seconds | \
         per-key dispersion at each alpha |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
    for x in r.schemes {
        let disp: Vec<String> = x
            .key_dispersion
            .iter()
            .map(|d| {
                if x.options.tests_per_key > 1 {
                    format!("{d:.2}")
                } else {
                    "n/a".into()
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {:.1} | {:.0} | {} |",
            x.scheme,
            x.options.tests_per_key,
            x.inconclusive,
            x.scored_tokens as f64 / x.overall.first().map_or(1, |c| c.tests.max(1)) as f64,
            x.seconds,
            disp.join(" / ")
        );
    }
    let _ = writeln!(s, "\n## Drift: false positives per tenth of the run\n");
    let _ = writeln!(
        s,
        "Tests in run order, cut into {BLOCKS} consecutive blocks; the false positives of each block \
         at each alpha, and the p-value of Pearson's chi-square test that all blocks share one rate \
         ({} df).\n",
        BLOCKS - 1
    );
    let _ = writeln!(s, "| scheme | alpha | false positives per block | homogeneity p |");
    let _ = writeln!(s, "|---|---:|---|---:|");
    for x in r.schemes {
        for (ai, a) in x.options.alphas.iter().enumerate() {
            let counts: Vec<u64> = x.by_block.iter().map(|b| b[ai].false_positives).collect();
            let tests: Vec<u64> = x.by_block.iter().map(|b| b[ai].tests).collect();
            let _ = writeln!(
                s,
                "| `{}` | {a:.0e} | {} | {:.3} |",
                x.scheme,
                counts.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
                homogeneity_p(&counts, &tests)
            );
        }
    }
    let _ = writeln!(s, "\n## Per category\n");
    let _ = writeln!(
        s,
        "| scheme | category | tests | alpha | false positives | FPR | {pct}% interval | exact size | within |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|---:|---|");
    for x in r.schemes {
        for (ci, cells) in x.by_category.iter().enumerate() {
            for (a, cell) in x.options.alphas.iter().zip(cells) {
                let (lo, hi) = cell.interval(r.confidence);
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {a:.0e} | {} | {} | [{}, {}] | {} | {} |",
                    x.scheme,
                    c.categories[ci],
                    cell.tests,
                    cell.false_positives,
                    sci(cell.rate()),
                    sci(lo),
                    sci(hi),
                    sci(cell.exact_size()),
                    yes(cell.size_within(r.confidence))
                );
            }
        }
    }
    let b = r.battery;
    let _ = writeln!(s, "\n## Statistical battery of the per-token values\n");
    let _ = writeln!(
        s,
        "p-value rows pass at p ≥ {:.2e}: family level {} over all the battery's p-values \
         (Bonferroni; a monobit row stands for one p-value per bit). Avalanche rows pass when no \
         flip frequency is more than {AVALANCHE_TOLERANCE} from 1/2. *info* rows are measured \
         outside the function's contract (seeds are SipHash outputs, never small integers or \
         one-bit neighbours) and are not judged. All judged rows pass: {}.\n",
        b.level(),
        b.family_level,
        yes(b.all_pass())
    );
    let _ = writeln!(s, "| input | test | samples | result | pass |");
    let _ = writeln!(s, "|---|---|---:|---|---|");
    for row in &b.rows {
        let verdict = match b.passes(row) {
            Some(p) => yes(p),
            None => "info",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            row.input, row.test, row.samples, row.detail, verdict
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(docs: usize, len: usize, vocab: u32, seed: u64) -> Corpus {
        let mut rng = Rng::new(seed);
        let docs = (0..docs).map(|i| {
            let ids: Vec<u32> = (0..len).map(|_| (rng.next_u64() % u64::from(vocab)) as u32).collect();
            (["a", "b", "c"][i % 3].to_string(), ids)
        });
        Corpus::from_documents(
            docs.collect::<Vec<_>>(),
            vocab as usize,
            SegmentOptions {
                max_tokens: 100,
                min_tokens: 40,
            },
        )
    }

    #[test]
    fn clopper_pearson_ends_solve_the_tail_equations() {
        for (k, n) in [
            (3u64, 1000u64),
            (1000, 10_000_000),
            (688, 10_000_000),
            (9882, 10_000_000),
            (97, 1_000_000),
            (1, 50),
            (49, 50),
        ] {
            let (lo, hi) = stats::clopper_pearson(k, n, 0.99);
            // P(X >= k | lo) = 0.005 and P(X <= k | hi) = 0.005.
            let upper = stats::ln_binomial_upper(k, n, lo).exp();
            let lower = -stats::ln_binomial_upper(k + 1, n, hi).exp_m1();
            assert!((upper / 0.005 - 1.0).abs() < 1e-4, "{k}/{n}: {upper}");
            assert!((lower / 0.005 - 1.0).abs() < 1e-4, "{k}/{n}: {lower}");
        }
        // Independent values (statrs' incomplete-beta quantiles).
        let (lo, hi) = stats::clopper_pearson(795, 100_000, 0.99);
        assert!(
            (lo / 7.245e-3 - 1.0).abs() < 1e-3 && (hi / 8.702e-3 - 1.0).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (_, hi) = stats::clopper_pearson(0, 528, 0.99);
        assert!((hi / 9.985e-3 - 1.0).abs() < 1e-3, "{hi}");
        assert_eq!(stats::clopper_pearson(0, 100, 0.99).0, 0.0);
        assert_eq!(stats::clopper_pearson(100, 100, 0.99).1, 1.0);
    }

    #[test]
    fn keys_are_distinct_and_reproducible() {
        let s = KeyStream::danger_from_seed(5);
        let ids: std::collections::HashSet<_> = (0..2000).map(|i| s.key(i).id()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(s.key(7) == KeyStream::danger_from_seed(5).key(7));
        assert!(s.key(7) != KeyStream::danger_from_seed(6).key(7));
    }

    #[test]
    fn segments_cover_documents() {
        let c = synthetic(10, 250, 50, 1);
        // 250 tokens: two full segments of 100 and a final 50 (kept, >= 40).
        assert_eq!(c.segments.len(), 30);
        assert_eq!(c.segments_per_category(), vec![12, 9, 9]);
        assert_eq!(c.tokens(), 2500);
    }

    #[test]
    fn exact_size_is_at_most_alpha_and_alpha_when_continuous() {
        let kgw: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme");
        let gumbel: SchemeConfig = "gumbel:temperature=1,context=lefthash:1".parse().expect("scheme");
        for a in [1e-2, 1e-3] {
            let sizes = exact_sizes(&kgw, a, 300);
            assert!(sizes.iter().all(|&s| s <= a));
            assert!(sizes[300] > 0.3 * a);
            assert_eq!(exact_sizes(&gumbel, a, 10), vec![a; 11]);
        }
    }

    /// The engine end to end on random ids: every scheme's false-positive
    /// rate at 1e-2 is within the 99% interval of its exact size.
    #[test]
    fn calibrated_on_random_ids() {
        let corpus = synthetic(120, 300, 5000, 2);
        let keys = KeyStream::danger_from_seed(0x5eed);
        for (i, scheme) in [
            "kgw:gamma=0.25,delta=2,context=lefthash:1",
            "kgw:gamma=0.25,delta=2,context=selfhash:2",
            "tournament:layers=30,top_k=40,temperature=1,context=lefthash:2",
            "gumbel:temperature=1,context=lefthash:2",
        ]
        .into_iter()
        .enumerate()
        {
            let config: SchemeConfig = scheme.parse().expect("scheme");
            let options = CalibrationOptions {
                tests: 4000,
                tests_per_key: if scheme.contains("selfhash") { 40 } else { 1 },
                first_key: i as u64 * 1_000_000,
                alphas: vec![1e-2],
                ..CalibrationOptions::default()
            };
            let run = calibrate(&corpus, &config, &keys, &options).expect("runs");
            let cell = run.overall[0];
            assert_eq!(cell.tests, 4000);
            assert_eq!(run.by_category.iter().map(|c| c[0].tests).sum::<u64>(), 4000);
            assert_eq!(run.by_block.iter().map(|c| c[0].tests).sum::<u64>(), 4000);
            assert!(
                cell.size_within(0.99),
                "{scheme}: {} false positives, exact size {}",
                cell.false_positives,
                cell.exact_size()
            );
        }
    }

    /// A real `tokenizers` tokenizer: word level over `w0 .. w{n-1}`, split on whitespace.
    fn word_tokenizer(n: usize) -> TextTokenizer {
        let vocab: serde_json::Map<String, Value> = (0..n).map(|i| (format!("w{i}"), Value::from(i))).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"},
        });
        TextTokenizer::from_bytes(json.to_string().as_bytes()).expect("a word-level tokenizer")
    }

    #[test]
    fn text_segments_test_the_forms_of_the_forms_rule() {
        let tok = word_tokenizer(100);
        let ids = |t: &str| tok.encode(t).expect("encodes").ids;
        // Unchanged: the text as given, alone.
        let plain = "w1 w2 w3 w4";
        let s = Segment::from_text(0, 0, plain, &tok).expect("segment");
        assert_eq!((s.ids.clone(), s.second.clone()), (ids(plain), None));
        // An invisible character (not ordinary): the canonical form, alone.
        let hidden = "w1 w2\u{200B}w3 w4";
        assert_ne!(ids(hidden), ids("w1 w2w3 w4"));
        let s = Segment::from_text(0, 0, hidden, &tok).expect("segment");
        assert_eq!((s.ids, s.second), (ids("w1 w2w3 w4"), None));
        // Three doubled spaces in 40 words (ordinary, more than 2, fewer than 4): both.
        let words: Vec<String> = (0..40).map(|i| format!("w{}", i % 90 + 1)).collect();
        let mut spaced = words[..3].join("  ");
        spaced.push_str("  ");
        spaced.push_str(&words[3..].join(" "));
        let s = Segment::from_text(2, 7, &spaced, &tok).expect("segment");
        assert_eq!((s.category, s.document), (2, 7));
        assert_eq!(s.ids, ids(&spaced));
        assert_eq!(s.second, Some(ids(&words.join(" "))));
        let corpus = Corpus::from_texts(
            [("b", plain), ("a", hidden), ("b", spaced.as_str())].map(|(c, t)| (c.to_string(), t.to_string())),
            &tok,
            SegmentOptions::default(),
        )
        .expect("corpus");
        assert_eq!(corpus.categories, ["a", "b"]);
        assert_eq!(corpus.documents, [1, 2]);
        assert_eq!(corpus.segments.len(), 3);
        assert_eq!(corpus.vocab_size, 100);
    }

    #[test]
    fn two_forms_cost_a_factor_of_two() {
        let corpus = synthetic(1, 300, 5000, 3);
        let config: SchemeConfig = "gumbel:temperature=1,context=lefthash:2".parse().expect("scheme");
        let keys = KeyStream::danger_from_seed(0x5eed);
        let detector = Detector::new(&keys.key(0), &config, 5000, DetectOptions::default()).expect("detector");
        let one = corpus.segments[0].clone();
        let single = test_segment(&detector, &one).expect("tests").expect("conclusive");
        assert_eq!((single.forms, single.scored.len()), (1, 1));
        let two = Segment {
            second: Some(one.ids.clone()),
            ..one
        };
        let both = test_segment(&detector, &two).expect("tests").expect("conclusive");
        assert_eq!((both.forms, both.scored.len()), (2, 2));
        assert_eq!(both.log10_p, (single.log10_p + 2f64.log10()).min(0.0));
    }

    #[test]
    fn calibrated_with_two_forms() {
        // Every segment has an independent second form: the smaller p-value
        // times 2 rejects at 1 - (1 - alpha/2)^2, just under alpha, which the
        // Bonferroni bound (the exact size reported) allows.
        let mut corpus = synthetic(120, 300, 5000, 4);
        let other = synthetic(120, 300, 5000, 5);
        for (s, o) in corpus.segments.iter_mut().zip(other.segments) {
            s.second = Some(o.ids);
        }
        let keys = KeyStream::danger_from_seed(0x5eed);
        for (i, scheme) in [
            "kgw:gamma=0.25,delta=2,context=lefthash:1",
            "gumbel:temperature=1,context=lefthash:2",
        ]
        .into_iter()
        .enumerate()
        {
            let config: SchemeConfig = scheme.parse().expect("scheme");
            let options = CalibrationOptions {
                tests: 4000,
                first_key: 7_000_000 + i as u64 * 1_000_000,
                alphas: vec![1e-2],
                ..CalibrationOptions::default()
            };
            let run = calibrate(&corpus, &config, &keys, &options).expect("runs");
            let cell = run.overall[0];
            assert!(cell.exact_size() <= 1e-2 + 1e-12);
            if scheme.starts_with("gumbel") {
                assert!((cell.exact_size() - 1e-2).abs() < 1e-12);
            }
            assert!(
                cell.size_within(0.99),
                "{scheme}: {} false positives, exact size {}",
                cell.false_positives,
                cell.exact_size()
            );
        }
    }

    #[test]
    fn battery_passes_on_small_samples() {
        let schemes: Vec<SchemeConfig> = [
            "kgw:gamma=0.25,delta=2,context=lefthash:0",
            "gumbel:temperature=1,context=lefthash:2",
        ]
        .iter()
        .map(|s| s.parse().expect("scheme"))
        .collect();
        let b = battery(&schemes, 5000, &KeyStream::danger_from_seed(3), 1 << 14).expect("battery");
        let failed: Vec<_> = b.rows.iter().filter(|r| b.passes(r) == Some(false)).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
