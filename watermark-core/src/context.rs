//! Context modes and context seeds (SPEC §5).
//!
//! A scheme's keyed randomness at one position depends on the tokens before
//! it through one 64-bit *seed*. How the seed is read off the preceding
//! tokens is the context mode:
//!
//! - [`ContextMode::LeftHash`] with width `h`: the ordered tuple of the `h`
//!   previous tokens (`h = 0` gives one fixed "unigram" list);
//! - [`ContextMode::MinHash`] with width `h`: only the previous token of
//!   smallest keyed rank, so substitutions elsewhere in the window do not
//!   change the seed;
//! - [`ContextMode::SelfHash`] with width `h`: min-hash over the `h` previous
//!   tokens *and the candidate itself* (Kirchenbauer et al. 2024), so every
//!   candidate may get its own seed.

use core::fmt;
use core::str::FromStr;

use crate::error::{Error, Result};
use crate::mix::mix;
use crate::prf::SipKey;
use crate::simd::{self, Isa, HASH_LANES};

/// How the preceding tokens select the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum ContextMode {
    /// The ordered tuple of the `h` previous tokens.
    LeftHash,
    /// The previous token of smallest keyed rank among the last `h`.
    MinHash,
    /// The token of smallest keyed rank among the last `h` and the candidate.
    SelfHash,
}

impl ContextMode {
    fn tag(self) -> u32 {
        match self {
            Self::LeftHash => 0x0100_0000,
            Self::MinHash => 0x0200_0000,
            Self::SelfHash => 0x0300_0000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::LeftHash => "lefthash",
            Self::MinHash => "minhash",
            Self::SelfHash => "selfhash",
        }
    }
}

/// The tag word of the rank seed (SPEC §5.2).
const RANK_TAG: u32 = 0x0400_0000;

/// A validated context mode and width, written `lefthash:1`, `minhash:4`, `selfhash:4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct Context {
    mode: ContextMode,
    width: u8,
}

impl Context {
    /// The widest accepted context.
    pub const MAX_WIDTH: usize = 32;

    /// A context of `width` previous tokens in `mode`.
    ///
    /// Min-hash and self-hash need `width >= 1`; every mode needs `width <= 32`.
    pub fn new(mode: ContextMode, width: usize) -> Result<Self> {
        let min = usize::from(mode != ContextMode::LeftHash);
        if width < min || width > Self::MAX_WIDTH {
            return Err(Error::param(
                "width",
                width,
                "0..=32 for lefthash, 1..=32 for minhash and selfhash",
            ));
        }
        Ok(Self {
            mode,
            width: width as u8,
        })
    }

    /// Left-hash over `width` previous tokens (`0` = a fixed unigram list).
    pub fn left_hash(width: usize) -> Result<Self> {
        Self::new(ContextMode::LeftHash, width)
    }

    /// Min-hash over `width` previous tokens.
    pub fn min_hash(width: usize) -> Result<Self> {
        Self::new(ContextMode::MinHash, width)
    }

    /// Self-hash over `width` previous tokens plus the candidate.
    pub fn self_hash(width: usize) -> Result<Self> {
        Self::new(ContextMode::SelfHash, width)
    }

    /// The mode.
    pub fn mode(&self) -> ContextMode {
        self.mode
    }

    /// How many previous tokens the seed reads.
    pub fn width(&self) -> usize {
        usize::from(self.width)
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.mode.name(), self.width)
    }
}

impl FromStr for Context {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "context",
                s,
                "`lefthash:H`, `minhash:H` or `selfhash:H`, e.g. `lefthash:1`",
            )
        };
        let (mode, width) = s.split_once(':').ok_or_else(bad)?;
        let mode = match mode {
            "lefthash" => ContextMode::LeftHash,
            "minhash" => ContextMode::MinHash,
            "selfhash" => ContextMode::SelfHash,
            _ => return Err(bad()),
        };
        let width: usize = width.parse().map_err(|_| bad())?;
        Self::new(mode, width)
    }
}

impl TryFrom<String> for Context {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Context> for String {
    fn from(c: Context) -> Self {
        c.to_string()
    }
}

/// The seed material of one position, computed from the preceding tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextSeed {
    /// The context key: the seed of every candidate that does not displace the
    /// context's anchor (for left-hash and min-hash: of every candidate).
    /// Also the identity of the context for repeated-context handling.
    pub key: u64,
    /// Self-hash only: the keyed rank of the context's anchor token
    /// (`u32::MAX` for the other modes, where it is not used).
    pub(crate) anchor_rank: u32,
}

impl ContextSeed {
    /// Self-hash: the keyed rank of the context's anchor; a candidate of
    /// smaller rank is valued under its own anchored seed
    /// ([`Seeder::anchor_seed`]). `u32::MAX` for the other modes (no
    /// candidate is below it). With the context key this is everything a
    /// position contributes to the keyed values, e.g. for computing them on
    /// an accelerator.
    pub fn anchor_rank(&self) -> u32 {
        self.anchor_rank
    }
}

/// Computes seeds under one scheme key and one context mode.
#[derive(Clone)]
pub struct Seeder {
    prf: SipKey,
    context: Context,
    rank_seed: u64,
    /// The vector path of the batch context hashes.
    isa: Isa,
}

impl fmt::Debug for Seeder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seeder")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Seeder {
    /// The seeder of the scheme named `scheme` under `key`: its PRF key is
    /// HMAC-SHA256(key, `tracemark/v1/scheme/<scheme>`) (SPEC §3). For a scheme
    /// defined outside this crate; `scheme` is its name, printable ASCII
    /// without spaces, and must differ from every other scheme's name.
    pub fn for_scheme(key: &crate::Key, scheme: &str, context: Context) -> crate::Result<Self> {
        crate::key::validate_label(scheme)?;
        Ok(Self::new(key.scheme_prf_key(scheme), context))
    }

    pub(crate) fn new(prf: SipKey, context: Context) -> Self {
        let rank_seed = prf.hash_words(RANK_TAG, &[]);
        Self {
            prf,
            context,
            rank_seed,
            isa: Isa::detect(),
        }
    }

    /// The context mode and width.
    pub fn context(&self) -> Context {
        self.context
    }

    /// The rank seed (SPEC §5.2): `rank(t) = mix(rank_seed, t)`.
    pub fn rank_seed(&self) -> u64 {
        self.rank_seed
    }

    /// The keyed rank of a token (min-hash and self-hash).
    #[inline]
    pub fn rank(&self, token: u32) -> u32 {
        mix(self.rank_seed, token)
    }

    fn tag(&self) -> u32 {
        self.context.mode.tag() | u32::from(self.context.width)
    }

    /// The anchored seed: PRF of the tag and one token (SPEC §5.2; for
    /// self-hash, the seed of a candidate that anchors itself).
    #[inline]
    pub fn anchor_seed(&self, anchor: u32) -> u64 {
        self.prf.hash_words(self.tag(), &[anchor])
    }

    /// The seed of the position that follows `history`, or `None` if the
    /// history is shorter than the context width (such positions are neither
    /// watermarked nor scored).
    #[inline]
    pub fn context_seed(&self, history: &[u32]) -> Option<ContextSeed> {
        let h = self.context.width();
        let window = history.get(history.len().checked_sub(h)?..)?;
        Some(match self.context.mode {
            ContextMode::LeftHash => ContextSeed {
                key: self.prf.hash_words(self.tag(), window),
                anchor_rank: u32::MAX,
            },
            ContextMode::MinHash | ContextMode::SelfHash => {
                // h >= 1 for these modes, so the window is non-empty.
                let (anchor, rank) = window
                    .iter()
                    .map(|&t| (t, self.rank(t)))
                    .min_by_key(|&(_, r)| r)
                    .unwrap_or((0, u32::MAX));
                let anchor_rank = if self.context.mode == ContextMode::SelfHash {
                    rank
                } else {
                    u32::MAX
                };
                ContextSeed {
                    key: self.anchor_seed(anchor),
                    anchor_rank,
                }
            }
        })
    }

    /// [`Seeder::context_seed`] of every position `from..sequence.len()` of
    /// `sequence`, each after the tokens before it, given to `f` in order.
    /// Left-hash contexts are hashed eight positions at a time in vector
    /// lanes (`simd::hash_words_x8`): the batch path of detection.
    #[inline]
    pub fn for_each_context_seed<F: FnMut(Option<ContextSeed>)>(&self, sequence: &[u32], from: usize, mut f: F) {
        let h = self.context.width();
        let mut i = from;
        if self.context.mode == ContextMode::LeftHash && h > 0 {
            // Positions without a full window first, one at a time.
            while i < sequence.len() && i < h {
                f(self.context_seed(&sequence[..i]));
                i += 1;
            }
            let tag = self.tag();
            while i + HASH_LANES <= sequence.len() {
                let windows: [&[u32]; HASH_LANES] = core::array::from_fn(|l| &sequence[i + l - h..i + l]);
                for key in simd::hash_words_x8(self.isa, &self.prf, tag, windows) {
                    f(Some(ContextSeed {
                        key,
                        anchor_rank: u32::MAX,
                    }));
                }
                i += HASH_LANES;
            }
        }
        while i < sequence.len() {
            f(self.context_seed(&sequence[..i]));
            i += 1;
        }
    }

    /// The seed under which `token` is valued at a position with context seed `cs`.
    ///
    /// For left-hash and min-hash this is `cs.key`. For self-hash a candidate
    /// whose rank is below the context anchor's becomes the anchor itself.
    #[inline]
    pub fn token_seed(&self, cs: &ContextSeed, token: u32) -> u64 {
        if self.context.mode == ContextMode::SelfHash && self.rank(token) < cs.anchor_rank {
            self.anchor_seed(token)
        } else {
            cs.key
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeder(ctx: Context) -> Seeder {
        Seeder::new(SipKey::new(1, 2), ctx)
    }

    #[test]
    fn context_seeds_of_a_sequence_match_one_by_one() {
        let seq: Vec<u32> = (0..23u32).map(|i| i.wrapping_mul(2_654_435_761) % 50_000).collect();
        for ctx in ["lefthash:0", "lefthash:1", "lefthash:3", "minhash:4", "selfhash:2"] {
            let s = seeder(ctx.parse().expect("valid"));
            for from in [0, 1, 2, 5, 22, 23] {
                let mut got = Vec::new();
                s.for_each_context_seed(&seq, from, |cs| got.push(cs));
                let want: Vec<_> = (from..seq.len()).map(|i| s.context_seed(&seq[..i])).collect();
                assert_eq!(got, want, "{ctx} from {from}");
            }
        }
    }

    #[test]
    fn parse_and_display() {
        for s in ["lefthash:0", "lefthash:1", "minhash:4", "selfhash:4"] {
            assert_eq!(s.parse::<Context>().expect("valid").to_string(), s);
        }
        for s in [
            "minhash:0",
            "selfhash:0",
            "lefthash:33",
            "foo:1",
            "lefthash",
            "lefthash:x",
        ] {
            assert!(s.parse::<Context>().is_err(), "{s}");
        }
    }

    #[test]
    fn short_history_has_no_seed() {
        let s = seeder(Context::left_hash(3).expect("valid"));
        assert!(s.context_seed(&[1, 2]).is_none());
        assert!(s.context_seed(&[1, 2, 3]).is_some());
        let u = seeder(Context::left_hash(0).expect("valid"));
        assert_eq!(u.context_seed(&[]), u.context_seed(&[5, 6, 7]));
    }

    #[test]
    fn left_hash_reads_only_the_window() {
        let s = seeder(Context::left_hash(2).expect("valid"));
        assert_eq!(s.context_seed(&[9, 1, 2]), s.context_seed(&[8, 1, 2]));
        assert_ne!(s.context_seed(&[1, 2]), s.context_seed(&[2, 1]));
    }

    #[test]
    fn min_hash_is_order_invariant_and_robust_to_non_anchor_edits() {
        let s = seeder(Context::min_hash(4).expect("valid"));
        let a = s.context_seed(&[10, 20, 30, 40]).expect("seed");
        assert_eq!(Some(a), s.context_seed(&[40, 30, 20, 10]));
        // Replace a token that is not the anchor by one ranked above the anchor.
        let window = [10u32, 20, 30, 40];
        let anchor = *window.iter().min_by_key(|&&t| s.rank(t)).expect("non-empty");
        let victim = *window.iter().find(|&&t| t != anchor).expect("another token");
        let replacement = (1000..).find(|&t| s.rank(t) > s.rank(anchor)).expect("exists");
        let edited: Vec<u32> = window
            .iter()
            .map(|&t| if t == victim { replacement } else { t })
            .collect();
        assert_eq!(Some(a), s.context_seed(&edited));
    }

    #[test]
    fn self_hash_candidate_can_take_over() {
        let s = seeder(Context::self_hash(3).expect("valid"));
        let cs = s.context_seed(&[5, 6, 7]).expect("seed");
        let (mut own, mut shared) = (0, 0);
        for t in 0..2000 {
            if s.token_seed(&cs, t) == cs.key {
                shared += 1;
            } else {
                own += 1;
                assert_eq!(s.token_seed(&cs, t), s.anchor_seed(t));
            }
        }
        assert!(own > 0 && shared > 0);
    }
}
