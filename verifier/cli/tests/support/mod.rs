//! The verifier's test helpers, shared with the command's tests.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../tests/support/mod.rs"]
mod verifier_support;

pub mod server;

pub use verifier_support::*;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `tracemark` binary of this build with `args`.
pub fn tracemark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracemark"))
        .args(args)
        .output()
        .expect("runs")
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
