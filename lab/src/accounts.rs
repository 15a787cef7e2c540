//! The accounts experiment (`make accounts`): how many tokens of a leaked SmolLM2 answer name the
//! account it was served to, among 1, 24,000 and 1,000,000 accounts, at
//! family-wise 1e-6; and the time and memory of the account-key scan.
//!
//! Every answer is generated under its account's own key,
//! `derive(master, "account/<id>")` (kgw, gamma 0.25, delta 2, h = 1, as
//! served by default), to a prompt of the evaluation set. For each prefix
//! length the answer's p-value under its account's key decides: the account
//! is named among `m` accounts when that p-value is below 1e-6 / m and no
//! other key does better (Holm's first step; the scan below checks the
//! second condition on whole answers, for 24,000 and 1,000,000 real keys).

use std::fmt::Write as _;
use std::time::Instant;

use tracemark_candle::{chat_prompt, generate, gguf_tokenizer, set_threads, Arm, Llama, LoadOptions, Rng, Sampling};
use tracemark_core::SchemeConfig;
use tracemark_verifier::accounts::{attribute_accounts, AccountForms};
use tracemark_verifier::{DetectOptions, Detector};

use crate::{cache_dir, model_path, prompts, stored_key, today, Error, Result};

/// What to run: sizes of the experiment and where its report goes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Prompts (two accounts answer each).
    pub prompts: usize,
    /// New tokens per answer, at most.
    pub tokens: usize,
    /// Answers scanned against 1,000,000 real account keys (about 8 s each on 2 cores).
    pub million_scans: usize,
    /// CPU threads (0: all cores).
    pub threads: usize,
    /// Where to write the report (default: `eval/results/accounts-DATE.md`).
    pub out: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            prompts: 12,
            tokens: 400,
            million_scans: 6,
            threads: 0,
            out: None,
        }
    }
}

const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const FAMILIES: [(u64, &str); 3] = [(1, "1"), (24_000, "24,000"), (1_000_000, "1,000,000")];
const LENGTHS: [usize; 9] = [25, 50, 75, 100, 150, 200, 250, 300, 400];

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs the experiment and writes its report.
pub fn run(args: &Options) -> Result<()> {
    set_threads(args.threads);
    let model_file = model_path()?;
    let model = Llama::load(&model_file, LoadOptions::default())?;
    let tok = gguf_tokenizer::from_gguf(&model_file)?;
    let vocab = model.config().vocab_size;
    let dir = cache_dir().join("accounts");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let master = stored_key(&dir.join("master.key"))?;
    let config: SchemeConfig = SCHEME.parse()?;
    let label = |i: u64| format!("account/{i}");
    let stop = [
        gguf_tokenizer::token_id(&tok, "<|im_end|>")?,
        gguf_tokenizer::token_id(&tok, "<|endoftext|>")?,
    ];
    let sampling = Sampling {
        temperature: 1.0,
        top_k: None,
        top_p: Some(0.95),
    };
    let all = prompts();
    // Answers: (account, prompt ids, answer ids). Accounts below 24,000, so each family holds them.
    let mut answers = Vec::new();
    let started = Instant::now();
    for (p, question) in all.iter().enumerate().take(args.prompts) {
        let accounts = [(p as u64 * 1931 + 17) % 24_000, (p as u64 * 7919 + 5003) % 24_000];
        let schemes = accounts
            .iter()
            .map(|&a| config.build(&master.derive(&label(a))?, vocab))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let arms: Vec<Arm<'_>> = schemes
            .iter()
            .map(|s| Arm {
                scheme: Some(s.as_ref()),
                steer: None,
                skip_repeated: false,
                sampling,
            })
            .collect();
        let prompt = gguf_tokenizer::encode(&tok, &chat_prompt(question))?;
        let mut rngs = [Rng::new(1000 + 2 * p as u64), Rng::new(1001 + 2 * p as u64)];
        let (gens, _) = generate(&model, &prompt, &arms, args.tokens, &stop, &mut rngs)?;
        for (a, g) in accounts.iter().zip(gens) {
            answers.push((*a, prompt.clone(), g.ids));
        }
        eprintln!(
            "prompt {}/{}: {:.0} s",
            p + 1,
            args.prompts,
            started.elapsed().as_secs_f64()
        );
    }
    let generation_s = started.elapsed().as_secs_f64();

    // p-values of each answer's prefixes under its own account's key.
    let options = DetectOptions::default();
    let mut curves = Vec::new();
    for (a, prompt, ids) in &answers {
        let d = Detector::new(&master.derive(&label(*a))?, &config, vocab, options.clone())?;
        let mut stream = d.stream(prompt)?;
        let mut curve = Vec::new();
        let mut at = 0;
        for &l in &LENGTHS {
            if ids.len() < l {
                break;
            }
            d.push(&mut stream, &ids[at..l])?;
            at = l;
            curve.push(d.stream_report(&stream)?.outcome.conservative_log10_p());
        }
        curves.push(curve);
    }

    // Real scans: every answer against 24,000 keys, the first few against 1,000,000.
    let mut scans = Vec::new();
    for (n, (a, prompt, ids)) in answers.iter().enumerate() {
        let forms = AccountForms::ids(prompt.clone(), ids.clone());
        let ring = attribute_accounts(&master, &config, vocab, &options, &forms, 24_000, label)?;
        let million = if n < args.million_scans {
            Some(attribute_accounts(
                &master, &config, vocab, &options, &forms, 1_000_000, label,
            )?)
        } else {
            None
        };
        scans.push((*a, ids.len(), ring, million));
    }
    let rss = peak_rss_mib();

    let mut md = String::new();
    let _ = writeln!(md, "# Naming the account a leaked answer was served to ({})\n", today());
    let _ = writeln!(
        md,
        "`make accounts` (`lab/src/accounts.rs`). {} SmolLM2-135M answers ({} prompts of the evaluation set, \
         two accounts each, temperature 1, top-p 0.95, at most {} new tokens; {:.0} s of generation on this machine), \
         each watermarked with its own account's key `derive(master, \"account/<id>\")` under `{SCHEME}`. \
         Family-wise level 1e-6 (Holm).\n",
        answers.len(),
        args.prompts,
        args.tokens,
        generation_s
    );
    let _ = writeln!(md, "## Tokens needed\n");
    let _ = writeln!(
        md,
        "Share of answers whose account would be named from their first L tokens: the p-value under the account's own \
         key below 1e-6 / m (Holm's first step; with m keys the best wrong key reaches about 1/m, far above it). \
         Answers shorter than L are left out of that column (n).\n"
    );
    let mut header = "| accounts m | needed log10 p |".to_string();
    let mut rule = "|---|---|".to_string();
    for l in LENGTHS {
        let n = curves
            .iter()
            .filter(|c| c.len() > LENGTHS.iter().position(|&x| x == l).unwrap_or(0))
            .count();
        let _ = write!(header, " L = {l} (n = {n}) |");
        rule.push_str("---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for (m, name) in FAMILIES {
        let needed = -6.0 - (m as f64).log10();
        let mut row = format!("| {name} | {needed:.2} |");
        for (j, _) in LENGTHS.iter().enumerate() {
            let at: Vec<f64> = curves.iter().filter_map(|c| c.get(j).copied()).collect();
            let k = at.iter().filter(|&&l| l < needed).count();
            let _ = write!(row, " {k}/{} |", at.len());
        }
        let _ = writeln!(md, "{row}");
    }
    let lengths: Vec<usize> = answers.iter().map(|(_, _, ids)| ids.len()).collect();
    let mut sorted = lengths.clone();
    sorted.sort_unstable();
    let _ = writeln!(
        md,
        "\nAnswer lengths: median {} tokens (min {}, max {}); SmolLM2 often ends an answer before {} tokens.\n",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
        args.tokens
    );
    let _ = writeln!(md, "## Whole answers against real account keys\n");
    let _ = writeln!(
        md,
        "Every answer scanned against 24,000 account keys (accounts 0 .. 23,999, derived on the fly), the first {} also \
         against 1,000,000; named = the accounts whose Holm-adjusted p-value is below 1e-6.\n",
        args.million_scans.min(answers.len())
    );
    let _ = writeln!(
        md,
        "| answer | served to | tokens | 24,000: named | best wrong key log10 p | 1,000,000: named | time (s) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let mut right = [0usize; 2];
    let mut wrong = [0usize; 2];
    let mut million_n = 0;
    let mut million_time = Vec::new();
    for (n, (a, len, ring, million)) in scans.iter().enumerate() {
        let served = label(*a);
        let names = |r: &tracemark_verifier::accounts::AccountAttribution| {
            let v: Vec<&str> = r.named.iter().map(|m| m.label.as_str()).collect();
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let best_wrong = ring
            .best
            .iter()
            .find(|m| m.label != served)
            .map_or(f64::NAN, |m| m.log10_p);
        right[0] += usize::from(ring.named.iter().any(|m| m.label == served));
        wrong[0] += ring.named.iter().filter(|m| m.label != served).count();
        let (mnamed, mtime) = match million {
            Some(r) => {
                million_n += 1;
                million_time.push(r.seconds);
                right[1] += usize::from(r.named.iter().any(|m| m.label == served));
                wrong[1] += r.named.iter().filter(|m| m.label != served).count();
                (names(r), format!("{:.1}", r.seconds))
            }
            None => ("–".to_string(), "–".to_string()),
        };
        let _ = writeln!(
            md,
            "| {} | {served} | {len} | {} | {best_wrong:.2} | {mnamed} | {mtime} |",
            n + 1,
            names(ring)
        );
    }
    let _ = writeln!(
        md,
        "\nNamed correctly: {}/{} among 24,000, {}/{million_n} among 1,000,000. Wrong accounts named: {} and {} (the \
         family-wise level bounds the chance of any at 1e-6 per answer).\n",
        right[0],
        scans.len(),
        right[1],
        wrong[0],
        wrong[1]
    );
    if let Some(r) = scans.iter().find_map(|s| s.3.as_ref()) {
        let mean = million_time.iter().sum::<f64>() / million_time.len().max(1) as f64;
        let _ = writeln!(
            md,
            "Scan cost: 1,000,000 account keys in {mean:.1} s on average ({:.0} keys/s, {:.2e} (key, token) pairs/s for \
             the first answer: one HMAC to derive each key, one to key its scheme, then the exact test); memory stays \
             flat (only the {} smallest p-values are kept): peak resident memory of the whole run, model included, \
             {rss:.0} MiB.",
            r.keys_per_second,
            r.key_tokens_per_second,
            tracemark_verifier::accounts::KEPT
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("eval/results/accounts-{}.md", today())));
    std::fs::write(&out, &md).map_err(|e| Error::io(&out, e))?;
    println!("{md}");
    eprintln!("wrote {}", out.display());
    Ok(())
}
