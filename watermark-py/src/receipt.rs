//! Bindings of `tracemark_verifier::receipt`: signing keys, receipts, verification.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tracemark_core::KeyId;
use tracemark_verifier::receipt::{
    verify, Provenance, Receipt, ReceiptCheck, SignatureCheck, SigningKey, TextCheck, Timestamp, VerifyingKey,
    WatermarkCheck, WatermarkTest,
};
use tracemark_verifier::{DetectOptions, Verdict};

use crate::detect::{json_of, to_py};
use crate::errors::{core_err, verifier_err};
use crate::key::PyKey;
use crate::scheme::scheme_config;
use crate::tokenizer::optional_tokenizer_arg;

/// A secret Ed25519 key that signs provenance receipts; not a watermark key.
/// It never prints; `id` (`ed25519:<32 hex>`) is public.
///
/// Constructors: `SigningKey.generate()`, `SigningKey.load(path)` (a file of
/// `save` or `tracemark receipt keygen`), `SigningKey.from_seed(seed)` (a
/// 32-byte Ed25519 seed). Give verifiers `verifying_key()`.
///
/// >>> import tracemark as tm
/// >>> signer = tm.SigningKey.from_seed(bytes(32))
/// >>> signer.id.startswith("ed25519:"), signer.verifying_key().id == signer.id
/// (True, True)
#[pyclass(name = "SigningKey", module = "tracemark", frozen)]
pub(crate) struct PySigningKey {
    inner: SigningKey,
}

#[pymethods]
impl PySigningKey {
    /// A fresh key from the operating system's random number generator.
    #[staticmethod]
    fn generate() -> PyResult<Self> {
        Ok(Self {
            inner: SigningKey::generate().map_err(verifier_err)?,
        })
    }

    /// The key of a 32-byte Ed25519 seed.
    #[staticmethod]
    fn from_seed(seed: &[u8]) -> PyResult<Self> {
        let seed: &[u8; 32] = seed.try_into().map_err(|_| {
            core_err(tracemark_core::Error::InvalidKey {
                reason: format!("a signing key seed is 32 bytes, got {}", seed.len()),
            })
        })?;
        Ok(Self {
            inner: SigningKey::from_seed(seed),
        })
    }

    /// Reads a signing key file (`tracemark receipt keygen`); a watermark key file is refused.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        Ok(Self {
            inner: SigningKey::load(&path).map_err(verifier_err)?,
        })
    }

    /// Writes the key to a new file with mode 0600; never overwrites.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.inner.save(&path).map_err(verifier_err)
    }

    /// The public signer id, `ed25519:<32 hex>`.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The public key, for verifiers.
    fn verifying_key(&self) -> PyVerifyingKey {
        PyVerifyingKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// The 32 secret seed bytes. Handle with care: never log them.
    fn secret_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.secret_bytes())
    }

    fn __repr__(&self) -> String {
        format!("SigningKey(id='{}')", self.inner.id())
    }
}

/// The public half of a signing key: what a verifier trusts.
///
/// Constructors: `signing_key.verifying_key()`, `VerifyingKey.load(path)`
/// (the `.pub` file of `tracemark receipt keygen`), `VerifyingKey.from_bytes(data)`
/// (its 32 bytes, `public_bytes()`).
///
/// >>> import tracemark as tm
/// >>> public = tm.SigningKey.from_seed(bytes(32)).verifying_key()
/// >>> tm.VerifyingKey.from_bytes(public.public_bytes()) == public
/// True
#[pyclass(name = "VerifyingKey", module = "tracemark", frozen)]
pub(crate) struct PyVerifyingKey {
    inner: VerifyingKey,
}

#[pymethods]
impl PyVerifyingKey {
    /// A verifying key from its 32 bytes.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        let bytes: &[u8; 32] = data.try_into().map_err(|_| {
            core_err(tracemark_core::Error::InvalidKey {
                reason: format!("a verifying key is 32 bytes, got {}", data.len()),
            })
        })?;
        Ok(Self {
            inner: VerifyingKey::from_bytes(bytes).map_err(verifier_err)?,
        })
    }

    /// Reads a verifying key file (the `.pub` of `tracemark receipt keygen`).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        Ok(Self {
            inner: VerifyingKey::load(&path).map_err(verifier_err)?,
        })
    }

    /// Writes the key to a new file; never overwrites.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.inner.save(&path).map_err(verifier_err)
    }

    /// The signer id, `ed25519:<32 hex>`.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The 32 public bytes.
    fn public_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.as_bytes())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyVerifyingKey>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        let b = self.inner.id();
        let mut word = [0u8; 8];
        word.copy_from_slice(&b.as_bytes()[..8]);
        u64::from_le_bytes(word)
    }

    fn __repr__(&self) -> String {
        format!("VerifyingKey(id='{}')", self.inner.id())
    }
}

/// A signed provenance receipt (SPEC §12). `to_json` / `from_json` for the wire.
///
/// Made by `sign_receipt(signing_key, text, model, *, scheme=None,
/// key_id=None, label=None, created=None)` (or `tracemark.hf.generate_text`
/// with a `signer`), read back with `Receipt.from_json(json)`, checked with
/// `verify_receipt`.
///
/// >>> import tracemark as tm
/// >>> signer = tm.SigningKey.from_seed(bytes(32))
/// >>> receipt = tm.sign_receipt(signer, "An answer.", "smollm2", label="account/alice")
/// >>> tm.Receipt.from_json(receipt.to_json()) == receipt, receipt.label
/// (True, 'account/alice')
#[pyclass(name = "Receipt", module = "tracemark", frozen)]
pub(crate) struct PyReceipt {
    inner: Receipt,
}

#[pymethods]
impl PyReceipt {
    /// Reads a receipt and checks its form (not its signature: that is `verify_receipt`'s job).
    #[staticmethod]
    fn from_json(json: &str) -> PyResult<Self> {
        Ok(Self {
            inner: Receipt::from_json(json).map_err(verifier_err)?,
        })
    }

    /// The receipt as JSON (members in SPEC order).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// The receipt as a dict (members in SPEC order).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?.call_method1("loads", (self.inner.to_json(),))
    }

    /// The bytes the signature covers (SPEC §12.3).
    fn signed_message<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.signed_message())
    }

    /// `sha256:<hex>` of the text's UTF-8 bytes.
    #[getter]
    fn text_sha256(&self) -> &str {
        self.inner.text_sha256()
    }

    /// `sha256:<hex>` of the text's canonical form.
    #[getter]
    fn canonical_sha256(&self) -> &str {
        self.inner.canonical_sha256()
    }

    /// The model that wrote the text.
    #[getter]
    fn model(&self) -> &str {
        self.inner.model()
    }

    /// When the receipt was made (RFC 3339 UTC).
    #[getter]
    fn created(&self) -> String {
        self.inner.created().to_string()
    }

    /// The watermark's scheme string, or None.
    #[getter]
    fn scheme(&self) -> Option<String> {
        self.inner.watermark().map(|w| w.scheme.to_string())
    }

    /// The watermark key's public id, or None.
    #[getter]
    fn key_id(&self) -> Option<String> {
        self.inner.watermark().map(|w| w.key_id.to_string())
    }

    /// The account or cohort label, or None.
    #[getter]
    fn label(&self) -> Option<&str> {
        self.inner.label()
    }

    /// The signer id the receipt names.
    #[getter]
    fn signer(&self) -> String {
        self.inner.signer().to_string()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyReceipt>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Receipt(model='{}', created='{}', signer='{}', text_sha256='{}')",
            self.inner.model(),
            self.inner.created(),
            self.inner.signer(),
            self.inner.text_sha256()
        )
    }
}

/// The three checks of a text against a receipt.
#[pyclass(name = "ReceiptCheck", module = "tracemark", frozen)]
pub(crate) struct PyReceiptCheck {
    inner: ReceiptCheck,
}

#[pymethods]
impl PyReceiptCheck {
    /// "valid" (by a trusted signer), "untrusted_signer" (valid only under a
    /// key you did not trust) or "invalid" (the receipt was altered).
    #[getter]
    fn signature(&self) -> &'static str {
        match self.inner.signature {
            SignatureCheck::Valid { .. } => "valid",
            SignatureCheck::UntrustedSigner { .. } => "untrusted_signer",
            _ => "invalid",
        }
    }

    /// The signer id the receipt names.
    #[getter]
    fn signer(&self) -> String {
        match &self.inner.signature {
            SignatureCheck::Valid { signer }
            | SignatureCheck::UntrustedSigner { signer }
            | SignatureCheck::Invalid { signer, .. } => signer.to_string(),
            _ => String::new(),
        }
    }

    /// "exact", "canonical_only" (only the canonical forms match) or "mismatch".
    #[getter]
    fn text(&self) -> &'static str {
        match self.inner.text {
            TextCheck::Exact => "exact",
            TextCheck::CanonicalOnly => "canonical_only",
            _ => "mismatch",
        }
    }

    /// "not_checked", "detected", "not_detected" or "inconclusive".
    #[getter]
    fn watermark(&self) -> &'static str {
        match &self.inner.watermark {
            WatermarkCheck::Checked { verdict, .. } => match verdict {
                Verdict::Detected => "detected",
                Verdict::NotDetected => "not_detected",
                _ => "inconclusive",
            },
            _ => "not_checked",
        }
    }

    /// Everything checked holds: valid by a trusted signer, the text (or its
    /// canonical form) matches, and the watermark, if tested, was detected.
    #[getter]
    fn holds(&self) -> bool {
        self.inner.holds()
    }

    /// The checks as a dict (as `tracemark receipt verify --json` prints them under "check").
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &json_of(&self.inner)?)
    }

    fn __repr__(&self) -> String {
        format!(
            "ReceiptCheck(signature='{}', text='{}', watermark='{}', holds={})",
            self.signature(),
            self.text(),
            self.watermark(),
            if self.holds() { "True" } else { "False" }
        )
    }
}

/// Signs a receipt for `text`, exactly as returned to the caller. `scheme`
/// and `key_id` (the public id of the watermark key used: the derived key's
/// for a labelled request) come together; `created` is RFC 3339 UTC
/// (default: now).
#[pyfunction]
#[pyo3(signature = (signing_key, text, model, *, scheme = None, key_id = None, label = None, created = None))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(crate) fn sign_receipt(
    py: Python<'_>,
    signing_key: &PySigningKey,
    text: &str,
    model: &str,
    scheme: Option<&Bound<'_, PyAny>>,
    key_id: Option<&str>,
    label: Option<&str>,
    created: Option<&str>,
) -> PyResult<PyReceipt> {
    let mut provenance = Provenance::new(model).map_err(verifier_err)?;
    if let Some(created) = created {
        provenance = provenance.created(created.parse::<Timestamp>().map_err(verifier_err)?);
    }
    match (scheme, key_id) {
        (Some(scheme), Some(key_id)) => {
            let key_id: KeyId = key_id.parse().map_err(core_err)?;
            provenance = provenance.watermark(scheme_config(scheme)?, key_id);
        }
        (None, None) => {}
        _ => {
            return Err(crate::errors::InvalidParameterError::new_err(
                "scheme and key_id come together: give both or neither",
            ))
        }
    }
    if let Some(label) = label {
        provenance = provenance.label(label).map_err(verifier_err)?;
    }
    let inner = py
        .detach(|| Receipt::sign(&signing_key.inner, text, &provenance))
        .map_err(verifier_err)?;
    Ok(PyReceipt { inner })
}

/// Checks `text` against `receipt`, trusting the signers in `trusted`; with
/// `key` and `tokenizer`, tests the watermark too (`key` may be the master
/// key the receipt's label derived the watermark key from; `scheme`
/// defaults to the receipt's).
#[pyfunction]
#[pyo3(signature = (receipt, text, trusted, *, key = None, scheme = None, tokenizer = None))]
pub(crate) fn verify_receipt(
    py: Python<'_>,
    receipt: &PyReceipt,
    text: &str,
    trusted: Vec<PyRef<'_, PyVerifyingKey>>,
    key: Option<&PyKey>,
    scheme: Option<&Bound<'_, PyAny>>,
    tokenizer: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyReceiptCheck> {
    let trusted: Vec<VerifyingKey> = trusted.iter().map(|k| k.inner).collect();
    let tokenizer = optional_tokenizer_arg(tokenizer)?;
    let scheme = scheme.map(scheme_config).transpose()?;
    let test = match (key, tokenizer.as_deref()) {
        (Some(key), Some(tokenizer)) => Some(WatermarkTest {
            key: &key.inner,
            scheme: scheme.as_ref(),
            tokenizer,
            options: DetectOptions::default(),
        }),
        (None, None) if scheme.is_none() => None,
        _ => {
            return Err(crate::errors::InvalidParameterError::new_err(
                "a watermark test needs both key and tokenizer (scheme is optional)",
            ))
        }
    };
    let inner = py
        .detach(|| verify(&receipt.inner, text, &trusted, test.as_ref()))
        .map_err(verifier_err)?;
    Ok(PyReceiptCheck { inner })
}
