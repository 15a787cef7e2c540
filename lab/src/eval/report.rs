//! The report: Markdown tables and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use tracemark_verifier::stats::{mean_se, median, rate_below};

use super::{Analysis, Options, PromptRecord, Setup, Speed, LENGTHS};
use crate::plot::{line_chart, Series};
use crate::{io, today, Result};

fn pct(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else {
        format!("{:.3}", x)
    }
}

/// Writes the report to `out` and its plots beside it ([`plots`]).
pub fn write_report(
    s: &Setup,
    options: &Options,
    records: &[PromptRecord],
    a: &Analysis,
    speeds: &[Speed],
    out: &Path,
) -> Result<()> {
    let mut md = String::new();
    let n = records.len();
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
    let _ = writeln!(md, "\n![TPR vs tokens](./{}-tpr-vs-tokens.svg)\n", today());
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
    let _ = writeln!(md, "![Perplexity vs delta](./{}-ppl-vs-delta.svg)\n", today());
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
    let _ = writeln!(md, "\n## Robustness\n\nTPR at FPR 1e-3 and median log10 p after each attack on the {}-token answers. Substitutions and insertions draw uniformly random tokens; the paste puts the answer in the middle of human text (Debian-packaged prose and docs) three times its length, tested whole and by window search (Bonferroni-corrected); decode/re-encode verifies the text through the model's tokenizer.\n", options.tokens);
    let attack_names: Vec<String> = [
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
    ]
    .iter()
    .map(|l| l.to_string())
    .filter(|l| a.attacks.keys().any(|(_, k)| k == l))
    .collect();
    let _ = writeln!(
        md,
        "| scheme | {} |\n|---|{}",
        attack_names.join(" | "),
        "---:|".repeat(attack_names.len())
    );
    for spec in s.arms.iter().filter(|a| a.scheme.is_some()) {
        let cells: Vec<String> = attack_names
            .iter()
            .map(|l| {
                let v = &a.attacks[&(spec.name.to_string(), l.clone())];
                format!("{} ({:.1})", pct(rate_below(v, 1e-3)), median(v))
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", spec.name, cells.join(" | "));
    }
    let _ = writeln!(md, "\n![p-value vs substitution](./{}-p-vs-attack.svg)\n", today());
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
    plots(s, a, dir)?;
    Ok(())
}

/// The report's three SVG charts in `dir`: TPR vs tokens, median log10 p vs
/// substitution, perplexity vs the kgw bias.
pub fn plots(s: &Setup, a: &Analysis, dir: &Path) -> Result<()> {
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
        &dir.join(format!("{}-tpr-vs-tokens.svg", today())),
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
        &dir.join(format!("{}-p-vs-attack.svg", today())),
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
        &dir.join(format!("{}-ppl-vs-delta.svg", today())),
        "perplexity vs kgw delta (gamma 0.25)",
        "delta",
        "perplexity",
        &series,
    )?;
    Ok(())
}
