//! `radioactivity`: did the model that wrote a corpus learn from our watermarked text?

use std::path::Path;

use tracemark_core::Key;
use tracemark_verifier::{
    attribute, context_keys, probability_test, reading_mode, render, Attribution, Detection, Detector, LogprobDoc,
    ReadingDoc, Scanner, Verdict,
};

use super::{print_json, Setup};
use crate::args::{InputKind, RadioArgs, RadioMode};
use crate::exit::{Exit, Failure};
use crate::input::read_text;
use crate::progress;

fn read_docs<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Failure> {
    let text = read_text(path, "corpus")?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<T>(l).map_err(|e| Failure::Malformed {
                source: format!("{}: line {}", path.display(), i + 1),
                message: e.to_string(),
            })
        })
        .collect()
}

/// The documents of the tests that read JSONL of ids.
enum Docs {
    Reading(Vec<ReadingDoc>),
    Logprobs(Vec<LogprobDoc>),
}

/// One corpus-level test under one key: reading mode, the probability test, or a (filtered) scan.
fn test(a: &RadioArgs, s: &Setup, key: &Key, docs: Option<&Docs>) -> Result<Detection, Failure> {
    let detector = Detector::new(key, &s.scheme, s.vocab, s.options.clone())?;
    let filter = match (a.mode(), docs) {
        (RadioMode::Reading, Some(Docs::Reading(docs))) => {
            let mut d = reading_mode(&detector, docs)?;
            d.scheme_source = Some(s.scheme_source.clone());
            return Ok(d);
        }
        (RadioMode::Logprobs, Some(Docs::Logprobs(docs))) => {
            let mut d = probability_test(&detector, docs)?;
            d.scheme_source = Some(s.scheme_source.clone());
            return Ok(d);
        }
        (RadioMode::Filtered { reference }, _) => {
            let file = std::fs::File::open(reference).map_err(|error| Failure::Read {
                source: reference.display().to_string(),
                error,
            })?;
            Some(context_keys(
                &detector,
                s.tokenizer.as_ref(),
                std::io::BufReader::new(file),
            )?)
        }
        _ => None,
    };
    let mut scanner = Scanner::new(&detector, s.tokenizer.as_ref()).jobs(a.jobs);
    if let Some(f) = &filter {
        scanner = scanner.filter(f);
    }
    let mut d = progress::scan(&scanner, a.corpus()?, |_| {})?.aggregate;
    d.scheme_source = Some(s.scheme_source.clone());
    Ok(d)
}

/// The result of `radioactivity`: one key's corpus test, or a cohort attribution over a keyring.
pub(crate) struct Tested {
    /// The test, in words.
    pub(crate) description: String,
    /// With one key.
    pub(crate) detection: Option<Detection>,
    /// With several keys.
    pub(crate) attribution: Option<Attribution>,
    /// Whether to colour the output.
    pub(crate) color: bool,
}

impl Tested {
    /// The verdict the exit code stands on: detected when any cohort is named at the family-wise level.
    pub(crate) fn verdict(&self) -> Verdict {
        match (&self.detection, &self.attribution) {
            (Some(d), _) => d.verdict,
            (None, Some(a)) if !a.named.is_empty() => Verdict::Detected,
            _ => Verdict::NotDetected,
        }
    }
}

/// Runs the test `a` asks for.
pub(crate) fn evaluate(a: &RadioArgs) -> Result<Tested, Failure> {
    let mode = a.mode();
    let kind = match mode {
        RadioMode::Reading | RadioMode::Logprobs => InputKind::Ids,
        RadioMode::BlackBox | RadioMode::Filtered { .. } => InputKind::Text,
    };
    let s = Setup::new(&a.common, kind)?;
    let docs = match mode {
        RadioMode::Reading => Some(Docs::Reading(read_docs(a.corpus()?)?)),
        RadioMode::Logprobs => Some(Docs::Logprobs(read_docs(a.corpus()?)?)),
        RadioMode::BlackBox | RadioMode::Filtered { .. } => None,
    };
    let description = match mode {
        RadioMode::Logprobs => {
            "probability test: the suspect's probability on our key's favoured tokens, from the API's log-probabilities"
                .to_string()
        }
        RadioMode::Reading => "reading mode: the suspect model's predictions on our watermarked texts".to_string(),
        RadioMode::Filtered { reference } => format!(
            "black box, scored only at contexts of our outputs in {}",
            reference.display()
        ),
        RadioMode::BlackBox => "black box: the suspect model's outputs".to_string(),
    };
    let mut labels = Vec::new();
    let mut reports = Vec::new();
    for (label, key) in s.keyring.iter() {
        labels.push(label.to_string());
        reports.push(test(a, &s, key, docs.as_ref())?);
    }
    if reports.len() == 1 {
        return Ok(Tested {
            description,
            detection: reports.pop(),
            attribution: None,
            color: s.color,
        });
    }
    Ok(Tested {
        description,
        detection: None,
        attribution: Some(attribute(&labels, &reports, a.common.alpha)),
        color: s.color,
    })
}

/// Runs `radioactivity`: one test, or a cohort attribution over a keyring.
pub(crate) fn run(a: RadioArgs) -> Result<Exit, Failure> {
    if let Some(url) = &a.api.api {
        return super::api::run(&a, url);
    }
    if a.api.audit_flags_given() {
        return Err(Failure::Usage(
            "--harvest, --new-prompts, --read, --prompts, --limit, --cache and --out are options of an API audit: add --api URL"
                .into(),
        ));
    }
    let t = evaluate(&a)?;
    let description = &t.description;
    if let Some(report) = &t.detection {
        if a.common.json {
            print_json(report)?;
        } else {
            println!("radioactivity test ({description}): one exact test over every scored token of the corpus");
            print!("{}", render::detection(report, None, t.color));
        }
    } else if let Some(attribution) = &t.attribution {
        if a.common.json {
            print_json(attribution)?;
        } else {
            println!(
                "radioactivity test ({description}), cohort attribution over {} keys",
                attribution.keys.len()
            );
            print!("{}", render::attribution(attribution, t.color));
        }
    }
    Ok(Exit::from(t.verdict()))
}
