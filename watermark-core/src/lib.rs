//! # tracemark-core
//!
//! Keyed watermarks for LLM text, applied where tokens are sampled. This crate
//! is what a decoder links: it turns a logits row and the tokens before it
//! into watermarked logits, in a few tens of microseconds for a 128k
//! vocabulary, and computes the same keyed values the verifier
//! (`tracemark-verifier`) tests later. Every keyed value is specified in
//! `docs/SPEC.md` (spec version [`SPEC_VERSION`]) and pinned by golden
//! vectors under `testdata/`.
//!
//! ## Keys
//!
//! A [`Key`] is 32 secret bytes from the OS random number generator or a key
//! file. There is no default key. Reports name a key only by its public
//! [`KeyId`]. One master key can watermark many tenants or API-account
//! cohorts differently through labelled sub-keys ([`Key::derive`]), so a
//! verifier can later tell which cohort a text came from.
//!
//! ```
//! use tracemark_core::Key;
//!
//! let master = Key::generate()?;
//! let cohort = master.derive("cohort/3")?;
//! assert_ne!(master.id(), cohort.id());
//! println!("watermarking with key {}", cohort.id()); // the id is public; the key never prints
//! # Ok::<(), tracemark_core::Error>(())
//! ```
//!
//! ## Schemes
//!
//! | scheme | generation | per-token score | null distribution |
//! |---|---|---|---|
//! | [`Kgw`] | `+delta` on green logits (fraction `gamma`) | green bit | Binomial(n, gamma) |
//! | [`Tournament`] | `m`-layer tournament over top-k candidates | sum of g-bits | Binomial(n m, 1/2) |
//! | [`Gumbel`] | `argmax l/T - ln(-ln u)` (deterministic) | `-ln(1-u)` | Gamma(n, 1) |
//!
//! Each scheme reads the preceding tokens through a [`Context`]: left-hash
//! over `h` tokens, min-hash, or self-hash.
//!
//! ## The scheme contract
//!
//! Everything scheme-specific is stated once, by the scheme: its keyed
//! [`Scheme::value`] and [`Scheme::score`] of a token, and its [`Contract`]:
//! the null distribution of one score ([`Null`]), the statistic's name, and
//! how it takes part in sampling ([`Generation`]: it biases the logits for the
//! caller's sampler, or decides the distribution or the token itself), and
//! whether it skips repeated contexts by default. Decoders, bindings and the
//! verifier ask the scheme; none of them branches on which scheme it is, and a
//! scheme defined outside this crate (with a [`Seeder::for_scheme`]) works
//! with all of them.
//!
//! ```
//! use tracemark_core::{Generation, Key, Null, SchemeConfig};
//!
//! let config: SchemeConfig = "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4".parse()?;
//! let contract = config.contract();
//! assert_eq!(contract.null, Null::Binomial { trials: 30, p: 0.5 });
//! assert_eq!(contract.generation, Generation::Distribution);
//! // The decoder must sample the processed row as it is: no temperature, top-k or top-p of its own.
//! assert!(contract.generation.controls_sampling() && contract.skip_repeated);
//!
//! let scheme = config.build(&Key::generate()?, 100)?;
//! assert_eq!(scheme.contract(), contract);
//! # Ok::<(), tracemark_core::Error>(())
//! ```
//!
//! ```
//! use tracemark_core::{Context, Key, Kgw, KgwConfig, Scheme, Step};
//!
//! let key = Key::generate()?;
//! let vocab = 49_152;
//! let kgw = Kgw::new(&key, KgwConfig::new(0.25, 2.0, Context::left_hash(1)?)?, vocab)?;
//!
//! let history = [1u32, 2, 3]; // prompt and generated tokens so far
//! let mut logits = vec![0.0f32; vocab];
//! let step = kgw.process(&history, &mut logits)?;
//! assert!(step.is_watermarked());
//! let green = logits.iter().filter(|&&x| x == 2.0).count() as f64 / vocab as f64;
//! assert!((green - 0.25).abs() < 0.01);
//! # Ok::<(), tracemark_core::Error>(())
//! ```
//!
//! ## Batches
//!
//! [`Scheme::process_batch`] takes one history per row of an
//! [`ndarray::ArrayViewMut2`]. Large batches (32 rows of a 128k vocabulary and
//! more) are processed on several threads on machines with at least four
//! cores; [`set_batch_threads`] or `TRACEMARK_THREADS` override that.
//!
//! ```
//! use ndarray::Array2;
//! use tracemark_core::{Context, GumbelConfig, Key, Scheme, SchemeConfig};
//!
//! let key = Key::from_bytes([1; 32]); // a fixed key, for this example only
//! let config: SchemeConfig = "gumbel:temperature=1,context=lefthash:2".parse()?;
//! let scheme = config.build(&key, 100)?;
//! let mut logits = Array2::<f32>::zeros((2, 100));
//! let histories: [&[u32]; 2] = [&[5, 6], &[7]];
//! let steps = scheme.process_batch(&histories, logits.view_mut())?;
//! assert!(steps[0].is_watermarked());
//! assert!(!steps[1].is_watermarked()); // one token of history is shorter than the width 2
//! // Gumbel selects exactly one token in a watermarked row.
//! assert_eq!(logits.row(0).iter().filter(|x| x.is_finite()).count(), 1);
//! # Ok::<(), tracemark_core::Error>(())
//! ```
//!
//! ## Bad input
//!
//! NaN or `+inf` logits, rows of the wrong length, token ids outside the
//! vocabulary and out-of-range parameters are typed [`Error`]s that say how
//! to fix them; `-inf` (a banned token) stays `-inf` and is never selected.
//! A call that fails leaves its logits exactly as they were.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod context;
mod contract;
mod error;
mod gumbel;
mod key;
mod kgw;
pub mod mix;
mod prf;
mod scheme;
mod semantic;
mod semantic_mean;
mod simd;
mod tournament;
mod weight;

pub use config::SchemeConfig;
pub use context::{Context, ContextMode, ContextSeed, Seeder};
pub use contract::{Contract, Generation, Null};
pub use error::{Error, Result};
pub use gumbel::{Gumbel, GumbelConfig};
pub use key::{Key, KeyId, MAX_LABEL_LEN};
pub use kgw::{Kgw, KgwConfig};
pub use ndarray;
pub use scheme::{set_batch_threads, CheckedRow, Observation, Scheme, SchemeKind, SeenContexts, Step};
pub use semantic::{
    word_count, Chain, Projection, Region, Semantic, SemanticConfig, CHAIN_START, EMBEDDING_DIM, MAX_PLANES,
    REFERENCE_MEAN, REFERENCE_MEAN_SHA256, SEMANTIC_NAME,
};
pub use tournament::{Tournament, TournamentConfig};
pub use weight::ENTROPY_CAP;

/// The version of `docs/SPEC.md` this crate implements; reports carry it.
pub const SPEC_VERSION: &str = "tracemark/v1";

/// Entry points for fuzzing and for the golden-vector tests; not a stable API.
#[doc(hidden)]
pub mod internal {
    use crate::{Key, SchemeConfig};

    pub use crate::key::{KEY_FILE_MAGIC, SIGNING_KEY_MAGIC, VERIFYING_KEY_MAGIC};
    pub use crate::scheme::plan;
    pub use crate::simd::Isa;

    /// Appends `bytes` as lowercase hex digits (key files, key ids, receipts).
    pub fn push_hex(out: &mut String, bytes: &[u8]) {
        crate::key::push_hex(out, bytes);
    }

    /// Decodes exactly `2 * out.len()` hex digits of either case into `out`;
    /// false (and `out` zeroed) otherwise.
    pub fn decode_hex(hex: &str, out: &mut [u8]) -> bool {
        crate::key::decode_hex(hex, out)
    }

    /// Writes a new key file with Unix permissions `mode` and syncs it;
    /// refuses to overwrite (`Error::KeyFileExists`).
    pub fn write_new_file(path: &std::path::Path, contents: &[u8], mode: u32) -> crate::Result<()> {
        crate::key::write_new_file(path, contents, mode)
    }

    /// SipHash-2-4 of `LE32(head) || LE32(words...)` under a raw 128-bit key.
    pub fn siphash_words(k0: u64, k1: u64, head: u32, words: &[u32]) -> u64 {
        crate::prf::SipKey::new(k0, k1).hash_words(head, words)
    }

    /// [`siphash_words`] of eight messages of one length at once in this
    /// CPU's vector lanes (the batch path of detection; benched against
    /// eight single calls).
    pub fn siphash_words_x8(k0: u64, k1: u64, head: u32, words: [&[u32]; 8]) -> [u64; 8] {
        crate::simd::hash_words_x8(
            crate::simd::Isa::detect(),
            &crate::prf::SipKey::new(k0, k1),
            head,
            words,
        )
    }

    /// The SipHash key `(k0, k1)` of a scheme sub-key (exposed for the golden vectors).
    pub fn scheme_prf_words(key: &Key, scheme: &str) -> (u64, u64) {
        let mac = crate::key::hmac_sha256(
            key.secret_bytes(),
            &[crate::key::LABEL_PREFIX.as_bytes(), b"scheme/", scheme.as_bytes()],
        );
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&mac[..8]);
        b.copy_from_slice(&mac[8..16]);
        (u64::from_le_bytes(a), u64::from_le_bytes(b))
    }

    /// The Gumbel scheme's keyed uniform of a 32-bit value (SPEC §9).
    pub fn gumbel_uniform(value: u32) -> f64 {
        crate::gumbel::uniform(value)
    }

    /// The number of tournament g-values equal to 1 among the first `layers` bits of `value`.
    pub fn tournament_g_sum(value: u32, layers: usize) -> u32 {
        crate::tournament::g_sum(value, layers.min(32) as u8)
    }

    /// Deterministic natural logarithm used by the Gumbel scheme.
    pub fn det_ln(x: f64) -> f64 {
        crate::mix::ln(x)
    }

    /// Fuzz target: parse arbitrary bytes as a key file.
    pub fn fuzz_key_file(data: &[u8]) {
        if let Ok(text) = core::str::from_utf8(data) {
            if let Ok(key) = Key::from_file_str(text) {
                // Whatever parses must round-trip.
                assert!(Key::from_file_str(&key.to_file_string()).is_ok_and(|k| k == key));
            }
        }
    }

    /// Fuzz target: parse arbitrary bytes as a scheme string (as the verifier's
    /// `--scheme` does). Whatever parses must print as a string that parses back to
    /// the same configuration.
    pub fn fuzz_scheme_config(data: &[u8]) {
        if let Ok(Ok(config)) = core::str::from_utf8(data).map(str::parse::<SchemeConfig>) {
            let printed = config.to_string();
            assert_eq!(printed.parse::<SchemeConfig>().ok(), Some(config), "{printed}");
        }
    }

    /// Fuzz target: a scheme string, a history and a logits row from arbitrary bytes.
    /// Must never panic; an error must leave the row unchanged.
    pub fn fuzz_process(data: &[u8]) {
        let Some((&split, rest)) = data.split_first() else {
            return;
        };
        let (cfg, rest) = rest.split_at((split as usize).min(rest.len()));
        let Ok(cfg) = core::str::from_utf8(cfg) else {
            return;
        };
        let Ok(config) = cfg.parse::<SchemeConfig>() else {
            return;
        };
        let (hist, floats) = rest.split_at(rest.len().min(16));
        let history: Vec<u32> = hist.iter().map(|&b| u32::from(b % 64)).collect();
        let row: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let Ok(scheme) = config.build(&Key::from_bytes([9; 32]), row.len().max(1)) else {
            return;
        };
        let mut processed = row.clone();
        if scheme.process(&history, &mut processed).is_err() {
            assert!(processed.iter().zip(&row).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
