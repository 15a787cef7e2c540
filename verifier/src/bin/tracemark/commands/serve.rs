//! `serve`: the HTTP detection service.

use clap::Args;

use crate::exit::{Exit, Failure};

/// What `serve` takes.
#[derive(Args)]
pub(crate) struct ServeArgs {}

/// Runs `serve`.
pub(crate) fn run(_a: ServeArgs) -> Result<Exit, Failure> {
    Err(Failure::Usage("the service is not built yet".into()))
}
