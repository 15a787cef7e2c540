//! The semantic layer of issue 25 where the CLI and the service test it:
//! the scheme of a key, the embedder loaded once, and a detection's layer
//! and layered verdict (shared by `detect`, `scan` and `serve`).

use std::path::Path;

use tracemark_candle::embed::{embedder_dir, Embedder};
use tracemark_core::{Key, Semantic, SemanticConfig};
use tracemark_verifier::text::Deadline;
use tracemark_verifier::{Detection, Detector, Error};

use crate::exit::Failure;

/// Why the semantic layer could not be tested.
pub(crate) enum LayerError {
    /// The verifier's (including the deadline).
    Verifier(Error),
    /// The sentence embedder failed on the text's sentences.
    Embedder(String),
}

impl From<Error> for LayerError {
    fn from(e: Error) -> Self {
        LayerError::Verifier(e)
    }
}

/// The semantic scheme `scheme` (`semantic:...`) under `key`.
pub(crate) fn semantic_scheme(key: &Key, scheme: &str) -> Result<Semantic, Failure> {
    let config: SemanticConfig = scheme
        .parse()
        .map_err(|e: tracemark_core::Error| Failure::Usage(format!("--semantic {scheme}: {e}")))?;
    Ok(Semantic::new(key, config).map_err(Error::from)?)
}

/// The sentence embedder in `dir`, or in its default folder.
pub(crate) fn load_embedder(dir: Option<&Path>) -> Result<Embedder, Failure> {
    let dir = match dir {
        Some(p) => p.to_path_buf(),
        None => embedder_dir().map_err(embedder_failure)?,
    };
    Embedder::load(&dir).map_err(embedder_failure)
}

fn embedder_failure(e: tracemark_candle::Error) -> Failure {
    match e {
        tracemark_candle::Error::Usage(m) => Failure::Usage(m),
        e => Failure::Malformed {
            source: "--embedder".into(),
            message: e.to_string(),
        },
    }
}

/// Sentences embedded at once between two looks at the deadline.
const SENTENCES_PER_CHECK: usize = 32;

/// Tests the semantic layer of `text` (the sentences of the form `d` tests,
/// embedded by `embedder`) under `scheme` and sets the layered verdict of
/// `found`; stops with [`Error::DeadlineExceeded`] once `deadline` has
/// passed, looking at it every [`SENTENCES_PER_CHECK`] sentences (the CLI
/// and the service share this).
pub(crate) fn semantic_layer(
    found: &mut Detection,
    d: &Detector,
    scheme: &Semantic,
    embedder: &Embedder,
    text: &str,
    deadline: Deadline,
) -> Result<(), LayerError> {
    let form = d.semantic_form(text);
    let sentences = form.scored_sentences(scheme);
    let mut data = Vec::new();
    for chunk in sentences.chunks(SENTENCES_PER_CHECK) {
        deadline.check()?;
        let e = embedder.embed(chunk).map_err(|e| LayerError::Embedder(e.to_string()))?;
        data.push(e);
    }
    deadline.check()?;
    let rows: Vec<&[f32]> = data.iter().flat_map(|e| e.rows()).collect();
    found.add_semantic(form.detect(scheme, &rows)?)?;
    Ok(())
}
