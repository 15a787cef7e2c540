//! Signed provenance receipts (Ed25519): the metadata layer beside the watermark.
//!
//! At generation, an integration signs a [`Receipt`]: the SHA-256 of the
//! returned text and of its canonical form ([`canonicalize`]), the model,
//! the time, the watermark's scheme and key id (public), and the account or
//! cohort label, signed with an Ed25519 [`SigningKey`]. Later, [`verify`]
//! checks a text against a receipt and says separately whether the receipt is
//! valid (and by which trusted signer), whether the text matches it, and,
//! when asked, whether the watermark is present.
//!
//! Signing keys are not watermark keys: they have their own file format
//! (`tracemark-signing-key-v1`), their own public half ([`VerifyingKey`],
//! `tracemark-verifying-key-v1`, shippable to verifiers) and their own ids
//! (`ed25519:<32 hex>`). A watermark key file given as a signing key is
//! refused ([`Error::WrongKeyFile`]), and so is the reverse. SPEC §12 fixes
//! the formats and the signed bytes.
//!
//! ```
//! use tracemark_verifier::receipt::{verify, Provenance, Receipt, SignatureCheck, SigningKey, TextCheck};
//!
//! let signer = SigningKey::generate()?;
//! let text = "The answer the model returned.";
//! let receipt = Receipt::sign(&signer, text, &Provenance::new("smollm2-135m")?)?;
//! let json = receipt.to_json();
//!
//! // A verifier holds only the public key.
//! let trusted = [signer.verifying_key()];
//! let receipt = Receipt::from_json(&json)?;
//! let check = verify(&receipt, text, &trusted, None)?;
//! assert!(matches!(check.signature, SignatureCheck::Valid { .. }));
//! assert_eq!(check.text, TextCheck::Exact);
//! assert!(check.holds());
//!
//! // Another text does not match; another signer is not trusted.
//! assert_eq!(verify(&receipt, "Another text.", &trusted, None)?.text, TextCheck::Mismatch);
//! let other = [SigningKey::generate()?.verifying_key()];
//! assert!(matches!(verify(&receipt, text, &other, None)?.signature, SignatureCheck::UntrustedSigner { .. }));
//! # Ok::<(), tracemark_verifier::Error>(())
//! ```

use core::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracemark_core::internal::{self, decode_hex, push_hex};
use tracemark_core::{Key, KeyId, SchemeConfig};
use zeroize::Zeroizing;

use crate::detect::{DetectOptions, Detector, Verdict};
pub use crate::error::KeyFileKind;
use crate::error::{Error, Result, SIGNING_KEY_MAGIC, VERIFYING_KEY_MAGIC};
use crate::text::canonical::canonicalize;
use crate::text::{sha256_hex, TextTokenizer};

/// The format tag of a receipt (its `format` field, and the first signed field).
pub const RECEIPT_FORMAT: &str = "tracemark-receipt-v1";
/// Domain separation: the first field of the signed message (SPEC §12.3).
const SIGNING_CONTEXT: &str = "tracemark/v1/receipt";
const SIGNING_KEY_CHECK_LABEL: &[u8] = b"tracemark/v1/signing-key-file-check";
/// A key file is one short line; anything longer is not a key file.
const KEY_FILE_MAX_LEN: u64 = 256;
/// Longest model name, in bytes.
const MAX_MODEL_LEN: usize = 256;
/// Longest label, in bytes (the derivation labels of SPEC §2.4).
const MAX_LABEL_LEN: usize = tracemark_core::MAX_LABEL_LEN;

/// The public id of a receipt signer: `ed25519:` and 32 lowercase hex digits,
/// the first 16 bytes of SHA-256 of the 32-byte public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignerId([u8; 16]);

impl SignerId {
    /// The prefix of every signer id.
    pub const PREFIX: &'static str = "ed25519:";

    fn of(public: &ed25519_dalek::VerifyingKey) -> Self {
        let digest = Sha256::digest(public.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for SignerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex(&self.0))
    }
}

impl fmt::Debug for SignerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerId({self})")
    }
}

impl core::str::FromStr for SignerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut id = [0u8; 16];
        match s.strip_prefix(Self::PREFIX) {
            Some(h) if decode_lower_hex(h, &mut id) => Ok(Self(id)),
            _ => Err(malformed(format!(
                "{s:?} is not a signer id (`ed25519:` and 32 lowercase hex digits)"
            ))),
        }
    }
}

/// A signer id is written as `ed25519:<32 hex>`.
impl Serialize for SignerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A secret Ed25519 key that signs receipts. Not a watermark key.
///
/// Keys come from the OS random number generator ([`SigningKey::generate`]),
/// a signing key file ([`SigningKey::load`]) or a 32-byte seed you hold
/// ([`SigningKey::from_seed`]). The secret is wiped from memory on drop and
/// never printed: `Debug` shows only the public signer id.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| tracemark_core::Error::Rng { message: e.to_string() })?;
        Ok(Self::from_seed(&seed))
    }

    /// The key of a 32-byte Ed25519 seed (RFC 8032's secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// The 32 secret seed bytes. Handle with care: never log them.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }

    /// The public half, for verifiers.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// The public signer id.
    pub fn id(&self) -> SignerId {
        SignerId::of(&self.inner.verifying_key())
    }

    fn file_check(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(SIGNING_KEY_CHECK_LABEL);
        h.update(self.inner.as_bytes());
        let digest = h.finalize();
        [digest[0], digest[1], digest[2], digest[3]]
    }

    /// The key file contents: `tracemark-signing-key-v1:<64 hex seed>:<8 hex check>\n` (SPEC §12.1).
    pub fn to_file_string(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(112));
        s.push_str(SIGNING_KEY_MAGIC);
        s.push(':');
        push_hex(&mut s, self.inner.as_bytes());
        s.push(':');
        push_hex(&mut s, &self.file_check());
        s.push('\n');
        s
    }

    /// Parses signing key file contents (see [`SigningKey::to_file_string`]).
    ///
    /// A watermark or verifying key file is an [`Error::WrongKeyFile`]; a
    /// wrong length, a non-hex digit or a checksum that does not match is an
    /// [`Error::InvalidKeyFile`].
    pub fn from_file_str(text: &str) -> Result<Self> {
        Self::parse(text, "signing key")
    }

    fn parse(text: &str, path: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidKeyFile {
            path: path.to_string(),
            kind: KeyFileKind::Signing,
            reason: reason.to_string(),
        };
        let line = one_line(text);
        check_kind(line, KeyFileKind::Signing, path)?;
        let mut parts = line.split(':').skip(1);
        let (Some(seed_hex), Some(check), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                "expected `tracemark-signing-key-v1:<64 hex digits>:<8 hex digits>`",
            ));
        };
        let mut seed = Zeroizing::new([0u8; 32]);
        if !decode_hex(seed_hex, seed.as_mut()) {
            return Err(bad("the seed must be exactly 64 hex digits"));
        }
        let key = Self::from_seed(&seed);
        let mut want = [0u8; 4];
        if !decode_hex(check, &mut want) {
            return Err(bad("the checksum must be exactly 8 hex digits"));
        }
        if want != key.file_check() {
            return Err(bad("checksum mismatch: the key file is corrupted"));
        }
        Ok(key)
    }

    /// Writes the key to a new file with mode 0600. Refuses to overwrite.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_new(path.as_ref(), self.to_file_string().as_bytes(), 0o600)
    }

    /// Reads a signing key file written by [`SigningKey::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_key_file(path, KeyFileKind::Signing)?;
        Self::parse(&text, &path.display().to_string())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, secret redacted)", self.id())
    }
}

/// The public half of a [`SigningKey`]: what a verifier trusts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// A verifying key from its 32 bytes (RFC 8032's encoded point).
    ///
    /// Bytes that are not a point on the curve, or a point of small order
    /// (a "weak" key every signature could verify under), are an
    /// [`Error::InvalidKeyFile`].
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidKeyFile {
            path: "verifying key".to_string(),
            kind: KeyFileKind::Verifying,
            reason: reason.to_string(),
        };
        let inner = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| bad("the 32 bytes are not an Ed25519 public key"))?;
        if inner.is_weak() {
            return Err(bad("a weak (small-order) Ed25519 public key"));
        }
        Ok(Self { inner })
    }

    /// The 32 public bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }

    /// The 64 lowercase hex digits of the public key, as in receipts.
    pub fn to_hex(&self) -> String {
        hex(self.inner.as_bytes())
    }

    /// The signer id of this key.
    pub fn id(&self) -> SignerId {
        SignerId::of(&self.inner)
    }

    /// The key file contents: `tracemark-verifying-key-v1:<64 hex>\n` (SPEC §12.1).
    pub fn to_file_string(&self) -> String {
        format!("{VERIFYING_KEY_MAGIC}:{}\n", self.to_hex())
    }

    /// Parses verifying key file contents (see [`VerifyingKey::to_file_string`]).
    pub fn from_file_str(text: &str) -> Result<Self> {
        Self::parse(text, "verifying key")
    }

    fn parse(text: &str, path: &str) -> Result<Self> {
        let line = one_line(text);
        check_kind(line, KeyFileKind::Verifying, path)?;
        let mut parts = line.split(':').skip(1);
        let mut bytes = [0u8; 32];
        let ok = matches!((parts.next(), parts.next()), (Some(h), None) if decode_hex(h, &mut bytes));
        if !ok {
            return Err(Error::InvalidKeyFile {
                path: path.to_string(),
                kind: KeyFileKind::Verifying,
                reason: "expected `tracemark-verifying-key-v1:<64 hex digits>`".into(),
            });
        }
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::InvalidKeyFile { kind, reason, .. } => Error::InvalidKeyFile {
                path: path.to_string(),
                kind,
                reason,
            },
            other => other,
        })
    }

    /// Writes the public key to a new file (mode 0644). Refuses to overwrite.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_new(path.as_ref(), self.to_file_string().as_bytes(), 0o644)
    }

    /// Reads a verifying key file written by [`VerifyingKey::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_key_file(path, KeyFileKind::Verifying)?;
        Self::parse(&text, &path.display().to_string())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.id())
    }
}

/// A time, as receipts write it: RFC 3339 in UTC to the second, `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(String);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self::from_unix(secs)
    }

    /// The time `secs` seconds after 1970-01-01T00:00:00Z (until year 9999).
    pub fn from_unix(secs: u64) -> Self {
        let days = secs / 86_400;
        let rest = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        Self(format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        ))
    }

    /// The timestamp as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl core::str::FromStr for Timestamp {
    type Err = Error;
    /// Exactly `YYYY-MM-DDTHH:MM:SSZ`, a real date and time (no fractions, no offsets).
    fn from_str(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        let digits = |r: core::ops::Range<usize>| -> Option<u32> {
            let part = b.get(r)?;
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| part.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')))
        };
        let shape = b.len() == 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z';
        let fields = (
            digits(0..4),
            digits(5..7),
            digits(8..10),
            digits(11..13),
            digits(14..16),
            digits(17..19),
        );
        let valid = match fields {
            (Some(y), Some(m), Some(d), Some(hh), Some(mm), Some(ss)) if shape => {
                (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m) && hh < 24 && mm < 60 && ss < 60
            }
            _ => false,
        };
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(malformed(format!(
                "created = {s:?}: expected an RFC 3339 UTC time to the second, e.g. 2026-12-01T09:30:00Z"
            )))
        }
    }
}

/// The watermark a receipt states: the scheme and the public id of the key
/// that watermarked the text (the derived key's, when a label derived one).
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkClaim {
    /// The scheme and its parameters.
    pub scheme: SchemeConfig,
    /// The public id of the watermark key.
    pub key_id: KeyId,
}

/// What a receipt says besides the text: who made it and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    model: String,
    created: Option<Timestamp>,
    watermark: Option<WatermarkClaim>,
    label: Option<String>,
}

impl Provenance {
    /// The provenance of a text from `model` (1 to 256 bytes, no control
    /// characters), created now, with no watermark or label stated.
    pub fn new(model: &str) -> Result<Self> {
        check_model(model)?;
        Ok(Self {
            model: model.to_string(),
            created: None,
            watermark: None,
            label: None,
        })
    }

    /// States the time of creation (default: the time of signing).
    pub fn created(mut self, created: Timestamp) -> Self {
        self.created = Some(created);
        self
    }

    /// States the watermark: the scheme and the public id of the key used.
    pub fn watermark(mut self, scheme: SchemeConfig, key_id: KeyId) -> Self {
        self.watermark = Some(WatermarkClaim { scheme, key_id });
        self
    }

    /// States the account or cohort label (printable ASCII without spaces,
    /// 1 to 128 bytes, as derivation labels).
    pub fn label(mut self, label: &str) -> Result<Self> {
        check_label(label)?;
        self.label = Some(label.to_string());
        Ok(self)
    }
}

/// A signed provenance receipt (SPEC §12.2). Built by [`Receipt::sign`] or
/// read by [`Receipt::from_json`]; reading one checks its form, not its
/// signature: that is [`verify`]'s job.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    text_sha256: String,
    canonical_sha256: String,
    model: String,
    created: Timestamp,
    watermark: Option<WatermarkClaim>,
    label: Option<String>,
    signer: SignerId,
    public_key: VerifyingKey,
    signature: ed25519_dalek::Signature,
}

/// The JSON form of a receipt, field for field (SPEC §12.2).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    text_sha256: String,
    canonical_sha256: String,
    model: String,
    created: String,
    scheme: Option<String>,
    key_id: Option<String>,
    label: Option<String>,
    signer: String,
    public_key: String,
    signature: String,
}

impl Receipt {
    /// Signs a receipt for `text` (as returned to the caller, exactly).
    pub fn sign(key: &SigningKey, text: &str, provenance: &Provenance) -> Result<Self> {
        let public_key = key.verifying_key();
        let mut receipt = Self {
            text_sha256: sha256_hex(text.as_bytes()),
            canonical_sha256: sha256_hex(canonicalize(text).text().as_bytes()),
            model: provenance.model.clone(),
            created: provenance.created.clone().unwrap_or_else(Timestamp::now),
            watermark: provenance.watermark.clone(),
            label: provenance.label.clone(),
            signer: public_key.id(),
            public_key,
            signature: ed25519_dalek::Signature::from_bytes(&[0u8; 64]),
        };
        receipt.signature = key.inner.sign(&receipt.signed_message());
        Ok(receipt)
    }

    /// The bytes the signature covers (SPEC §12.3): every field but the
    /// signature, in a fixed order, each as a 4-byte big-endian length and
    /// its UTF-8 bytes, after the context string `tracemark/v1/receipt`;
    /// an absent field is the empty string.
    pub fn signed_message(&self) -> Vec<u8> {
        let scheme = self.watermark.as_ref().map(|w| w.scheme.to_string());
        let key_id = self.watermark.as_ref().map(|w| w.key_id.to_string());
        let fields: [&str; 11] = [
            SIGNING_CONTEXT,
            RECEIPT_FORMAT,
            &self.text_sha256,
            &self.canonical_sha256,
            &self.model,
            self.created.as_str(),
            scheme.as_deref().unwrap_or(""),
            key_id.as_deref().unwrap_or(""),
            self.label.as_deref().unwrap_or(""),
            &self.signer.to_string(),
            &self.public_key.to_hex(),
        ];
        let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
        for field in fields {
            // Every field is far shorter than 4 GiB: the model and label are
            // bounded, the scheme string is short, the rest are fixed-size.
            out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// The receipt as JSON, one object, fields in the order of SPEC §12.2.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(&self.wire()).unwrap_or_default()
    }

    /// The receipt as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.wire()).unwrap_or_default()
    }

    fn wire(&self) -> Wire {
        Wire {
            format: RECEIPT_FORMAT.to_string(),
            text_sha256: self.text_sha256.clone(),
            canonical_sha256: self.canonical_sha256.clone(),
            model: self.model.clone(),
            created: self.created.to_string(),
            scheme: self.watermark.as_ref().map(|w| w.scheme.to_string()),
            key_id: self.watermark.as_ref().map(|w| w.key_id.to_string()),
            label: self.label.clone(),
            signer: self.signer.to_string(),
            public_key: self.public_key.to_hex(),
            signature: hex(&self.signature.to_bytes()),
        }
    }

    /// Reads a receipt from JSON and checks its form: the format tag, every
    /// field present and well formed (hashes, time, scheme, ids, key,
    /// signature), no unknown field. Anything else is an
    /// [`Error::MalformedReceipt`]. The signature is not checked here.
    pub fn from_json(json: &str) -> Result<Self> {
        let w: Wire = serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
        if w.format != RECEIPT_FORMAT {
            return Err(malformed(format!(
                "format = {:?}: this verifier reads {RECEIPT_FORMAT}",
                w.format
            )));
        }
        check_digest("text_sha256", &w.text_sha256)?;
        check_digest("canonical_sha256", &w.canonical_sha256)?;
        check_model(&w.model)?;
        let created: Timestamp = w.created.parse()?;
        let watermark = match (w.scheme, w.key_id) {
            (None, None) => None,
            (Some(scheme), Some(key_id)) => {
                let config: SchemeConfig = scheme
                    .parse()
                    .map_err(|e| malformed(format!("scheme = {scheme:?}: {e}")))?;
                if config.to_string() != scheme {
                    return Err(malformed(format!(
                        "scheme = {scheme:?} is not in canonical form (expected {config})"
                    )));
                }
                let mut id = [0u8; 16];
                if !decode_lower_hex(&key_id, &mut id) {
                    return Err(malformed(format!(
                        "key_id = {key_id:?}: expected 32 lowercase hex digits"
                    )));
                }
                let key_id: KeyId = key_id.parse().map_err(|e| malformed(format!("key_id: {e}")))?;
                Some(WatermarkClaim { scheme: config, key_id })
            }
            _ => return Err(malformed("scheme and key_id come together: both or neither")),
        };
        if let Some(label) = &w.label {
            check_label(label)?;
        }
        let signer: SignerId = w.signer.parse()?;
        let mut pk = [0u8; 32];
        if !decode_lower_hex(&w.public_key, &mut pk) {
            return Err(malformed("public_key: expected 64 lowercase hex digits"));
        }
        let public_key = VerifyingKey::from_bytes(&pk).map_err(|e| malformed(format!("public_key: {e}")))?;
        let mut sig = [0u8; 64];
        if !decode_lower_hex(&w.signature, &mut sig) {
            return Err(malformed("signature: expected 128 lowercase hex digits"));
        }
        Ok(Self {
            text_sha256: w.text_sha256,
            canonical_sha256: w.canonical_sha256,
            model: w.model,
            created,
            watermark,
            label: w.label,
            signer,
            public_key,
            signature: ed25519_dalek::Signature::from_bytes(&sig),
        })
    }

    /// `sha256:<hex>` of the text's UTF-8 bytes, exactly as returned.
    pub fn text_sha256(&self) -> &str {
        &self.text_sha256
    }

    /// `sha256:<hex>` of the text's canonical form ([`canonicalize`]).
    pub fn canonical_sha256(&self) -> &str {
        &self.canonical_sha256
    }

    /// The model that wrote the text.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// When the receipt was made.
    pub fn created(&self) -> &Timestamp {
        &self.created
    }

    /// The watermark stated, if any.
    pub fn watermark(&self) -> Option<&WatermarkClaim> {
        self.watermark.as_ref()
    }

    /// The account or cohort label, if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The signer id the receipt names.
    pub fn signer(&self) -> SignerId {
        self.signer
    }

    /// The public key the receipt carries (trust it only if you trust its id).
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    /// The 64 signature bytes.
    pub fn signature(&self) -> [u8; 64] {
        self.signature.to_bytes()
    }
}

impl Serialize for Receipt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        self.wire().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Receipt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Self::from_json(&value.to_string()).map_err(serde::de::Error::custom)
    }
}

/// Whether a receipt's signature holds, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignatureCheck {
    /// The signature is valid, by a signer you trust.
    Valid {
        /// The signer.
        signer: SignerId,
    },
    /// The signature is valid under the public key the receipt carries, but
    /// that key is not one you trust: a receipt of another signer (or a
    /// forgery re-signed with the forger's own key).
    UntrustedSigner {
        /// The signer the receipt names.
        signer: SignerId,
    },
    /// The signature does not match the receipt's contents: the receipt was
    /// altered after signing (or the signer id does not match its public key).
    Invalid {
        /// The signer the receipt names.
        signer: SignerId,
        /// Whether that signer is one you trust.
        trusted_signer: bool,
    },
}

/// Whether a text is the one a receipt was signed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TextCheck {
    /// The text's bytes hash to the receipt's `text_sha256`.
    Exact,
    /// The text differs from the one signed, but its canonical form is the
    /// signed text's (invisible characters, whitespace, compatibility forms
    /// or look-alike letters changed; see [`canonicalize`]).
    CanonicalOnly,
    /// Neither the text nor its canonical form matches.
    Mismatch,
}

/// Whether the watermark is present, when it was tested.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WatermarkCheck {
    /// No watermark key was given: not tested.
    NotChecked,
    /// The text was tested (SPEC §10; [`Detector::detect_text`]).
    Checked {
        /// The verdict.
        verdict: Verdict,
        /// `log10` of the p-value the verdict stands on; `None` when inconclusive.
        log10_p: Option<f64>,
        /// The scheme tested.
        scheme: String,
        /// The id of the key tested.
        key_id: KeyId,
        /// Whether the scheme and key tested are the ones the receipt states.
        as_receipt_states: bool,
    },
}

/// What a watermark test of the text needs: the watermark key (the key
/// itself, or the master it was derived from with the receipt's label), the
/// tokenizer, and the scheme (default: the receipt's).
pub struct WatermarkTest<'a> {
    /// The watermark key, or its master when the receipt's label derived it.
    pub key: &'a Key,
    /// The scheme to test; `None`: the one the receipt states.
    pub scheme: Option<&'a SchemeConfig>,
    /// The model's tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Detection options.
    pub options: DetectOptions,
}

impl fmt::Debug for WatermarkTest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatermarkTest")
            .field("key_id", &self.key.id())
            .field("scheme", &self.scheme)
            .field("tokenizer", &self.tokenizer)
            .field("options", &self.options)
            .finish()
    }
}

/// The three checks of a text against a receipt.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReceiptCheck {
    /// Whether the receipt is valid, and by whom.
    pub signature: SignatureCheck,
    /// Whether the text is the one signed.
    pub text: TextCheck,
    /// Whether the watermark is present, if tested.
    pub watermark: WatermarkCheck,
}

impl ReceiptCheck {
    /// Everything that was checked holds: a valid signature by a trusted
    /// signer, the text (or its canonical form) is the one signed, and the
    /// watermark, if tested, was detected.
    pub fn holds(&self) -> bool {
        matches!(self.signature, SignatureCheck::Valid { .. })
            && self.text != TextCheck::Mismatch
            && match &self.watermark {
                WatermarkCheck::NotChecked => true,
                WatermarkCheck::Checked { verdict, .. } => *verdict == Verdict::Detected,
            }
    }
}

/// Checks `text` against `receipt`, trusting the signers of `trusted`; tests
/// the watermark too when `watermark` says how.
///
/// Errors only when the watermark test cannot run (no scheme to test, an
/// empty text, a tokenizer failure); a bad signature or another text is a
/// result, not an error.
pub fn verify(
    receipt: &Receipt,
    text: &str,
    trusted: &[VerifyingKey],
    watermark: Option<&WatermarkTest<'_>>,
) -> Result<ReceiptCheck> {
    Ok(ReceiptCheck {
        signature: check_signature(receipt, trusted),
        text: check_text(receipt, text),
        watermark: match watermark {
            None => WatermarkCheck::NotChecked,
            Some(test) => check_watermark(receipt, text, test)?,
        },
    })
}

fn check_signature(receipt: &Receipt, trusted: &[VerifyingKey]) -> SignatureCheck {
    let signer = receipt.signer;
    let trusted_key = trusted.iter().find(|k| k.id() == signer);
    let invalid = SignatureCheck::Invalid {
        signer,
        trusted_signer: trusted_key.is_some(),
    };
    if receipt.public_key.id() != signer {
        return invalid;
    }
    let message = receipt.signed_message();
    match trusted_key {
        Some(key) => {
            if key == &receipt.public_key && key.inner.verify_strict(&message, &receipt.signature).is_ok() {
                SignatureCheck::Valid { signer }
            } else {
                invalid
            }
        }
        None => {
            if receipt
                .public_key
                .inner
                .verify_strict(&message, &receipt.signature)
                .is_ok()
            {
                SignatureCheck::UntrustedSigner { signer }
            } else {
                invalid
            }
        }
    }
}

fn check_text(receipt: &Receipt, text: &str) -> TextCheck {
    if sha256_hex(text.as_bytes()) == receipt.text_sha256 {
        TextCheck::Exact
    } else if sha256_hex(canonicalize(text).text().as_bytes()) == receipt.canonical_sha256 {
        TextCheck::CanonicalOnly
    } else {
        TextCheck::Mismatch
    }
}

fn check_watermark(receipt: &Receipt, text: &str, test: &WatermarkTest<'_>) -> Result<WatermarkCheck> {
    let claim = receipt.watermark.as_ref();
    let scheme = match (test.scheme, claim) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => c.scheme.clone(),
        (None, None) => {
            return Err(Error::InvalidOption {
                name: "scheme",
                message: "the receipt states no watermark scheme: give the scheme to test".into(),
            })
        }
    };
    // The key the receipt names: the one given, or the one derived from it with the receipt's label.
    let derived = match (claim, receipt.label.as_deref()) {
        (Some(c), Some(label)) if test.key.id() != c.key_id => {
            Some(test.key.derive(label)?).filter(|k| k.id() == c.key_id)
        }
        _ => None,
    };
    let key = derived.as_ref().unwrap_or(test.key);
    let detector = Detector::new(key, &scheme, test.tokenizer.vocab_size(), test.options.clone())?;
    let detection = detector.detect_text(test.tokenizer, None, text)?;
    let as_receipt_states = claim.is_some_and(|c| c.key_id == key.id() && c.scheme == scheme);
    Ok(WatermarkCheck::Checked {
        verdict: detection.verdict,
        log10_p: detection.verdict_log10_p(),
        scheme: scheme.to_string(),
        key_id: key.id(),
        as_receipt_states,
    })
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::MalformedReceipt { reason: reason.into() }
}

fn check_model(model: &str) -> Result<()> {
    if model.is_empty() || model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(malformed(format!(
            "model = {model:?}: 1 to {MAX_MODEL_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_label(label: &str) -> Result<()> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(malformed(format!(
            "label = {label:?}: printable ASCII without spaces, 1 to {MAX_LABEL_LEN} bytes (e.g. account/alice)"
        )));
    }
    Ok(())
}

fn check_digest(name: &str, value: &str) -> Result<()> {
    let mut digest = [0u8; 32];
    match value.strip_prefix("sha256:") {
        Some(h) if decode_lower_hex(h, &mut digest) => Ok(()),
        _ => Err(malformed(format!(
            "{name} = {value:?}: expected `sha256:` and 64 lowercase hex digits"
        ))),
    }
}

/// The first line of a key file, without its line ending.
fn one_line(text: &str) -> &str {
    let line = text.strip_suffix('\n').unwrap_or(text);
    line.strip_suffix('\r').unwrap_or(line)
}

/// A key file of another kind is a [`Error::WrongKeyFile`]; no kind at all an [`Error::InvalidKeyFile`].
fn check_kind(line: &str, expected: KeyFileKind, path: &str) -> Result<()> {
    match KeyFileKind::of(line) {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(Error::WrongKeyFile {
            path: path.to_string(),
            expected,
            found,
        }),
        None => Err(Error::InvalidKeyFile {
            path: path.to_string(),
            kind: expected,
            reason: format!("not a key file (expected it to start with `{}:`)", expected.magic()),
        }),
    }
}

fn read_key_file(path: &Path, kind: KeyFileKind) -> Result<Zeroizing<String>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = Zeroizing::new(String::new());
    let bad = |reason: &str| Error::InvalidKeyFile {
        path: path.display().to_string(),
        kind,
        reason: reason.to_string(),
    };
    file.take(KEY_FILE_MAX_LEN + 1).read_to_string(&mut text).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            bad("not a text file")
        } else {
            Error::io(path, e)
        }
    })?;
    if text.len() as u64 > KEY_FILE_MAX_LEN {
        return Err(bad("too long to be a tracemark key file"));
    }
    Ok(text)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    Ok(internal::write_new_file(path, contents, mode)?)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// [`decode_hex`] of lowercase digits only: receipts sign their fields as
/// written, so each value has exactly one spelling.
fn decode_lower_hex(hex: &str, out: &mut [u8]) -> bool {
    !hex.bytes().any(|c| c.is_ascii_uppercase()) && decode_hex(hex, out)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn timestamps_format_and_parse() {
        assert_eq!(Timestamp::from_unix(0).as_str(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(951_782_400).as_str(), "2000-02-29T00:00:00Z");
        assert_eq!(Timestamp::from_unix(1_798_761_599).as_str(), "2026-12-31T23:59:59Z");
        for s in ["1970-01-01T00:00:00Z", "2000-02-29T12:34:56Z", "2026-12-01T09:30:00Z"] {
            assert_eq!(s.parse::<Timestamp>().expect(s).as_str(), s);
        }
        for s in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01 09:30:00Z",
            "2026-12-01T09:30:00+00:00",
            "2026-12-01T09:30:00.5Z",
            "",
        ] {
            assert!(
                matches!(s.parse::<Timestamp>(), Err(Error::MalformedReceipt { .. })),
                "{s}"
            );
        }
        // now() is a valid timestamp.
        assert!(Timestamp::now().as_str().parse::<Timestamp>().is_ok());
    }

    #[test]
    fn key_files_round_trip_and_refuse_other_kinds() {
        let key = SigningKey::from_seed(&seed());
        let file = key.to_file_string();
        assert!(file.starts_with("tracemark-signing-key-v1:000102"));
        let back = SigningKey::from_file_str(&file).expect("parses");
        assert_eq!(back.secret_bytes(), key.secret_bytes());
        let public = key.verifying_key();
        assert_eq!(
            VerifyingKey::from_file_str(&public.to_file_string()).expect("parses"),
            public
        );
        assert!(public.id().to_string().starts_with("ed25519:"));
        assert_eq!(public.id().to_string().parse::<SignerId>().expect("id"), key.id());

        let watermark = Key::from_bytes([7; 32]).to_file_string();
        for (result, expected, found) in [
            (
                SigningKey::from_file_str(&watermark).err(),
                KeyFileKind::Signing,
                KeyFileKind::Watermark,
            ),
            (
                SigningKey::from_file_str(&public.to_file_string()).err(),
                KeyFileKind::Signing,
                KeyFileKind::Verifying,
            ),
            (
                VerifyingKey::from_file_str(&watermark).err(),
                KeyFileKind::Verifying,
                KeyFileKind::Watermark,
            ),
            (
                VerifyingKey::from_file_str(&file).err(),
                KeyFileKind::Verifying,
                KeyFileKind::Signing,
            ),
        ] {
            match result {
                Some(Error::WrongKeyFile {
                    expected: e, found: f, ..
                }) => assert_eq!((e, f), (expected, found)),
                other => panic!("{other:?}"),
            }
        }
        // A corrupted file never loads as another key.
        let mut corrupted = file.to_string();
        corrupted.replace_range(30..31, if &corrupted[30..31] == "0" { "1" } else { "0" });
        assert!(matches!(
            SigningKey::from_file_str(&corrupted),
            Err(Error::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            SigningKey::from_file_str("hello"),
            Err(Error::InvalidKeyFile { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SigningKey::from_seed(&[0xab; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("ed25519:") && !shown.contains("abab"), "{shown}");
    }

    #[test]
    fn save_refuses_overwrite_and_is_private() {
        let dir = std::env::temp_dir().join(format!("tracemark-receipt-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("signing.key");
        let key = SigningKey::generate().expect("key");
        key.save(&path).expect("saves");
        assert!(matches!(
            key.save(&path),
            Err(Error::Core(tracemark_core::Error::KeyFileExists { .. }))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SigningKey::load(&path).expect("loads").id(), key.id());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn receipts_round_trip_and_reject_malformed_fields() {
        let key = SigningKey::from_seed(&seed());
        let provenance = Provenance::new("m")
            .expect("model")
            .created("2026-12-01T09:30:00Z".parse().expect("time"))
            .watermark(
                "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme"),
                Key::from_bytes([1; 32]).id(),
            )
            .label("account/alice")
            .expect("label");
        let receipt = Receipt::sign(&key, "hello", &provenance).expect("signs");
        let json = receipt.to_json();
        assert_eq!(Receipt::from_json(&json).expect("reads"), receipt);
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        for (field, bad) in [
            ("format", serde_json::json!("tracemark-receipt-v2")),
            ("text_sha256", serde_json::json!("sha256:00")),
            ("created", serde_json::json!("yesterday")),
            ("scheme", serde_json::json!("kgw:gamma=2")),
            ("scheme", serde_json::Value::Null),
            ("label", serde_json::json!("has space")),
            ("signer", serde_json::json!("rsa:00")),
            ("public_key", serde_json::json!("00")),
            ("signature", serde_json::json!(hex(&[0xAB; 64]).to_uppercase())),
            ("extra", serde_json::json!(1)),
        ] {
            let mut v = value.clone();
            v[field] = bad;
            assert!(
                matches!(Receipt::from_json(&v.to_string()), Err(Error::MalformedReceipt { .. })),
                "{field}"
            );
        }
        assert!(matches!(Receipt::from_json("[]"), Err(Error::MalformedReceipt { .. })));
    }
}
