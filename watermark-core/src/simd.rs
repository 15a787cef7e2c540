//! The per-row kernels of the hot path, with runtime ISA dispatch.
//!
//! Each kernel has a portable version (the reference, and what non-x86
//! targets run) and, on x86-64, AVX2 and AVX-512 versions selected at run time
//! with `is_x86_feature_detected!`. The default x86-64 target only guarantees
//! SSE2, which has no 32-bit vector multiply: the portable kernel is several
//! times slower there, hence the dispatch. Every kernel is tested bit for bit
//! against the portable one (`tests` below and `tests/golden.rs`).
//!
//! This is the only module of the crate with `unsafe` code: calls into
//! `#[target_feature]` functions (sound because the feature was detected) and
//! unaligned vector loads/stores (sound because every pointer comes from a
//! fixed-size chunk of the slice being processed).

#![allow(unsafe_code)]

use crate::mix::{mix, MIX_MUL};
use crate::prf::SipKey;

/// An instruction-set path for the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust, any target.
    Portable,
    /// x86-64 AVX2.
    Avx2,
    /// x86-64 AVX-512 (F, BW and CD).
    Avx512,
}

impl Isa {
    /// The best path this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512cd")
            {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2 => matches!(Self::detect(), Self::Avx2 | Self::Avx512),
            Self::Avx512 => Self::detect() == Self::Avx512,
        }
    }
}

/// How many context hashes [`hash_words_x8`] computes at once.
pub(crate) const HASH_LANES: usize = 8;

/// SipHash-2-4 of eight messages of one length ([`SipKey::hash_words_n`]),
/// compiled for the ISA's vectors: eight 64-bit lanes in one AVX-512
/// register (with its 64-bit rotate), two AVX2 registers; the portable path
/// runs the lanes as scalar code. The batch path of detection's context
/// hashes; equal to eight calls of `hash_words` on every path (tested).
#[inline]
pub(crate) fn hash_words_x8(isa: Isa, prf: &SipKey, head: u32, words: [&[u32]; HASH_LANES]) -> [u64; HASH_LANES] {
    match isa {
        // SAFETY: the ISA was detected on this CPU (`Isa::detect`, or checked
        // with `Isa::is_available` by whoever chose it).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::hash_words_x8_avx512(prf, head, words) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::hash_words_x8_avx2(prf, head, words) },
        _ => prf.hash_words_n(head, words),
    }
}

/// Logits must be finite or `-inf`.
#[inline]
fn is_nan_or_pos_inf(x: f32) -> bool {
    x.is_nan() || x == f32::INFINITY
}

/// The index of the first NaN or `+inf` in `row`, if any.
pub(crate) fn find_non_finite(row: &[f32]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() != Isa::Portable {
        // SAFETY: AVX2 was detected on this CPU just above.
        if !unsafe { x86::any_non_finite_avx2(row) } {
            return None;
        }
    }
    row.iter().position(|&x| is_nan_or_pos_inf(x))
}

/// The row check's one read (SPEC §11's bad-input rule and the maxima the
/// kernels reuse): the row's [`BlockMaxima`], or the index of its first NaN or
/// `+inf`. On AVX2 and AVX-512 a NaN or `+inf` is found in the block that
/// holds it, so a bad row costs at most one block more than finding it; the
/// portable path reads the row twice ([`find_non_finite`], then
/// [`BlockMaxima::of`]), the definition the others are tested against.
pub(crate) fn check_blocks(row: &[f32]) -> Result<BlockMaxima, usize> {
    let width = BlockMaxima::width_for(row.len());
    let mut maxima = [f32::NEG_INFINITY; MAX_BLOCKS];
    let bad: Option<usize> = match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the ISA was detected on this CPU just above.
        Isa::Avx512 => unsafe { x86::check_blocks_avx512(row, width, &mut maxima) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::check_blocks_avx2(row, width, &mut maxima) },
        _ => {
            return match find_non_finite(row) {
                Some(index) => Err(index),
                None => Ok(BlockMaxima::of(row)),
            }
        }
    };
    match bad {
        Some(b) => Err(b * width
            + row[b * width..]
                .iter()
                .position(|&x| is_nan_or_pos_inf(x))
                .expect("the block holds a NaN or +inf")),
        None => Ok(BlockMaxima {
            width,
            blocks: row.len().div_ceil(width),
            maxima,
        }),
    }
}

/// Adds `delta` to every green logit (16-bit value below `g16`), with the
/// seed shared by the whole row (left-hash and min-hash).
pub(crate) fn add_green(isa: Isa, row: &mut [f32], seed: u64, g16: u16, delta: f32) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers pass only paths for which `Isa::is_available` holds.
        Isa::Avx512 => unsafe { x86::add_green_avx512(row, seed, g16, delta) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::add_green_avx2(row, seed, g16, delta) },
        _ => add_green_portable(row, 0, seed, g16, delta),
    }
}

/// Self-hash's per-token table, laid out for the kernels: in blocks of 32
/// tokens, the 32 tokens' self-anchored 16-bit values, then the top 16 bits
/// of their 32-bit ranks (`mix(rank_seed, token)`). The rank's top half
/// decides `rank < anchor_rank` for every token but those whose top half
/// equals the anchor's (about one in 65,536), which take the exact rank;
/// the kernels thus read 4 bytes a token instead of computing a rank.
pub(crate) struct SelfTable {
    data: Box<[u16]>,
}

impl SelfTable {
    pub(crate) const BLOCK: usize = 32;

    /// The table of tokens `0..vocab`, from each token's self-anchored value and rank.
    pub(crate) fn new(vocab: usize, own: impl Fn(u32) -> u16, rank: impl Fn(u32) -> u32) -> Self {
        let mut data = vec![0u16; vocab.div_ceil(Self::BLOCK) * 2 * Self::BLOCK];
        for t in 0..vocab {
            let (b, i) = (t / Self::BLOCK * 2 * Self::BLOCK, t % Self::BLOCK);
            data[b + i] = own(t as u32);
            data[b + Self::BLOCK + i] = (rank(t as u32) >> 16) as u16;
        }
        Self { data: data.into() }
    }

    /// Token `t`'s self-anchored value.
    #[inline(always)]
    fn own(&self, t: usize) -> u16 {
        self.data[t / Self::BLOCK * 2 * Self::BLOCK + t % Self::BLOCK]
    }

    /// The top 16 bits of token `t`'s rank.
    #[inline(always)]
    fn rank_hi(&self, t: usize) -> u16 {
        self.data[t / Self::BLOCK * 2 * Self::BLOCK + Self::BLOCK + t % Self::BLOCK]
    }

    /// Block `k`: tokens `32k .. 32k + 32`'s values, then their ranks' top halves.
    #[inline(always)]
    #[cfg(target_arch = "x86_64")]
    fn block(&self, k: usize) -> &[u16; 2 * Self::BLOCK] {
        self.data[k * 2 * Self::BLOCK..][..2 * Self::BLOCK]
            .try_into()
            .expect("the table holds whole blocks")
    }
}

/// Of the tokens `first + i` for the bits `i` of `candidates` (tokens whose
/// rank's top half equals the anchor's), those whose exact rank is below
/// `anchor_rank`, as a mask of the same bits.
#[inline(never)]
#[cfg(target_arch = "x86_64")]
fn exact_below(mut candidates: u32, first: usize, rank_seed: u64, anchor_rank: u32) -> u32 {
    let mut below = 0;
    while candidates != 0 {
        let i = candidates.trailing_zeros();
        if mix(rank_seed, (first + i as usize) as u32) < anchor_rank {
            below |= 1 << i;
        }
        candidates &= candidates - 1;
    }
    below
}

/// [`add_green`] for self-hash: a token whose rank (`mix(rank_seed, token)`)
/// is below `anchor_rank` takes its self-anchored value from `table`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_green_self(
    isa: Isa,
    row: &mut [f32],
    seed: u64,
    rank_seed: u64,
    anchor_rank: u32,
    table: &SelfTable,
    g16: u16,
    delta: f32,
) {
    debug_assert!(table.data.len() >= row.len() * 2);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers pass only available paths.
        Isa::Avx512 => unsafe { x86::add_green_self_avx512(row, seed, rank_seed, anchor_rank, table, g16, delta) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::add_green_self_avx2(row, seed, rank_seed, anchor_rank, table, g16, delta) },
        _ => add_green_self_portable(row, 0, seed, rank_seed, anchor_rank, table, g16, delta),
    }
}

/// The additive term of one token: `delta` if green, else `-0.0` (which
/// leaves every value, `-0.0` included, bit for bit unchanged).
#[inline(always)]
fn term(value: u16, g16: u16, delta: f32) -> f32 {
    if value < g16 {
        delta
    } else {
        -0.0
    }
}

/// Portable kernel over `row`, whose first element is token `first` (even).
fn add_green_portable(row: &mut [f32], first: usize, seed: u64, g16: u16, delta: f32) {
    debug_assert_eq!(first % 2, 0);
    let first_pair = (first / 2) as u32;
    let (pairs, rest) = row.as_chunks_mut::<2>();
    let n_pairs = pairs.len() as u32;
    for (j, p) in (first_pair..).zip(pairs.iter_mut()) {
        let x = mix(seed, j);
        p[0] += term(x as u16, g16, delta);
        p[1] += term((x >> 16) as u16, g16, delta);
    }
    if let [last] = rest {
        *last += term(mix(seed, first_pair + n_pairs) as u16, g16, delta);
    }
}

/// Portable self-hash kernel over `row`, whose first element is token `first`.
#[allow(clippy::too_many_arguments)]
fn add_green_self_portable(
    row: &mut [f32],
    first: usize,
    seed: u64,
    rank_seed: u64,
    anchor_rank: u32,
    table: &SelfTable,
    g16: u16,
    delta: f32,
) {
    let anchor_hi = (anchor_rank >> 16) as u16;
    for (i, x) in row.iter_mut().enumerate() {
        let t = first + i;
        let hi = table.rank_hi(t);
        let takes_over = hi < anchor_hi || hi == anchor_hi && mix(rank_seed, t as u32) < anchor_rank;
        let value = if takes_over {
            table.own(t)
        } else {
            (mix(seed, (t >> 1) as u32) >> (16 * (t & 1))) as u16
        };
        *x += term(value, g16, delta);
    }
}

/// Self-hash data for the per-token value of a row scan.
#[derive(Clone, Copy)]
pub(crate) struct SelfValues<'a> {
    pub(crate) rank_seed: u64,
    pub(crate) anchor_rank: u32,
    pub(crate) table: &'a [u32],
}

/// Visits every token whose Gumbel score bound `logit * inv_t + bound(value)`
/// reaches `threshold`; `on_hit(token, logit)` returns the (possibly raised)
/// new threshold. The bound is evaluated sixteen tokens at a time, branch-free,
/// so that the compiler vectorizes it; only candidates reach `on_hit`.
///
/// The bound of the value is [`noise_bound_f32`] on the portable and AVX2
/// paths, and the tighter `bounds[lzcnt(!value | 1)]` on the AVX-512 path
/// (`bounds[n]` bounds the noise of every value with n leading one bits, n = 31
/// standing for 31 and 32); either is an upper bound of the noise, so every
/// path selects the same token, though it may visit different candidates.
///
/// A [`ScanRow::Clear`] row is all `-inf` afterwards: the AVX-512 path clears
/// each chunk as it passes it (once its candidates, with their logits, went to
/// `on_hit`), so that the row is read and written once; the others fill the
/// row after the scan.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gumbel_scan<F: FnMut(usize, f32) -> f32>(
    isa: Isa,
    row: ScanRow<'_>,
    seed: u64,
    own: Option<SelfValues<'_>>,
    inv_t: f32,
    threshold: f32,
    bounds: &[f32; 32],
    on_hit: F,
) {
    match row {
        ScanRow::Read(row) => gumbel_scan_read(isa, row, seed, own, inv_t, threshold, bounds, on_hit),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 is available (the caller's ISA); the pointer is the row's, writable.
        ScanRow::Clear(row) if isa == Isa::Avx512 && own.is_none() => unsafe {
            x86::gumbel_scan_avx512::<true, F>(row.as_mut_ptr(), row.len(), seed, inv_t, threshold, bounds, on_hit)
        },
        ScanRow::Clear(row) => {
            gumbel_scan_read(isa, row, seed, own, inv_t, threshold, bounds, on_hit);
            fill(row, f32::NEG_INFINITY);
        }
    }
}

/// The row [`gumbel_scan`] reads, and whether it leaves it all `-inf`.
pub(crate) enum ScanRow<'a> {
    /// Read only.
    Read(&'a [f32]),
    /// Every value `-inf` after the scan.
    Clear(&'a mut [f32]),
}

impl ScanRow<'_> {
    /// The row's values (before the scan).
    pub(crate) fn values(&self) -> &[f32] {
        match self {
            ScanRow::Read(row) => row,
            ScanRow::Clear(row) => row,
        }
    }
}

/// [`gumbel_scan`] of a row it only reads.
#[allow(clippy::too_many_arguments)]
fn gumbel_scan_read<F: FnMut(usize, f32) -> f32>(
    isa: Isa,
    row: &[f32],
    seed: u64,
    own: Option<SelfValues<'_>>,
    inv_t: f32,
    threshold: f32,
    bounds: &[f32; 32],
    on_hit: F,
) {
    // One monomorphized loop per value function keeps each loop simple enough to vectorize.
    match (isa, own) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers pass only available paths; the pointer is the row's, read only (no clear).
        (Isa::Avx512, None) => unsafe {
            x86::gumbel_scan_avx512::<false, F>(
                row.as_ptr().cast_mut(),
                row.len(),
                seed,
                inv_t,
                threshold,
                bounds,
                on_hit,
            )
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers pass only available paths.
        (Isa::Avx2, None) => unsafe { x86::gumbel_scan_avx2(row, |t| mix(seed, t), inv_t, threshold, on_hit) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        (Isa::Avx2 | Isa::Avx512, Some(o)) => unsafe {
            x86::gumbel_scan_avx2(row, |t| self_value(seed, o, t), inv_t, threshold, on_hit)
        },
        (_, None) => gumbel_scan_body(row, |t| mix(seed, t), inv_t, threshold, on_hit),
        (_, Some(o)) => gumbel_scan_body(row, |t| self_value(seed, o, t), inv_t, threshold, on_hit),
    }
}

/// The self-hash value of `t`: its own anchored value if it outranks the context anchor.
#[inline(always)]
fn self_value(seed: u64, o: SelfValues<'_>, t: u32) -> u32 {
    let ctx = mix(seed, t);
    if mix(o.rank_seed, t) < o.anchor_rank {
        o.table[t as usize]
    } else {
        ctx
    }
}

/// An upper bound on the Gumbel noise `-ln(-ln u)` of a 32-bit value, from
/// the float exponent of `(!value) >> 1` (see `gumbel::noise_bound`).
#[inline(always)]
pub(crate) fn noise_bound_f32(value: u32) -> f32 {
    // y < 2^31: converting it as i32 lets the compiler use the signed vector conversion.
    let y = ((!value) >> 1) as i32;
    let e = ((y as f32).to_bits() >> 23) as i32 - 127;
    (32 - e) as f32 * core::f32::consts::LN_2
}

#[inline(always)]
fn gumbel_scan_body<V: Fn(u32) -> u32, F: FnMut(usize, f32) -> f32>(
    row: &[f32],
    value: V,
    inv_t: f32,
    mut threshold: f32,
    mut on_hit: F,
) {
    const W: usize = 16;
    let (chunks, rest) = row.as_chunks::<W>();
    for (c, chunk) in chunks.iter().enumerate() {
        let base = c * W;
        let mut bound = [0f32; W];
        for (k, (b, &l)) in bound.iter_mut().zip(chunk).enumerate() {
            *b = l * inv_t + noise_bound_f32(value((base + k) as u32));
        }
        // Most chunks have no candidate: test them all at once, then look closer.
        if bound.iter().fold(false, |any, &b| any | (b >= threshold)) {
            for (k, &b) in bound.iter().enumerate() {
                if b >= threshold {
                    threshold = on_hit(base + k, chunk[k]);
                }
            }
        }
    }
    let done = chunks.len() * W;
    for (k, &l) in rest.iter().enumerate() {
        if l * inv_t + noise_bound_f32(value((done + k) as u32)) >= threshold {
            threshold = on_hit(done + k, l);
        }
    }
}

/// The largest value of `xs` (`-inf` when empty), sixteen lanes at a time.
/// For rows without NaN (checked rows), as `f32::max` folded.
#[inline(always)]
fn max_of(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let (chunks, rest) = xs.as_chunks::<16>();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    lanes
        .into_iter()
        .chain(rest.iter().copied())
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

/// Whether the read passes below may run their AVX2 build (they are generic
/// bodies, inlined into `#[target_feature]` wrappers in `x86`, so that they
/// vectorise wider than the baseline's SSE2).
#[inline(always)]
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    Isa::detect() != Isa::Portable
}

/// At most this many block maxima are kept (on the stack) by [`BlockMaxima`].
pub(crate) const MAX_BLOCKS: usize = 1024;

/// The maxima of a row's blocks: blocks of at least 256 values (a multiple of
/// 16), as few as needed to keep at most [`MAX_BLOCKS`] of them. One read of
/// the row, no allocation.
pub(crate) struct BlockMaxima {
    /// Values per block (the last block may be shorter).
    pub(crate) width: usize,
    /// Blocks in the row.
    pub(crate) blocks: usize,
    /// `maxima[b]`: the largest value of block `b` (`-inf` for an all `-inf` block).
    pub(crate) maxima: [f32; MAX_BLOCKS],
}

impl BlockMaxima {
    /// The block width for a row of `len` values.
    pub(crate) fn width_for(len: usize) -> usize {
        len.div_ceil(MAX_BLOCKS).next_multiple_of(16).max(256)
    }

    /// The largest value of the row (`-inf` when every value is `-inf`).
    pub(crate) fn max(&self) -> f32 {
        self.maxima[..self.blocks]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }

    /// The first index of `row` whose value is at least `x`, searching only
    /// the blocks whose maximum reaches it (`row` is the row these are the maxima of).
    pub(crate) fn first_at_least(&self, row: &[f32], x: f32) -> Option<usize> {
        let b = self.maxima[..self.blocks].iter().position(|&m| m >= x)?;
        let start = b * self.width;
        first_at_least(&row[start..], x).map(|i| start + i)
    }

    pub(crate) fn of(row: &[f32]) -> Self {
        let width = Self::width_for(row.len());
        let mut maxima = [f32::NEG_INFINITY; MAX_BLOCKS];
        #[cfg(target_arch = "x86_64")]
        if wide() {
            // SAFETY: AVX2 was detected on this CPU.
            unsafe { x86::block_maxima_avx2(row, width, &mut maxima) };
            return Self {
                width,
                blocks: row.len().div_ceil(width),
                maxima,
            };
        }
        block_maxima_body(row, width, &mut maxima);
        Self {
            width,
            blocks: row.len().div_ceil(width),
            maxima,
        }
    }

    /// A lower bound of the row's `k`-th largest value (k >= 1): the k-th
    /// largest block maximum (k blocks have a maximum at least that large, and
    /// those are k different entries); `-inf` when there are fewer than k blocks.
    pub(crate) fn kth_largest_lower_bound(&self, k: usize) -> f32 {
        if k == 0 || k > self.blocks {
            return f32::NEG_INFINITY;
        }
        let mut scratch = self.maxima;
        *scratch[..self.blocks]
            .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
            .1
    }
}

#[inline(always)]
fn block_maxima_body(row: &[f32], width: usize, maxima: &mut [f32; MAX_BLOCKS]) {
    for (m, block) in maxima.iter_mut().zip(row.chunks(width)) {
        *m = max_of(block);
    }
}

/// `row.fill(value)`, compiled for AVX2 where the CPU has it (32-byte stores;
/// the baseline build stores 16 bytes at a time).
pub(crate) fn fill(row: &mut [f32], value: f32) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX2 was detected on this CPU.
        return unsafe { x86::fill_avx2(row, value) };
    }
    row.fill(value)
}

/// The first index whose value is at least `x`, sixteen values compared at a time.
pub(crate) fn first_at_least(row: &[f32], x: f32) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX2 was detected on this CPU.
        return unsafe { x86::first_at_least_avx2(row, x) };
    }
    first_at_least_body(row, x)
}

#[inline(always)]
fn first_at_least_body(row: &[f32], x: f32) -> Option<usize> {
    let (chunks, rest) = row.as_chunks::<16>();
    for (c, chunk) in chunks.iter().enumerate() {
        if chunk.iter().fold(false, |any, &v| any | (v >= x)) {
            return chunk.iter().position(|&v| v >= x).map(|k| c * 16 + k);
        }
    }
    rest.iter().position(|&v| v >= x).map(|k| chunks.len() * 16 + k)
}

/// Visits every index whose value exceeds `threshold` (strictly), in order;
/// `on_hit(index)` returns the new threshold. Sixteen values are compared at a
/// time, branch-free, so that the compiler vectorizes the comparison.
pub(crate) fn scan_above<F: FnMut(usize) -> f32>(row: &[f32], threshold: f32, on_hit: F) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX2 was detected on this CPU.
        return unsafe { x86::scan_above_avx2(row, threshold, on_hit) };
    }
    scan_above_body(row, threshold, on_hit)
}

#[inline(always)]
fn scan_above_body<F: FnMut(usize) -> f32>(row: &[f32], mut threshold: f32, mut on_hit: F) {
    const W: usize = 16;
    let (chunks, rest) = row.as_chunks::<W>();
    for (c, chunk) in chunks.iter().enumerate() {
        if chunk.iter().fold(false, |any, &x| any | (x > threshold)) {
            for (k, &x) in chunk.iter().enumerate() {
                // The threshold may rise within the chunk: compare against the current one.
                if x > threshold {
                    threshold = on_hit(c * W + k);
                }
            }
        }
    }
    let done = chunks.len() * W;
    for (k, &x) in rest.iter().enumerate() {
        if x > threshold {
            threshold = on_hit(done + k);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use core::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn fill_avx2(row: &mut [f32], value: f32) {
        row.fill(value)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn block_maxima_avx2(row: &[f32], width: usize, maxima: &mut [f32; MAX_BLOCKS]) {
        block_maxima_body(row, width, maxima)
    }

    /// [`check_blocks`] on AVX2: four independent maxima in flight
    /// (one `vmaxps` chain would bound the pass by its latency, not by memory),
    /// NaN found by one unordered comparison per two vectors, and `+inf` by
    /// the block's maximum.
    #[target_feature(enable = "avx2")]
    pub(super) fn check_blocks_avx2(row: &[f32], width: usize, maxima: &mut [f32; MAX_BLOCKS]) -> Option<usize> {
        let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
        for (b, (m, block)) in maxima.iter_mut().zip(row.chunks(width)).enumerate() {
            let mut nan = _mm256_setzero_ps();
            let (mut m0, mut m1, mut m2, mut m3) = (ninf, ninf, ninf, ninf);
            let (quads, rest) = block.as_chunks::<32>();
            for q in quads {
                let p = q.as_ptr();
                // SAFETY: `q` is 32 floats: offsets 0, 8, 16 and 24 each have 8 in bounds.
                let (x0, x1, x2, x3) = unsafe {
                    (
                        _mm256_loadu_ps(p),
                        _mm256_loadu_ps(p.add(8)),
                        _mm256_loadu_ps(p.add(16)),
                        _mm256_loadu_ps(p.add(24)),
                    )
                };
                m0 = _mm256_max_ps(m0, x0);
                m1 = _mm256_max_ps(m1, x1);
                m2 = _mm256_max_ps(m2, x2);
                m3 = _mm256_max_ps(m3, x3);
                // UNORD: true where either operand is NaN.
                let pair = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(x0, x1),
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(x2, x3),
                );
                nan = _mm256_or_ps(nan, pair);
            }
            let v = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
            let v = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let v = _mm_max_ps(v, _mm_movehl_ps(v, v));
            let lanes = _mm_cvtss_f32(_mm_max_ss(v, _mm_shuffle_ps::<1>(v, v)));
            // `vmaxps` keeps +inf once it has it (NaN is caught above).
            if _mm256_movemask_ps(nan) != 0 || lanes == f32::INFINITY || rest.iter().any(|&x| is_nan_or_pos_inf(x)) {
                return Some(b);
            }
            *m = rest.iter().fold(lanes, |m, &x| if x > m { x } else { m });
        }
        None
    }

    /// [`check_blocks_avx2`] on 64 floats a step.
    #[target_feature(enable = "avx512f")]
    pub(super) fn check_blocks_avx512(row: &[f32], width: usize, maxima: &mut [f32; MAX_BLOCKS]) -> Option<usize> {
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        for (b, (m, block)) in maxima.iter_mut().zip(row.chunks(width)).enumerate() {
            let (mut m0, mut m1, mut m2, mut m3) = (ninf, ninf, ninf, ninf);
            let mut nan: u16 = 0;
            let (quads, rest) = block.as_chunks::<64>();
            for q in quads {
                let p = q.as_ptr();
                // SAFETY: `q` is 64 floats: offsets 0, 16, 32 and 48 each have 16 in bounds.
                let (x0, x1, x2, x3) = unsafe {
                    (
                        _mm512_loadu_ps(p),
                        _mm512_loadu_ps(p.add(16)),
                        _mm512_loadu_ps(p.add(32)),
                        _mm512_loadu_ps(p.add(48)),
                    )
                };
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x0, x1) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x2, x3);
                m0 = _mm512_max_ps(m0, x0);
                m1 = _mm512_max_ps(m1, x1);
                m2 = _mm512_max_ps(m2, x2);
                m3 = _mm512_max_ps(m3, x3);
            }
            // In registers: a scalar fold of the 16 lanes per block would cost as much as the loads.
            let lanes = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
            if nan != 0 || lanes == f32::INFINITY || rest.iter().any(|&x| is_nan_or_pos_inf(x)) {
                return Some(b);
            }
            *m = rest.iter().fold(lanes, |m, &x| if x > m { x } else { m });
        }
        None
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn first_at_least_avx2(row: &[f32], x: f32) -> Option<usize> {
        first_at_least_body(row, x)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn scan_above_avx2<F: FnMut(usize) -> f32>(row: &[f32], threshold: f32, on_hit: F) {
        scan_above_body(row, threshold, on_hit)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn hash_words_x8_avx2(prf: &SipKey, head: u32, words: [&[u32]; HASH_LANES]) -> [u64; HASH_LANES] {
        prf.hash_words_n(head, words)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn hash_words_x8_avx512(prf: &SipKey, head: u32, words: [&[u32]; HASH_LANES]) -> [u64; HASH_LANES] {
        prf.hash_words_n(head, words)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn gumbel_scan_avx2<V: Fn(u32) -> u32, F: FnMut(usize, f32) -> f32>(
        row: &[f32],
        value: V,
        inv_t: f32,
        threshold: f32,
        on_hit: F,
    ) {
        gumbel_scan_body(row, value, inv_t, threshold, on_hit)
    }

    /// [`gumbel_scan`] without self-hash, sixteen tokens a step. The keyed
    /// value is `mix` with its first two steps merged: after `x = t ^ a`,
    /// `x ^= x >> 16` gives `t ^ (a ^ (a >> 16) ^ (t >> 16))`, and `t >> 16`
    /// is the same for the sixteen tokens of a chunk (chunks start at
    /// multiples of 16), so it is one xor with a constant that changes every
    /// 65,536 tokens. The last step and the complement are one ternary-logic
    /// instruction, and the noise bound is `bounds[lzcnt(!value | 1)]`, a
    /// two-register table lookup. When `CLEAR`, each chunk is set to `-inf`
    /// once its candidates (with their logits) went to `on_hit`.
    ///
    /// # Safety
    /// `ptr` points to `len` readable floats, also writable when `CLEAR`.
    #[target_feature(enable = "avx512f,avx512cd")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gumbel_scan_avx512<const CLEAR: bool, F: FnMut(usize, f32) -> f32>(
        ptr: *mut f32,
        len: usize,
        seed: u64,
        inv_t: f32,
        mut threshold: f32,
        bounds: &[f32; 32],
        mut on_hit: F,
    ) {
        let a = seed as u32;
        let b = _mm512_set1_epi32(((seed >> 32) as u32 | 1) as i32);
        let c = _mm512_set1_epi32(MIX_MUL as i32);
        let one = _mm512_set1_epi32(1);
        // SAFETY: `bounds` is 32 floats: offsets 0 and 16 each have 16 in bounds.
        let (tlo, thi) = unsafe {
            (
                _mm512_loadu_ps(bounds.as_ptr()),
                _mm512_loadu_ps(bounds.as_ptr().add(16)),
            )
        };
        let it = _mm512_set1_ps(inv_t);
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let sixteen = _mm512_set1_epi32(16);
        let thirty_two = _mm512_set1_epi32(32);
        let mut thr = _mm512_set1_ps(threshold);
        // The bound of the sixteen tokens `t` (t ^ k as below) with logits `l`.
        let bound = |t: __m512i, k: __m512i, l: __m512| {
            let mut x = _mm512_mullo_epi32(_mm512_xor_si512(t, k), b);
            x = _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x));
            x = _mm512_mullo_epi32(x, c);
            // !(x ^ (x >> 15)) | 1 (truth table 0xeb of A, B, C): the complement of the value, never 0.
            let nv = _mm512_ternarylogic_epi32::<0xeb>(x, _mm512_srli_epi32::<15>(x), one);
            let noise = _mm512_permutex2var_ps(tlo, _mm512_lzcnt_epi32(nv), thi);
            // A fused multiply-add: one rounding, inside prune_threshold's margin as the portable sum is.
            _mm512_fmadd_ps(l, it, noise)
        };
        let chunks = len / 16;
        let mut ci = 0;
        while ci < chunks {
            // The chunks up to the next multiple of 65,536 tokens share `t >> 16`.
            let segment_end = chunks.min((ci / 4096 + 1) * 4096);
            let base = (ci * 16) as u32;
            let k = _mm512_set1_epi32((a ^ (a >> 16) ^ (base >> 16)) as i32);
            let mut t = _mm512_add_epi32(_mm512_set1_epi32(base as i32), lanes);
            // Two chunks a step (segments hold an even number of chunks but for the row's last one).
            while ci < segment_end {
                let pair = ci + 1 < segment_end;
                // SAFETY: chunk `ci` < len / 16 holds 16 floats in bounds.
                let p = unsafe { ptr.add(ci * 16) };
                // SAFETY: as above; the second chunk only when it exists (else the first again).
                let (l0, l1) = unsafe { (_mm512_loadu_ps(p), _mm512_loadu_ps(if pair { p.add(16) } else { p })) };
                let b0 = bound(t, k, l0);
                let b1 = bound(_mm512_add_epi32(t, sixteen), k, l1);
                let h0 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(b0, thr);
                let h1 = if pair {
                    _mm512_cmp_ps_mask::<_CMP_GE_OQ>(b1, thr)
                } else {
                    0
                };
                if (h0 | h1) != 0 {
                    for (j, (mut hits, bv, lv)) in [(h0, b0, l0), (h1, b1, l1)].into_iter().enumerate() {
                        if hits == 0 {
                            continue;
                        }
                        let (mut bs, mut ls) = ([0f32; 16], [0f32; 16]);
                        // SAFETY: `bs` and `ls` are 16 floats each.
                        unsafe {
                            _mm512_storeu_ps(bs.as_mut_ptr(), bv);
                            _mm512_storeu_ps(ls.as_mut_ptr(), lv);
                        }
                        while hits != 0 {
                            let i = hits.trailing_zeros() as usize;
                            // The threshold may rise within the chunk: compare against the current one.
                            if bs[i] >= threshold {
                                threshold = on_hit((ci + j) * 16 + i, ls[i]);
                            }
                            hits &= hits - 1;
                        }
                    }
                    thr = _mm512_set1_ps(threshold);
                }
                if CLEAR {
                    // SAFETY: as above; the caller made the row writable when clearing.
                    unsafe {
                        _mm512_storeu_ps(p, ninf);
                        if pair {
                            _mm512_storeu_ps(p.add(16), ninf);
                        }
                    }
                }
                t = _mm512_add_epi32(t, thirty_two);
                ci += if pair { 2 } else { 1 };
            }
        }
        for i in chunks * 16..len {
            // SAFETY: i < len.
            let l = unsafe { *ptr.add(i) };
            let n = (!mix(seed, i as u32) | 1).leading_zeros() as usize;
            if l * inv_t + bounds[n] >= threshold {
                threshold = on_hit(i, l);
            }
            if CLEAR {
                // SAFETY: i < len, writable when clearing.
                unsafe { *ptr.add(i) = f32::NEG_INFINITY };
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn any_non_finite_avx2(row: &[f32]) -> bool {
        let inf = _mm256_set1_ps(f32::INFINITY);
        let mut acc = _mm256_setzero_ps();
        let (chunks, rest) = row.as_chunks::<32>();
        for c in chunks {
            let p = c.as_ptr();
            // SAFETY: `c` is 32 floats, so offsets 0, 8, 16, 24 each have 8 in bounds.
            let (a, b, d, e) = unsafe {
                (
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                    _mm256_loadu_ps(p.add(24)),
                )
            };
            // NLT_UQ: true for NaN (unordered) and for values not below +inf.
            let a = _mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf);
            let b = _mm256_cmp_ps::<_CMP_NLT_UQ>(b, inf);
            let d = _mm256_cmp_ps::<_CMP_NLT_UQ>(d, inf);
            let e = _mm256_cmp_ps::<_CMP_NLT_UQ>(e, inf);
            acc = _mm256_or_ps(acc, _mm256_or_ps(_mm256_or_ps(a, b), _mm256_or_ps(d, e)));
        }
        _mm256_movemask_ps(acc) != 0 || rest.iter().any(|&x| is_nan_or_pos_inf(x))
    }

    /// `mix(seed, j)` for the eight `j` in `idx` (AVX2).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mix8(idx: __m256i, a: __m256i, b: __m256i, c: __m256i) -> __m256i {
        let mut x = _mm256_xor_si256(idx, a);
        x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
        x = _mm256_mullo_epi32(x, b);
        x = _mm256_xor_si256(x, _mm256_srli_epi32::<15>(x));
        x = _mm256_mullo_epi32(x, c);
        _mm256_xor_si256(x, _mm256_srli_epi32::<15>(x))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn seed_vectors(seed: u64) -> (__m256i, __m256i) {
        (
            _mm256_set1_epi32(seed as u32 as i32),
            _mm256_set1_epi32(((seed >> 32) as u32 | 1) as i32),
        )
    }

    /// `delta` where `mask` is set, `-0.0` elsewhere: `((mask & (delta ^ s)) ^ s)`, s = sign bit.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn terms(mask: __m256i, delta_flipped: __m256, sign: __m256) -> __m256 {
        _mm256_xor_ps(_mm256_and_ps(_mm256_castsi256_ps(mask), delta_flipped), sign)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn add_green_avx2(row: &mut [f32], seed: u64, g16: u16, delta: f32) {
        let (a, b) = seed_vectors(seed);
        let c = _mm256_set1_epi32(MIX_MUL as i32);
        let sign = _mm256_set1_ps(-0.0);
        let dflip = _mm256_xor_ps(_mm256_set1_ps(delta), sign);
        // Unsigned 16-bit `v < g16` as `min(v, g16 - 1) == v`; g16 >= 1 by construction.
        let gm1 = _mm256_set1_epi16(g16.wrapping_sub(1) as i16);
        let mut j = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let eight = _mm256_set1_epi32(8);
        let (blocks, rest) = row.as_chunks_mut::<16>();
        let done = blocks.len() * 16;
        for blk in blocks {
            let x = mix8(j, a, b, c);
            // As sixteen u16 lanes, x holds the values of the sixteen tokens of this block, in order.
            let m = _mm256_cmpeq_epi16(_mm256_min_epu16(x, gm1), x);
            let lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(m));
            let hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(m));
            let p = blk.as_mut_ptr();
            // SAFETY: `blk` is 16 floats: offsets 0 and 8 each have 8 in bounds.
            unsafe {
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), terms(lo, dflip, sign)));
                _mm256_storeu_ps(
                    p.add(8),
                    _mm256_add_ps(_mm256_loadu_ps(p.add(8)), terms(hi, dflip, sign)),
                );
            }
            j = _mm256_add_epi32(j, eight);
        }
        add_green_portable(rest, done, seed, g16, delta);
    }

    /// `mix(seed, j)` for the sixteen `j` in `idx` (AVX-512; `a`, `b` from [`seed_vectors16`]).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn mix16(idx: __m512i, a: __m512i, b: __m512i, c: __m512i) -> __m512i {
        let mut x = _mm512_xor_si512(idx, a);
        x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
        x = _mm512_mullo_epi32(x, b);
        x = _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x));
        x = _mm512_mullo_epi32(x, c);
        _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn seed_vectors16(seed: u64) -> (__m512i, __m512i) {
        (
            _mm512_set1_epi32(seed as u32 as i32),
            _mm512_set1_epi32(((seed >> 32) as u32 | 1) as i32),
        )
    }

    /// Adds `d` to the floats of `blk` whose bit of `mask` is set (token order);
    /// the other lanes are not written at all.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn add_masked32(blk: &mut [f32; 32], mask: u32, d: __m512) {
        let p = blk.as_mut_ptr();
        // SAFETY: `blk` is 32 floats: offsets 0 and 16 each have 16 in bounds.
        unsafe {
            let r0 = _mm512_loadu_ps(p);
            let r1 = _mm512_loadu_ps(p.add(16));
            _mm512_storeu_ps(p, _mm512_mask_add_ps(r0, mask as u16, r0, d));
            _mm512_storeu_ps(p.add(16), _mm512_mask_add_ps(r1, (mask >> 16) as u16, r1, d));
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn add_green_avx512(row: &mut [f32], seed: u64, g16: u16, delta: f32) {
        let (a, b) = seed_vectors16(seed);
        let c = _mm512_set1_epi32(MIX_MUL as i32);
        let g = _mm512_set1_epi16(g16 as i16);
        let d = _mm512_set1_ps(delta);
        let mut j = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let sixteen = _mm512_set1_epi32(16);
        let (blocks, rest) = row.as_chunks_mut::<32>();
        let done = blocks.len() * 32;
        for blk in blocks {
            let x = mix16(j, a, b, c);
            // One mask bit per token, in token order; non-green lanes are not written at all.
            let m: u32 = _mm512_cmplt_epu16_mask(x, g);
            add_masked32(blk, m, d);
            j = _mm512_add_epi32(j, sixteen);
        }
        add_green_portable(rest, done, seed, g16, delta);
    }

    /// Lanes set where the bit of the same index of `bits` (low 8 bits) is set.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes_of(bits: u32) -> __m256i {
        let each = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits as i32), each), each)
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_green_self_avx2(
        row: &mut [f32],
        seed: u64,
        rank_seed: u64,
        anchor_rank: u32,
        table: &SelfTable,
        g16: u16,
        delta: f32,
    ) {
        let (a, b) = seed_vectors(seed);
        let c = _mm256_set1_epi32(MIX_MUL as i32);
        let sign = _mm256_set1_ps(-0.0);
        let dflip = _mm256_xor_ps(_mm256_set1_ps(delta), sign);
        let anchor_hi = _mm256_set1_epi32((anchor_rank >> 16) as i32);
        let g = _mm256_set1_epi32(i32::from(g16));
        let mut j = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let eight = _mm256_set1_epi32(8);
        let (blocks, rest) = row.as_chunks_mut::<32>();
        let done = blocks.len() * 32;
        for (k, blk) in blocks.iter_mut().enumerate() {
            let tab = table.block(k).as_ptr();
            let p = blk.as_mut_ptr();
            for half in 0..2 {
                let x = mix8(j, a, b, c);
                let ctx = [
                    _mm256_cvtepu16_epi32(_mm256_castsi256_si128(x)),
                    _mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(x)),
                ];
                for (q, ctx) in ctx.into_iter().enumerate() {
                    let off = 16 * half + 8 * q;
                    // SAFETY: the block is 64 u16: values at `off .. off + 8` and rank
                    // halves at `32 + off .. 32 + off + 8`, off <= 24; `blk` is 32 floats.
                    unsafe {
                        let own = _mm256_cvtepu16_epi32(_mm_loadu_si128(tab.add(off).cast()));
                        let hi = _mm256_cvtepu16_epi32(_mm_loadu_si128(tab.add(32 + off).cast()));
                        // Both sides are below 2^16, so the signed compare is the unsigned one.
                        let mut takes_over = _mm256_cmpgt_epi32(anchor_hi, hi);
                        let tie = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(hi, anchor_hi))) as u32;
                        if tie != 0 {
                            let exact = exact_below(tie, 32 * k + off, rank_seed, anchor_rank);
                            takes_over = _mm256_or_si256(takes_over, lanes_of(exact));
                        }
                        let value = _mm256_blendv_epi8(ctx, own, takes_over);
                        let green = _mm256_cmpgt_epi32(g, value);
                        let r = p.add(off);
                        _mm256_storeu_ps(r, _mm256_add_ps(_mm256_loadu_ps(r), terms(green, dflip, sign)));
                    }
                }
                j = _mm256_add_epi32(j, eight);
            }
        }
        add_green_self_portable(rest, done, seed, rank_seed, anchor_rank, table, g16, delta);
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_green_self_avx512(
        row: &mut [f32],
        seed: u64,
        rank_seed: u64,
        anchor_rank: u32,
        table: &SelfTable,
        g16: u16,
        delta: f32,
    ) {
        let (a, b) = seed_vectors16(seed);
        let c = _mm512_set1_epi32(MIX_MUL as i32);
        let g = _mm512_set1_epi16(g16 as i16);
        let anchor_hi = _mm512_set1_epi16((anchor_rank >> 16) as u16 as i16);
        let d = _mm512_set1_ps(delta);
        let mut j = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let sixteen = _mm512_set1_epi32(16);
        let (blocks, rest) = row.as_chunks_mut::<32>();
        let done = blocks.len() * 32;
        for (k, blk) in blocks.iter_mut().enumerate() {
            // The context's 16-bit values of the 32 tokens, in token order.
            let x = mix16(j, a, b, c);
            let tab = table.block(k).as_ptr();
            // SAFETY: the block is 64 u16, two 512-bit vectors.
            let (own, hi) = unsafe { (_mm512_loadu_si512(tab.cast()), _mm512_loadu_si512(tab.add(32).cast())) };
            let mut takes_over: u32 = _mm512_cmplt_epu16_mask(hi, anchor_hi);
            let tie: u32 = _mm512_cmpeq_epi16_mask(hi, anchor_hi);
            if tie != 0 {
                takes_over |= exact_below(tie, 32 * k, rank_seed, anchor_rank);
            }
            let value = _mm512_mask_mov_epi16(x, takes_over, own);
            add_masked32(blk, _mm512_cmplt_epu16_mask(value, g), d);
            j = _mm512_add_epi32(j, sixteen);
        }
        add_green_self_portable(rest, done, seed, rank_seed, anchor_rank, table, g16, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: usize) -> Vec<f32> {
        (0..v)
            .map(|i| match i % 97 {
                0 => f32::NEG_INFINITY,
                1 => -0.0,
                _ => ((i * 7919) % 1000) as f32 * 0.013 - 6.0,
            })
            .collect()
    }

    /// Self-hash by its definition: the token's own value when its rank is
    /// below the anchor's, else the context's.
    fn self_by_definition(row: &mut [f32], seed: u64, rank_seed: u64, anchor_rank: u32, g16: u16, delta: f32) {
        for (t, x) in row.iter_mut().enumerate() {
            let t = t as u32;
            let value = if mix(rank_seed, t) < anchor_rank {
                mix(99, t) as u16
            } else {
                crate::mix::value16(seed, t)
            };
            *x += term(value, g16, delta);
        }
    }

    #[test]
    fn every_isa_matches_portable_bit_for_bit() {
        for v in [1usize, 2, 3, 15, 16, 17, 31, 32, 33, 1000, 49_152, 50_001] {
            let table = SelfTable::new(v, |t| mix(99, t) as u16, |t| mix(7, t));
            // Anchors whose top half ties with some tokens' ranks (token 12's rank itself, and one
            // above it), so that the exact comparison runs, and the extremes.
            let tie = mix(7, 12.min(v as u32 - 1));
            let anchors = [1 << 30, tie, tie.wrapping_add(1), 0, u32::MAX];
            for (seed, g16, delta) in [
                (0u64, 1u16, 2.0f32),
                (0x0123_4567_89ab_cdef, 16384, 1.5),
                (u64::MAX, 65535, 4.0),
            ] {
                let mut want = rows(v);
                add_green_portable(&mut want, 0, seed, g16, delta);
                for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
                    if !isa.is_available() {
                        continue;
                    }
                    let mut got = rows(v);
                    add_green(isa, &mut got, seed, g16, delta);
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} v={v}"
                    );
                    for anchor in anchors {
                        let mut want_self = rows(v);
                        self_by_definition(&mut want_self, seed, 7, anchor, g16, delta);
                        let mut got = rows(v);
                        add_green_self(isa, &mut got, seed, 7, anchor, &table, g16, delta);
                        assert!(
                            got.iter().zip(&want_self).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "self {isa:?} v={v} anchor={anchor:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn self_table_ties_are_rare_and_exact() {
        // Ties of the rank's top half with the anchor's happen about once in 65,536 tokens: with the
        // anchor at a token's own rank, that token ties and is not below; one more and it is.
        let table = SelfTable::new(70_000, |t| t as u16, |t| mix(7, t));
        let anchor = mix(7, 4321);
        let ties = (0..70_000)
            .filter(|&t| table.rank_hi(t) == (anchor >> 16) as u16)
            .count();
        assert!((1..=8).contains(&ties), "{ties} ties");
        // A context whose value for token 4321 is not green at g16 = 4322, where its own value (4321) is.
        let seed = (0u64..)
            .find(|&s| crate::mix::value16(s, 4321) >= 4322)
            .expect("a seed");
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_available())
        {
            for (a, below) in [(anchor, false), (anchor + 1, true)] {
                let mut row = vec![0.0f32; 70_000];
                add_green_self(isa, &mut row, seed, 7, a, &table, 4322, 1.0);
                assert_eq!(row[4321], if below { 1.0 } else { 0.0 }, "{isa:?} below={below}");
            }
        }
        assert_eq!(table.data.len() * 2, 70_016 * 4, "4 bytes a token, in whole blocks");
    }

    #[test]
    fn gumbel_scan_visits_the_same_tokens_on_the_portable_and_avx2_paths_and_clears_as_it_reads() {
        // The AVX-512 path's bound is another (tighter) one: gumbel.rs tests that every path selects
        // the same token. Here, a table as loose as the portable bound.
        let bounds: [f32; 32] = core::array::from_fn(|n| (n + 3) as f32 * core::f32::consts::LN_2);
        for v in [1usize, 15, 16, 17, 1000, 50_001, 70_000] {
            let row: Vec<f32> = rows(v).iter().map(|x| x * 3.0).collect();
            for (seed, inv_t, start) in [
                (5u64, 1.0f32, 10.0f32),
                (u64::MAX, 1.0 / 0.7, 14.0),
                (9, 1.0, f32::NEG_INFINITY),
            ] {
                // The threshold rises by a fixed rule at every visit, as the Gumbel choice raises it.
                let rule = |thr: f32| if thr.is_finite() { thr + 0.25 } else { 12.0 };
                let visits = |isa: Isa| {
                    let mut seen = Vec::new();
                    let mut thr = start;
                    gumbel_scan(isa, ScanRow::Read(&row), seed, None, inv_t, start, &bounds, |i, l| {
                        assert_eq!(l.to_bits(), row[i].to_bits());
                        seen.push(i);
                        thr = rule(thr);
                        thr
                    });
                    seen
                };
                let want = visits(Isa::Portable);
                assert!(v < 1000 || !want.is_empty());
                if Isa::Avx2.is_available() {
                    assert_eq!(visits(Isa::Avx2), want, "v={v} seed={seed}");
                }
                for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512]
                    .into_iter()
                    .filter(|i| i.is_available())
                {
                    let mut cleared = row.clone();
                    let mut seen = Vec::new();
                    let mut thr = start;
                    gumbel_scan(
                        isa,
                        ScanRow::Clear(&mut cleared),
                        seed,
                        None,
                        inv_t,
                        start,
                        &bounds,
                        |i, l| {
                            assert_eq!(l.to_bits(), row[i].to_bits(), "the logit before clearing");
                            seen.push(i);
                            thr = rule(thr);
                            thr
                        },
                    );
                    assert_eq!(seen, visits(isa), "{isa:?} v={v}");
                    assert!(cleared.iter().all(|&x| x == f32::NEG_INFINITY));
                }
            }
        }
    }

    #[test]
    fn non_green_values_are_untouched_bit_for_bit() {
        let mut row = rows(4099);
        let before = row.clone();
        add_green(Isa::detect(), &mut row, 5, 1, 3.0);
        for (i, (a, b)) in row.iter().zip(&before).enumerate() {
            let green = crate::mix::value16(5, i as u32) < 1;
            assert!(green || a.to_bits() == b.to_bits(), "token {i}");
        }
        // -inf stays -inf whether green or not.
        assert!(row.iter().step_by(97).all(|x| *x == f32::NEG_INFINITY));
    }

    #[test]
    fn finds_nan_and_positive_infinity_only() {
        for v in [1usize, 31, 32, 33, 255, 256, 257, 1000, 70_001] {
            let mut row = rows(v);
            assert_eq!(find_non_finite(&row), None);
            assert!(check_blocks(&row).is_ok());
            for at in [0, v / 2, v - 1] {
                for bad in [f32::NAN, f32::INFINITY, -f32::NAN] {
                    let keep = row[at];
                    row[at] = bad;
                    // A second bad value later never hides the first.
                    if at + 300 < v {
                        row[at + 300] = f32::NAN;
                    }
                    assert_eq!(check_blocks(&row).err(), Some(at), "v={v} at={at}");
                    assert_eq!(find_non_finite(&row), Some(at), "v={v} at={at}");
                    row[at] = keep;
                    if at + 300 < v {
                        row[at + 300] = keep;
                    }
                }
            }
        }
    }

    #[test]
    fn the_check_takes_the_block_maxima_of_every_path() {
        for v in [1usize, 16, 255, 256, 257, 1000, 49_152, 128_256, 300_001] {
            let mut row: Vec<f32> = rows(v).iter().enumerate().map(|(i, x)| x + (i % 13) as f32).collect();
            // An all -inf block, and a maximum in the last value.
            row[..v.min(300)].fill(f32::NEG_INFINITY);
            row[v - 1] = 1e9;
            let want = BlockMaxima::of(&row);
            let got = check_blocks(&row).expect("finite");
            assert_eq!((got.width, got.blocks), (want.width, want.blocks));
            assert_eq!(got.maxima[..got.blocks], want.maxima[..want.blocks], "v={v}");
            assert_eq!(got.max(), 1e9);
            assert_eq!(got.first_at_least(&row, 1e9), Some(v - 1));
            for b in 0..got.blocks {
                let block = &row[b * got.width..((b + 1) * got.width).min(v)];
                assert_eq!(got.maxima[b], block.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            }
        }
    }
}
