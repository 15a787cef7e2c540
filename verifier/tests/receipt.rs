//! Provenance receipts: the golden vectors of SPEC §12, and `tracemark receipt` end to end.

use tracemark_verifier::receipt::{Provenance, Receipt, SigningKey};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
#[ignore = "prints the golden vectors (testdata/vectors/receipts.json)"]
fn print_golden_vectors() {
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let key = SigningKey::from_seed(&seed);
    let cases = [
        (
            "A watermarked answer\u{200b}, signed.",
            Provenance::new("SmolLM2-135M-Instruct")
                .expect("model")
                .created("2026-12-01T09:30:00Z".parse().expect("time"))
                .watermark(
                    "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme"),
                    "0123456789abcdef0123456789abcdef".parse().expect("id"),
                )
                .label("account/alice")
                .expect("label"),
        ),
        (
            "Plain text, no watermark stated.",
            Provenance::new("SmolLM2-135M-Instruct")
                .expect("model")
                .created("2026-12-01T09:31:00Z".parse().expect("time")),
        ),
    ];
    for (text, p) in cases {
        let r = Receipt::sign(&key, text, &p).expect("signs");
        println!(
            "{}",
            serde_json::json!({
                "seed": hex(&seed),
                "signing_key_file": key.to_file_string().as_str(),
                "verifying_key_file": key.verifying_key().to_file_string(),
                "public_key": key.verifying_key().to_hex(),
                "signer": key.id().to_string(),
                "text": text,
                "message": hex(&r.signed_message()),
                "receipt": serde_json::from_str::<serde_json::Value>(&r.to_json()).expect("json"),
            })
        );
    }
}
