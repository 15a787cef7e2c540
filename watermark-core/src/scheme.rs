//! What every scheme shares: processing one row or a batch, repeated-context
//! memory, and observations for the verifier.

use core::fmt;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;

use ndarray::ArrayViewMut2;

use crate::context::{ContextSeed, Seeder};
use crate::contract::{Contract, Generation};
use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::simd::BlockMaxima;

/// What one processing call did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// The row was watermarked under the seed whose context key is given.
    Watermarked {
        /// The context key (SPEC §5); equal keys mean equal keyed randomness.
        context_key: u64,
    },
    /// The history is shorter than the context width: the row is unchanged
    /// (the verifier skips such positions too).
    SkippedShortContext,
    /// This context was already watermarked earlier in the sequence and the
    /// caller asked to skip repeats: the row is unchanged.
    SkippedRepeatedContext,
}

impl Step {
    /// Whether the row was changed.
    pub fn is_watermarked(&self) -> bool {
        matches!(self, Self::Watermarked { .. })
    }
}

/// Per-sequence memory of the contexts already watermarked, for skipping
/// repeated contexts at generation time (matching the verifier's
/// deduplication of repeated observations).
#[derive(Clone, Default, Debug)]
pub struct SeenContexts {
    keys: HashSet<u64, BuildHasherDefault<PassThrough>>,
}

impl SeenContexts {
    /// An empty memory (one per generated sequence).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `context_key`; false if it was already there.
    pub fn insert(&mut self, context_key: u64) -> bool {
        self.keys.insert(context_key)
    }

    /// Whether `context_key` was recorded.
    pub fn contains(&self, context_key: u64) -> bool {
        self.keys.contains(&context_key)
    }

    /// How many contexts were recorded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets everything (start of a new sequence).
    pub fn clear(&mut self) {
        self.keys.clear();
    }
}

/// Context keys are PRF outputs, already uniformly distributed: hash them as they are.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// One scored position as the verifier sees it (SPEC §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Observation {
    /// The context key of the position.
    pub context_key: u64,
    /// The seed the token was valued under: the context key, except for a
    /// self-hash candidate that anchors its own seed. Observations with equal
    /// `(seed, token)` have equal values, so they are deduplicated on that pair.
    pub seed: u64,
    /// The observed token.
    pub token: u32,
    /// The scheme's keyed value of the token (16-bit for kgw, 32-bit otherwise).
    pub value: u32,
}

/// Which scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum SchemeKind {
    /// Green-list logit bias (Kirchenbauer et al. 2023).
    Kgw,
    /// Tournament sampling (SynthID-Text, Dathathri et al. 2024).
    Tournament,
    /// Exponential-minimum / Gumbel sampling (Aaronson 2022).
    Gumbel,
}

impl SchemeKind {
    /// The scheme's name in the spec (`kgw`, `tournament`, `gumbel`); also its sub-key label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kgw => "kgw",
            Self::Tournament => "tournament",
            Self::Gumbel => "gumbel",
        }
    }
}

impl fmt::Display for SchemeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `name=value` pairs of a scheme string; every one must be used.
pub(crate) struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<Self> {
        let mut pairs = Vec::new();
        // `context=lefthash:1` contains ':' but never ',', so splitting on ',' is unambiguous.
        for item in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| Error::param("parameter", item, "`name=value`"))?;
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(Error::param("parameter", k, "each parameter once"));
            }
            pairs.push((k, v));
        }
        Ok(Self { pairs })
    }

    pub(crate) fn take<T: core::str::FromStr>(
        &mut self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        let Some(i) = self.pairs.iter().position(|(k, _)| *k == name) else {
            return Ok(None);
        };
        let (_, v) = self.pairs.remove(i);
        // Keep the value's own complaint (e.g. a context width out of range).
        v.parse()
            .map(Some)
            .map_err(|e| Error::param(name, format!("{v} ({e})"), expected))
    }

    pub(crate) fn require<T: core::str::FromStr>(&mut self, name: &'static str, expected: &'static str) -> Result<T>
    where
        T::Err: fmt::Display,
    {
        self.take(name, expected)?
            .ok_or_else(|| Error::param(name, "(missing)", expected))
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.pairs.first() {
            Some((k, _)) => Err(Error::param("parameter", k, "only the parameters of this scheme")),
            None => Ok(()),
        }
    }
}

/// Process a batch on several threads only from this many logits on (32 rows
/// of a 128k vocabulary): below it, spawning threads costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 22;
/// ... and only with this many cores: on two cores the batch is bound by memory
/// bandwidth and threads were measured to slow it down (benches/RESULTS.md).
const PARALLEL_MIN_CORES: usize = 4;

/// Threads for batches: 0 means automatic. Set from `TRACEMARK_THREADS` on first use.
static BATCH_THREADS: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets how many threads process a large batch (`None`: automatic, which is
/// also what the `TRACEMARK_THREADS` environment variable, read once, overrides).
pub fn set_batch_threads(threads: Option<usize>) {
    BATCH_THREADS.store(threads.unwrap_or(0), Ordering::Relaxed);
}

fn batch_threads(rows: usize, elements: usize) -> usize {
    let mut setting = BATCH_THREADS.load(Ordering::Relaxed);
    if setting == usize::MAX {
        setting = std::env::var("TRACEMARK_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        BATCH_THREADS.store(setting, Ordering::Relaxed);
    }
    let threads = match setting {
        0 => {
            // Asked once: on Linux the answer reads cgroup files, tens of microseconds a call.
            static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
            if elements >= PARALLEL_MIN_ELEMENTS && cores >= PARALLEL_MIN_CORES {
                cores
            } else {
                1
            }
        }
        t => t,
    };
    threads.min(rows).max(1)
}

/// A keyed watermark scheme: processes logits at generation time and yields
/// observations at verification time.
///
/// Built by [`Kgw::new`](crate::Kgw::new), [`Tournament::new`](crate::Tournament::new),
/// [`Gumbel::new`](crate::Gumbel::new) or [`SchemeConfig::build`](crate::SchemeConfig::build). Schemes are
/// immutable and `Sync`: share one across decoding threads.
///
/// Everything scheme-specific is stated here, once: the keyed value of a
/// token, its score, the [`Contract`] (null distribution, generation
/// contract), and the kernel that changes a logits row. The verifier, the
/// bindings and the decoders ask the scheme and never branch on which scheme
/// it is, so a scheme defined outside this crate (from a [`Seeder`] made with
/// [`Seeder::for_scheme`]) is generated and detected like the built-in ones.
pub trait Scheme: Send + Sync {
    /// The scheme string: name and every parameter, e.g.
    /// `kgw:gamma=0.25,delta=2,context=lefthash:1` (for the built-in schemes,
    /// the form [`SchemeConfig`](crate::SchemeConfig) parses back).
    fn describe(&self) -> String;

    /// The public id of the key the scheme was built with.
    fn key_id(&self) -> KeyId;

    /// The vocabulary size the scheme was built for.
    fn vocab_size(&self) -> usize;

    /// The seeder (context seeds and token seeds).
    fn seeder(&self) -> &Seeder;

    /// What the scheme states about detection and generation.
    fn contract(&self) -> Contract;

    /// The keyed value of `token` under `seed` (SPEC §7–9).
    fn value(&self, seed: u64, token: u32) -> u32;

    /// The score of one observation with keyed value `value`; under the null
    /// hypothesis it has the distribution [`Contract::null`].
    fn score(&self, value: u32) -> f64;

    /// The kernel: watermarks a row that was already checked (right length,
    /// no NaN or `+inf`, context tokens in the vocabulary, and at least one
    /// finite logit when the scheme controls sampling), at a position with
    /// context seed `cs`. Called by [`Scheme::process`] and its relatives;
    /// call those instead.
    fn apply(&self, cs: &ContextSeed, row: &mut [f32]);

    /// [`Scheme::apply`], given what the row check learned in its read of
    /// the row ([`CheckedRow`]), so that the kernel need not read the row
    /// again for it. [`Scheme::process`] and its relatives call this one; the
    /// default calls [`Scheme::apply`].
    fn apply_checked(&self, cs: &ContextSeed, row: &mut [f32], checked: &CheckedRow) {
        let _ = checked;
        self.apply(cs, row)
    }

    /// Watermarks one logits row in place. `history` is every token before
    /// the one being generated (prompt included). On error the row is left
    /// exactly as it was.
    fn process(&self, history: &[u32], logits: &mut [f32]) -> Result<Step> {
        let checked = check_row(self, history, logits)?;
        Ok(apply_planned(self, history, logits, &checked, None))
    }

    /// [`Scheme::process`], skipping contexts already recorded in `memory`
    /// (and recording this one).
    fn process_with_memory(&self, history: &[u32], logits: &mut [f32], memory: &mut SeenContexts) -> Result<Step> {
        let checked = check_row(self, history, logits)?;
        Ok(apply_planned(self, history, logits, &checked, Some(memory)))
    }

    /// Watermarks a batch: row `i` of `logits` follows `histories[i]`. Rows
    /// are processed in parallel when the batch is large. On error no row is
    /// changed.
    fn process_batch(&self, histories: &[&[u32]], logits: ArrayViewMut2<'_, f32>) -> Result<Vec<Step>> {
        process_batch_impl(self, histories, logits, None)
    }

    /// [`Scheme::process_batch`] with one repeated-context memory per row.
    fn process_batch_with_memory(
        &self,
        histories: &[&[u32]],
        logits: ArrayViewMut2<'_, f32>,
        memories: &mut [SeenContexts],
    ) -> Result<Vec<Step>> {
        process_batch_impl(self, histories, logits, Some(memories))
    }

    /// The bias a [`Generation::Bias`] scheme adds to the row that follows
    /// `history`, one value per vocabulary entry (for adding it elsewhere, e.g.
    /// on an accelerator, as `logits += bias`). `None` when the history is
    /// shorter than the context width; [`Error::NotABiasScheme`] for schemes
    /// that decide the distribution themselves (they need the logits).
    fn bias(&self, history: &[u32]) -> Result<Option<Vec<f32>>> {
        if self.contract().generation != Generation::Bias {
            return Err(Error::NotABiasScheme {
                scheme: self.describe(),
            });
        }
        let mut row = vec![0.0f32; self.vocab_size()];
        Ok(self.process(history, &mut row)?.is_watermarked().then_some(row))
    }

    /// The observation of `token` after `history`, or `None` when the history
    /// is shorter than the context width.
    fn observe(&self, history: &[u32], token: u32) -> Result<Option<Observation>> {
        check_token(token, self.vocab_size())?;
        let seeder = self.seeder();
        let Some(cs) = seeder.context_seed(history) else {
            return Ok(None);
        };
        let seed = seeder.token_seed(&cs, token);
        Ok(Some(Observation {
            context_key: cs.key,
            seed,
            token,
            value: self.value(seed, token),
        }))
    }

    /// [`Scheme::observe`] of every token of `sequence` from index `from` on,
    /// each after the tokens before it, given to `f` in order with the
    /// token's score ([`Scheme::score`] of its value; 0 without context): one
    /// call a document, so that the per-token work (context hash, token seed,
    /// keyed value, score) is compiled for the scheme and not dispatched token
    /// by token, and left-hash context keys are hashed several positions at a
    /// time ([`Seeder::for_each_context_seed`]). On a token outside the
    /// vocabulary, [`Error::TokenOutOfRange`] before `f` is called.
    fn observe_each(&self, sequence: &[u32], from: usize, f: &mut dyn FnMut(Option<Observation>, f64)) -> Result<()> {
        let vocab = self.vocab_size();
        let tail = sequence.get(from..).unwrap_or_default();
        if let Some(&token) = tail.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange {
                token,
                vocab_size: vocab,
            });
        }
        let seeder = self.seeder();
        let mut tokens = tail.iter();
        seeder.for_each_context_seed(sequence, from, |cs| {
            let token = tokens.next().copied().unwrap_or_default();
            match cs {
                None => f(None, 0.0),
                Some(cs) => {
                    let seed = seeder.token_seed(&cs, token);
                    let value = self.value(seed, token);
                    let o = Observation {
                        context_key: cs.key,
                        seed,
                        token,
                        value,
                    };
                    f(Some(o), self.score(value));
                }
            }
        });
        Ok(())
    }
}

impl fmt::Debug for dyn Scheme + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Scheme({}, key {}, vocab {})",
            self.describe(),
            self.key_id(),
            self.vocab_size()
        )
    }
}

pub(crate) fn check_token(token: u32, vocab_size: usize) -> Result<()> {
    if (token as usize) < vocab_size {
        Ok(())
    } else {
        Err(Error::TokenOutOfRange { token, vocab_size })
    }
}

/// What the row check learned in its one read of a row (a row that passed
/// it: right length, no NaN or `+inf`). For a scheme that controls sampling
/// the check takes the maxima of the row's blocks (it needs the largest logit
/// to know that a token can be selected), from which the largest logit and
/// where to find it follow without another read; for the others it only
/// looks for NaN and `+inf`, which costs less.
pub struct CheckedRow {
    pub(crate) blocks: Option<BlockMaxima>,
}

impl CheckedRow {
    /// The row's largest logit (`-inf` when every logit is `-inf`), when the
    /// check took it (schemes that control sampling).
    pub fn max(&self) -> Option<f32> {
        self.blocks.as_ref().map(BlockMaxima::max)
    }
}

/// Whether the row check of `scheme` takes the block maxima: for the schemes
/// that control sampling (the check needs the largest logit to know that a
/// token can be selected, and their kernels reuse the maxima).
fn takes_maxima<S: Scheme + ?Sized>(scheme: &S) -> bool {
    scheme.contract().generation.controls_sampling()
}

impl fmt::Debug for CheckedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckedRow {{ max: {:?} }}", self.max())
    }
}

/// The check of a row whose check kept nothing (schemes that do not control sampling).
static UNKEPT: CheckedRow = CheckedRow { blocks: None };

/// Checks a row (SPEC §11's bad-input rule): its length, the context tokens,
/// no NaN or `+inf` (one read of the row, which also takes its block maxima
/// when the scheme controls sampling), and then a finite logit.
pub(crate) fn check_row<S: Scheme + ?Sized>(scheme: &S, history: &[u32], row: &[f32]) -> Result<CheckedRow> {
    let vocab = scheme.vocab_size();
    if row.is_empty() {
        return Err(Error::EmptyLogits);
    }
    if row.len() != vocab {
        return Err(Error::VocabMismatch {
            expected: vocab,
            found: row.len(),
        });
    }
    let width = scheme.seeder().context().width();
    for &t in &history[history.len().saturating_sub(width)..] {
        check_token(t, vocab)?;
    }
    let non_finite = |index: usize| Error::NonFiniteLogit {
        row: 0,
        index,
        value: row[index],
    };
    if !takes_maxima(scheme) {
        if let Some(index) = crate::simd::find_non_finite(row) {
            return Err(non_finite(index));
        }
        return Ok(CheckedRow { blocks: None });
    }
    let blocks = crate::simd::check_blocks(row).map_err(non_finite)?;
    if blocks.max() == f32::NEG_INFINITY {
        return Err(Error::NoSelectableToken { row: 0 });
    }
    Ok(CheckedRow { blocks: Some(blocks) })
}

fn apply_planned<S: Scheme + ?Sized>(
    scheme: &S,
    history: &[u32],
    row: &mut [f32],
    checked: &CheckedRow,
    memory: Option<&mut SeenContexts>,
) -> Step {
    let (step, cs) = plan(scheme.seeder(), history, memory);
    if let Some(cs) = cs {
        scheme.apply_checked(&cs, row, checked);
    }
    step
}

/// What processing the row that follows `history` does, without the row:
/// the step, and the context seed of a position to watermark (recorded in
/// `memory`, when given, as [`Scheme::process_with_memory`] records it). For
/// callers that compute the keyed values elsewhere (e.g. where the logits
/// live, from the context key, [`ContextSeed::anchor_rank`] and the seeder's
/// public functions).
pub fn plan(seeder: &Seeder, history: &[u32], memory: Option<&mut SeenContexts>) -> (Step, Option<ContextSeed>) {
    let Some(cs) = seeder.context_seed(history) else {
        return (Step::SkippedShortContext, None);
    };
    if let Some(memory) = memory {
        if !memory.insert(cs.key) {
            return (Step::SkippedRepeatedContext, None);
        }
    }
    (Step::Watermarked { context_key: cs.key }, Some(cs))
}

fn process_batch_impl<S: Scheme + ?Sized>(
    scheme: &S,
    histories: &[&[u32]],
    mut logits: ArrayViewMut2<'_, f32>,
    memories: Option<&mut [SeenContexts]>,
) -> Result<Vec<Step>> {
    let n = logits.nrows();
    if histories.len() != n {
        return Err(Error::BatchMismatch {
            rows: n,
            contexts: histories.len(),
        });
    }
    if let Some(m) = &memories {
        if m.len() != n {
            return Err(Error::BatchMismatch {
                rows: n,
                contexts: m.len(),
            });
        }
    }
    if n > 0 && logits.ncols() == 0 {
        return Err(Error::EmptyLogits);
    }
    let mut rows: Vec<&mut [f32]> = Vec::with_capacity(n);
    for row in logits.rows_mut() {
        rows.push(row.into_slice().ok_or(Error::NotContiguous)?);
    }
    let mut memories: Vec<Option<&mut SeenContexts>> = match memories {
        Some(m) => m.iter_mut().map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    };
    // What the checks learned is kept only where they learned something.
    let keep = takes_maxima(scheme);
    let threads = batch_threads(n, n * scheme.vocab_size());
    if threads <= 1 {
        // Check every row before changing any, from the last row back so that the
        // first rows are still in cache for the pass that follows.
        let mut first_error = None;
        let mut checked = Vec::with_capacity(if keep { n } else { 0 });
        for (i, (row, history)) in rows.iter().zip(histories).enumerate().rev() {
            match check_row(scheme, history, row) {
                Ok(c) if keep => checked.push(c),
                Ok(_) => {}
                Err(e) => first_error = Some(e.in_row(i)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // `checked` holds the rows last first.
        return Ok(rows
            .into_iter()
            .zip(histories)
            .zip(memories)
            .enumerate()
            .map(|(i, ((row, h), m))| {
                let c = if keep { &checked[n - 1 - i] } else { &UNKEPT };
                apply_planned(scheme, h, row, c, m)
            })
            .collect());
    }
    // Each thread checks a contiguous run of rows, waits until every run is
    // checked, and then processes its run while the rows are still in its cache.
    let per = n.div_ceil(threads);
    let barrier = Barrier::new(n.div_ceil(per));
    let failed = AtomicBool::new(false);
    let results: Vec<std::result::Result<Vec<Step>, (usize, Error)>> = std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks_mut(per)
            .zip(histories.chunks(per))
            .zip(memories.chunks_mut(per))
            .enumerate()
            .map(|(c, ((rs, hs), ms))| {
                let (barrier, failed) = (&barrier, &failed);
                s.spawn(move || {
                    let mut error = None;
                    let mut checked = Vec::with_capacity(if keep { rs.len() } else { 0 });
                    for (j, (row, h)) in rs.iter().zip(hs).enumerate() {
                        match check_row(scheme, h, row) {
                            Ok(checked_row) if keep => checked.push(checked_row),
                            Ok(_) => {}
                            Err(e) => {
                                error = Some((c * per + j, e));
                                failed.store(true, Ordering::SeqCst);
                                break;
                            }
                        }
                    }
                    barrier.wait();
                    if let Some(e) = error {
                        return Err(e);
                    }
                    if failed.load(Ordering::SeqCst) {
                        return Ok(Vec::new());
                    }
                    Ok(rs
                        .iter_mut()
                        .zip(hs)
                        .zip(ms)
                        .enumerate()
                        .map(|(j, ((row, h), m))| {
                            let c = if keep { &checked[j] } else { &UNKEPT };
                            apply_planned(scheme, h, row, c, m.take())
                        })
                        .collect())
                })
            })
            .collect();
        // A panicking worker is a bug; surface it on the caller's thread.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut steps = Vec::with_capacity(n);
    let mut first_error: Option<(usize, Error)> = None;
    for r in results {
        match r {
            Ok(s) => steps.extend(s),
            Err((i, e)) => {
                if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_error = Some((i, e));
                }
            }
        }
    }
    match first_error {
        Some((i, e)) => Err(e.in_row(i)),
        None => Ok(steps),
    }
}
