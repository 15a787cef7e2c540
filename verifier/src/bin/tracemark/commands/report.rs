//! `report`: a self-contained HTML report and its JSON.

use clap::Args;

use crate::exit::{Exit, Failure};

/// What `report` takes.
#[derive(Args)]
pub(crate) struct ReportArgs {}

/// Runs `report`.
pub(crate) fn run(_a: ReportArgs) -> Result<Exit, Failure> {
    Err(Failure::Usage("reports are not built yet".into()))
}
