//! The stand-in teacher: a trigram model of human text, watermarked through
//! the core's kgw scheme by exact rejection sampling.
//!
//! SmolLM2 writes about 140 tokens/s on this machine, and every repetition of
//! the campaign needs a fresh harvest under fresh keys (hundreds of thousands
//! of tokens), so the teacher here is a [`NGram`] trained on Debian-packaged
//! human text. Its answers are watermarked with the real scheme: a token `t`
//! drawn from the model is kept when it is green under the key (the scheme's
//! own observation and score, SPEC §7), and otherwise with probability
//! `e^-delta`. The kept token then has probability `p(t) e^(delta g(t)) / Z`,
//! exactly the distribution of `+delta` on the green logits followed by
//! sampling (what [`Scheme::process`] and a sampler do), without building a
//! vocabulary-sized row per token.

use std::path::PathBuf;

use tracemark_candle::{gguf_tokenizer, Rng};

use crate::students::NGram;
use tracemark_core::{Scheme, SchemeConfig};

use crate::{cache_dir, io, Error, Result};

/// Tokens per training segment of the teacher, and the longest answer it writes.
pub const SEGMENT: usize = 64;

/// The teacher and the contexts its prompts are drawn from.
pub struct Teacher {
    /// The trigram model of the human text.
    pub model: NGram,
    /// Two-token prompts: the openings of the segments the teacher did not
    /// train on; the harvest draws from the first half, the students answer the second.
    pub prompts: Vec<Vec<u32>>,
    /// The token that ends an answer.
    pub eos: u32,
    /// The vocabulary size.
    pub vocab: usize,
    /// The teacher's kgw `delta`.
    delta: f64,
}

/// The human-text corpus: `$TRACEMARK_HUMAN_TEXT`, or the newest one `scripts/fetch.py human-text` left in the cache.
pub fn human_text_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TRACEMARK_HUMAN_TEXT") {
        return Ok(PathBuf::from(p));
    }
    let dir = cache_dir().join("human-text");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| {
        Error::Usage("no human text: run `python3 scripts/fetch.py human-text` or set TRACEMARK_HUMAN_TEXT".into())
    })
}

impl Teacher {
    /// A teacher trained on about `tokens` tokens of the prose and documentation
    /// of the human-text corpus (SmolLM2's tokenizer), watermarking with `scheme`'s delta.
    pub fn new(
        tok: &tokenizers::Tokenizer,
        eos: u32,
        vocab: usize,
        tokens: usize,
        scheme: &SchemeConfig,
    ) -> Result<Self> {
        let SchemeConfig::Kgw(kgw) = scheme else {
            return Err(Error::Usage(format!(
                "the stand-in teacher samples kgw by rejection; {} is not kgw",
                scheme.kind().name()
            )));
        };
        let path = human_text_path()?;
        let text = io(&path, std::fs::read_to_string(&path))?;
        let mut segments: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        let mut prompts = Vec::new();
        let mut total = 0;
        // Documents in a fixed interleaving of the categories, so that a small
        // teacher sees prose and documentation alike.
        let mut by_category: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Usage(e.to_string()))?;
            let slot = match v["category"].as_str() {
                Some("prose") => 0,
                Some("docs") => 1,
                _ => continue,
            };
            by_category[slot].push(line);
        }
        let docs = by_category[0].iter().zip(&by_category[1]).flat_map(|(a, b)| [a, b]);
        for line in docs {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Usage(e.to_string()))?;
            let ids = gguf_tokenizer::encode(tok, v["text"].as_str().unwrap_or_default())?;
            for (i, chunk) in ids.chunks(SEGMENT + 2).enumerate() {
                if chunk.len() < SEGMENT + 2 {
                    continue;
                }
                // Every eighth segment is held out: its opening is a prompt.
                if i % 8 == 7 {
                    prompts.push(chunk[..2].to_vec());
                    continue;
                }
                let mut body = chunk[2..].to_vec();
                body.push(eos);
                total += body.len();
                segments.push((chunk[..2].to_vec(), body));
            }
            if total >= tokens {
                break;
            }
        }
        if prompts.len() < 100 {
            return Err(Error::Usage(format!(
                "{}: too little human text for the teacher",
                path.display()
            )));
        }
        Ok(Teacher {
            model: NGram::train(vocab, &segments),
            prompts,
            eos,
            vocab,
            delta: f64::from(kgw.delta()),
        })
    }

    /// The prompts the students answer (not the harvest's, but alike).
    pub fn student_prompts(&self) -> Vec<Vec<u32>> {
        self.prompts[self.prompts.len() / 2..].to_vec()
    }

    /// Tokens the teacher was trained on.
    pub fn tokens(&self) -> u64 {
        self.model.tokens()
    }

    /// One token after `history`, watermarked by `scheme` (kgw, by rejection).
    fn next(&self, scheme: &dyn Scheme, history: &[u32], rng: &mut Rng) -> Result<u32> {
        let n = history.len();
        let keep_red = (-self.delta).exp();
        loop {
            let t = self.model.sample(history[n - 2], history[n - 1], rng);
            let green = match scheme.observe(history, t)? {
                Some(o) => scheme.score(o.value) > 0.0,
                None => true,
            };
            if green || rng.uniform() < keep_red {
                return Ok(t);
            }
        }
    }

    /// Watermarked answers (`(prompt, ids)`, `ids` ending with `eos` when the
    /// teacher stopped) to prompts drawn with `rng`, until they hold `tokens` tokens.
    pub fn answers(&self, scheme: &dyn Scheme, tokens: usize, rng: &mut Rng) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let mut out = Vec::new();
        let mut total = 0;
        while total < tokens {
            let prompt = self.prompts[(rng.next_u64() % (self.prompts.len() / 2) as u64) as usize].clone();
            let mut history = prompt.clone();
            for _ in 0..SEGMENT {
                let t = self.next(scheme, &history, rng)?;
                history.push(t);
                if t == self.eos {
                    break;
                }
            }
            let ids = history[prompt.len()..].to_vec();
            total += ids.len();
            out.push((prompt, ids));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracemark_core::Key;

    /// The rejection sampler against the processed row: on a tiny vocabulary, the
    /// frequencies of kept tokens match softmax(log p + delta * green) within 5 sd.
    #[test]
    fn rejection_sampling_is_the_watermarked_distribution() {
        let samples = vec![
            (vec![1, 2], vec![3, 4, 5, 6, 7, 3, 8, 4, 9, 3, 5, 5, 6]),
            (vec![2, 3], vec![4, 5, 6, 7]),
        ];
        let model = NGram::train(10, &samples);
        let config: SchemeConfig = "kgw:gamma=0.5,delta=2,context=lefthash:1".parse().expect("scheme");
        let scheme = config.build(&Key::from_bytes([3; 32]), 10).expect("build");
        let teacher = Teacher {
            model,
            prompts: vec![vec![1, 2]; 2],
            eos: 0,
            vocab: 10,
            delta: 2.0,
        };
        let history = [2u32, 3];
        let mut logits: Vec<f32> = (0..10).map(|w| teacher.model.prob(2, 3, w).ln() as f32).collect();
        scheme.process(&history, &mut logits).expect("process");
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        let mut rng = Rng::new(11);
        let n = 100_000;
        let mut counts = [0u32; 10];
        for _ in 0..n {
            counts[teacher.next(scheme.as_ref(), &history, &mut rng).expect("next") as usize] += 1;
        }
        for w in 0..10 {
            let want = f64::from(logits[w]).exp() / z;
            let got = f64::from(counts[w]) / f64::from(n);
            let sd = (want * (1.0 - want) / f64::from(n)).sqrt();
            assert!((got - want).abs() < 5.0 * sd + 1e-4, "token {w}: {got} vs {want}");
        }
    }
}
