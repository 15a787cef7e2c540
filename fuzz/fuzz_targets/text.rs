//! Arbitrary bytes through the text path: UTF-8 check, canonicalisation,
//! a real byte-level BPE tokenizer (`tokenizers`) and detection of both forms.
//! Nothing may panic; canonical spans must lie inside the original text.
#![no_main]

use std::sync::OnceLock;

use tracemark_core::Key;
use tracemark_verifier::{canonicalize, DetectOptions, Detector, TextTokenizer, WindowOptions};

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for
/// themselves, the others for code points from U+0100 on.
fn byte_chars() -> Vec<char> {
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
            if printable {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

/// A byte-level BPE tokenizer with the 256 byte tokens and a few merges.
fn tokenizer_json() -> String {
    let chars = byte_chars();
    let mut vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    let merges = [
        ("t", "h"),
        ("h", "e"),
        ("th", "e"),
        ("Ġ", "t"),
        ("Ġt", "he"),
        ("i", "n"),
        ("e", "r"),
    ];
    for (a, b) in merges {
        vocab.push(format!("{a}{b}"));
    }
    let vocab_json: Vec<String> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}: {i}", serde_json::to_string(t).unwrap_or_default()))
        .collect();
    let merges_json: Vec<String> = merges
        .iter()
        .map(|(a, b)| serde_json::to_string(&format!("{a} {b}")).unwrap_or_default())
        .collect();
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
"pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
"post_processor":null,"decoder":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
"model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{{{}}},"merges":[{}]}}}}"#,
        vocab_json.join(","),
        merges_json.join(",")
    )
}

struct Fixture {
    tokenizer: TextTokenizer,
    detectors: Vec<Detector>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tokenizer = TextTokenizer::from_bytes(tokenizer_json().as_bytes()).expect("the fuzz tokenizer parses");
        let vocab = tokenizer.vocab_size();
        let key = Key::from_bytes([0x42; 32]);
        let options = DetectOptions {
            min_scored: 1,
            marks: true,
            window: Some(WindowOptions::with_min_scored(2)),
            ..DetectOptions::default()
        };
        let detectors = [
            "kgw:gamma=0.25,delta=2,context=lefthash:1",
            "kgw:gamma=0.5,delta=2,context=selfhash:3",
            "gumbel:temperature=1,context=lefthash:2",
        ]
        .iter()
        .map(|s| Detector::new(&key, &s.parse().expect("scheme"), vocab, options.clone()).expect("detector"))
        .collect();
        Fixture { tokenizer, detectors }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // Invalid UTF-8 never reaches detection (the CLI and the service
        // refuse it with a typed error); its lossy form goes through too.
        return run(&String::from_utf8_lossy(data));
    };
    run(text);
});

fn run(text: &str) {
    let c = canonicalize(text);
    let n = c.text().len();
    for (i, j) in [(0, n), (0, n / 2), (n / 3, n), (n / 2, n / 2)] {
        let (a, b) = c.original_span((i, j));
        assert!(
            a <= b && b <= text.len(),
            "span {i}..{j} -> {a}..{b} outside {}",
            text.len()
        );
    }
    let summary = c.summary();
    assert_eq!(summary.total, c.changes().len());
    for change in c.changes() {
        assert!(change.span.0 < change.span.1 && change.span.1 <= text.len());
    }
    let f = fixture();
    let (prompt, completion) = text.split_at(text.char_indices().nth(text.chars().count() / 4).map_or(0, |(i, _)| i));
    for d in &f.detectors {
        if let Ok(r) = d.detect_text(&f.tokenizer, Some(prompt), completion) {
            for m in r.marks.iter().flatten() {
                if let Some((a, b)) = m.span {
                    assert!(
                        a <= b && b <= completion.len(),
                        "mark span {a}..{b} outside {}",
                        completion.len()
                    );
                }
            }
            let _ = serde_json::to_string(&r).expect("reports serialise");
            let _ = tracemark_verifier::render::detection(&r, Some(completion), true);
        }
    }
}
