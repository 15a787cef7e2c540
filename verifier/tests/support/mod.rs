//! Shared helpers for the verifier's integration tests.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../watermark-core/tests/common/mod.rs"]
mod core_common;

pub use core_common::Rng;

/// A temporary directory `tracemark-<name>-<pid>`, emptied when made and removed when dropped.
pub struct Dir(std::path::PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tracemark-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }

    pub fn path(&self, f: &str) -> std::path::PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
use tracemark_core::Scheme;

/// Generates `n` tokens after `prompt` by sampling from `scheme`-processed
/// logits given by `logits(step, rng)`.
pub fn generate(
    scheme: &dyn Scheme,
    prompt: &[u32],
    n: usize,
    rng: &mut Rng,
    mut logits: impl FnMut(usize, &mut Rng) -> Vec<f32>,
) -> Vec<u32> {
    let mut history = prompt.to_vec();
    for step in 0..n {
        let mut row = logits(step, rng);
        scheme.process(&history, &mut row).expect("process");
        history.push(rng.sample_logits(&row) as u32);
    }
    history.split_off(prompt.len())
}

/// Flat logits over `k` random candidates out of `vocab` (the rest banned).
pub fn flat_candidates(vocab: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let mut row = vec![f32::NEG_INFINITY; vocab];
    let mut placed = 0;
    while placed < k {
        let t = rng.below(vocab as u32) as usize;
        if row[t] == f32::NEG_INFINITY {
            row[t] = 0.0;
            placed += 1;
        }
    }
    row
}

/// Unwatermarked "human" tokens: uniform over the vocabulary.
pub fn random_tokens(vocab: usize, n: usize, rng: &mut Rng) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab as u32)).collect()
}

/// A real `tokenizers` tokenizer.json: word level over `w0 .. w{n-1}`, split on whitespace.
pub fn word_tokenizer_json(n: usize) -> String {
    let vocab: Vec<String> = (0..n).map(|i| format!("\"w{i}\": {i}")).collect();
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
"pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,
"model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"w0"}}}}"#,
        vocab.join(",")
    )
}

/// The text a word-level tokenizer encodes back to `ids`.
pub fn words(ids: &[u32]) -> String {
    ids.iter().map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}
