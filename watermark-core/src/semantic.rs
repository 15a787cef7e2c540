//! `semantic`: keyed regions of the sentence-embedding space (SPEC §15.3).
//!
//! The sentence layer of issue 25. A sentence's embedding (all-MiniLM-L6-v2,
//! SPEC §15.2, computed outside this crate: the core takes it as 384 `f32`)
//! is centred on the public [`REFERENCE_MEAN`] and projected on `planes`
//! keyed normals; the signs of the projections are the sentence's
//! [`Region`]. Whether a sentence is green depends on the configuration's
//! [`Chain`]:
//!
//! - `chain=none` (the parser's default): each region is green or not by a
//!   keyed 16-bit value, as a `kgw` token is, whatever the order of the
//!   sentences (order-independent, as SAMark);
//! - `chain=previous`: the keyed value is that of the pair (region of the
//!   previous *scored* sentence, this region), the first scored sentence
//!   chained on the fixed [`CHAIN_START`] (SemStamp's chaining, keyed), so a
//!   key has `2^d` green sets instead of one. `docs/semantic.md` measures
//!   why this is the recommended configuration (per-key calibration).
//!
//! Generation and detection ask the same two functions,
//! [`Semantic::is_green_after`] and [`Semantic::accepts_after`], with the
//! previous scored sentence's region (`None` for the first); for
//! `chain=none` the previous region is ignored.
//!
//! Under the null hypothesis (text written without the key) the green bits
//! of *distinct* scoring units (regions for `chain=none`, (previous, region)
//! pairs for `chain=previous`) are independent Bernoulli(`G / 65536`) over
//! the key, so a text's green count over its distinct units is exactly
//! Binomial; the verifier (`tracemark_verifier::detect::semantic`)
//! deduplicates by unit.
//! For a *fixed* key the share of human sentences in green regions is not
//! exactly γ, because embeddings are anisotropic: `docs/semantic.md`
//! measures how far it is.
//!
//! The normals are integers (a sum of four 16-bit PRF words, SPEC §15.3), so
//! they are bit-exact everywhere without any transcendental function; the
//! projections are `f64` sums in a stated order, bit-exact for a given
//! embedding. Embeddings themselves are not bit-exact across implementations;
//! generation keeps a margin from every hyperplane for that (and for
//! paraphrase).
//!
//! ```
//! use tracemark_core::{Chain, Key, Semantic, SemanticConfig, EMBEDDING_DIM};
//!
//! let key = Key::from_bytes([7; 32]); // use Key::generate() or Key::load() in practice
//! let config: SemanticConfig = "semantic:gamma=0.25,planes=8".parse()?;
//! assert_eq!(config.to_string(), "semantic:gamma=0.25,planes=8,margin=0.002,min_words=5");
//! let scheme = Semantic::new(&key, config)?;
//! let embedding = vec![0.05f32; EMBEDDING_DIM]; // an embedder's output in practice
//! let p = scheme.project(&embedding)?;
//! assert!(p.region().id() < 256);
//! let _green: bool = scheme.is_green(p.region());
//!
//! // Chained regions: the green bit of a sentence depends on the region of
//! // the previous scored sentence (`None` for the first).
//! let chained = Semantic::new(&key, "semantic:gamma=0.25,planes=8,chain=previous".parse()?)?;
//! assert_eq!(chained.config().chain(), Chain::Previous);
//! let first = chained.project(&embedding)?.region();
//! let _green: bool = chained.is_green_after(None, first);
//! let _accepted: bool = chained.accepts_after(Some(first), &embedding)?;
//! # Ok::<(), tracemark_core::Error>(())
//! ```

use core::fmt;

use crate::contract::Null;
use crate::error::{Error, Result};
use crate::key::{Key, KeyId};
use crate::prf::SipKey;
use crate::scheme::Params;

pub use crate::semantic_mean::{REFERENCE_MEAN, REFERENCE_MEAN_SHA256};

/// The dimension of a sentence embedding (all-MiniLM-L6-v2, SPEC §15.2).
pub const EMBEDDING_DIM: usize = 384;

/// The most hyperplanes a configuration may have (2^16 regions).
pub const MAX_PLANES: u32 = 16;

/// The scheme's name in the spec and its sub-key label (SPEC §3, §15.3).
pub const SEMANTIC_NAME: &str = "semantic";

/// Tag word of a normal's coordinate: `PRF(TAG_PLANE; j, i)`.
pub(crate) const TAG_PLANE: u32 = 0x0500_0000;
/// Tag word of a region's value: `PRF(TAG_REGION + d; r)`.
pub(crate) const TAG_REGION: u32 = 0x0600_0000;
/// Tag word of a chained pair's value: `PRF(TAG_CHAIN + d; previous, r)`.
pub(crate) const TAG_CHAIN: u32 = 0x0700_0000;

/// The previous region the first scored sentence of a text is chained on
/// under `chain=previous` (SPEC §15.3): `0xffffffff`, which is no region's
/// id (ids are below `2^16`).
pub const CHAIN_START: u32 = 0xffff_ffff;

/// What a sentence's green bit depends on besides its own region (SPEC §15.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Chain {
    /// Order-independent: the green bit is the region's own keyed value
    /// (`chain=none`, the default of the scheme string).
    #[default]
    None,
    /// Chained: the green bit is the keyed value of (the previous scored
    /// sentence's region, this region); the first scored sentence is chained
    /// on [`CHAIN_START`] (`chain=previous`).
    Previous,
}

impl Chain {
    /// The parameter value in scheme strings: `none` or `previous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Previous => "previous",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Chain {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "previous" => Ok(Self::Previous),
            _ => Err(Error::param("chain", s, "none or previous, e.g. chain=previous")),
        }
    }
}

/// Parameters of [`Semantic`].
#[derive(Clone, Debug, PartialEq)]
pub struct SemanticConfig {
    gamma: f64,
    planes: u32,
    margin: f64,
    min_words: u32,
    chain: Chain,
}

impl SemanticConfig {
    /// The default margin (generation only): SemStamp's 0.002 on the
    /// cosine with each normal.
    pub const DEFAULT_MARGIN: f64 = 0.002;
    /// The default shortest scored sentence, in words.
    pub const DEFAULT_MIN_WORDS: u32 = 5;

    /// Green share `gamma` (used as `G / 65536`, `G = round(gamma * 65536)`,
    /// `1 <= G <= 65535`, as `kgw`), `planes` hyperplanes in `1..=16`
    /// (`2^planes` regions), the generation `margin` in `[0, 1)` (a candidate
    /// sentence is accepted only if its centred embedding's distance to every
    /// hyperplane is at least this; detection ignores it) and `min_words`
    /// (sentences of fewer words are neither steered nor scored; at least 1).
    pub fn new(gamma: f64, planes: u32, margin: f64, min_words: u32) -> Result<Self> {
        let g = (gamma * 65536.0).round();
        if !(gamma > 0.0 && gamma < 1.0 && (1.0..=65535.0).contains(&g)) {
            return Err(Error::param(
                "gamma",
                gamma,
                "a green share in [1/65536, 65535/65536], e.g. 0.25",
            ));
        }
        if !(1..=MAX_PLANES).contains(&planes) {
            return Err(Error::param(
                "planes",
                planes,
                "a number of hyperplanes in 1..=16, e.g. 8",
            ));
        }
        if !(margin.is_finite() && (0.0..1.0).contains(&margin)) {
            return Err(Error::param("margin", margin, "a distance in [0, 1), e.g. 0.002"));
        }
        if min_words == 0 {
            return Err(Error::param("min_words", min_words, "at least 1 word, e.g. 5"));
        }
        Ok(Self {
            gamma,
            planes,
            margin,
            min_words,
            chain: Chain::None,
        })
    }

    /// The same configuration with another [`Chain`] (`new` gives
    /// [`Chain::None`]).
    #[must_use]
    pub fn with_chain(mut self, chain: Chain) -> Self {
        self.chain = chain;
        self
    }

    /// What a sentence's green bit depends on besides its own region.
    pub fn chain(&self) -> Chain {
        self.chain
    }

    /// The requested green share.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The number of hyperplanes `d`.
    pub fn planes(&self) -> u32 {
        self.planes
    }

    /// The number of regions, `2^d`.
    pub fn regions(&self) -> u32 {
        1 << self.planes
    }

    /// The generation margin.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The shortest scored sentence, in words.
    pub fn min_words(&self) -> u32 {
        self.min_words
    }

    /// `G`: a region is green when its 16-bit value is below this.
    pub fn green_threshold(&self) -> u16 {
        (self.gamma * 65536.0).round() as u16
    }

    /// The exact null probability of green, `G / 65536`.
    pub fn effective_gamma(&self) -> f64 {
        f64::from(self.green_threshold()) / 65536.0
    }

    /// The null distribution of one distinct unit's score (its green bit; a
    /// unit is a region for `chain=none`, a (previous, region) pair for
    /// `chain=previous`): the total over `n` distinct units is
    /// Binomial(`n`, `G / 65536`).
    pub fn null(&self) -> Null {
        Null::Binomial {
            trials: 1,
            p: self.effective_gamma(),
        }
    }

    /// The statistic's name in reports.
    pub fn statistic(&self) -> &'static str {
        match self.chain {
            Chain::None => "green sentence-region count",
            Chain::Previous => "green chained sentence-region count",
        }
    }

    /// Whether a sentence is steered and scored: it has at least
    /// [`min_words`](Self::min_words) words ([`word_count`]).
    pub fn is_scored(&self, sentence: &str) -> bool {
        word_count(sentence) >= self.min_words as usize
    }

    fn from_params(params: &mut Params<'_>) -> Result<Self> {
        let gamma = params.require("gamma", "a green share, e.g. gamma=0.25")?;
        let planes = params.require("planes", "a number of hyperplanes, e.g. planes=8")?;
        let margin = params
            .take("margin", "a distance, e.g. margin=0.002")?
            .unwrap_or(Self::DEFAULT_MARGIN);
        let min_words = params
            .take("min_words", "a number of words, e.g. min_words=5")?
            .unwrap_or(Self::DEFAULT_MIN_WORDS);
        let chain = params
            .take("chain", "none or previous, e.g. chain=previous")?
            .unwrap_or_default();
        Ok(Self::new(gamma, planes, margin, min_words)?.with_chain(chain))
    }
}

impl fmt::Display for SemanticConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SEMANTIC_NAME}:gamma={},planes={},margin={},min_words={}",
            self.gamma, self.planes, self.margin, self.min_words
        )?;
        // `chain=none` is left out, so the strings of version 1's
        // configurations are unchanged.
        match self.chain {
            Chain::None => Ok(()),
            chain => write!(f, ",chain={chain}"),
        }
    }
}

impl core::str::FromStr for SemanticConfig {
    type Err = Error;
    /// Parses the [`Display`](fmt::Display) form in the grammar of scheme
    /// strings: `semantic:gamma=0.25,planes=8,margin=0.002,min_words=5`,
    /// optionally followed by `,chain=previous` (`margin`, `min_words` and
    /// `chain` may be left out for their defaults, `chain=none`).
    fn from_str(s: &str) -> Result<Self> {
        let (name, params) = s.split_once(':').unwrap_or((s, ""));
        if name != SEMANTIC_NAME {
            return Err(Error::param(
                "scheme",
                name,
                "`semantic` (e.g. semantic:gamma=0.25,planes=8)",
            ));
        }
        let mut params = Params::parse(params)?;
        let config = Self::from_params(&mut params)?;
        params.finish()?;
        Ok(config)
    }
}

/// The number of words of a sentence: maximal runs of characters that are
/// not white space (the `White_Space` set of SPEC §15.1).
pub fn word_count(sentence: &str) -> usize {
    sentence.split(char::is_whitespace).filter(|w| !w.is_empty()).count()
}

/// A region of the keyed partition: bit `j` of its id is 1 when the centred
/// embedding's projection on normal `j` is positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(u32);

impl Region {
    /// A region from its id (below `2^planes` for a given configuration).
    pub fn new(id: u32) -> Self {
        Self(id)
    }

    /// The region's id.
    pub fn id(self) -> u32 {
        self.0
    }
}

/// Where one embedding falls: its projections, region and margin.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    projections: Vec<f64>,
    region: Region,
    margin: f64,
}

impl Projection {
    /// `p_j`: the centred embedding's dot product with integer normal `j`.
    pub fn projections(&self) -> &[f64] {
        &self.projections
    }

    /// The region (signs of the projections).
    pub fn region(&self) -> Region {
        self.region
    }

    /// The distance of the centred embedding to the nearest hyperplane,
    /// `min_j |p_j| / |n_j|` (the cosine with the unit normal, times the
    /// centred embedding's length).
    pub fn margin(&self) -> f64 {
        self.margin
    }
}

/// The keyed semantic scheme: hyperplanes and green regions of one key.
///
/// Its [`Debug`] shows the configuration and the key id only: the normals
/// are keyed values.
#[derive(Clone)]
pub struct Semantic {
    config: SemanticConfig,
    key_id: KeyId,
    /// `planes x EMBEDDING_DIM` integer coordinates, row-major.
    normals: Vec<i32>,
    /// `|n_j|`, the Euclidean norms of the normals.
    norms: Vec<f64>,
    /// The 16-bit value of every region.
    values: Vec<u16>,
    /// The reference mean, as `f64`.
    mean: Vec<f64>,
    /// The scheme PRF, for the chained values (computed on demand: a key has
    /// `2^2d` of them).
    prf: SipKey,
}

impl fmt::Debug for Semantic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semantic")
            .field("config", &self.config)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Coordinate `i` of normal `j` (SPEC §15.3): the sum of the four 16-bit
/// words of `PRF(TAG_PLANE; j, i)`, minus 131070.
pub(crate) fn normal_coordinate(prf: &SipKey, j: u32, i: u32) -> i32 {
    let w = prf.hash_words(TAG_PLANE, &[j, i]);
    let s = (w & 0xffff) + (w >> 16 & 0xffff) + (w >> 32 & 0xffff) + (w >> 48);
    // s <= 4 * 65535 < 2^19: the difference fits an i32.
    s as i32 - 131_070
}

impl Semantic {
    /// Builds the keyed scheme: `planes` normals and the value of each of the
    /// `2^planes` regions.
    pub fn new(key: &Key, config: SemanticConfig) -> Result<Self> {
        let prf = key.scheme_prf_key(SEMANTIC_NAME);
        let d = config.planes;
        let mut normals = Vec::with_capacity(d as usize * EMBEDDING_DIM);
        let mut norms = Vec::with_capacity(d as usize);
        for j in 0..d {
            let mut sq: i64 = 0;
            for i in 0..EMBEDDING_DIM as u32 {
                let c = normal_coordinate(&prf, j, i);
                sq += i64::from(c) * i64::from(c);
                normals.push(c);
            }
            // sq <= 384 * 131070^2 < 2^53: exact as f64.
            norms.push((sq as f64).sqrt());
        }
        let values = (0..config.regions())
            .map(|r| (prf.hash_words(TAG_REGION + d, &[r]) & 0xffff) as u16)
            .collect();
        Ok(Self {
            config,
            key_id: key.id(),
            normals,
            norms,
            values,
            mean: REFERENCE_MEAN.iter().map(|&m| f64::from(m)).collect(),
            prf,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SemanticConfig {
        &self.config
    }

    /// The public id of the key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The scheme string (`semantic:gamma=0.25,planes=8,margin=0.002,min_words=5`).
    pub fn describe(&self) -> String {
        self.config.to_string()
    }

    /// Normal `j` (keyed: never print it), `EMBEDDING_DIM` integers.
    ///
    /// # Panics
    /// If `j >= planes`.
    pub fn normal(&self, j: usize) -> &[i32] {
        &self.normals[j * EMBEDDING_DIM..(j + 1) * EMBEDDING_DIM]
    }

    /// The region's own keyed 16-bit value (the `chain=none` value): the low
    /// 16 bits of `PRF(TAG_REGION + d; r)`. Ids outside `0..2^planes` have
    /// none.
    pub fn value(&self, region: Region) -> Option<u16> {
        self.values.get(region.0 as usize).copied()
    }

    /// The keyed 16-bit value that decides whether `region` is green after
    /// `previous`, the region of the previous scored sentence (`None` for the
    /// first scored sentence of a text): for `chain=none` the region's own
    /// [`value`](Self::value) (`previous` is ignored); for `chain=previous`
    /// the low 16 bits of `PRF(TAG_CHAIN + d; p, r)` with `p` the previous
    /// region's id or [`CHAIN_START`]. Ids outside `0..2^planes` have none.
    pub fn value_after(&self, previous: Option<Region>, region: Region) -> Option<u16> {
        match self.config.chain {
            Chain::None => self.value(region),
            Chain::Previous => {
                let regions = self.config.regions();
                let p = match previous {
                    None => CHAIN_START,
                    Some(p) if p.0 < regions => p.0,
                    Some(_) => return None,
                };
                (region.0 < regions)
                    .then(|| (self.prf.hash_words(TAG_CHAIN + self.config.planes, &[p, region.0]) & 0xffff) as u16)
            }
        }
    }

    /// Whether a region is green by its own value (below `G`), i.e. for
    /// `chain=none`; for `chain=previous` this is
    /// [`is_green_after(None, region)`](Self::is_green_after), the green
    /// bit of a text's first scored sentence. Ids outside `0..2^planes` are
    /// not green.
    pub fn is_green(&self, region: Region) -> bool {
        match self.config.chain {
            Chain::None => self.value(region).is_some_and(|v| v < self.config.green_threshold()),
            _ => self.is_green_after(None, region),
        }
    }

    /// Whether a scored sentence in `region` is green when the previous
    /// scored sentence of the text (sentences below `min_words` are skipped,
    /// they do not reset the chain) was in `previous` (`None` for the first):
    /// [`value_after`](Self::value_after) is below `G`. For `chain=none`
    /// `previous` is ignored. Ids outside `0..2^planes` are not green.
    pub fn is_green_after(&self, previous: Option<Region>, region: Region) -> bool {
        self.value_after(previous, region)
            .is_some_and(|v| v < self.config.green_threshold())
    }

    /// Projects an embedding (SPEC §15.3): `x_i = e_i - m_i` in `f64`, and
    /// `p_j = sum_i n_ji * x_i` summed in increasing `i`. Rejects an
    /// embedding that is not `EMBEDDING_DIM` finite values.
    pub fn project(&self, embedding: &[f32]) -> Result<Projection> {
        if embedding.len() != EMBEDDING_DIM || !embedding.iter().all(|v| v.is_finite()) {
            return Err(Error::param(
                "embedding",
                format!("{} values", embedding.len()),
                "384 finite values: an all-MiniLM-L6-v2 sentence embedding (SPEC §15.2)",
            ));
        }
        let x: Vec<f64> = embedding
            .iter()
            .zip(&self.mean)
            .map(|(&e, &m)| f64::from(e) - m)
            .collect();
        let mut projections = Vec::with_capacity(self.config.planes as usize);
        let mut region = 0u32;
        let mut margin = f64::INFINITY;
        for (j, normal) in self.normals.chunks_exact(EMBEDDING_DIM).enumerate() {
            let mut p = 0.0f64;
            for (&n, &xi) in normal.iter().zip(&x) {
                p += f64::from(n) * xi;
            }
            if p > 0.0 {
                region |= 1 << j;
            }
            margin = margin.min(p.abs() / self.norms[j]);
            projections.push(p);
        }
        Ok(Projection {
            projections,
            region: Region(region),
            margin,
        })
    }

    /// The region of an embedding ([`Semantic::project`]).
    pub fn region(&self, embedding: &[f32]) -> Result<Region> {
        Ok(self.project(embedding)?.region)
    }

    /// Whether generation accepts a candidate sentence's embedding: it lies
    /// in a green region ([`is_green`](Self::is_green)) at a distance of at
    /// least the margin from every hyperplane. For `chain=previous` use
    /// [`accepts_after`](Self::accepts_after); this is its first sentence.
    pub fn accepts(&self, embedding: &[f32]) -> Result<bool> {
        self.accepts_after(None, embedding)
    }

    /// Whether generation accepts a candidate sentence's embedding after a
    /// scored sentence in `previous` (`None` when it is the first scored
    /// sentence): its region is green after `previous`
    /// ([`is_green_after`](Self::is_green_after)) and its distance to every
    /// hyperplane is at least the margin. `previous` is the region of the
    /// sentence actually kept in the text, accepted or not.
    pub fn accepts_after(&self, previous: Option<Region>, embedding: &[f32]) -> Result<bool> {
        let p = self.project(embedding)?;
        Ok(self.is_green_after(previous, p.region) && p.margin >= self.config.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_rejects_with_reasons() {
        let c: SemanticConfig = "semantic:gamma=0.25,planes=8".parse().expect("valid in this test");
        assert_eq!(c.to_string(), "semantic:gamma=0.25,planes=8,margin=0.002,min_words=5");
        assert_eq!(c.to_string().parse::<SemanticConfig>().expect("valid in this test"), c);
        assert_eq!(c.regions(), 256);
        assert_eq!(c.green_threshold(), 16384);
        let c: SemanticConfig = "semantic:planes=3,gamma=0.5,margin=0,min_words=1"
            .parse()
            .expect("valid in this test");
        assert_eq!(c.to_string(), "semantic:gamma=0.5,planes=3,margin=0,min_words=1");
        for bad in [
            "semantic:gamma=0.25",
            "semantic:gamma=0,planes=8",
            "semantic:gamma=0.25,planes=0",
            "semantic:gamma=0.25,planes=17",
            "semantic:gamma=0.25,planes=8,margin=-1",
            "semantic:gamma=0.25,planes=8,margin=NaN",
            "semantic:gamma=0.25,planes=8,min_words=0",
            "semantic:gamma=0.25,planes=8,delta=2",
            "kgw:gamma=0.25,planes=8",
            "semantic:gamma=0.25,planes=8,chain=next",
            "semantic:gamma=0.25,planes=8,chain=",
        ] {
            let e = bad.parse::<SemanticConfig>().expect_err("must be rejected");
            assert!(
                e.to_string().contains("e.g.") || e.to_string().contains("only"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn chain_parses_displays_and_defaults_to_none() {
        let c: SemanticConfig = "semantic:gamma=0.25,planes=8".parse().expect("valid in this test");
        assert_eq!(c.chain(), Chain::None);
        let none: SemanticConfig = "semantic:gamma=0.25,planes=8,chain=none"
            .parse()
            .expect("valid in this test");
        // `chain=none` is the version-1 string: written without it.
        assert_eq!(none, c);
        assert_eq!(
            none.to_string(),
            "semantic:gamma=0.25,planes=8,margin=0.002,min_words=5"
        );
        let p: SemanticConfig = "semantic:chain=previous,planes=8,gamma=0.25"
            .parse()
            .expect("valid in this test");
        assert_eq!(p.chain(), Chain::Previous);
        assert_eq!(
            p.to_string(),
            "semantic:gamma=0.25,planes=8,margin=0.002,min_words=5,chain=previous"
        );
        assert_eq!(p.to_string().parse::<SemanticConfig>().expect("valid in this test"), p);
        assert_eq!(c.clone().with_chain(Chain::Previous), p);
        assert_eq!(p.statistic(), "green chained sentence-region count");
    }

    #[test]
    fn chained_values_depend_on_the_previous_region() {
        let key = Key::from_bytes([4; 32]);
        let config = SemanticConfig::new(0.25, 6, 0.0, 1).expect("valid in this test");
        let none = Semantic::new(&key, config.clone()).expect("valid in this test");
        let chained = Semantic::new(&key, config.with_chain(Chain::Previous)).expect("valid in this test");
        // chain=none ignores the previous region.
        for r in 0..64 {
            let r = Region::new(r);
            for p in [None, Some(Region::new(0)), Some(Region::new(63))] {
                assert_eq!(none.value_after(p, r), none.value(r));
                assert_eq!(none.is_green_after(p, r), none.is_green(r));
            }
        }
        // Chained: the normals are the same, the green bits are those of pairs;
        // the first sentence is chained on the start value.
        assert_eq!(chained.normal(5), none.normal(5));
        let r = Region::new(9);
        assert_eq!(chained.is_green(r), chained.is_green_after(None, r));
        let start: Vec<Option<u16>> = (0..64).map(|r| chained.value_after(None, Region::new(r))).collect();
        let after0: Vec<Option<u16>> = (0..64)
            .map(|r| chained.value_after(Some(Region::new(0)), Region::new(r)))
            .collect();
        assert_ne!(start, after0);
        assert_ne!(start, (0..64).map(|r| none.value(Region::new(r))).collect::<Vec<_>>());
        // Out of range: no value, not green.
        assert_eq!(chained.value_after(Some(Region::new(64)), r), None);
        assert_eq!(chained.value_after(None, Region::new(64)), None);
        assert!(!chained.is_green_after(Some(Region::new(1 << 20)), r));
        // Green pairs among the 64 x 65 (previous or start, region):
        // Binomial(4160, 0.25), mean 1040, sd 27.9; within 5 sd.
        let green = (0..64)
            .map(|r| Some(Region::new(r)))
            .chain([None])
            .flat_map(|p| (0..64).map(move |r| (p, Region::new(r))))
            .filter(|&(p, r)| chained.is_green_after(p, r))
            .count();
        assert!((1040 - 140..=1040 + 140).contains(&green), "{green}");
        // Acceptance follows the chained bit and the margin.
        let e: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|i| REFERENCE_MEAN[i] + 1e-6 * chained.normal(i % 6)[i] as f32)
            .collect();
        let p = chained.project(&e).expect("valid in this test");
        for prev in [None, Some(Region::new(3))] {
            assert_eq!(
                chained.accepts_after(prev, &e).expect("valid in this test"),
                chained.is_green_after(prev, p.region())
            );
        }
        assert_eq!(
            chained.accepts(&e).expect("valid in this test"),
            chained.accepts_after(None, &e).expect("valid in this test")
        );
    }

    #[test]
    fn words() {
        assert_eq!(word_count("  One two\tthree\u{a0}four  "), 4);
        assert_eq!(word_count(""), 0);
        let c = SemanticConfig::new(0.25, 8, 0.0, 3).expect("valid in this test");
        assert!(c.is_scored("a b c"));
        assert!(!c.is_scored("Yes. No"));
    }

    #[test]
    fn normals_are_centred_integers_and_planes_nest() {
        let key = Key::from_bytes([1; 32]);
        let s8 = Semantic::new(&key, SemanticConfig::new(0.25, 8, 0.0, 1).expect("valid in this test"))
            .expect("valid in this test");
        let s3 = Semantic::new(&key, SemanticConfig::new(0.25, 3, 0.0, 1).expect("valid in this test"))
            .expect("valid in this test");
        for j in 0..3 {
            assert_eq!(s8.normal(j), s3.normal(j));
        }
        // Irwin–Hall(4) on 16-bit words: mean 0, sd about 37837 per coordinate.
        let all: Vec<f64> = (0..8)
            .flat_map(|j| s8.normal(j).iter().map(|&c| f64::from(c)))
            .collect();
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let sd = (all.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / n).sqrt();
        let expected_sd = (4.0 * (65536f64 * 65536.0 - 1.0) / 12.0).sqrt();
        assert!(mean.abs() < 4.0 * expected_sd / n.sqrt(), "{mean}");
        assert!((sd / expected_sd - 1.0).abs() < 0.05, "{sd}");
        assert!(all.iter().all(|c| c.abs() <= 131_070.0));
        assert!(format!("{s8:?}").contains("key_id") && !format!("{s8:?}").contains("normals"));
    }

    #[test]
    fn regions_signs_margin_and_green_share() {
        let key = Key::from_bytes([2; 32]);
        let s = Semantic::new(&key, SemanticConfig::new(0.25, 10, 0.0, 1).expect("valid in this test"))
            .expect("valid in this test");
        // The reference mean itself projects to 0 everywhere: region 0, margin 0.
        let p = s.project(&REFERENCE_MEAN).expect("valid in this test");
        assert_eq!((p.region(), p.margin()), (Region::new(0), 0.0));
        // Along +normal_0 from the mean: bit 0 set, margin by the other planes.
        let e: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|i| REFERENCE_MEAN[i] + 1e-6 * s.normal(0)[i] as f32)
            .collect();
        assert_eq!(s.region(&e).expect("valid in this test").id() & 1, 1);
        assert!(s.project(&e[..383]).is_err());
        let mut nan = e.clone();
        nan[5] = f32::NAN;
        assert!(s.project(&nan).is_err());
        // Green regions: Binomial(1024, 0.25) count, mean 256, sd 13.9.
        let green = (0..1024).filter(|&r| s.is_green(Region::new(r))).count();
        assert!((256 - 5 * 14..=256 + 5 * 14).contains(&green), "{green}");
        assert!(!s.is_green(Region::new(1024)));
    }
}
