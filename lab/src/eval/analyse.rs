//! The measurements of the report: detection by length, the FPR check,
//! attacks (edits of the ids, tampering, the emoji attack, paraphrases), the
//! paste into human text, quality and the watermark's cost.

use std::collections::BTreeMap;
use std::path::Path;

use crate::summary::median;
use crate::tamper::{tamper, Tampering};
use tracemark_candle::{gguf_tokenizer, Rng};
use tracemark_verifier::{DetectOptions, Detector, WindowOptions};

use super::{
    content_overlap, copied_share, delete, distinct_n, emojis_per_word, insert, rule_paraphrase, strip_emoji,
    substitute, AttackRecord, PromptRecord, Setup, LENGTHS, PARAPHRASE_ROUNDS,
};
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
    /// log10 p per answer of a watermarked arm after each tampering at 100%
    /// (by [`Tampering::name`]), tested with canonicalisation off.
    pub uncanonicalized: BTreeMap<(String, String), Samples>,
    /// The tampering that canonicalisation matters most for: the one whose
    /// median log10 p with canonicalisation off, averaged over the arms, is
    /// highest. Its column is in [`Analysis::attacks`] as
    /// [`uncanonicalized_label`].
    pub strongest_tampering: Option<Tampering>,
    /// Per (arm, paraphrase: [`PARAPHRASE`], [`RULES`]): the content-word F1
    /// of the paraphrase against the answer
    /// ([`content_overlap`](super::content_overlap)), per answer.
    pub meaning: BTreeMap<(String, String), Samples>,
    /// Per (arm, paraphrase): the share of the paraphrase's word 5-grams
    /// copied from the answer ([`copied_share`](super::copied_share)), per answer.
    pub copied: BTreeMap<(String, String), Samples>,
    /// Per (arm, rewrite attack: [`EMOJI`], [`PARAPHRASE`], [`RULES`]):
    /// tokens of the tested text, per answer.
    pub rewrite_tokens: BTreeMap<(String, String), Samples>,
    /// Emoji runs per word in each emoji-attack answer, before removal.
    pub emojis_per_word: BTreeMap<String, Samples>,
    /// Share of the words the rule-based paraphraser replaced, per answer.
    pub rules_replaced: BTreeMap<String, Samples>,
    /// Sentences whose clauses the rule-based paraphraser swapped, per answer.
    pub rules_swapped: BTreeMap<String, Samples>,
    /// Content-word F1 of the arm's answer against the unwatermarked answer
    /// to the same prompt: what two independent answers to one question share.
    pub reference_f1: BTreeMap<String, Samples>,
}

/// The tampering rates of the robustness tables (shares of eligible places).
pub const TAMPER_RATES: [f64; 2] = [0.25, 1.0];

/// The column of a tampering at a rate.
pub fn tamper_label(t: Tampering, rate: f64) -> String {
    format!("{} {:.0}%", t.name(), rate * 100.0)
}

/// The column of a tampering at 100% tested with canonicalisation off.
pub fn uncanonicalized_label(t: Tampering) -> String {
    format!("{} 100%, canonicalisation off", t.name())
}

/// The column of the emoji attack.
pub const EMOJI: &str = "emoji removed";
/// The columns of the paraphrases by the model: once, and the paraphrase paraphrased.
pub const PARAPHRASE: [&str; PARAPHRASE_ROUNDS] = ["LLM paraphrase", "LLM paraphrase x2"];
/// The column of the rule-based paraphrase.
pub const RULES: &str = "rule-based paraphrase";

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
/// the FPR check and robustness for the watermarked ones (`attacks`: the
/// attack generations of [`attack_generations`](super::attack_generations), one per record).
pub fn analyse(s: &Setup, records: &[PromptRecord], attacks: &[AttackRecord]) -> Result<Analysis> {
    if attacks.len() != records.len() {
        return Err(Error::Usage(format!(
            "{} attack records for {} prompts",
            attacks.len(),
            records.len()
        )));
    }
    let vocab = s.model.config().vocab_size as u32;
    let opts = DetectOptions {
        min_scored: 1,
        ..DetectOptions::default()
    };
    let window_opts = DetectOptions {
        window: Some(WindowOptions::default()),
        ..opts.clone()
    };
    let raw_opts = DetectOptions {
        canonicalize: false,
        ..opts.clone()
    };
    let human = human_ids(s, records.len())?;
    let mut a = Analysis::default();
    // The position of each watermarked arm among the attack generations.
    let mut marked_index = 0usize;
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
        let marked = marked_index;
        marked_index += 1;
        let detector = Detector::new(&s.key, config, vocab as usize, opts.clone())?;
        let raw_detector = Detector::new(&s.key, config, vocab as usize, raw_opts.clone())?;
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
            // The verdict's p-value: with canonicalisation (on, as in the
            // CLI) the text's two forms are one corrected family.
            let detect_text = |d: &Detector, text: &str| -> Result<f64> {
                if text.trim().is_empty() {
                    return Ok(0.0);
                }
                Ok(d.detect_text(&s.verifier_tok, Some(&prompt_text), text)?
                    .conservative_verdict_log10_p())
            };
            let rt = detect_text(&detector, &text)?;
            a.attacks
                .entry((name.clone(), "decode/re-encode".into()))
                .or_default()
                .push(rt);
            // Tampering of the text (the words a reader sees unchanged), each at every rate.
            // Every tampering that keeps what a reader sees, then the visible
            // edits (reported apart: canonicalisation does not undo them).
            let kinds = Tampering::MEANING_PRESERVING.iter().chain(&Tampering::VISIBLE);
            for (ti, &t) in kinds.enumerate() {
                for (ri, &rate) in TAMPER_RATES.iter().enumerate() {
                    let seed =
                        0x7a3e_0000_0000 ^ ((pi as u64) << 16) ^ ((arm_index as u64) << 8) ^ (ti * 2 + ri) as u64;
                    let tampered = tamper(&text, t, rate, seed);
                    let l = detect_text(&detector, &tampered)?;
                    a.attacks
                        .entry((name.clone(), tamper_label(t, rate)))
                        .or_default()
                        .push(l);
                    if rate >= 1.0 && !Tampering::VISIBLE.contains(&t) {
                        let l = detect_text(&raw_detector, &tampered)?;
                        a.uncanonicalized
                            .entry((name.clone(), t.name().to_string()))
                            .or_default()
                            .push(l);
                    }
                }
            }
            // Rewrites: the emoji attack, the model's paraphrases, the rule-based paraphrase.
            let att = &attacks[pi];
            let emoji = att
                .emoji
                .get(marked)
                .filter(|e| e.arm == name)
                .ok_or_else(|| Error::Usage(format!("no emoji answer of {name} to prompt {pi}")))?;
            let emoji_text = gguf_tokenizer::decode(&s.tok, &emoji.ids)?;
            a.emojis_per_word
                .entry(name.clone())
                .or_default()
                .push(emojis_per_word(&emoji_text));
            let mut rewrites = vec![(super::EMOJI.to_string(), strip_emoji(&emoji_text))];
            for (round, label) in PARAPHRASE.iter().enumerate() {
                let p = att
                    .paraphrases
                    .get(marked * PARAPHRASE_ROUNDS + round)
                    .filter(|p| p.arm == name && p.round == round + 1)
                    .ok_or_else(|| Error::Usage(format!("no paraphrase {} of {name} for prompt {pi}", round + 1)))?;
                rewrites.push((label.to_string(), gguf_tokenizer::decode(&s.tok, &p.ids)?));
            }
            let rules = rule_paraphrase(&text);
            a.rules_replaced
                .entry(name.clone())
                .or_default()
                .push(rules.replaced as f64 / rules.words.max(1) as f64);
            a.rules_swapped
                .entry(name.clone())
                .or_default()
                .push(rules.swapped as f64);
            rewrites.push((RULES.to_string(), rules.text));
            for (label, rewritten) in rewrites {
                let l = detect_text(&detector, &rewritten)?;
                a.attacks.entry((name.clone(), label.clone())).or_default().push(l);
                let key = (name.clone(), label);
                // The emoji answer is a new answer, not a rewrite of this one: no overlap to measure.
                if key.1 != super::EMOJI {
                    a.meaning
                        .entry(key.clone())
                        .or_default()
                        .push(content_overlap(&text, &rewritten).f1);
                    a.copied
                        .entry(key.clone())
                        .or_default()
                        .push(copied_share(&text, &rewritten));
                }
                a.rewrite_tokens
                    .entry(key)
                    .or_default()
                    .push(gguf_tokenizer::encode(&s.tok, &rewritten)?.len() as f64);
            }
            let plain = gguf_tokenizer::decode(&s.tok, &r.arms[0].ids)?;
            a.reference_f1
                .entry(name.clone())
                .or_default()
                .push(content_overlap(&text, &plain).f1);
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
    // The strongest tampering without canonicalisation gets its column.
    let marked_names: Vec<String> = s
        .arms
        .iter()
        .filter(|x| x.scheme.is_some())
        .map(|x| x.name.to_string())
        .collect();
    let mean_median = |t: Tampering| {
        let medians: Vec<f64> = marked_names
            .iter()
            .filter_map(|n| a.uncanonicalized.get(&(n.clone(), t.name().to_string())))
            .map(|v| median(v))
            .collect();
        medians.iter().sum::<f64>() / medians.len().max(1) as f64
    };
    a.strongest_tampering = Tampering::MEANING_PRESERVING
        .iter()
        .copied()
        .max_by(|&x, &y| mean_median(x).total_cmp(&mean_median(y)));
    if let Some(t) = a.strongest_tampering {
        for n in &marked_names {
            if let Some(v) = a.uncanonicalized.get(&(n.clone(), t.name().to_string())) {
                a.attacks.insert((n.clone(), uncanonicalized_label(t)), v.clone());
            }
        }
    }
    Ok(a)
}
