//! `receipt`: signing keys, signing and verifying provenance receipts.

use clap::Subcommand;

use crate::exit::{Exit, Failure};

/// The receipt commands.
#[derive(Subcommand)]
pub(crate) enum ReceiptCommand {
    /// Generate a new Ed25519 signing key (its own file and id, separate from watermark keys)
    Keygen,
}

/// Runs a receipt command.
pub(crate) fn run(c: ReceiptCommand) -> Result<Exit, Failure> {
    match c {
        ReceiptCommand::Keygen => Err(Failure::Usage("receipts are not built yet".into())),
    }
}
