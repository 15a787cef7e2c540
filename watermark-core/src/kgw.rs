//! `kgw`: green-list logit bias (Kirchenbauer et al. 2023), SPEC §7.
//!
//! Every token gets a keyed 16-bit value per context; the tokens whose value
//! is below `G = round(gamma * 65536)` are green, and generation adds `delta`
//! to their logits. Under the null hypothesis (text independent of the key)
//! each scored token is green with probability exactly `G / 65536`.

use core::fmt;

use crate::context::{Context, ContextMode, ContextSeed, Seeder};
use crate::contract::{Contract, Generation, Null};
use crate::error::{Error, Result};
use crate::key::{Key, KeyId};
use crate::mix::value16;
use crate::scheme::{Params, Scheme, SchemeKind};
use crate::simd::{self, Isa, SelfTable};

/// Parameters of [`Kgw`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RawKgw", into = "RawKgw"))]
pub struct KgwConfig {
    gamma: f64,
    delta: f32,
    context: Context,
}

impl KgwConfig {
    /// Green fraction `gamma` in (0, 1), bias `delta >= 0` added to green
    /// logits, and the context that seeds the green list.
    ///
    /// `gamma` is used as `G / 65536` with `G = round(gamma * 65536)`; it must
    /// give `1 <= G <= 65535`.
    pub fn new(gamma: f64, delta: f32, context: Context) -> Result<Self> {
        let g = (gamma * 65536.0).round();
        if !(gamma > 0.0 && gamma < 1.0 && (1.0..=65535.0).contains(&g)) {
            return Err(Error::param(
                "gamma",
                gamma,
                "a green fraction in [1/65536, 65535/65536], e.g. 0.25",
            ));
        }
        if !(delta.is_finite() && delta >= 0.0) {
            return Err(Error::param("delta", delta, "a finite bias >= 0, e.g. 2.0"));
        }
        Ok(Self { gamma, delta, context })
    }

    /// The requested green fraction.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The bias added to green logits.
    pub fn delta(&self) -> f32 {
        self.delta
    }

    /// The context mode and width.
    pub fn context(&self) -> Context {
        self.context
    }

    /// `G`: a token is green when its 16-bit value is below this.
    pub fn green_threshold(&self) -> u16 {
        (self.gamma * 65536.0).round() as u16
    }

    /// The exact null probability of green, `G / 65536`.
    pub fn effective_gamma(&self) -> f64 {
        f64::from(self.green_threshold()) / 65536.0
    }

    /// The weight of a position for model-assisted detection: the
    /// log-likelihood-ratio weight of a green bit. After the bias δ, a
    /// position of spike entropy `SE` turns green with probability at least
    /// `q = γ·e^δ·SE / (1 + (e^δ-1)·γ)` (Kirchenbauer et al., 2023, Thm. 4.2,
    /// with `z = (1-γ)(e^δ-1) / (1+(e^δ-1)γ)`); the weight is
    /// `(logit q - logit γ) / (logit q_max - logit γ)`: 0 where the model is
    /// certain (`q = γ`), 1 at a flat distribution.
    pub fn token_weight(&self, logits: &[f32]) -> f64 {
        let Some(probs) = crate::weight::softmax(logits) else {
            return 0.0;
        };
        let gamma = self.gamma;
        let alpha = f64::from(self.delta).exp();
        let zeta = (1.0 - gamma) * (alpha - 1.0) / (1.0 + (alpha - 1.0) * gamma);
        let spike: f64 = probs.iter().map(|&p| p / (1.0 + zeta * p)).sum();
        let q_max = gamma * alpha / (1.0 + (alpha - 1.0) * gamma);
        let q = (q_max * spike).clamp(gamma, q_max);
        let logit = |x: f64| (x / (1.0 - x)).ln();
        let span = logit(q_max) - logit(gamma);
        if span <= 0.0 {
            return 0.0;
        }
        ((logit(q) - logit(gamma)) / span).clamp(0.0, 1.0)
    }

    /// The scheme's contract (see [`Contract`]).
    pub fn contract(&self) -> Contract {
        Contract::new(
            Null::Binomial {
                trials: 1,
                p: self.effective_gamma(),
            },
            "green count",
            Generation::Bias,
            false,
        )
    }

    pub(crate) fn from_params(p: &mut Params<'_>) -> Result<Self> {
        let gamma = p.require("gamma", "a number in (0, 1)")?;
        let delta = p.require("delta", "a number >= 0")?;
        let context = p.require("context", "e.g. lefthash:1")?;
        Self::new(gamma, delta, context)
    }
}

impl fmt::Display for KgwConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kgw:gamma={},delta={},context={}",
            self.gamma, self.delta, self.context
        )
    }
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKgw {
    gamma: f64,
    delta: f32,
    context: Context,
}

#[cfg(feature = "serde")]
impl TryFrom<RawKgw> for KgwConfig {
    type Error = Error;
    fn try_from(r: RawKgw) -> Result<Self> {
        Self::new(r.gamma, r.delta, r.context)
    }
}

#[cfg(feature = "serde")]
impl From<KgwConfig> for RawKgw {
    fn from(c: KgwConfig) -> Self {
        Self {
            gamma: c.gamma,
            delta: c.delta,
            context: c.context,
        }
    }
}

/// The keyed `kgw` scheme for one vocabulary.
///
/// ```
/// use tracemark_core::{Context, Key, Kgw, KgwConfig, Scheme};
///
/// let key = Key::from_bytes([7; 32]); // use Key::generate() or Key::load() in practice
/// let kgw = Kgw::new(&key, KgwConfig::new(0.25, 2.0, Context::left_hash(1)?)?, 8)?;
/// let mut logits = [0.0f32; 8];
/// kgw.process(&[3], &mut logits)?;
/// // Green tokens got +2.0, the others are unchanged.
/// assert!(logits.iter().all(|&x| x == 0.0 || x == 2.0));
/// # Ok::<(), tracemark_core::Error>(())
/// ```
pub struct Kgw {
    config: KgwConfig,
    seeder: Seeder,
    key_id: KeyId,
    vocab: usize,
    g16: u16,
    isa: Isa,
    /// Self-hash only: every token's value when it anchors its own seed, and
    /// the top half of its rank (4 bytes a token).
    self_values: Option<SelfTable>,
}

impl Kgw {
    /// Builds the scheme under `key` for a vocabulary of `vocab_size` tokens.
    ///
    /// For self-hash this precomputes each token's self-anchored value and
    /// rank (two PRF calls per vocabulary entry, once; 4 bytes a token).
    pub fn new(key: &Key, config: KgwConfig, vocab_size: usize) -> Result<Self> {
        check_vocab(vocab_size)?;
        let seeder = Seeder::new(key.scheme_prf_key(SchemeKind::Kgw.name()), config.context);
        let self_values = (config.context.mode() == ContextMode::SelfHash)
            .then(|| SelfTable::new(vocab_size, |t| value16(seeder.anchor_seed(t), t), |t| seeder.rank(t)));
        Ok(Self {
            g16: config.green_threshold(),
            config,
            seeder,
            key_id: key.id(),
            vocab: vocab_size,
            isa: Isa::detect(),
            self_values,
        })
    }

    /// Forces a kernel instruction-set path (for tests and benchmarks).
    /// Returns `None` if this CPU cannot run it.
    pub fn with_isa(mut self, isa: Isa) -> Option<Self> {
        isa.is_available().then(|| {
            self.isa = isa;
            self
        })
    }

    /// The parameters.
    pub fn kgw_config(&self) -> &KgwConfig {
        &self.config
    }

    /// The green list after `history`, one flag per vocabulary entry (`None`
    /// when the history is shorter than the context width). To add the bias
    /// elsewhere, e.g. on an accelerator, use [`Scheme::bias`], which every
    /// biasing scheme has.
    pub fn green_mask(&self, history: &[u32]) -> Result<Option<Vec<bool>>> {
        Ok(self.bias(history)?.map(|row| row.iter().map(|&b| b != 0.0).collect()))
    }

    /// Whether `token` is green after `history` (`None` if the history is too short).
    pub fn is_green(&self, history: &[u32], token: u32) -> Result<Option<bool>> {
        Ok(self.observe(history, token)?.map(|o| o.value < u32::from(self.g16)))
    }
}

pub(crate) fn check_vocab(vocab_size: usize) -> Result<()> {
    if vocab_size == 0 || vocab_size > u32::MAX as usize {
        return Err(Error::param("vocab_size", vocab_size, "1..=2^32-1 tokens"));
    }
    Ok(())
}

impl fmt::Debug for Kgw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kgw({}, key {}, vocab {})", self.config, self.key_id, self.vocab)
    }
}

impl Scheme for Kgw {
    fn describe(&self) -> String {
        self.config.to_string()
    }
    fn key_id(&self) -> KeyId {
        self.key_id
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn seeder(&self) -> &Seeder {
        &self.seeder
    }
    fn contract(&self) -> Contract {
        self.config.contract()
    }
    fn value(&self, seed: u64, token: u32) -> u32 {
        u32::from(value16(seed, token))
    }
    #[inline]
    fn score(&self, value: u32) -> f64 {
        f64::from(u8::from(value < u32::from(self.g16)))
    }
    fn apply(&self, cs: &ContextSeed, row: &mut [f32]) {
        let delta = self.config.delta;
        match &self.self_values {
            None => simd::add_green(self.isa, row, cs.key, self.g16, delta),
            Some(table) => simd::add_green_self(
                self.isa,
                row,
                cs.key,
                self.seeder.rank_seed(),
                cs.anchor_rank,
                table,
                self.g16,
                delta,
            ),
        }
    }
}
