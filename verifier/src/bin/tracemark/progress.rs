//! The progress spinner of corpus scans, on standard error when it is a terminal.

use std::io::IsTerminal;
use std::path::Path;

use tracemark_verifier::{scan_path, DocResult, ScanSummary, Scanner};

/// [`scan_path`], counting documents on a spinner while it runs.
pub(crate) fn scan(
    scanner: &Scanner<'_>,
    corpus: &Path,
    mut on_doc: impl FnMut(&DocResult),
) -> tracemark_verifier::Result<ScanSummary> {
    let spinner = Spinner::documents();
    scan_path(scanner, corpus, |doc| {
        spinner.inc();
        on_doc(doc);
    })
}

/// A spinner, or nothing when standard error is not a terminal; cleared when dropped.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn documents() -> Self {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} documents ({per_sec}) {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Spinner(Some(pb))
    }

    fn inc(&self) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
