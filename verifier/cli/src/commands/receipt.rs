//! `receipt`: signing keys, signing and verifying provenance receipts.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tracemark_core::{KeyId, SchemeConfig};
use tracemark_verifier::receipt::{
    verify, Provenance, Receipt, ReceiptCheck, SignatureCheck, SigningKey, TextCheck, Timestamp, VerifyingKey,
    WatermarkCheck, WatermarkTest,
};
use tracemark_verifier::{DetectOptions, Error, TextTokenizer, Verdict};

use super::print_json;
use crate::exit::{Exit, Failure};
use crate::input::load_key;

/// The receipt commands.
#[derive(Subcommand)]
pub(crate) enum ReceiptCommand {
    /// Generate a new Ed25519 signing key (its own file and id, separate from watermark keys)
    ///
    /// Writes the secret key to --out (mode 0600) and its public key to --out with `.pub`
    /// appended (give that one to verifiers); never overwrites; prints the signer id.
    Keygen {
        /// Where to write the signing key file
        #[arg(long)]
        out: PathBuf,
    },
    /// Print (or write) the public verifying key of a signing key
    Public {
        /// Signing key file
        #[arg(long)]
        signing_key: PathBuf,
        /// Write the verifying key file here (never overwrites) instead of printing it
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a receipt for a text, as returned by the model
    Sign(SignArgs),
    /// Check a text against a receipt: receipt valid, text matches, watermark present
    Verify(VerifyArgs),
}

#[derive(Args)]
pub(crate) struct SignArgs {
    /// Signing key file (tracemark receipt keygen)
    #[arg(long)]
    signing_key: PathBuf,
    /// The text, exactly as returned (- for standard input)
    #[arg(long)]
    text: PathBuf,
    /// The model that wrote it
    #[arg(long)]
    model: String,
    /// The watermark's scheme, e.g. kgw:gamma=0.25,delta=2,context=lefthash:1 (with --key-id)
    #[arg(long, requires = "key_id")]
    scheme: Option<SchemeConfig>,
    /// The public id of the watermark key used (the derived key's, for a labelled request)
    #[arg(long, requires = "scheme")]
    key_id: Option<KeyId>,
    /// The account or cohort label of the request
    #[arg(long)]
    label: Option<String>,
    /// The time of generation, RFC 3339 UTC (default: now), e.g. 2026-12-01T09:30:00Z
    #[arg(long)]
    created: Option<String>,
    /// Write the receipt here instead of standard output
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The receipt (JSON)
    #[arg(long)]
    receipt: PathBuf,
    /// The text to check (- for standard input)
    #[arg(long)]
    text: PathBuf,
    /// A verifying key file of a signer you trust (the .pub of receipt keygen); repeat for several
    #[arg(long, required = true)]
    trust: Vec<PathBuf>,
    /// Also test the watermark with this key (or the master key the receipt's label was derived from)
    #[arg(long, requires = "tokenizer")]
    key: Option<PathBuf>,
    /// Scheme to test (default: the receipt's)
    #[arg(long, requires = "key")]
    scheme: Option<SchemeConfig>,
    /// tokenizer.json of the model (with --key)
    #[arg(long, requires = "key")]
    tokenizer: Option<PathBuf>,
    /// Print the checks as JSON
    #[arg(long)]
    json: bool,
}

/// Runs a receipt command.
pub(crate) fn run(c: ReceiptCommand) -> Result<Exit, Failure> {
    match c {
        ReceiptCommand::Keygen { out } => keygen(&out),
        ReceiptCommand::Public { signing_key, out } => public(&signing_key, out.as_deref()),
        ReceiptCommand::Sign(a) => sign(&a),
        ReceiptCommand::Verify(a) => verify_text(&a),
    }
}

/// A signing or verifying key file that cannot be used is a key error, whatever went wrong.
fn key_failure(error: Error) -> Failure {
    Failure::ReceiptKey(error)
}

fn public_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn keygen(out: &Path) -> Result<Exit, Failure> {
    let public = public_path(out);
    // Refuse before writing anything, so that a failure leaves no half pair behind.
    for path in [out, public.as_path()] {
        if path.exists() {
            return Err(key_failure(Error::Core(tracemark_core::Error::KeyFileExists {
                path: path.display().to_string(),
            })));
        }
    }
    let key = SigningKey::generate().map_err(key_failure)?;
    key.save(out).map_err(key_failure)?;
    key.verifying_key().save(&public).map_err(key_failure)?;
    println!("{}", key.id());
    Ok(Exit::Success)
}

fn public(signing_key: &Path, out: Option<&Path>) -> Result<Exit, Failure> {
    let public = SigningKey::load(signing_key).map_err(key_failure)?.verifying_key();
    match out {
        Some(path) => {
            public.save(path).map_err(key_failure)?;
            println!("{}", public.id());
        }
        None => print!("{}", public.to_file_string()),
    }
    Ok(Exit::Success)
}

fn read_text(path: &Path) -> Result<String, Failure> {
    crate::input::read_text(path, "--text")
}

fn sign(a: &SignArgs) -> Result<Exit, Failure> {
    let key = SigningKey::load(&a.signing_key).map_err(key_failure)?;
    let text = read_text(&a.text)?;
    let usage = |e: Error| Failure::Usage(e.to_string());
    let mut provenance = Provenance::new(&a.model).map_err(usage)?;
    if let Some(created) = &a.created {
        provenance = provenance.created(created.parse::<Timestamp>().map_err(usage)?);
    }
    if let (Some(scheme), Some(key_id)) = (&a.scheme, a.key_id) {
        provenance = provenance.watermark(scheme.clone(), key_id);
    }
    if let Some(label) = &a.label {
        provenance = provenance.label(label).map_err(usage)?;
    }
    let receipt = Receipt::sign(&key, &text, &provenance)?;
    let json = receipt.to_json_pretty() + "\n";
    match &a.out {
        Some(path) => std::fs::write(path, json).map_err(|error| Failure::Write {
            target: path.display().to_string(),
            error,
        })?,
        None => print!("{json}"),
    }
    Ok(Exit::Success)
}

fn verify_text(a: &VerifyArgs) -> Result<Exit, Failure> {
    let receipt_json = crate::input::read_text(&a.receipt, "--receipt")?;
    let receipt = Receipt::from_json(&receipt_json).map_err(|e| Failure::Malformed {
        source: a.receipt.display().to_string(),
        message: e.to_string(),
    })?;
    let trusted = a
        .trust
        .iter()
        .map(|p| VerifyingKey::load(p).map_err(key_failure))
        .collect::<Result<Vec<_>, _>>()?;
    let text = read_text(&a.text)?;
    let key = a.key.as_deref().map(load_key).transpose()?;
    let tokenizer = a.tokenizer.as_ref().map(TextTokenizer::from_file).transpose()?;
    let test = match (&key, &tokenizer) {
        (Some(key), Some(tokenizer)) => Some(WatermarkTest {
            key,
            scheme: a.scheme.as_ref(),
            tokenizer,
            options: DetectOptions::default(),
        }),
        _ => None,
    };
    let check = verify(&receipt, &text, &trusted, test.as_ref())?;
    if a.json {
        print_json(&serde_json::json!({
            "holds": check.holds(),
            "check": check,
            "receipt": receipt,
        }))?;
    } else {
        print!("{}", describe(&receipt, &check));
    }
    Ok(exit(&check))
}

/// The exit code of a check: the receipt's failure first, then the watermark's verdict.
fn exit(check: &ReceiptCheck) -> Exit {
    if !matches!(check.signature, SignatureCheck::Valid { .. }) || check.text == TextCheck::Mismatch {
        return Exit::ReceiptInvalid;
    }
    match &check.watermark {
        WatermarkCheck::Checked { verdict, .. } => Exit::from(*verdict),
        _ => Exit::Success,
    }
}

/// The checks for people.
fn describe(receipt: &Receipt, check: &ReceiptCheck) -> String {
    let signature = match &check.signature {
        SignatureCheck::Valid { signer } => format!("yes: signed by {signer}, a signer you trust"),
        SignatureCheck::UntrustedSigner { signer } => format!(
            "NO: signed by {signer}, a key you did not trust (--trust); \
             the signature holds only under the receipt's own public key"
        ),
        SignatureCheck::Invalid { trusted_signer, signer } => format!(
            "NO: the signature does not match the receipt's contents: the receipt was altered after signing \
             (it names {signer}{})",
            if *trusted_signer {
                ", a signer you trust"
            } else {
                ", not a signer you trust"
            }
        ),
        _ => "NO: an outcome this build does not know".to_string(),
    };
    let text = match check.text {
        TextCheck::Exact => "yes: exactly the text signed".to_string(),
        TextCheck::CanonicalOnly => "yes, in canonical form only: the text was changed after signing by invisible \
                                     characters, whitespace, compatibility forms or look-alike letters"
            .to_string(),
        TextCheck::Mismatch => "NO: neither the text nor its canonical form is the one signed".to_string(),
        _ => "NO: an outcome this build does not know".to_string(),
    };
    let watermark = match &check.watermark {
        WatermarkCheck::NotChecked => "not checked (give --key and --tokenizer to test it)".to_string(),
        WatermarkCheck::Checked {
            verdict,
            log10_p,
            scheme,
            key_id,
            as_receipt_states,
        } => {
            let answer = match verdict {
                Verdict::Detected => "yes",
                Verdict::NotDetected => match log10_p.map(tracemark_verifier::Strength::of_p_value) {
                    Some(s) if s >= tracemark_verifier::Strength::Weak => {
                        "NO: not detected at the level fixed before the test, though the text shows a signal"
                    }
                    _ => "NO: not detected",
                },
                _ => "INCONCLUSIVE: too few tokens could be scored",
            };
            let p = log10_p.map_or(String::new(), |l| format!(", p = 10^{l:.1}"));
            let stated = if *as_receipt_states {
                "the key and scheme the receipt states"
            } else {
                "NOT the key and scheme the receipt states"
            };
            format!("{answer} (key {key_id}, {scheme}{p}; {stated})")
        }
        _ => "not checked".to_string(),
    };
    let mut out = String::new();
    out.push_str(&format!("receipt valid:     {signature}\n"));
    out.push_str(&format!("text matches:      {text}\n"));
    out.push_str(&format!("watermark present: {watermark}\n"));
    out.push_str(&format!(
        "\nThe receipt states: model {}, created {}",
        receipt.model(),
        receipt.created()
    ));
    if let Some(label) = receipt.label() {
        out.push_str(&format!(", label {label}"));
    }
    match receipt.watermark() {
        Some(w) => out.push_str(&format!(", watermark {} with key {}", w.scheme, w.key_id)),
        None => out.push_str(", no watermark"),
    }
    out.push_str(&format!("; text {}\n", receipt.text_sha256()));
    out.push_str(if check.holds() {
        "\nRECEIPT HOLDS: every check above passed.\n"
    } else {
        "\nRECEIPT DOES NOT HOLD: see the checks above.\n"
    });
    out
}
