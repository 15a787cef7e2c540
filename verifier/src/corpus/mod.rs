//! Corpora and attribution: scans of many documents with one aggregate test
//! deduplicated across them ([`Scanner`], split across machines in
//! [`distributed`]), the radioactivity test of a student model's outputs
//! ([`reading_mode`]), the probability test of an API's log-probabilities
//! ([`probability_test`]), and attribution to keys: a keyring of cohorts
//! ([`KeyringDetector`]), accounts derived from a master key ([`accounts`]),
//! and Holm's correction over the keys tested ([`attribute`]).

pub mod accounts;
pub mod distributed;
mod keyring;
mod logprobs;
mod radioactivity;
mod scan;

pub use keyring::{KeyResult, KeyTest, Keyring, KeyringDetection, KeyringDetector};
pub use logprobs::{probability_test, LogprobDoc};
pub use radioactivity::{attribute, reading_mode, Attribution, ReadingDoc};
pub use scan::{context_keys, scan_path, ContextFilter, DocResult, Document, ScanSummary, Scanner};
