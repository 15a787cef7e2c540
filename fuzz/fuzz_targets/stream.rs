//! Arbitrary bytes as token ids pushed in arbitrary chunks: the streaming
//! detector's running report equals the batch report after every chunk, for
//! every scheme; ids outside the vocabulary are refused and add nothing.
#![no_main]

use std::sync::OnceLock;

use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{Dedup, DetectOptions, Detector, WindowOptions};

const VOCAB: usize = 200;

fn detectors() -> &'static Vec<Detector> {
    static D: OnceLock<Vec<Detector>> = OnceLock::new();
    D.get_or_init(|| {
        let key = Key::from_bytes([3; 32]);
        [
            ("kgw:gamma=0.25,delta=2,context=lefthash:1", Dedup::Pair, None),
            ("kgw:gamma=0.5,delta=1,context=selfhash:4", Dedup::Context, Some(8)),
            (
                "tournament:layers=4,top_k=8,temperature=1,context=minhash:4",
                Dedup::None,
                None,
            ),
            ("gumbel:temperature=1,context=lefthash:4", Dedup::Pair, Some(4)),
        ]
        .into_iter()
        .map(|(s, dedup, window)| {
            let config: SchemeConfig = s.parse().expect("scheme");
            let options = DetectOptions {
                dedup,
                min_scored: 2,
                marks: window.is_some(),
                window: window.map(WindowOptions::with_min_scored),
                ..DetectOptions::default()
            };
            Detector::new(&key, &config, VOCAB, options).expect("detector")
        })
        .collect()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let detector = &detectors()[usize::from(pick) % 4];
    // Each byte pair: a chunk-size nibble and an id (a few land outside the vocabulary).
    let mut ids = Vec::new();
    let mut cuts = Vec::new();
    for pair in rest.chunks(2) {
        let id = u32::from(pair[0]);
        ids.push(id);
        if pair.get(1).is_some_and(|b| b & 0x0f == 0) {
            cuts.push(ids.len());
        }
    }
    let prompt: Vec<u32> = ids.iter().take(2).map(|&i| i % VOCAB as u32).collect();
    let mut stream = detector.stream(&prompt).expect("prompt ids fit");
    let mut accepted: Vec<u32> = Vec::new();
    let mut at = 0;
    cuts.push(ids.len());
    for &cut in &cuts {
        let chunk = &ids[at..cut.max(at)];
        at = cut.max(at);
        let before = stream.len();
        match detector.push(&mut stream, chunk) {
            Ok(()) => accepted.extend_from_slice(chunk),
            Err(_) => {
                assert!(chunk.iter().any(|&i| i as usize >= VOCAB));
                assert_eq!(stream.len(), before, "a refused chunk adds nothing");
                continue;
            }
        }
        if accepted.is_empty() {
            continue;
        }
        let running = detector.stream_report(&stream).expect("running");
        let batch = detector.detect_ids(&prompt, &accepted).expect("batch");
        assert_eq!(running, batch);
    }
});
