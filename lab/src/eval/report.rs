//! The report: Markdown tables and SVG plots.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::summary::{mean_se, median, rate_below};
use crate::tamper::Tampering;

use super::{
    emoji_request, paraphrase_request, tamper_label, uncanonicalized_label, Analysis, AttackRecord, Options,
    PromptRecord, Setup, Speed, EMOJI, LENGTHS, PARAPHRASE, PARAPHRASE_SAMPLING, RULES, SYNONYMS, TAMPER_RATES,
};
use crate::plot::{heat_map, line_chart, HeatMap, Series};
use crate::{io, today, Result};

fn pct(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else {
        format!("{:.3}", x)
    }
}

/// The columns of the robustness tables, one group per table: random edits
/// of the ids, the paste and the round trip; every tampering at each of
/// [`TAMPER_RATES`] (the last group with the strongest tampering tested
/// without canonicalisation, [`Analysis::strongest_tampering`]); the
/// rewrites (emoji attack, the model's paraphrases, the rule-based one).
pub fn robustness_columns(a: &Analysis) -> Vec<(String, Vec<String>)> {
    let edits = [
        "substitute 10%",
        "substitute 30%",
        "substitute 50%",
        "delete 10%",
        "delete 30%",
        "insert 10%",
        "insert 30%",
        "pasted in 4x human text (whole)",
        "pasted in 4x human text (window)",
        "decode/re-encode",
    ];
    let mut groups = vec![(
        "Edits of the ids, paste into human text, round trip".to_string(),
        edits.iter().map(|l| l.to_string()).collect(),
    )];
    for &rate in &TAMPER_RATES {
        let mut labels: Vec<String> = Tampering::MEANING_PRESERVING
            .iter()
            .map(|&t| tamper_label(t, rate))
            .collect();
        if rate >= 1.0 {
            labels.extend(a.strongest_tampering.map(uncanonicalized_label));
        }
        groups.push((format!("Tampering at {:.0}% of eligible places", rate * 100.0), labels));
    }
    let mut rewrites = vec![EMOJI.to_string()];
    rewrites.extend(PARAPHRASE.iter().map(|l| l.to_string()));
    rewrites.push(RULES.to_string());
    groups.push(("Rewrites: the emoji attack and paraphrases".to_string(), rewrites));
    groups.push((
        "Visible edits (emoji or hyphens between words, upper case, markdown bold): no claim".to_string(),
        TAMPER_RATES
            .iter()
            .flat_map(|&rate| Tampering::VISIBLE.iter().map(move |&t| tamper_label(t, rate)))
            .collect(),
    ));
    groups
}

/// The cells of the robustness tables (and the rewrites' meaning table) that
/// lack a value for one of `prompts` answers of a watermarked arm, as
/// `"arm / column"`; empty when the tables are complete. (The quick run
/// fails on any.)
pub fn missing_cells(s: &Setup, a: &Analysis, prompts: usize) -> Vec<String> {
    let mut missing = Vec::new();
    if a.strongest_tampering.is_none() {
        missing.push("the strongest tampering without canonicalisation".to_string());
    }
    let complete = |v: Option<&Vec<f64>>| v.is_some_and(|v| v.len() == prompts && v.iter().all(|x| x.is_finite()));
    for spec in s.arms.iter().filter(|x| x.scheme.is_some()) {
        let arm = spec.name.to_string();
        for (_, labels) in robustness_columns(a) {
            for l in labels {
                if !complete(a.attacks.get(&(arm.clone(), l.clone()))) {
                    missing.push(format!("{arm} / {l}"));
                }
            }
        }
        let mut paraphrases = PARAPHRASE.to_vec();
        paraphrases.push(RULES);
        for l in paraphrases {
            let key = (arm.clone(), l.to_string());
            if !complete(a.meaning.get(&key)) || !complete(a.copied.get(&key)) {
                missing.push(format!("{arm} / meaning of {l}"));
            }
        }
        for l in [EMOJI].iter().chain(&PARAPHRASE).chain(&[RULES]) {
            if !complete(a.rewrite_tokens.get(&(arm.clone(), l.to_string()))) {
                missing.push(format!("{arm} / tokens of {l}"));
            }
        }
        for (what, m) in [
            ("emojis per word", &a.emojis_per_word),
            ("rule-based replacements", &a.rules_replaced),
            ("rule-based swaps", &a.rules_swapped),
            ("reference F1", &a.reference_f1),
        ] {
            if !complete(m.get(&arm)) {
                missing.push(format!("{arm} / {what}"));
            }
        }
    }
    missing
}

/// A robustness cell: TPR at 1e-3 and 1e-6, and the median log10 p.
fn cell(v: Option<&Vec<f64>>) -> String {
    match v {
        Some(v) if !v.is_empty() => format!(
            "{} / {} ({:.1})",
            pct(rate_below(v, 1e-3)),
            pct(rate_below(v, 1e-6)),
            median(v)
        ),
        _ => "n/a".to_string(),
    }
}

/// Seconds as minutes (and seconds when short).
fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// Writes the report to `out` and its plots beside it ([`plots`], named
/// after `out`'s file stem). `attacks` are the attack generations, one per
/// record; `run_time` is this invocation's wall time up to the report
/// (generation skipped where cached).
#[allow(clippy::too_many_arguments)]
pub fn write_report(
    s: &Setup,
    options: &Options,
    records: &[PromptRecord],
    attacks: &[AttackRecord],
    a: &Analysis,
    speeds: &[Speed],
    run_time: Duration,
    out: &Path,
) -> Result<()> {
    let mut md = String::new();
    let n = records.len();
    let stem = out.file_stem().map_or_else(today, |x| x.to_string_lossy().into_owned());
    let _ = writeln!(md, "# tracemark evaluation, {}\n", today());
    let _ = writeln!(
        md,
        "SmolLM2-135M-Instruct (GGUF Q4_1 requantized to Q8_0, candle, CPU), {n} prompts from `lab/data/prompts.txt`, \
         up to {} new tokens each, sampling at temperature 1 (no top-k/top-p; tournament and gumbel sample their own \
         distribution). One key (id `{}`), dedup `pair`, exact p-values. Regenerate with `make eval`.\n",
        options.tokens,
        s.key.id()
    );
    let _ = writeln!(md, "## Detectability\n\nTPR at each false-positive rate, from exact p-values on the generated ids (prompt as context), at {} tokens (or fewer if the model stopped):\n", options.tokens);
    let _ = writeln!(md, "| scheme | TPR@1e-2 | TPR@1e-3 | TPR@1e-6 | median log10 p | mean tokens | FPR@1e-2 on unwatermarked |\n|---|---:|---:|---:|---:|---:|---:|");
    let full = *LENGTHS.last().unwrap_or(&200);
    for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
        let l = &a.by_length[&(spec.name.to_string(), full)];
        let f = &a.fpr[spec.name];
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {} |",
            spec.name,
            pct(rate_below(l, 1e-2)),
            pct(rate_below(l, 1e-3)),
            pct(rate_below(l, 1e-6)),
            median(l),
            mean_se(&a.tokens[spec.name]).0,
            pct(rate_below(f, 1e-2)),
        );
    }
    let _ = writeln!(
        md,
        "\nThe unwatermarked answers, tested under each scheme's key, give the FPR column: exact p-values make \
         P(p < alpha) <= alpha, and with {n} answers an observed rate up to about {:.3} is consistent with 1e-2.\n",
        (1e-2 + 2.0 * (1e-2 * 0.99 / n as f64).sqrt())
    );
    let _ = writeln!(
        md,
        "TPR at FPR 1e-3 by length (the first L tokens of each answer):\n\n| scheme | {} |\n|---|{}",
        LENGTHS.map(|l| format!("L={l}")).join(" | "),
        "---:|".repeat(LENGTHS.len())
    );
    for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
        let cells: Vec<String> = LENGTHS
            .iter()
            .map(|&l| pct(rate_below(&a.by_length[&(spec.name.to_string(), l)], 1e-3)))
            .collect();
        let _ = writeln!(md, "| {} | {} |", spec.name, cells.join(" | "));
    }
    let _ = writeln!(md, "\n![TPR vs tokens](./{stem}-tpr-vs-tokens.svg)\n");
    let _ = writeln!(md, "## Quality\n\nPerplexity of each arm's answers under the unwatermarked model (from the model's own logits while decoding), with the standard error of the mean log-perplexity; distinct-n over each answer:\n");
    let _ = writeln!(md, "| scheme | sampling | mean NLL/token ± SE | PPL (exp mean NLL) | median PPL | distinct-2 | distinct-3 |\n|---|---|---:|---:|---:|---:|---:|");
    for spec in &s.arms {
        let (nll, ppl) = &a.nll[spec.name];
        let (m, se) = mean_se(nll);
        let (d2, d3) = &a.distinct[spec.name];
        let _ = writeln!(
            md,
            "| {} | {} | {m:.3} ± {se:.3} | {:.2} | {:.2} | {:.3} | {:.3} |",
            spec.name,
            match (&spec.scheme, spec.sampling.top_k) {
                (Some(c), _) if c.contract().generation == tracemark_core::Generation::Distribution => {
                    format!("its own distribution ({c})")
                }
                (_, Some(k)) => format!("top {k}"),
                _ => "full vocabulary".to_string(),
            },
            m.exp(),
            median(ppl),
            mean_se(d2).0,
            mean_se(d3).0
        );
    }
    let _ = writeln!(
        md,
        "\nEvery arm samples at temperature 1. The tournament samples among its top 40 candidates, so its baseline is \
         `none top-40` (unwatermarked sampling from the same top 40); every other arm's baseline is `none`. A scheme \
         is within noise of its baseline when the difference of mean NLL is within about two combined standard errors.\n"
    );
    let _ = writeln!(md, "![Perplexity vs delta](./{stem}-ppl-vs-delta.svg)\n");
    let _ = writeln!(md, "## Cost\n\nDecoding one sequence (batch 1) on this machine, decode steps only, with each watermark, and the watermark's share of the decode step:\n\n| scheme | tokens/s | watermark / model forward |\n|---|---:|---:|");
    for speed in speeds {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.3}% |",
            speed.arm,
            speed.tokens_per_second,
            100.0 * speed.watermark_share
        );
    }
    let _ = writeln!(md, "\nWatermark work per generated token in the evaluation's own generations (batched arms; the work per row does not depend on the batch):\n\n| scheme | µs per token | share of a batch-1 decode step |\n|---|---:|---:|");
    let batch1_step_us = speeds
        .iter()
        .find(|x| x.arm == "none")
        .map_or(f64::NAN, |x| 1e6 / x.tokens_per_second);
    for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
        let us = a.watermark_us_per_token[spec.name];
        let _ = writeln!(md, "| {} | {us:.1} | {:.3}% |", spec.name, 100.0 * us / batch1_step_us);
    }
    let _ = writeln!(md, "\n## Robustness\n\nAfter each attack on the {}-token answers, each cell gives TPR at FPR 1e-3 / TPR at FPR 1e-6 (median log10 p); a row per watermarked arm (scheme and context: h = 1, self-hash, h = 0, min-hash). Substitutions and insertions draw uniformly random tokens; the paste puts the answer in the middle of human text (Debian-packaged prose and docs) three times its length, tested whole and by window search (Bonferroni-corrected); decode/re-encode verifies the text through the model's tokenizer.\n", options.tokens);
    let strongest = a
        .strongest_tampering
        .map_or_else(|| "none".to_string(), |t| t.name().to_string());
    let intros = [
        String::new(),
        "Each tampering of `tracemark_lab::tamper` leaves the words a reader sees unchanged: `zwsp` a zero-width \
         space after words, `zwj` a zero-width joiner inside words, `shy` soft hyphens, `bidi` bidi marks around \
         words, `tags` invisible tag characters, `vs` variation selectors after letters, `nbsp` other space \
         separators for spaces, `fullwidth` full-width letters and digits, `homoglyph` Cyrillic and Greek \
         look-alikes, `nfd` accents decomposed; and those canonical form v2 undoes (issue 28): `space2` spaces \
         doubled, `tab` tabs for spaces, `braille` U+2800 for spaces, `dot` a combining dot below after letters, \
         `dot-nfc` the same composed by NFC, `smallcaps` small capitals, `ipa` IPA and dotless letters, `greek` \
         Greek look-alikes, `rlo` words written backwards inside a right-to-left override, `cyrillic-flip` and \
         `greek-flip` the look-alikes of that script plus its genuine paragraphs appended until it outnumbers the \
         Latin letters left (the appended human text dilutes the answer whatever canonicalisation does). Each is \
         applied to the decoded answer at the given share of its eligible places (seeded) and the text is detected \
         as the CLI does, with canonicalisation on: the p-value is the verdict's, on the forms SPEC §14.1 chooses \
         from the text (corrected by 2 where both are tested).\n"
            .to_string(),
        format!(
            "The last column tests the tampering that canonicalisation matters most for (the highest median log10 p \
             with canonicalisation off, averaged over the arms: `{strongest}`) with canonicalisation off.\n"
        ),
        format!(
            "**Emoji attack** (Kirchenbauer et al. 2023): each watermarked arm answers the prompt with \"{}\" \
             appended (the emoji request: `{}`), watermarking as usual; the emojis (non-ASCII characters with the \
             Unicode Emoji or Emoji_Component property) and the space each leaves are removed, and the rest is \
             detected as text. **LLM paraphrase**: the unwatermarked model (temperature {}, top-p {}) is given \
             `{}` (chat template) for each watermarked answer, up to {} new tokens; `x2` paraphrases that paraphrase \
             with the same request. **Rule-based paraphrase**, for reference: every word with an entry in a list of \
             {} synonym pairs is replaced, and every sentence \"A, B.\" with one comma and three words or more on \
             each side becomes \"B, a.\"; nothing else changes.\n",
            super::EMOJI_INSTRUCTION,
            emoji_request("<prompt>"),
            PARAPHRASE_SAMPLING.temperature,
            PARAPHRASE_SAMPLING.top_p.unwrap_or(1.0),
            paraphrase_request("<prompt>", "<answer>").replace('\n', "\\n"),
            options.tokens,
            SYNONYMS.len()
        ),
        "Edits a reader sees, which canonicalisation does not undo and no bar is set for (`tracemark_lab::tamper`'s \
         visible kinds): `emoji-sep` an emoji between words, `hyphen-sep` hyphens for spaces, `upper` letters in \
         upper case, `bold` words in markdown bold, at the given share of places.\n"
            .to_string(),
    ];
    for (gi, (title, labels)) in robustness_columns(a).into_iter().enumerate() {
        let _ = writeln!(md, "### {title}\n");
        if let Some(intro) = intros.get(gi).filter(|i| !i.is_empty()) {
            let _ = writeln!(md, "{intro}");
        }
        let _ = writeln!(
            md,
            "| scheme | {} |\n|---|{}",
            labels.join(" | "),
            "---:|".repeat(labels.len())
        );
        for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
            let cells: Vec<String> = labels
                .iter()
                .map(|l| cell(a.attacks.get(&(spec.name.to_string(), l.clone()))))
                .collect();
            let _ = writeln!(md, "| {} | {} |", spec.name, cells.join(" | "));
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "**What the rewrites keep.** Means over the answers. Meaning is measured as the content-word F1 of the \
         paraphrase against the watermarked answer (ROUGE-1 F1 over lower-cased words of four characters or more, \
         40 frequent function words left out, counts clipped; `x2` against the answer too); for scale, the last \
         column is the same F1 between the answer and the unwatermarked arm's answer to the same prompt (two \
         independent answers to one question). Copied: the share of the paraphrase's word 5-grams found verbatim \
         in the answer. Tokens are those of the tested text. Emojis per word: runs of emoji per word in the emoji \
         answer before removal (1 if the model had followed the instruction throughout); that answer is a new \
         answer, so it has no overlap to measure.\n"
    );
    let _ = writeln!(
        md,
        "| scheme | answer tokens | emoji: emojis per word, tokens after removal | paraphrase: tokens, F1, copied | paraphrase x2: tokens, F1, copied | rule-based: words replaced, clauses swapped, F1 | reference F1 |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    let mean = |v: Option<&Vec<f64>>| v.map_or(f64::NAN, |v| mean_se(v).0);
    for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
        let arm = spec.name.to_string();
        let key = |l: &str| (arm.clone(), l.to_string());
        let paraphrase = |l: &str| {
            format!(
                "{:.0}, {:.2}, {:.2}",
                mean(a.rewrite_tokens.get(&key(l))),
                mean(a.meaning.get(&key(l))),
                mean(a.copied.get(&key(l)))
            )
        };
        let _ = writeln!(
            md,
            "| {arm} | {:.0} | {:.2}, {:.0} | {} | {} | {:.1}%, {:.1}, {:.2} | {:.2} |",
            mean(a.tokens.get(&arm)),
            mean(a.emojis_per_word.get(&arm)),
            mean(a.rewrite_tokens.get(&key(EMOJI))),
            paraphrase(PARAPHRASE[0]),
            paraphrase(PARAPHRASE[1]),
            100.0 * mean(a.rules_replaced.get(&arm)),
            mean(a.rules_swapped.get(&arm)),
            mean(a.meaning.get(&key(RULES))),
            mean(a.reference_f1.get(&arm)),
        );
    }
    let per_word: Vec<f64> = a.emojis_per_word.values().flatten().copied().collect();
    let _ = writeln!(
        md,
        "\nThe emoji instruction was followed in {} of {} emoji answers (at least one emoji per two words) and \
         {} had any emoji at all (mean {:.3} emojis per word): where the model ignores the instruction, the emoji \
         column measures a second answer to a longer prompt, not the attack.",
        per_word.iter().filter(|&&x| x >= 0.5).count(),
        per_word.len(),
        per_word.iter().filter(|&&x| x > 0.0).count(),
        mean_se(&per_word).0
    );
    let per_prompt = |ns: u64| Duration::from_nanos(ns / n.max(1) as u64);
    let answers_ns: u64 = records.iter().map(|r| r.wall_ns).sum();
    let emoji_ns: u64 = attacks.iter().map(|r| r.emoji_ns).sum();
    let paraphrase_ns: u64 = attacks.iter().map(|r| r.paraphrase_ns).sum();
    let _ = writeln!(
        md,
        "\nGeneration per prompt on this machine (mean wall time, as recorded when the generations were made): all \
         {} arms' answers {} (one batch), the emoji answers {} (one batch), the {} paraphrases {} (a batch per round); \
         {} in all, {} for the {n} prompts. This invocation: {} from start to report (cached generations are not \
         made again).\n",
        s.arms.len(),
        duration(per_prompt(answers_ns)),
        duration(per_prompt(emoji_ns)),
        attacks.first().map_or(0, |x| x.paraphrases.len()),
        duration(per_prompt(paraphrase_ns)),
        duration(per_prompt(answers_ns + emoji_ns + paraphrase_ns)),
        duration(Duration::from_nanos(answers_ns + emoji_ns + paraphrase_ns)),
        duration(run_time)
    );
    let _ = writeln!(
        md,
        "![Robustness: TPR at 1e-6 and median log10 p per attack](./{stem}-robustness.svg)\n\n![p-value vs substitution](./{stem}-p-vs-attack.svg)\n"
    );
    let _ = writeln!(
        md,
        "**Decode/re-encode.** A verifier of text re-encodes it; the share of answers whose generated ids come back \
         exactly, and the median log10 p on the ids against the text:\n\n| scheme | ids survive exactly | median log10 p (ids) | median log10 p (text) |\n|---|---:|---:|---:|"
    );
    let full = *LENGTHS.last().unwrap_or(&200);
    for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.1} | {:.1} |",
            spec.name,
            a.roundtrip_exact[spec.name],
            median(&a.by_length[&(spec.name.to_string(), full)]),
            median(&a.attacks[&(spec.name.to_string(), "decode/re-encode".to_string())])
        );
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    io(dir, std::fs::create_dir_all(dir))?;
    io(out, std::fs::write(out, md))?;
    plots(s, a, dir, &stem)?;
    Ok(())
}

/// The report's four SVG charts in `dir`, named `STEM-*.svg`: TPR vs tokens,
/// median log10 p vs substitution, perplexity vs the kgw bias, and the
/// robustness heat map (TPR at 1e-6 and median log10 p per arm and attack).
pub fn plots(s: &Setup, a: &Analysis, dir: &Path, stem: &str) -> Result<()> {
    let names: Vec<&str> = s.arms.iter().filter(|a| a.scheme.is_some()).map(|x| x.name).collect();
    let tpr: Vec<Series> = names
        .iter()
        .map(|n| Series {
            name: n.to_string(),
            points: LENGTHS
                .iter()
                .map(|&l| (l as f64, rate_below(&a.by_length[&(n.to_string(), l)], 1e-3)))
                .collect(),
        })
        .collect();
    line_chart(
        &dir.join(format!("{stem}-tpr-vs-tokens.svg")),
        "TPR at FPR 1e-3 vs tokens",
        "tokens",
        "TPR",
        &tpr,
    )?;
    let subs: Vec<Series> = names
        .iter()
        .map(|n| Series {
            name: n.to_string(),
            points: [0.0, 0.1, 0.3, 0.5]
                .iter()
                .map(|&f| {
                    let v = if f == 0.0 {
                        &a.by_length[&(n.to_string(), *LENGTHS.last().unwrap_or(&200))]
                    } else {
                        &a.attacks[&(n.to_string(), format!("substitute {:.0}%", f * 100.0))]
                    };
                    (f * 100.0, median(v))
                })
                .collect(),
        })
        .collect();
    line_chart(
        &dir.join(format!("{stem}-p-vs-attack.svg")),
        "median log10 p vs random substitution",
        "tokens substituted (%)",
        "median log10 p",
        &subs,
    )?;
    let ppl = |name: &str| mean_se(&a.nll[name].0).0.exp();
    let base = ppl("none");
    let deltas = [(0.0, "none"), (1.0, "d=1"), (2.0, "d=2"), (4.0, "d=4")];
    let series: Vec<Series> = [("kgw h=1", "h=1"), ("kgw self4", "self4")]
        .iter()
        .map(|(label, suffix)| Series {
            name: label.to_string(),
            points: deltas
                .iter()
                .map(|(d, tag)| {
                    (
                        *d,
                        if *tag == "none" {
                            base
                        } else {
                            ppl(&format!("kgw {tag} {suffix}"))
                        },
                    )
                })
                .collect(),
        })
        .collect();
    line_chart(
        &dir.join(format!("{stem}-ppl-vs-delta.svg")),
        "perplexity vs kgw delta (gamma 0.25)",
        "delta",
        "perplexity",
        &series,
    )?;
    let columns: Vec<String> = robustness_columns(a).into_iter().flat_map(|(_, l)| l).collect();
    // One lookup per cell: its colour (TPR at 1e-6) and its number (median log10 p).
    let (values, labels): (Vec<Vec<f64>>, Vec<Vec<String>>) = names
        .iter()
        .map(|n| {
            columns
                .iter()
                .map(|l| match a.attacks.get(&(n.to_string(), l.clone())) {
                    // Rounded, without the sign of a negative zero.
                    Some(v) => (rate_below(v, 1e-6), format!("{}", median(v).round() + 0.0)),
                    None => (f64::NAN, "n/a".to_string()),
                })
                .unzip()
        })
        .unzip();
    heat_map(
        &dir.join(format!("{stem}-robustness.svg")),
        &HeatMap {
            title: "Robustness: colour = TPR at FPR 1e-6 (red 0, green 1), number = median log10 p",
            rows: names.iter().map(|x| x.to_string()).collect(),
            columns,
            values,
            labels,
        },
    )?;
    Ok(())
}
