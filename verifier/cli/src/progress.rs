//! Progress on standard error for long commands: a bar with ETA over the
//! bytes of a corpus file (a spinner for standard input), shown only when
//! standard error is a terminal and `--quiet` is not given.

use std::io::{BufReader, IsTerminal, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tracemark_verifier::{scan_path, DocResult, Error, ScanSummary, Scanner};

/// `--quiet`: no progress and no notes on standard error (errors still go there).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns progress and notes off.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether progress and notes are off.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A note for people on standard error (not with `--quiet`).
pub(crate) fn note(message: &str) {
    if !quiet() {
        eprintln!("tracemark: {message}");
    }
}

fn shown() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// [`scan_path`], with a bar over the corpus's bytes (ETA) and a document count.
pub(crate) fn scan(
    scanner: &Scanner<'_>,
    corpus: &Path,
    mut on_doc: impl FnMut(&DocResult),
) -> tracemark_verifier::Result<ScanSummary> {
    let size = (corpus.as_os_str() != "-")
        .then(|| std::fs::metadata(corpus).ok().map(|m| m.len()))
        .flatten();
    let (Some(size), true) = (size, shown()) else {
        let bar = Bar::spinner();
        return scan_path(scanner, corpus, |doc| {
            bar.doc();
            on_doc(doc);
        });
    };
    let bar = Bar::bytes(size);
    let file = std::fs::File::open(corpus).map_err(|e| Error::io(corpus, e))?;
    let reader = BufReader::with_capacity(1 << 16, Counting { inner: file, bar: &bar });
    scanner.scan(reader, |doc| {
        bar.doc();
        on_doc(doc);
    })
}

/// A reader that moves the bar by the bytes it reads.
struct Counting<'a, R> {
    inner: R,
    bar: &'a Bar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.bytes_read(n as u64);
        Ok(n)
    }
}

/// A progress bar or spinner, or nothing; cleared when dropped.
struct Bar {
    pb: Option<indicatif::ProgressBar>,
    docs: std::sync::atomic::AtomicU64,
}

impl Bar {
    fn bytes(total: u64) -> Self {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {percent:>3}% {bytes}/{total_bytes} ({bytes_per_sec}), {msg}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_message("0 documents");
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        Bar {
            pb: Some(pb),
            docs: 0.into(),
        }
    }

    fn spinner() -> Self {
        if !shown() {
            return Bar {
                pb: None,
                docs: 0.into(),
            };
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} documents ({per_sec}) {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Bar {
            pb: Some(pb),
            docs: 0.into(),
        }
    }

    fn bytes_read(&self, n: u64) {
        if let Some(pb) = &self.pb {
            pb.inc(n);
        }
    }

    fn doc(&self) {
        let docs = self.docs.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(pb) = &self.pb {
            if pb.length().is_some() {
                if docs.is_multiple_of(64) {
                    pb.set_message(format!("{docs} documents"));
                }
            } else {
                pb.inc(1);
            }
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
    }
}
