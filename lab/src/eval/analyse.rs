//! The measurements of the report: detection by length, the FPR check,
//! attacks, the paste into human text, quality and the watermark's cost.

use std::collections::BTreeMap;
use std::path::Path;

use tracemark_candle::{gguf_tokenizer, Rng};
use tracemark_verifier::{DetectOptions, Detector, WindowOptions};

use super::{delete, distinct_n, insert, substitute, PromptRecord, Setup, LENGTHS};
use crate::{io, Error, Result};

/// One row of a results table: log10 p per prompt.
type Samples = Vec<f64>;

/// Everything the report's tables and plots show, keyed by arm name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Analysis {
    /// log10 p per answer of a watermarked arm, on its first L tokens ([`LENGTHS`]).
    pub by_length: BTreeMap<(String, usize), Samples>,
    /// log10 p per answer of the unwatermarked arm under this arm's detector.
    pub fpr: BTreeMap<String, Samples>,
    /// log10 p per answer of a watermarked arm after an attack (by label).
    pub attacks: BTreeMap<(String, String), Samples>,
    /// Mean NLL per token and perplexity, per answer.
    pub nll: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
    /// Distinct-2 and distinct-3, per answer.
    pub distinct: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
    /// Watermark time per generated token, in microseconds.
    pub watermark_us_per_token: BTreeMap<String, f64>,
    /// Share of answers whose ids survive decode + re-encode exactly.
    pub roundtrip_exact: BTreeMap<String, f64>,
    /// New tokens per answer.
    pub tokens: BTreeMap<String, Vec<f64>>,
}

fn human_ids(s: &Setup, n: usize) -> Result<Vec<Vec<u32>>> {
    let path = std::env::var("TRACEMARK_HUMAN_TEXT").map_err(|_| {
        Error::Usage("set TRACEMARK_HUMAN_TEXT to the human-text corpus (python3 scripts/fetch.py human-text)".into())
    })?;
    let text = io(Path::new(&path), std::fs::read_to_string(&path))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Usage(e.to_string()))?;
        if v["category"] == "prose" || v["category"] == "docs" {
            let ids = gguf_tokenizer::encode(&s.tok, v["text"].as_str().unwrap_or_default())?;
            if ids.len() >= 800 {
                out.push(ids[..800].to_vec());
            }
        }
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}

/// Measures every arm's answers: quality and cost for all arms; detection,
/// the FPR check and robustness for the watermarked ones.
pub fn analyse(s: &Setup, records: &[PromptRecord]) -> Result<Analysis> {
    let vocab = s.model.config().vocab_size as u32;
    let opts = DetectOptions {
        min_scored: 1,
        ..DetectOptions::default()
    };
    let window_opts = DetectOptions {
        window: Some(WindowOptions::default()),
        ..opts.clone()
    };
    let human = human_ids(s, records.len())?;
    let mut a = Analysis::default();
    for (arm_index, spec) in s.arms.iter().enumerate() {
        let name = spec.name.to_string();
        let mut nlls = Vec::new();
        let mut ppls = Vec::new();
        let (mut d2, mut d3) = (Vec::new(), Vec::new());
        let mut wm_ns = 0u64;
        let mut produced = 0usize;
        for r in records {
            let g = &r.arms[arm_index];
            if !g.nll.is_empty() {
                let mean = g.nll.iter().map(|&x| f64::from(x)).sum::<f64>() / g.nll.len() as f64;
                nlls.push(mean);
                ppls.push(mean.exp());
            }
            d2.push(distinct_n(&g.ids, 2));
            d3.push(distinct_n(&g.ids, 3));
            wm_ns += g.watermark_ns;
            produced += g.ids.len() + usize::from(g.stopped);
            a.tokens.entry(name.clone()).or_default().push(g.ids.len() as f64);
        }
        let mut exact = 0usize;
        for r in records {
            let g = &r.arms[arm_index];
            let text = gguf_tokenizer::decode(&s.tok, &g.ids)?;
            exact += usize::from(gguf_tokenizer::encode(&s.tok, &text)? == g.ids);
        }
        a.roundtrip_exact
            .insert(name.clone(), exact as f64 / records.len().max(1) as f64);
        a.nll.insert(name.clone(), (nlls, ppls));
        a.distinct.insert(name.clone(), (d2, d3));
        a.watermark_us_per_token
            .insert(name.clone(), wm_ns as f64 / 1e3 / produced.max(1) as f64);
        let Some(config) = &spec.scheme else { continue };
        let detector = Detector::new(&s.key, config, vocab as usize, opts.clone())?;
        let window_detector = Detector::new(&s.key, config, vocab as usize, window_opts.clone())?;
        for (pi, r) in records.iter().enumerate() {
            let g = &r.arms[arm_index];
            let detect = |ids: &[u32]| -> Result<f64> {
                if ids.is_empty() {
                    return Ok(0.0);
                }
                Ok(detector.detect_ids(&r.prompt_ids, ids)?.outcome.conservative_log10_p())
            };
            for &len in &LENGTHS {
                let l = len.min(g.ids.len());
                a.by_length
                    .entry((name.clone(), len))
                    .or_default()
                    .push(detect(&g.ids[..l])?);
            }
            // The unwatermarked arm under this scheme's detector: the FPR check.
            a.fpr.entry(name.clone()).or_default().push(detect(&r.arms[0].ids)?);
            let mut rng = Rng::new(0x00a7_7ac4 ^ ((pi as u64) << 8) ^ arm_index as u64);
            let attack = |label: String, ids: Vec<u32>, a: &mut Analysis| -> Result<()> {
                let l = detect(&ids)?;
                a.attacks.entry((name.clone(), label)).or_default().push(l);
                Ok(())
            };
            for f in [0.1, 0.3, 0.5] {
                attack(
                    format!("substitute {:.0}%", f * 100.0),
                    substitute(&g.ids, f, vocab, &mut rng),
                    &mut a,
                )?;
            }
            for f in [0.1, 0.3] {
                attack(format!("delete {:.0}%", f * 100.0), delete(&g.ids, f, &mut rng), &mut a)?;
                attack(
                    format!("insert {:.0}%", f * 100.0),
                    insert(&g.ids, f, vocab, &mut rng),
                    &mut a,
                )?;
            }
            // Decode, then re-encode with the model's tokenizer, as a verifier of text must.
            let text = gguf_tokenizer::decode(&s.tok, &g.ids)?;
            let prompt_text = s
                .tok
                .decode(&r.prompt_ids, false)
                .map_err(|e| tracemark_candle::Error::Tokenizer(e.to_string()))?;
            let rt = if text.trim().is_empty() {
                0.0
            } else {
                // The verdict's p-value: with canonicalisation (on, as in
                // the CLI) the text's two forms are one corrected family.
                detector
                    .detect_text(&s.verifier_tok, Some(&prompt_text), &text)?
                    .conservative_verdict_log10_p()
            };
            a.attacks
                .entry((name.clone(), "decode/re-encode".into()))
                .or_default()
                .push(rt);
            // Pasted in the middle of four times as much human text.
            if let Some(h) = human.get(pi % human.len().max(1)) {
                let cut = h.len() / 2;
                let mut doc = h[..cut].to_vec();
                doc.extend_from_slice(&g.ids);
                doc.extend_from_slice(&h[cut..(cut + 3 * g.ids.len()).min(h.len())]);
                let d = window_detector.detect_ids(&[], &doc)?;
                a.attacks
                    .entry((name.clone(), "pasted in 4x human text (whole)".into()))
                    .or_default()
                    .push(d.outcome.conservative_log10_p());
                a.attacks
                    .entry((name.clone(), "pasted in 4x human text (window)".into()))
                    .or_default()
                    .push(d.window.map_or(0.0, |w| w.log10_p));
            }
        }
    }
    Ok(a)
}
