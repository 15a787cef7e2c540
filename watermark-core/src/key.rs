//! Secret keys, public key ids, labelled sub-keys and the key file format
//! (SPEC §2).

use core::fmt;
use std::io::Write as _;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::prf::SipKey;

/// Prefix of every domain-separation label of spec v1.
pub(crate) const LABEL_PREFIX: &str = "tracemark/v1/";
/// The first word of a watermark key file (SPEC §2.3).
pub const KEY_FILE_MAGIC: &str = "tracemark-key-v1";
/// The first word of a receipt signing key file (SPEC §12.1), which
/// `Key::from_file_str` recognises to say what the file is.
pub const SIGNING_KEY_MAGIC: &str = "tracemark-signing-key-v1";
/// The first word of a receipt verifying key file (SPEC §12.1).
pub const VERIFYING_KEY_MAGIC: &str = "tracemark-verifying-key-v1";
/// A key file is one short line; anything longer is not a key file.
const KEY_FILE_MAX_LEN: u64 = 256;

/// Longest accepted derivation label, in bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// HMAC-SHA256 of `message` under `key`, as used for every keyed derivation in spec v1.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// A 32-byte secret watermark key.
///
/// There is no default key and no way to build one from nothing: keys come
/// from the OS random number generator ([`Key::generate`]), a key file
/// ([`Key::load`]), raw bytes you already hold ([`Key::from_bytes`]), or
/// another key ([`Key::derive`]).
///
/// The key material is wiped from memory when the value is dropped, is never
/// printed (no `Debug`/`Display`), and compares in constant time.
pub struct Key {
    bytes: [u8; 32],
}

impl Key {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::Rng { message: e.to_string() })?;
        Ok(Self { bytes })
    }

    /// A key from 32 bytes the caller already holds (e.g. from a secrets manager).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { bytes }
    }

    /// A key from a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidKey {
            reason: format!("a key is {} bytes, got {}", Self::LEN, bytes.len()),
        })?;
        Ok(Self { bytes })
    }

    /// The secret bytes. Handle with care: never log them.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The public identifier of this key, safe to print and to put in reports.
    pub fn id(&self) -> KeyId {
        let mac = hmac_sha256(&self.bytes, &[LABEL_PREFIX.as_bytes(), b"key-id"]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&mac[..16]);
        KeyId(id)
    }

    /// A sub-key for `label` (a tenant, an API-account cohort, ...).
    ///
    /// Labels are 1 to 128 printable ASCII characters without spaces
    /// (`0x21..=0x7e`), e.g. `cohort/3` or `tenant/acme`. Derivation can be
    /// chained: `key.derive("tenant/acme")?.derive("cohort/3")?`.
    pub fn derive(&self, label: &str) -> Result<Self> {
        validate_label(label)?;
        let mac = hmac_sha256(&self.bytes, &[LABEL_PREFIX.as_bytes(), b"derive/", label.as_bytes()]);
        Ok(Self { bytes: *mac })
    }

    /// The SipHash key of one scheme (SPEC §3).
    pub(crate) fn scheme_prf_key(&self, scheme: &str) -> SipKey {
        let mac = hmac_sha256(&self.bytes, &[LABEL_PREFIX.as_bytes(), b"scheme/", scheme.as_bytes()]);
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&mac[..8]);
        k1.copy_from_slice(&mac[8..16]);
        let key = SipKey::new(u64::from_le_bytes(k0), u64::from_le_bytes(k1));
        k0.zeroize();
        k1.zeroize();
        key
    }

    fn file_check(&self) -> [u8; 4] {
        let mac = hmac_sha256(&self.bytes, &[LABEL_PREFIX.as_bytes(), b"key-file-check"]);
        [mac[0], mac[1], mac[2], mac[3]]
    }

    /// The MAC of a serving manifest (SPEC §2.5): the first 16 bytes of
    /// `HMAC(K, "tracemark/v1/serving-manifest/" || scheme || 0x00 || tokenizer)`,
    /// where `scheme` is the scheme string the key was served with (its
    /// canonical form, [`crate::SchemeConfig`]'s `Display`) and `tokenizer`
    /// the tokenizer's fingerprint, or empty when none is recorded. Only the
    /// key's holder can make it, so a manifest cannot be edited, or moved
    /// beside another key, without its check failing.
    pub fn serving_mac(&self, scheme: &str, tokenizer: &str) -> [u8; 16] {
        let mac = hmac_sha256(
            &self.bytes,
            &[
                LABEL_PREFIX.as_bytes(),
                b"serving-manifest/",
                scheme.as_bytes(),
                &[0],
                tokenizer.as_bytes(),
            ],
        );
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac[..16]);
        out
    }

    /// The key file contents: `tracemark-key-v1:<64 hex>:<8 hex check>\n`.
    pub fn to_file_string(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(96));
        s.push_str(KEY_FILE_MAGIC);
        s.push(':');
        push_hex(&mut s, &self.bytes);
        s.push(':');
        push_hex(&mut s, &self.file_check());
        s.push('\n');
        s
    }

    /// Parses key file contents (see [`Key::to_file_string`]).
    ///
    /// A wrong prefix, a wrong length, a non-hex digit or a checksum that does
    /// not match (a corrupted file) is an [`Error::InvalidKey`].
    pub fn from_file_str(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidKey {
            reason: reason.to_string(),
        };
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut parts = line.split(':');
        let first = parts.next();
        if first == Some(SIGNING_KEY_MAGIC) || first == Some(VERIFYING_KEY_MAGIC) {
            return Err(bad(
                "this is a receipt signing/verifying key file (`tracemark receipt keygen`), not a watermark key \
                 file: the two kinds of key are kept apart",
            ));
        }
        if first != Some(KEY_FILE_MAGIC) {
            return Err(bad(
                "not a tracemark key file (expected it to start with `tracemark-key-v1:`)",
            ));
        }
        let (Some(hex), Some(check), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `tracemark-key-v1:<64 hex digits>:<8 hex digits>`"));
        };
        let mut bytes = [0u8; 32];
        if hex.len() != 64 || !decode_hex(hex, &mut bytes) {
            bytes.zeroize();
            return Err(bad("the key must be exactly 64 hex digits"));
        }
        let key = Self { bytes };
        let mut want = [0u8; 4];
        if check.len() != 8 || !decode_hex(check, &mut want) {
            return Err(bad("the checksum must be exactly 8 hex digits"));
        }
        if !bool::from(want.ct_eq(&key.file_check())) {
            return Err(bad("checksum mismatch: the key file is corrupted"));
        }
        Ok(key)
    }

    /// Writes the key to a new file with mode 0600. Refuses to overwrite.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = Zeroizing::new(self.to_file_string());
        write_new_file(path.as_ref(), text.as_bytes(), 0o600)
    }

    /// Reads a key file written by [`Key::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        use std::io::Read as _;
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
        let mut text = Zeroizing::new(String::new());
        file.take(KEY_FILE_MAX_LEN + 1).read_to_string(&mut text).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Error::InvalidKey {
                    reason: format!("{}: not a text file", path.display()),
                }
            } else {
                Error::io(path, &e)
            }
        })?;
        if text.len() as u64 > KEY_FILE_MAX_LEN {
            return Err(Error::InvalidKey {
                reason: format!("{}: too long to be a tracemark key file", path.display()),
            });
        }
        Self::from_file_str(&text).map_err(|e| match e {
            Error::InvalidKey { reason } => Error::InvalidKey {
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        Self { bytes: self.bytes }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ConstantTimeEq for Key {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.bytes.ct_eq(&other.bytes)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Key {}

pub(crate) fn validate_label(label: &str) -> Result<()> {
    let reason = if label.is_empty() {
        Some("labels must not be empty")
    } else if label.len() > MAX_LABEL_LEN {
        Some("labels are at most 128 bytes")
    } else if !label.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Some("labels use printable ASCII without spaces (e.g. `cohort/3`)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidLabel {
            label: label.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The public identifier of a key: the first 16 bytes of
/// HMAC-SHA256(key, `tracemark/v1/key-id`), written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

impl KeyId {
    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.0);
        f.write_str(&s)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl core::str::FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut id = [0u8; 16];
        if s.len() == 32 && decode_hex(s, &mut id) {
            Ok(Self(id))
        } else {
            Err(Error::InvalidKey {
                reason: format!("{s:?} is not a key id (32 hex digits)"),
            })
        }
    }
}

/// A key id is written as its 32 hex digits.
#[cfg(feature = "serde")]
impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// Decodes `hex` (either case) into `out`; false (and `out` zeroed) unless it
/// is exactly `2 * out.len()` hex digits.
pub(crate) fn decode_hex(hex: &str, out: &mut [u8]) -> bool {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let ok = hex.len() == 2 * out.len()
        && hex.as_bytes().chunks_exact(2).zip(out.iter_mut()).all(|(pair, o)| {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => {
                    *o = h << 4 | l;
                    true
                }
                _ => false,
            }
        });
    if !ok {
        out.zeroize();
    }
    ok
}

/// Writes `contents` to a new file with Unix permissions `mode` (0600 for a
/// secret key: readable by its owner only) and syncs it; refuses to overwrite
/// ([`Error::KeyFileExists`]). Every key file of tracemark (watermark keys,
/// receipt signing and verifying keys) is written here.
pub(crate) fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::KeyFileExists {
                path: path.display().to_string(),
            }
        } else {
            Error::io(path, &e)
        }
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn file_round_trip_and_corruption() {
        let k = key(7);
        let text = k.to_file_string();
        assert!(Key::from_file_str(&text).expect("parses") == k);
        // Flip one hex digit of the key: the checksum catches it.
        let mut bad = text.to_string();
        let i = KEY_FILE_MAGIC.len() + 5;
        let c = if &bad[i..=i] == "0" { "1" } else { "0" };
        bad.replace_range(i..=i, c);
        assert!(matches!(Key::from_file_str(&bad), Err(Error::InvalidKey { .. })));
        for garbage in [
            "",
            "tracemark-key-v1:",
            "tracemark-key-v2:00:00",
            "hello\n",
            "tracemark-key-v1:zz:00000000",
        ] {
            assert!(
                matches!(Key::from_file_str(garbage), Err(Error::InvalidKey { .. })),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn labels_are_validated_and_derivation_differs() {
        let k = key(1);
        assert!(k.derive("").is_err());
        assert!(k.derive("has space").is_err());
        assert!(k.derive(&"x".repeat(129)).is_err());
        let a = k.derive("cohort/1").expect("valid");
        let b = k.derive("cohort/2").expect("valid");
        assert!(a != b && a != k);
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn key_id_parses_back() {
        let id = key(3).id();
        assert_eq!(id.to_string().parse::<KeyId>().expect("hex"), id);
        assert!("xyz".parse::<KeyId>().is_err());
    }

    #[test]
    fn save_refuses_overwrite_and_is_private() {
        let dir = std::env::temp_dir().join(format!("tracemark-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("k.key");
        let _ = std::fs::remove_file(&path);
        let k = Key::generate().expect("rng");
        k.save(&path).expect("first save");
        assert!(matches!(k.save(&path), Err(Error::KeyFileExists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Key::load(&path).expect("load") == k);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
