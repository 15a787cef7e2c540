//! `detect`: one text (or ids) against one key or a keyring.

use std::path::Path;
use std::sync::Arc;

use tracemark_core::Key;
use tracemark_verifier::internal::sha256_hex;
use tracemark_verifier::report::Subject;
use tracemark_verifier::text::Deadline;
use tracemark_verifier::{
    forgery, render, Detection, Detector, Error, ForgeryReference, KeyResult, KeyringDetection, KeyringDetector,
    TextTokenizer, Verdict, WindowOptions,
};

use super::{print_json, Setup};
use crate::args::{DetectArgs, InputKind};
use crate::exit::{Exit, Failure};
use crate::input::{parse_ids, read_input, source_name, text_of};
use crate::semantic::{load_embedder, semantic_layer, semantic_scheme, LayerError};

/// The suspect input, read and parsed.
enum Suspect {
    /// Text, with the prompt's text when given.
    Text {
        text: String,
        prompt: Option<String>,
        bytes: Vec<u8>,
    },
    /// Token ids, with the prompt's ids (empty when none) and the SHA-256 of the input bytes.
    Ids {
        prompt: Vec<u32>,
        ids: Vec<u32>,
        sha256: String,
        bytes: Vec<u8>,
    },
}

impl Suspect {
    fn load(a: &DetectArgs) -> Result<Self, Failure> {
        let source = source_name(&a.input);
        let bytes = read_input(&a.input, "input")?;
        let prompt_bytes = a
            .prompt_file
            .as_deref()
            .map(|p| read_input(p, "--prompt-file"))
            .transpose()?;
        Ok(match a.input_kind() {
            InputKind::Ids => {
                let prompt = match (&prompt_bytes, &a.prompt) {
                    (Some(b), _) => parse_ids(b, "prompt file")?,
                    (None, Some(p)) => parse_ids(p.as_bytes(), "--prompt")?,
                    (None, None) => Vec::new(),
                };
                Suspect::Ids {
                    prompt,
                    ids: parse_ids(&bytes, &source)?,
                    sha256: sha256_hex(&bytes),
                    bytes,
                }
            }
            InputKind::Text => {
                let text = text_of(&bytes, &a.input, "input")?;
                let prompt = match (&prompt_bytes, &a.prompt) {
                    (Some(b), _) => Some(text_of(
                        b,
                        a.prompt_file.as_deref().unwrap_or(Path::new("-")),
                        "--prompt-file",
                    )?),
                    (None, p) => p.clone(),
                };
                Suspect::Text { text, prompt, bytes }
            }
        })
    }

    /// The detection of this input by `d`; text needs the tokenizer.
    fn detect(&self, d: &Detector, tokenizer: Option<&TextTokenizer>) -> Result<Detection, Error> {
        match self {
            Suspect::Text { text, prompt, .. } => {
                let tokenizer = tokenizer.ok_or_else(|| Error::Tokenizer {
                    message: "text input needs --tokenizer".into(),
                })?;
                d.detect_text(tokenizer, prompt.as_deref(), text)
            }
            Suspect::Ids {
                prompt, ids, sha256, ..
            } => {
                let mut r = d.detect_ids(prompt, ids)?;
                r.input_sha256 = Some(sha256.clone());
                Ok(r)
            }
        }
    }

    /// The input's bytes.
    fn bytes(&self) -> &[u8] {
        match self {
            Suspect::Text { bytes, .. } | Suspect::Ids { bytes, .. } => bytes,
        }
    }

    /// The text the report's marks point into.
    fn text(&self) -> Option<&str> {
        match self {
            Suspect::Text { text, .. } => Some(text),
            Suspect::Ids { .. } => None,
        }
    }
}

/// The verdict of a keyring: detected when any key is named at the
/// family-wise level, inconclusive when no key could be tested.
fn keyring_verdict(k: &KeyringDetection) -> Verdict {
    if k.keys.iter().any(KeyResult::detected) {
        Verdict::Detected
    } else if k.best.is_none() {
        Verdict::Inconclusive
    } else {
        Verdict::NotDetected
    }
}

/// The result of `detect`: one key's detection or a keyring's.
pub(crate) enum Found {
    /// One key.
    Single(Detection),
    /// A keyring.
    Keyring(KeyringDetection),
}

impl Found {
    /// The verdict the exit code stands on.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Found::Single(d) => d.verdict,
            Found::Keyring(k) => keyring_verdict(k),
        }
    }
}

/// The input of `detect`: its name, bytes' digest and size, and text when it was text.
pub(crate) struct Input {
    pub(crate) subject: Subject,
    pub(crate) text: Option<String>,
}

/// Runs the test `a` asks for; `marks` asks for a mark per token.
pub(crate) fn evaluate(a: &DetectArgs, marks: bool) -> Result<(Found, Input, bool), Failure> {
    let mut s = Setup::new(&a.common, a.input_kind())?;
    s.options.marks = marks;
    if a.window {
        s.options.window = Some(WindowOptions::with_min_scored(a.window_min));
    }
    let suspect = Suspect::load(a)?;
    let input = Input {
        subject: Subject::of_bytes(&source_name(&a.input), suspect.bytes()),
        text: suspect.text().map(str::to_string),
    };
    let detect = |d: &Detector| suspect.detect(d, s.tokenizer.as_ref());
    if let Some(key) = s.single_key() {
        let mut d = Detector::new(key, &s.scheme, s.vocab, s.options.clone())?;
        if let Some(path) = &a.forgery_reference {
            let file = std::fs::File::open(path).map_err(|error| Failure::Read {
                source: path.display().to_string(),
                error,
            })?;
            let reference = ForgeryReference::from_jsonl(
                &d,
                s.tokenizer.as_ref(),
                std::io::BufReader::new(file),
                forgery::DENSE_AT,
                forgery::FORGERY_ALPHA,
            )?;
            d = d.with_forgery_reference(Arc::new(reference))?;
        }
        let mut found = detect(&d)?;
        found.scheme_source = Some(s.scheme_source.clone());
        if let Some(scheme) = &a.semantic {
            let text = suspect
                .text()
                .ok_or_else(|| Failure::Usage("--semantic tests text: it does not take --ids".into()))?;
            add_semantic(&mut found, &d, key, scheme, a.embedder.as_deref(), text)?;
        }
        return Ok((Found::Single(found), input, s.color));
    }
    if a.semantic.is_some() {
        return Err(Failure::Usage(
            "--semantic tests one key: give --key, not a keyring".into(),
        ));
    }
    if a.forgery_reference.is_some() {
        return Err(Failure::Usage(
            "--forgery-reference tests one key: give --key, not a keyring".into(),
        ));
    }
    let kd = KeyringDetector::new(&s.keyring, &s.scheme, s.vocab, s.options.clone())?;
    let mut found = kd.detect_with(detect)?;
    if let Some(best) = &mut found.best_detection {
        best.scheme_source = Some(s.scheme_source.clone());
    }
    Ok((Found::Keyring(found), input, s.color))
}

/// Tests the semantic layer of `text` under `key` (the sentences of the form
/// `d` tests, embedded by the embedder in `embedder` or its default folder)
/// and sets the layered verdict of `found`.
fn add_semantic(
    found: &mut Detection,
    d: &Detector,
    key: &Key,
    scheme: &str,
    embedder: Option<&Path>,
    text: &str,
) -> Result<(), Failure> {
    let scheme = semantic_scheme(key, scheme)?;
    let embedder = load_embedder(embedder)?;
    semantic_layer(found, d, &scheme, &embedder, text, Deadline::NONE).map_err(|e| match e {
        LayerError::Verifier(e) => Failure::from(e),
        LayerError::Embedder(message) => Failure::Malformed {
            source: "--embedder".into(),
            message,
        },
    })
}

/// Runs `detect`; the exit code is the verdict's.
pub(crate) fn run(a: DetectArgs) -> Result<Exit, Failure> {
    let (found, input, color) = evaluate(&a, !a.common.json || a.window)?;
    let text = input.text.as_deref();
    match &found {
        Found::Single(report) if a.common.json => print_json(report)?,
        Found::Single(report) => print!("{}", render::detection(report, text, color)),
        Found::Keyring(result) if a.common.json => print_json(result)?,
        Found::Keyring(result) => {
            print!("{}", render::keyring(result, color));
            if let Some(best) = &result.best_detection {
                println!("\nbest match:");
                print!("{}", render::detection(best, text, color));
            }
        }
    }
    Ok(Exit::from(found.verdict()))
}
