//! Streaming detection: after every chunk of tokens, the running report is
//! exactly the batch report of the tokens so far, for every scheme,
//! deduplication mode, window search and mark setting, on watermarked and
//! unwatermarked ids alike.

mod support;

use support::{flat_candidates, generate, random_tokens, Rng};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{Dedup, DetectOptions, Detector, Error, WindowOptions};

const VOCAB: usize = 512;
const SCHEMES: [&str; 5] = [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.5,delta=2,context=lefthash:0",
    "kgw:gamma=0.25,delta=2,context=selfhash:4",
    "tournament:layers=8,top_k=20,temperature=1,context=lefthash:4",
    "gumbel:temperature=1,context=lefthash:4",
];

#[test]
fn running_report_equals_batch_report_after_every_chunk() {
    let mut rng = Rng::new(0x5717_ea11);
    let mut checks = 0;
    for scheme in SCHEMES {
        let config: SchemeConfig = scheme.parse().expect("scheme");
        for round in 0..6 {
            let key = rng.key();
            let options = DetectOptions {
                dedup: [Dedup::Pair, Dedup::Context, Dedup::None][round % 3],
                marks: round % 2 == 0,
                window: (round >= 3).then_some(WindowOptions::with_min_scored(16)),
                min_scored: 10,
                ..DetectOptions::default()
            };
            let detector = Detector::new(&key, &config, VOCAB, options).expect("detector");
            let prompt = random_tokens(VOCAB, (round * 3) % 7, &mut rng);
            let n = 60 + (rng.below(240) as usize);
            let ids = if round % 2 == 0 {
                let wm = config.build(&key, VOCAB).expect("build");
                generate(wm.as_ref(), &prompt, n, &mut rng, |_, r| flat_candidates(VOCAB, 24, r))
            } else {
                // Repeats, to exercise deduplication.
                let base = random_tokens(VOCAB, n / 3 + 1, &mut rng);
                base.iter().cycle().take(n).copied().collect()
            };
            let mut stream = detector.stream(&prompt).expect("stream");
            assert!(matches!(detector.stream_report(&stream), Err(Error::EmptyInput)));
            let mut at = 0;
            while at < ids.len() {
                let chunk = 1 + rng.below(17) as usize;
                let end = (at + chunk).min(ids.len());
                detector.push(&mut stream, &ids[at..end]).expect("push");
                at = end;
                let running = detector.stream_report(&stream).expect("running");
                let batch = detector.detect_ids(&prompt, &ids[..at]).expect("batch");
                assert_eq!(running, batch, "{scheme}, round {round}, after {at} tokens");
                checks += 1;
            }
            assert_eq!(stream.len(), ids.len());
        }
    }
    assert!(checks > 300, "{checks}");
}

#[test]
fn a_bad_id_adds_nothing_and_another_key_is_refused() {
    let config: SchemeConfig = SCHEMES[0].parse().expect("scheme");
    let key = Key::from_bytes([7; 32]);
    let detector = Detector::new(&key, &config, VOCAB, DetectOptions::default()).expect("detector");
    let mut stream = detector.stream(&[1, 2]).expect("stream");
    detector.push(&mut stream, &[3, 4, 5]).expect("push");
    let err = detector
        .push(&mut stream, &[6, VOCAB as u32, 7])
        .expect_err("out of vocabulary");
    assert!(matches!(err, Error::WrongTokenizer { position: 6, .. }), "{err:?}");
    assert_eq!(stream.len(), 3);
    let other = Detector::new(&Key::from_bytes([8; 32]), &config, VOCAB, DetectOptions::default()).expect("detector");
    assert!(other.push(&mut stream, &[3]).is_err());
    assert!(other.stream_report(&stream).is_err());
    assert!(matches!(
        detector.stream(&[VOCAB as u32]),
        Err(Error::WrongTokenizer { position: 0, .. })
    ));
}
