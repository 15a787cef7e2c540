//! Arbitrary bytes as a JSONL corpus: every line is parsed, tokenized (text
//! lines) and tested; a bad line is a reported error, never a panic, and no
//! line is lost from the counts.
#![no_main]

use std::sync::OnceLock;

use tracemark_core::Key;
use tracemark_verifier::{DetectOptions, Detector, Scanner, TextTokenizer};

fn fixture() -> &'static (TextTokenizer, Detector) {
    static FIXTURE: OnceLock<(TextTokenizer, Detector)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let vocab: Vec<String> = (0..300).map(|i| format!("\"w{i}\": {i}")).collect();
        let json = format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
"pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,
"model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"w0"}}}}"#,
            vocab.join(",")
        );
        let tokenizer = TextTokenizer::from_bytes(json.as_bytes()).expect("tokenizer");
        let options = DetectOptions {
            min_scored: 1,
            ..DetectOptions::default()
        };
        let config = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme");
        let detector = Detector::new(&Key::from_bytes([7; 32]), &config, 300, options).expect("detector");
        (tokenizer, detector)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (tokenizer, detector) = fixture();
    let scanner = Scanner::new(detector, Some(tokenizer)).jobs(1);
    let mut seen = 0;
    let summary = scanner
        .scan(data, |_| seen += 1)
        .expect("reading from memory cannot fail");
    assert_eq!(summary.documents, seen);
    assert_eq!(
        summary.documents,
        summary.errors + summary.detected + summary.not_detected + summary.inconclusive
    );
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    assert_eq!(summary.documents, lines, "every non-blank line is one document");
});
