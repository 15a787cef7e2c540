//! Corpora and attribution: scans of many documents with one aggregate test
//! deduplicated across them ([`Scanner`], split across machines in
//! [`distributed`]), the radioactivity test of a student model's outputs
//! ([`reading_mode`]), the probability test of an API's log-probabilities
//! ([`probability_test`]), and attribution to keys: a keyring of cohorts
//! ([`KeyringDetector`]), accounts derived from a master key ([`accounts`]),
//! and Holm's correction over the keys tested ([`attribute`]); all three are
//! views of one attribution over a [`KeySet`] ([`attribute_keys`],
//! [`KeyAttribution`]).

pub mod accounts;
mod attribution;
pub mod distributed;
mod keyring;
mod logprobs;
mod radioactivity;
mod scan;

pub use attribution::{attribute_keys, AttributedKey, KeyAttribution, KeyOutcome, KeySet};
pub use keyring::{KeyResult, KeyTest, Keyring, KeyringDetection, KeyringDetector};
pub use logprobs::{probability_test, LogprobDoc};
pub use radioactivity::{attribute, reading_mode, Attribution, ReadingDoc};
pub use scan::{context_keys, scan_path, ContextFilter, DocResult, Document, ScanSummary, Scanner};
