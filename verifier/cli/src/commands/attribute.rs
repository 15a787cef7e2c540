//! `attribute`: which account was this text served to?

use std::path::PathBuf;

use clap::Args;
use tracemark_verifier::accounts::{attribute_accounts, AccountForms};
use tracemark_verifier::{render, DetectOptions, TextTokenizer, Verdict};

use super::print_json;
use crate::args::ModelArgs;
use crate::exit::{Exit, Failure};
use crate::input::{load_key, parse_ids, read_input, read_text, source_name, text_of};
use crate::progress;

/// What `attribute` takes.
#[derive(Args)]
pub(crate) struct AttributeArgs {
    /// The master key the account keys are derived from
    #[arg(long)]
    pub(crate) key: PathBuf,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Accounts `0 .. N-1`, labelled by --label-format
    #[arg(long, conflicts_with = "accounts_file")]
    pub(crate) accounts: Option<u64>,
    /// A file of account ids, one per line, labelled by --label-format
    #[arg(long)]
    pub(crate) accounts_file: Option<PathBuf>,
    /// The derivation label of an account; `{}` is replaced by its id
    #[arg(long, default_value = "account/{}")]
    pub(crate) label_format: String,
    /// The input is token ids (a JSON array or whitespace-separated), not text
    #[arg(long)]
    pub(crate) ids: bool,
    /// Family-wise significance level
    #[arg(long, default_value_t = 1e-6)]
    pub(crate) alpha: f64,
    /// Threads (0 = one per core)
    #[arg(long, default_value_t = 0)]
    pub(crate) jobs: usize,
    /// Print the result as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// The leaked text (or ids), or - for standard input
    #[arg(default_value = "-")]
    pub(crate) input: PathBuf,
}

/// Runs `attribute`: exit 0 when an account is named, 1 when none is.
pub(crate) fn run(a: AttributeArgs) -> Result<Exit, Failure> {
    if !a.label_format.contains("{}") {
        return Err(Failure::Usage(format!(
            "--label-format {:?} must contain {{}} (where the account id goes), e.g. account/{{}}",
            a.label_format
        )));
    }
    let master = load_key(&a.key)?;
    let ids: Option<Vec<String>> = match &a.accounts_file {
        Some(path) => {
            let text = read_text(path, "--accounts-file")?;
            Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
            )
        }
        None => None,
    };
    let count = match (&ids, a.accounts) {
        (Some(ids), _) => ids.len() as u64,
        (None, Some(n)) => n,
        (None, None) => return Err(Failure::Usage("give --accounts N or --accounts-file FILE".into())),
    };
    let label = |i: u64| {
        let id = ids
            .as_ref()
            .map_or_else(|| i.to_string(), |ids| ids[i as usize].clone());
        a.label_format.replace("{}", &id)
    };
    // Every label must derive a key before hours are spent: check them now.
    if let Some(ids) = &ids {
        for (i, _) in ids.iter().enumerate() {
            master.derive(&label(i as u64)).map_err(|error| Failure::Key {
                path: a.key.clone(),
                error,
            })?;
        }
    } else {
        master
            .derive(&label(count.saturating_sub(1)))
            .map_err(|error| Failure::Key {
                path: a.key.clone(),
                error,
            })?;
    }
    let tokenizer = a.model.load_tokenizer()?;
    let fingerprint = tokenizer.as_ref().map(|t| t.info().fingerprint.clone());
    let (scheme, _) = a.model.resolve_scheme(&a.key, &master, fingerprint.as_deref())?;
    let bytes = read_input(&a.input, "input")?;
    let (forms, vocab) = if a.ids {
        let vocab = a
            .model
            .vocab
            .or(tokenizer.as_ref().map(TextTokenizer::vocab_size))
            .ok_or_else(|| Failure::Usage("id input needs --vocab (or --tokenizer)".into()))?;
        (
            AccountForms::ids(Vec::new(), parse_ids(&bytes, &source_name(&a.input))?),
            vocab,
        )
    } else {
        let tokenizer = tokenizer
            .as_ref()
            .ok_or_else(|| Failure::Usage("text input needs --tokenizer (the model's tokenizer.json)".into()))?;
        let text = text_of(&bytes, &a.input, "input")?;
        (
            AccountForms::text(tokenizer, None, &text)?,
            a.model.vocab.unwrap_or(tokenizer.vocab_size()),
        )
    };
    let options = DetectOptions {
        alpha: a.alpha,
        ..DetectOptions::default()
    };
    progress::note(&format!("testing {count} account keys..."));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.jobs)
        .build()
        .map_err(|e| Failure::Usage(format!("--jobs: {e}")))?;
    let found = pool.install(|| attribute_accounts(&master, &scheme, vocab, &options, &forms, count, label))?;
    if a.json {
        print_json(&found)?;
    } else {
        println!(
            "accounts   {} tested ({} inconclusive); {}",
            found.accounts, found.inconclusive, found.correction
        );
        println!(
            "needed     the best account's p below alpha / accounts = 10^{:.2}",
            found.log10_needed
        );
        for m in found.best.iter().take(5) {
            let named = if found.named.iter().any(|n| n.label == m.label) {
                "NAMED"
            } else {
                "-"
            };
            println!(
                "  {:<28} {}  p = {}, adjusted {}  ({} scored)  {named}",
                m.label,
                m.key_id,
                render::p_value(m.log10_p),
                render::p_value(m.log10_p_adjusted),
                m.scored
            );
        }
        let names: Vec<&str> = found.named.iter().map(|m| m.label.as_str()).collect();
        println!(
            "named      {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        println!(
            "time       {:.1} s: {:.0} keys/s, {:.3e} (key, token) pairs/s",
            found.seconds, found.keys_per_second, found.key_tokens_per_second
        );
    }
    Ok(Exit::from(if found.named.is_empty() {
        Verdict::NotDetected
    } else {
        Verdict::Detected
    }))
}
