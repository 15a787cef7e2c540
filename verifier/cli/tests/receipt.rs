//! Provenance receipts: the golden vectors of SPEC §12 (`testdata/vectors/receipts.json`),
//! the library's checks, and `tracemark receipt` end to end.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::{generate, s, tracemark, word_tokenizer_json, words, Dir, Rng};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::receipt::{
    verify, Provenance, Receipt, SignatureCheck, SigningKey, TextCheck, VerifyingKey, WatermarkCheck,
};
use tracemark_verifier::Error;

const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const VOCAB: usize = 3000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    assert_eq!(s.len(), 2 * N, "{s}");
    core::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
}

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vectors/receipts.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("receipts.json")).expect("json");
    assert_eq!(data["spec"], tracemark_core::SPEC_VERSION);
    data["cases"].as_array().expect("cases").clone()
}

/// The provenance a golden receipt states.
fn provenance_of(r: &Value) -> Provenance {
    let mut p = Provenance::new(r["model"].as_str().expect("model"))
        .expect("model")
        .created(r["created"].as_str().expect("created").parse().expect("time"));
    if let (Some(scheme), Some(key_id)) = (r["scheme"].as_str(), r["key_id"].as_str()) {
        p = p.watermark(scheme.parse().expect("scheme"), key_id.parse().expect("key id"));
    }
    if let Some(label) = r["label"].as_str() {
        p = p.label(label).expect("label");
    }
    p
}

#[test]
fn golden_vectors() {
    // RFC 8032 §7.1, TEST 1: the seed gives the standard public key.
    let rfc = SigningKey::from_seed(&unhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ));
    assert_eq!(
        rfc.verifying_key().to_hex(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    let cases = vectors();
    assert!(cases.len() >= 2);
    for case in cases {
        let key = SigningKey::from_seed(&unhex(case["seed"].as_str().expect("seed")));
        assert_eq!(key.to_file_string().as_str(), case["signing_key_file"]);
        assert_eq!(key.verifying_key().to_file_string(), case["verifying_key_file"]);
        assert_eq!(key.verifying_key().to_hex(), case["public_key"]);
        assert_eq!(key.id().to_string(), case["signer"]);
        let text = case["text"].as_str().expect("text");
        let want = &case["receipt"];
        // Ed25519 signatures are deterministic: signing again gives the same receipt, byte for byte.
        let receipt = Receipt::sign(&key, text, &provenance_of(want)).expect("signs");
        assert_eq!(hex(&receipt.signed_message()), case["message"]);
        assert_eq!(serde_json::from_str::<Value>(&receipt.to_json()).expect("json"), *want);
        // The JSON writes its fields in SPEC order.
        let json = receipt.to_json();
        let positions: Vec<usize> = [
            "format",
            "text_sha256",
            "canonical_sha256",
            "model",
            "created",
            "scheme",
            "key_id",
            "label",
            "signer",
            "public_key",
            "signature",
        ]
        .iter()
        .map(|f| json.find(&format!("\"{f}\":")).expect(f))
        .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        // Read back, it verifies under the public key alone.
        let read = Receipt::from_json(&want.to_string()).expect("reads");
        let trusted = [VerifyingKey::from_file_str(case["verifying_key_file"].as_str().expect("pub")).expect("pub")];
        let check = verify(&read, text, &trusted, None).expect("verifies");
        assert!(check.holds(), "{check:?}");
        assert_eq!(check.text, TextCheck::Exact);
    }
}

#[test]
fn each_failure_is_reported_as_itself() {
    let case = &vectors()[0];
    let text = case["text"].as_str().expect("text");
    let receipt = Receipt::from_json(&case["receipt"].to_string()).expect("reads");
    let signer = SigningKey::from_seed(&unhex(case["seed"].as_str().expect("seed")));
    let trusted = [signer.verifying_key()];

    // A tampered text: the receipt is still valid, the text does not match.
    let check = verify(&receipt, "A watermarked answer, tampered.", &trusted, None).expect("runs");
    assert!(matches!(check.signature, SignatureCheck::Valid { .. }));
    assert_eq!(check.text, TextCheck::Mismatch);
    assert!(!check.holds());
    // The zero-width space removed: only the canonical form matches, and the check says so.
    let check = verify(&receipt, &text.replace('\u{200b}', ""), &trusted, None).expect("runs");
    assert_eq!(check.text, TextCheck::CanonicalOnly);
    assert!(check.holds());

    // A tampered receipt (every signed field in turn): the signature does not match.
    for (field, value) in [
        ("model", Value::from("another-model")),
        ("created", Value::from("2026-12-02T09:30:00Z")),
        ("label", Value::from("account/bob")),
        ("label", Value::Null),
        ("key_id", Value::from("fedcba9876543210fedcba9876543210")),
        ("text_sha256", case["receipt"]["canonical_sha256"].clone()),
    ] {
        let mut tampered = case["receipt"].clone();
        tampered[field] = value;
        let tampered = Receipt::from_json(&tampered.to_string()).expect("well formed");
        let check = verify(&tampered, text, &trusted, None).expect("runs");
        assert_eq!(
            check.signature,
            SignatureCheck::Invalid {
                signer: signer.id(),
                trusted_signer: true
            },
            "{field}"
        );
        assert!(!check.holds());
    }

    // Another signing key: signed by a key the verifier does not trust.
    let other = SigningKey::generate().expect("key");
    let foreign = Receipt::sign(&other, text, &Provenance::new("m").expect("model")).expect("signs");
    let check = verify(&foreign, text, &trusted, None).expect("runs");
    assert_eq!(check.signature, SignatureCheck::UntrustedSigner { signer: other.id() });
    assert!(!check.holds());
    // The trusted signer's id with the forger's key and signature: altered.
    let mut forged: Value = serde_json::from_str(&foreign.to_json()).expect("json");
    forged["signer"] = Value::from(signer.id().to_string());
    let forged = Receipt::from_json(&forged.to_string()).expect("well formed");
    assert!(matches!(
        verify(&forged, text, &trusted, None).expect("runs").signature,
        SignatureCheck::Invalid {
            trusted_signer: true,
            ..
        }
    ));

    // Key files of the other kinds are refused as such.
    let watermark = Key::generate().expect("key").to_file_string();
    assert!(matches!(
        SigningKey::from_file_str(&watermark),
        Err(Error::WrongKeyFile { .. })
    ));
    assert!(Key::from_file_str(&signer.to_file_string())
        .err()
        .is_some_and(|e| e.to_string().contains("receipt signing/verifying key file")));
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf8")
}

#[test]
fn cli_signs_and_verifies_and_reports_each_failure() {
    let dir = Dir::new("receipt-cli");
    let signing = dir.path("signing.key");
    let public = dir.path("signing.key.pub");
    let out = tracemark(&["receipt", "keygen", "--out", s(&signing)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("ed25519:") && id.len() == 40, "{id}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&signing).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret = std::fs::read_to_string(&signing).expect("key");
    let pub_text = std::fs::read_to_string(&public).expect("pub");
    assert!(pub_text.starts_with("tracemark-verifying-key-v1:"));
    // Never overwrite; the public key can be exported again; no secret is ever printed.
    let again = tracemark(&["receipt", "keygen", "--out", s(&signing)]);
    assert_eq!(code(&again), 5, "{}", stderr(&again));
    let exported = tracemark(&["receipt", "public", "--signing-key", s(&signing)]);
    assert_eq!(stdout(&exported), pub_text);
    let seed_hex = secret.split(':').nth(1).expect("seed");
    for o in [&out, &again, &exported] {
        assert!(!stdout(o).contains(seed_hex) && !stderr(o).contains(seed_hex));
    }

    let text = dir.path("answer.txt");
    std::fs::write(&text, "The lighthouse keeper read the message twice.").expect("write");
    let receipt = dir.path("answer.receipt.json");
    let key_id = Key::generate().expect("key").id().to_string();
    let sign = tracemark(&[
        "receipt",
        "sign",
        "--signing-key",
        s(&signing),
        "--text",
        s(&text),
        "--model",
        "SmolLM2-135M-Instruct",
        "--scheme",
        SCHEME,
        "--key-id",
        &key_id,
        "--label",
        "account/alice",
        "--out",
        s(&receipt),
    ]);
    assert_eq!(code(&sign), 0, "{}", stderr(&sign));
    let verify_args = |text: &Path, receipt: &Path, trust: &Path| {
        tracemark(&[
            "receipt",
            "verify",
            "--receipt",
            s(receipt),
            "--text",
            s(text),
            "--trust",
            s(trust),
        ])
    };

    // A valid receipt verifies.
    let ok = verify_args(&text, &receipt, &public);
    assert_eq!(code(&ok), 0, "{}{}", stdout(&ok), stderr(&ok));
    let shown = stdout(&ok);
    assert!(
        shown.contains(&format!("receipt valid:     yes: signed by {id}")),
        "{shown}"
    );
    assert!(shown.contains("text matches:      yes: exactly"), "{shown}");
    assert!(shown.contains("watermark present: not checked"), "{shown}");
    assert!(
        shown.contains("label account/alice") && shown.contains("RECEIPT HOLDS"),
        "{shown}"
    );
    let json = tracemark(&[
        "receipt",
        "verify",
        "--receipt",
        s(&receipt),
        "--text",
        s(&text),
        "--trust",
        s(&public),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert_eq!(v["holds"], true);
    assert_eq!(v["check"]["signature"]["status"], "valid");
    assert_eq!(v["check"]["signature"]["signer"], id.as_str());
    assert_eq!(v["check"]["text"]["status"], "exact");
    assert_eq!(v["check"]["watermark"]["status"], "not_checked");
    assert_eq!(v["receipt"]["key_id"], key_id.as_str());

    // A tampered text.
    let tampered_text = dir.path("tampered.txt");
    std::fs::write(&tampered_text, "The lighthouse keeper read the message once.").expect("write");
    let o = verify_args(&tampered_text, &receipt, &public);
    assert_eq!(code(&o), 6);
    assert!(stdout(&o).contains("text matches:      NO"), "{}", stdout(&o));
    assert!(stdout(&o).contains("receipt valid:     yes"), "{}", stdout(&o));

    // A tampered receipt.
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).expect("receipt")).expect("json");
    r["label"] = Value::from("account/bob");
    let tampered_receipt = dir.path("tampered.receipt.json");
    std::fs::write(&tampered_receipt, r.to_string()).expect("write");
    let o = verify_args(&text, &tampered_receipt, &public);
    assert_eq!(code(&o), 6);
    assert!(
        stdout(&o).contains("receipt valid:     NO: the signature does not match the receipt's contents"),
        "{}",
        stdout(&o)
    );

    // The wrong signing key (a verifier that trusts another signer).
    let other = dir.path("other.key");
    assert_eq!(code(&tracemark(&["receipt", "keygen", "--out", s(&other)])), 0);
    let o = verify_args(&text, &receipt, &dir.path("other.key.pub"));
    assert_eq!(code(&o), 6);
    assert!(
        stdout(&o).contains(&format!(
            "receipt valid:     NO: signed by {id}, a key you did not trust"
        )),
        "{}",
        stdout(&o)
    );

    // A malformed receipt is an input error.
    let garbled = dir.path("garbled.json");
    std::fs::write(&garbled, "{\"format\": \"tracemark-receipt-v1\"}").expect("write");
    let o = verify_args(&text, &garbled, &public);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("malformed receipt"), "{}", stderr(&o));

    // Key files of the wrong kind are key errors that say what they are.
    let watermark_key = dir.path("watermark.key");
    assert_eq!(code(&tracemark(&["keygen", "--out", s(&watermark_key)])), 0);
    let o = tracemark(&[
        "receipt",
        "sign",
        "--signing-key",
        s(&watermark_key),
        "--text",
        s(&text),
        "--model",
        "m",
    ]);
    assert_eq!(code(&o), 5);
    assert!(
        stderr(&o).contains("is a watermark key file (tracemark-key-v1), not a secret receipt signing key file"),
        "{}",
        stderr(&o)
    );
    let o = verify_args(&text, &receipt, &signing);
    assert_eq!(code(&o), 5);
    assert!(
        stderr(&o).contains(
            "is a secret receipt signing key file (tracemark-signing-key-v1), not a public receipt verifying key file"
        ),
        "{}",
        stderr(&o)
    );
    let o = tracemark(&["key-id", "--key", s(&signing)]);
    assert_eq!(code(&o), 5);
    assert!(stderr(&o).contains("not a watermark key file"), "{}", stderr(&o));
}

#[test]
fn cli_tests_the_watermark_with_the_master_key_and_the_receipts_label() {
    let dir = Dir::new("receipt-watermark");
    let master = Key::generate().expect("key");
    let master_path = dir.path("master.key");
    master.save(&master_path).expect("save");
    let tokenizer = dir.path("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json(VOCAB)).expect("tokenizer");
    let signing = dir.path("signing.key");
    assert_eq!(code(&tracemark(&["receipt", "keygen", "--out", s(&signing)])), 0);
    let public = dir.path("signing.key.pub");

    // The answer served to account/alice, watermarked under derive(master, "account/alice").
    let alice = master.derive("account/alice").expect("derive");
    let cfg: SchemeConfig = SCHEME.parse().expect("cfg");
    let scheme = cfg.build(&alice, VOCAB).expect("scheme");
    let ids = generate(scheme.as_ref(), &[1], 200, &mut Rng::new(5), |_, _| vec![0.0; VOCAB]);
    let marked = dir.path("marked.txt");
    std::fs::write(&marked, words(&ids)).expect("write");
    let plain = dir.path("plain.txt");
    let plain_ids: Vec<u32> = (0..200).map(|i| (i * 7919 + 13) % VOCAB as u32).collect();
    std::fs::write(&plain, words(&plain_ids)).expect("write");

    for (text, want) in [(&marked, 0), (&plain, 1)] {
        let receipt = dir.path(&format!(
            "{}.receipt.json",
            text.file_name().expect("name").to_string_lossy()
        ));
        let sign = tracemark(&[
            "receipt",
            "sign",
            "--signing-key",
            s(&signing),
            "--text",
            s(text),
            "--model",
            "m",
            "--scheme",
            SCHEME,
            "--key-id",
            &alice.id().to_string(),
            "--label",
            "account/alice",
        ]);
        assert_eq!(code(&sign), 0, "{}", stderr(&sign));
        std::fs::write(&receipt, sign.stdout).expect("write");
        let o = tracemark(&[
            "receipt",
            "verify",
            "--receipt",
            s(&receipt),
            "--text",
            s(text),
            "--trust",
            s(&public),
            "--key",
            s(&master_path),
            "--tokenizer",
            s(&tokenizer),
            "--json",
        ]);
        assert_eq!(code(&o), want, "{}{}", stdout(&o), stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
        let w = &v["check"]["watermark"];
        assert_eq!(w["status"], "checked");
        assert_eq!(
            w["key_id"],
            alice.id().to_string().as_str(),
            "the label's key was derived"
        );
        assert_eq!(w["as_receipt_states"], true);
        assert_eq!(w["verdict"], if want == 0 { "detected" } else { "not_detected" });
        assert_eq!(v["check"]["signature"]["status"], "valid");
    }

    // The library says the same.
    let text = std::fs::read_to_string(&marked).expect("text");
    let key = SigningKey::load(&signing).expect("load");
    let receipt = Receipt::sign(
        &key,
        &text,
        &Provenance::new("m")
            .expect("m")
            .watermark(cfg.clone(), alice.id())
            .label("account/alice")
            .expect("label"),
    )
    .expect("signs");
    let tok = tracemark_verifier::TextTokenizer::from_file(&tokenizer).expect("tokenizer");
    let test = tracemark_verifier::receipt::WatermarkTest {
        key: &master,
        scheme: None,
        tokenizer: &tok,
        options: tracemark_verifier::DetectOptions::default(),
    };
    let check = verify(&receipt, &text, &[key.verifying_key()], Some(&test)).expect("runs");
    assert!(check.holds(), "{check:?}");
    assert!(matches!(
        check.watermark,
        WatermarkCheck::Checked {
            as_receipt_states: true,
            ..
        }
    ));
}
