//! How `tracemark` ends: its exit codes, and the one mapping from verdicts and
//! failures to them. The table in `docs/verifier.md` is this enum, row for
//! row (checked by the tests below).

use core::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use tracemark_verifier::{Error, Verdict};

/// An exit code of `tracemark`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `detect`, `radioactivity`: watermark detected; every other command: it succeeded.
    Success = 0,
    /// `detect`, `radioactivity`, `receipt verify --key`: no watermark detected.
    NotDetected = 1,
    /// A bad command line or option value.
    Usage = 2,
    /// `detect`, `radioactivity`, `receipt verify --key`: too few tokens could be scored to test.
    Inconclusive = 3,
    /// Input that cannot be used, or output that cannot be written.
    Input = 4,
    /// A key file that cannot be used or written.
    Key = 5,
    /// `receipt verify`: the receipt does not hold (bad signature, untrusted signer, another text).
    ReceiptInvalid = 6,
}

impl Exit {
    /// Every exit code, in order.
    pub(crate) const ALL: [Exit; 7] = [
        Exit::Success,
        Exit::NotDetected,
        Exit::Usage,
        Exit::Inconclusive,
        Exit::Input,
        Exit::Key,
        Exit::ReceiptInvalid,
    ];

    /// The number the process exits with.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, as the table in `docs/verifier.md` says it.
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "detected (or: the command succeeded)",
            Exit::NotDetected => "not detected",
            Exit::Usage => "usage error (bad command line or option value)",
            Exit::Inconclusive => "inconclusive (too few tokens could be scored)",
            Exit::Input => {
                "input error (unreadable, invalid UTF-8, ids outside the vocabulary, bad corpus; \
                 results that cannot be written)"
            }
            Exit::Key => {
                "key error (missing, unreadable, corrupted key file, or a key file of another kind; \
                 refusing to overwrite)"
            }
            Exit::ReceiptInvalid => {
                "receipt does not hold (signature invalid, signer not trusted, or the text is not the one signed)"
            }
        }
    }

    /// The short name `--help` lists.
    fn short(self) -> &'static str {
        match self {
            Exit::Success => "detected/success",
            Exit::NotDetected => "not detected",
            Exit::Usage => "usage",
            Exit::Inconclusive => "inconclusive",
            Exit::Input => "input error",
            Exit::Key => "key error",
            Exit::ReceiptInvalid => "receipt does not hold",
        }
    }

    /// The exit codes in one line, for `-h`.
    pub(crate) fn summary() -> String {
        let codes: Vec<String> = Exit::ALL
            .iter()
            .map(|e| format!("{} {}", e.code(), e.short()))
            .collect();
        format!("Exit codes: {}", codes.join(", "))
    }

    /// The exit codes with their meanings, one per line, for `--help`.
    pub(crate) fn table() -> String {
        let rows: Vec<String> = Exit::ALL
            .iter()
            .map(|e| format!("  {}  {}", e.code(), e.meaning()))
            .collect();
        format!("Exit codes:\n{}", rows.join("\n"))
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

impl From<Verdict> for Exit {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Detected => Exit::Success,
            Verdict::NotDetected => Exit::NotDetected,
            Verdict::Inconclusive => Exit::Inconclusive,
            // A verdict this build does not know claims neither answer.
            _ => Exit::Inconclusive,
        }
    }
}

/// Why a command failed; its exit code is `Exit::from(&failure)`.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A command line that parses but does not make sense.
    Usage(String),
    /// A key file could not be read, parsed, derived from or written.
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        error: tracemark_core::Error,
    },
    /// An input could not be read.
    Read {
        /// The input, in words (`standard input` or a path).
        source: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// An output could not be written.
    Write {
        /// The output, in words.
        target: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// An input is not what its option says (token ids, reading-mode lines).
    Malformed {
        /// The input and where in it, in words.
        source: String,
        /// What was wrong.
        message: String,
    },
    /// An input is not UTF-8 text and looks like something else (a PDF, a
    /// Word document, Windows-1252 text).
    NotText {
        /// The option and the input, in words.
        source: String,
        /// What it looks like.
        what: &'static str,
        /// Bytes before the first invalid UTF-8 sequence.
        offset: usize,
        /// What to do.
        advice: &'static str,
    },
    /// A line of a prompts file (`radioactivity --api`) is not a request.
    BadPrompts {
        /// The file and the line, in words.
        source: String,
        /// What was wrong.
        message: String,
    },
    /// A suspect's API did not answer, or refused (`radioactivity --api`).
    Api {
        /// What happened (never the bearer token).
        message: String,
    },
    /// A receipt signing or verifying key file could not be read, parsed or written.
    ReceiptKey(Error),
    /// The verifier refused or failed.
    Verifier(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Verifier(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) => f.write_str(message),
            Failure::Key {
                path,
                error: error @ tracemark_core::Error::Io { .. },
            } => write!(f, "cannot read key file {}: {error}", path.display()),
            Failure::Key { error, .. } => error.fmt(f),
            Failure::Read { source, error } => write!(f, "{source}: {error}"),
            Failure::Write { target, error } => write!(f, "{target}: {error}"),
            Failure::Malformed { source, message } => write!(f, "{source}: {message}"),
            Failure::BadPrompts { source, message } => write!(f, "{source}: {message}"),
            Failure::Api { message } => f.write_str(message),
            Failure::NotText {
                source, what, offset, ..
            } => write!(
                f,
                "{source} is {what}, not UTF-8 text (first invalid byte at offset {offset})"
            ),
            Failure::ReceiptKey(e) | Failure::Verifier(e) => e.fmt(f),
        }
    }
}

impl From<&Failure> for Exit {
    fn from(f: &Failure) -> Self {
        match f {
            Failure::Usage(_) => Exit::Usage,
            Failure::Key { .. } | Failure::ReceiptKey(_) => Exit::Key,
            Failure::Read { .. }
            | Failure::Write { .. }
            | Failure::Malformed { .. }
            | Failure::NotText { .. }
            | Failure::BadPrompts { .. }
            | Failure::Api { .. } => Exit::Input,
            Failure::Verifier(e) => Exit::from(e),
        }
    }
}

impl From<&Error> for Exit {
    fn from(e: &Error) -> Self {
        match e {
            Error::Core(c) => Exit::from(c),
            Error::EmptyInput
            | Error::InvalidUtf8 { .. }
            | Error::WrongTokenizer { .. }
            | Error::Tokenizer { .. }
            | Error::Io { .. }
            | Error::BadDocument { .. }
            | Error::UncutRun { .. } => Exit::Input,
            Error::UnsupportedScheme { .. } | Error::InvalidOption { .. } => Exit::Usage,
            Error::WrongKeyFile { .. } | Error::InvalidKeyFile { .. } | Error::InvalidManifest { .. } => Exit::Key,
            Error::MalformedReceipt { .. } => Exit::Input,
            // An error this build does not know: blame the input, never claim a verdict.
            _ => Exit::Input,
        }
    }
}

impl From<&tracemark_core::Error> for Exit {
    fn from(e: &tracemark_core::Error) -> Self {
        use tracemark_core::Error as E;
        match e {
            E::InvalidKey { .. } | E::InvalidLabel { .. } | E::KeyFileExists { .. } | E::Rng { .. } => Exit::Key,
            E::InvalidParameter { .. } => Exit::Usage,
            E::TokenOutOfRange { .. } | E::Io { .. } => Exit::Input,
            // Logits-processing errors (not reachable from this tool) and
            // errors this build does not know: blame the input.
            _ => Exit::Input,
        }
    }
}

/// `Exit::from(&clap::Error)`: `--help` and `--version` succeed, anything else is a usage error.
impl From<&clap::Error> for Exit {
    fn from(e: &clap::Error) -> Self {
        if e.use_stderr() {
            Exit::Usage
        } else {
            Exit::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit-code table of docs/verifier.md: `(code, meaning)` per row.
    fn docs_table() -> Vec<(u8, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/verifier.md");
        let docs = std::fs::read_to_string(path).expect("docs/verifier.md");
        let mut lines = docs.lines().skip_while(|l| !l.starts_with("| exit code |")).skip(2);
        let mut rows = Vec::new();
        for line in lines.by_ref().take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 2, "{line}");
            rows.push((cells[0].parse().expect("a code"), cells[1].to_string()));
        }
        rows
    }

    #[test]
    fn the_documented_table_is_this_enum() {
        let ours: Vec<(u8, String)> = Exit::ALL.iter().map(|e| (e.code(), e.meaning().to_string())).collect();
        assert_eq!(docs_table(), ours);
        // Codes are distinct and dense from 0.
        for (i, e) in Exit::ALL.iter().enumerate() {
            assert_eq!(usize::from(e.code()), i);
        }
        assert_eq!(
            Exit::summary(),
            "Exit codes: 0 detected/success, 1 not detected, 2 usage, 3 inconclusive, 4 input error, 5 key error, \
             6 receipt does not hold"
        );
    }

    #[test]
    fn verdicts_and_failures_map_to_their_codes() {
        use tracemark_core::Error as C;
        use tracemark_verifier::receipt::KeyFileKind;
        let core = |e: C| Failure::Verifier(Error::Core(e));
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let cases: Vec<(Failure, Exit)> = vec![
            (Failure::Usage("x".into()), Exit::Usage),
            (
                Failure::Key {
                    path: "k".into(),
                    error: C::Io {
                        path: "k".into(),
                        kind: std::io::ErrorKind::NotFound,
                        message: "gone".into(),
                    },
                },
                Exit::Key,
            ),
            (
                Failure::Read {
                    source: "x".into(),
                    error: io(),
                },
                Exit::Input,
            ),
            (
                Failure::Write {
                    target: "x".into(),
                    error: io(),
                },
                Exit::Input,
            ),
            (
                Failure::Malformed {
                    source: "x".into(),
                    message: "x".into(),
                },
                Exit::Input,
            ),
            (
                Failure::BadPrompts {
                    source: "x".into(),
                    message: "x".into(),
                },
                Exit::Input,
            ),
            (Failure::Api { message: "x".into() }, Exit::Input),
            (Failure::Verifier(Error::EmptyInput), Exit::Input),
            (
                Failure::Verifier(Error::InvalidUtf8 {
                    source: "x".into(),
                    valid_up_to: 0,
                }),
                Exit::Input,
            ),
            (
                Failure::Verifier(Error::WrongTokenizer {
                    token: 9,
                    position: 0,
                    vocab_size: 1,
                }),
                Exit::Input,
            ),
            (Failure::Verifier(Error::Tokenizer { message: "x".into() }), Exit::Input),
            (
                Failure::Verifier(Error::io("x", std::io::Error::other("x"))),
                Exit::Input,
            ),
            (
                Failure::Verifier(Error::BadDocument {
                    line: 1,
                    message: "x".into(),
                }),
                Exit::Input,
            ),
            (
                Failure::Verifier(Error::UnsupportedScheme {
                    scheme: "x".into(),
                    reason: "x".into(),
                }),
                Exit::Usage,
            ),
            (
                Failure::Verifier(Error::InvalidOption {
                    name: "alpha",
                    message: "x".into(),
                }),
                Exit::Usage,
            ),
            (core(C::InvalidKey { reason: "x".into() }), Exit::Key),
            (
                Failure::ReceiptKey(Error::io("x", std::io::Error::other("x"))),
                Exit::Key,
            ),
            (
                Failure::Verifier(Error::WrongKeyFile {
                    path: "x".into(),
                    expected: KeyFileKind::Signing,
                    found: KeyFileKind::Watermark,
                }),
                Exit::Key,
            ),
            (
                Failure::Verifier(Error::InvalidKeyFile {
                    path: "x".into(),
                    kind: KeyFileKind::Verifying,
                    reason: "x".into(),
                }),
                Exit::Key,
            ),
            (
                Failure::Verifier(Error::MalformedReceipt { reason: "x".into() }),
                Exit::Input,
            ),
            (
                core(C::InvalidLabel {
                    label: "x".into(),
                    reason: "x",
                }),
                Exit::Key,
            ),
            (core(C::KeyFileExists { path: "x".into() }), Exit::Key),
            (core(C::Rng { message: "x".into() }), Exit::Key),
            (
                core(C::InvalidParameter {
                    name: "gamma",
                    value: "2".into(),
                    expected: "(0, 1)",
                }),
                Exit::Usage,
            ),
            (
                core(C::TokenOutOfRange {
                    token: 9,
                    vocab_size: 1,
                }),
                Exit::Input,
            ),
        ];
        for (failure, exit) in &cases {
            assert_eq!(Exit::from(failure), *exit, "{failure:?}");
        }
        assert_eq!(Exit::from(Verdict::Detected), Exit::Success);
        assert_eq!(Exit::from(Verdict::NotDetected), Exit::NotDetected);
        assert_eq!(Exit::from(Verdict::Inconclusive), Exit::Inconclusive);
        // Command lines clap refuses are usage errors; --help and --version succeed.
        use clap::Parser as _;
        let clap_exit = |args: &[&str]| match crate::commands::Cli::try_parse_from(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => Exit::from(&e),
        };
        assert_eq!(clap_exit(&["tracemark", "--bogus"]), Exit::Usage);
        assert_eq!(
            clap_exit(&["tracemark", "detect", "--scheme", "kgw:gamma=2"]),
            Exit::Usage
        );
        assert_eq!(clap_exit(&["tracemark", "--help"]), Exit::Success);
        assert_eq!(clap_exit(&["tracemark", "--version"]), Exit::Success);
    }
}
