//! The verifier's test helpers, shared with the command's tests.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../tests/support/mod.rs"]
mod verifier_support;

pub use verifier_support::*;
