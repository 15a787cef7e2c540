//! Arbitrary bytes as a receipt (JSON) and a text: parsing either refuses
//! with a typed error or gives a receipt that verifies without panicking;
//! a receipt that parses re-serialises to JSON that parses to the same
//! receipt; and only the receipt of the fixed signer over this exact text
//! verifies as valid and exact.
#![no_main]

use std::sync::OnceLock;

use tracemark_verifier::receipt::{verify, Provenance, Receipt, SignatureCheck, SigningKey, TextCheck, VerifyingKey};

fn signer() -> &'static (SigningKey, VerifyingKey) {
    static SIGNER: OnceLock<(SigningKey, VerifyingKey)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let key = SigningKey::from_seed(&[9; 32]);
        let public = key.verifying_key();
        (key, public)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (key, public) = signer();
    // The first line is the receipt; the rest is the text it is checked against.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (json, text) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let text = String::from_utf8_lossy(text);
    if let Ok(json) = std::str::from_utf8(json) {
        if let Ok(receipt) = Receipt::from_json(json) {
            let again = Receipt::from_json(&receipt.to_json()).expect("a receipt's own JSON parses");
            assert_eq!(again.to_json(), receipt.to_json());
            let check = verify(&receipt, &text, std::slice::from_ref(public), None).expect("verify");
            let _ = check;
        }
    }
    // Signing the text and verifying it always holds; any other text does not match exactly.
    if let Ok(provenance) = Provenance::new("fuzz-model") {
        let receipt = Receipt::sign(key, &text, &provenance).expect("sign");
        let check = verify(&receipt, &text, std::slice::from_ref(public), None).expect("verify");
        assert!(matches!(check.signature, SignatureCheck::Valid { .. }), "{check:?}");
        assert_eq!(check.text, TextCheck::Exact);
        let other = format!("{text}.");
        let check = verify(&receipt, &other, std::slice::from_ref(public), None).expect("verify");
        assert_ne!(check.text, TextCheck::Exact);
    }
});
