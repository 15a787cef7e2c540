//! [`SchemeConfig`]: a scheme and all its parameters, parsed from and
//! written as a scheme string, and built into a keyed [`Scheme`]. The one
//! place that lists every scheme; the schemes themselves know only the
//! [`Scheme`] trait.

use core::fmt;

use crate::context::Context;
use crate::contract::Contract;
use crate::error::{Error, Result};
use crate::gumbel::{Gumbel, GumbelConfig};
use crate::key::Key;
use crate::kgw::{Kgw, KgwConfig};
use crate::scheme::{Params, Scheme, SchemeKind};
use crate::tournament::{Tournament, TournamentConfig};

/// A scheme and all its parameters: everything a verifier must know, except the key.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "scheme", rename_all = "lowercase"))]
#[non_exhaustive]
pub enum SchemeConfig {
    /// See [`KgwConfig`].
    Kgw(KgwConfig),
    /// See [`TournamentConfig`].
    Tournament(TournamentConfig),
    /// See [`GumbelConfig`].
    Gumbel(GumbelConfig),
}

impl SchemeConfig {
    /// Which scheme.
    pub fn kind(&self) -> SchemeKind {
        match self {
            Self::Kgw(_) => SchemeKind::Kgw,
            Self::Tournament(_) => SchemeKind::Tournament,
            Self::Gumbel(_) => SchemeKind::Gumbel,
        }
    }

    /// The context mode and width.
    pub fn context(&self) -> Context {
        match self {
            Self::Kgw(c) => c.context(),
            Self::Tournament(c) => c.context(),
            Self::Gumbel(c) => c.context(),
        }
    }

    /// The scheme's contract (the same as the built scheme's [`Scheme::contract`]).
    pub fn contract(&self) -> Contract {
        match self {
            Self::Kgw(c) => c.contract(),
            Self::Tournament(c) => c.contract(),
            Self::Gumbel(c) => c.contract(),
        }
    }

    /// How much watermark a position whose next-token logits (before the
    /// watermark) are `logits` can carry, in `[0, 1]`: the weight of
    /// model-assisted detection. kgw: the log-likelihood-ratio weight of a
    /// green bit ([`KgwConfig::token_weight`]); tournament and gumbel: the
    /// entropy over [`ENTROPY_CAP`](crate::ENTROPY_CAP), capped at 1.
    /// Non-finite logits count as impossible tokens; an empty or
    /// all-impossible row weighs 0.
    pub fn token_weight(&self, logits: &[f32]) -> f64 {
        match self {
            Self::Kgw(c) => c.token_weight(logits),
            Self::Tournament(c) => c.token_weight(logits),
            Self::Gumbel(c) => c.token_weight(logits),
        }
    }

    /// Builds the keyed scheme for a vocabulary of `vocab_size` tokens.
    pub fn build(&self, key: &Key, vocab_size: usize) -> Result<Box<dyn Scheme>> {
        Ok(match self {
            Self::Kgw(c) => Box::new(Kgw::new(key, c.clone(), vocab_size)?),
            Self::Tournament(c) => Box::new(Tournament::new(key, c.clone(), vocab_size)?),
            Self::Gumbel(c) => Box::new(Gumbel::new(key, c.clone(), vocab_size)?),
        })
    }
}

impl fmt::Display for SchemeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kgw(c) => c.fmt(f),
            Self::Tournament(c) => c.fmt(f),
            Self::Gumbel(c) => c.fmt(f),
        }
    }
}

impl core::str::FromStr for SchemeConfig {
    type Err = Error;
    /// Parses the [`Display`](fmt::Display) form, e.g.
    /// `kgw:gamma=0.25,delta=2,context=lefthash:1`,
    /// `tournament:layers=30,top_k=40,temperature=1,leaves=2,context=lefthash:4`,
    /// `gumbel:temperature=1,context=lefthash:4`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, params) = s.split_once(':').unwrap_or((s, ""));
        let mut params = Params::parse(params)?;
        let config = match name {
            "kgw" => Self::Kgw(KgwConfig::from_params(&mut params)?),
            "tournament" => Self::Tournament(TournamentConfig::from_params(&mut params)?),
            "gumbel" => Self::Gumbel(GumbelConfig::from_params(&mut params)?),
            _ => return Err(Error::param("scheme", name, "`kgw`, `tournament` or `gumbel`")),
        };
        params.finish()?;
        Ok(config)
    }
}
