//! `keygen`, `key-id`, `derive` and `serving`.

use std::path::{Path, PathBuf};

use clap::Args;
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::serving::ServingManifest;
use tracemark_verifier::TextTokenizer;

use crate::exit::{Exit, Failure};
use crate::input::load_key;

/// The scheme and tokenizer a key is served with, for its serving manifest.
#[derive(Args)]
pub(crate) struct ServingArgs {
    /// The scheme this key watermarks with, exactly as served (written to KEY.serving.json beside the key)
    #[arg(long)]
    scheme: Option<SchemeConfig>,
    /// tokenizer.json of the served model (its fingerprint goes into the manifest; needs --scheme)
    #[arg(long, requires = "scheme")]
    tokenizer: Option<PathBuf>,
}

fn key_failure(path: &Path) -> impl FnOnce(tracemark_core::Error) -> Failure + '_ {
    move |error| Failure::Key {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes the serving manifest of `key` (in `path`) when `s` names a scheme.
fn write_manifest(key: &Key, path: &Path, s: &ServingArgs) -> Result<(), Failure> {
    let Some(scheme) = &s.scheme else {
        return Ok(());
    };
    let fingerprint = s
        .tokenizer
        .as_ref()
        .map(TextTokenizer::from_file)
        .transpose()?
        .map(|t| t.info().fingerprint.clone());
    let written = ServingManifest::new(key, scheme, fingerprint.as_deref()).save_beside(path)?;
    crate::progress::note(&format!("serving manifest: {}", written.display()));
    Ok(())
}

/// Writes a new key to `out` (and its serving manifest) and prints its id.
pub(crate) fn keygen(out: &Path, serving: &ServingArgs) -> Result<Exit, Failure> {
    let key = Key::generate().map_err(key_failure(out))?;
    key.save(out).map_err(key_failure(out))?;
    write_manifest(&key, out, serving)?;
    println!("{}", key.id());
    Ok(Exit::Success)
}

/// Writes the serving manifest of the key in `key`.
pub(crate) fn serving(path: &Path, serving: &ServingArgs) -> Result<Exit, Failure> {
    if serving.scheme.is_none() {
        return Err(Failure::Usage(
            "serving: give --scheme, the scheme the key is served with".into(),
        ));
    }
    let key = load_key(path)?;
    write_manifest(&key, path, serving)?;
    println!("{}", key.id());
    Ok(Exit::Success)
}

/// Prints the id of the key in `key`.
pub(crate) fn key_id(key: &Path) -> Result<Exit, Failure> {
    println!("{}", load_key(key)?.id());
    Ok(Exit::Success)
}

/// Derives the sub-key for `label` from `key`, writes it to `out` (and its
/// serving manifest) and prints its id.
/// Without --scheme, the derived key inherits the master key's serving
/// manifest (the same scheme and tokenizer, under its own MAC).
pub(crate) fn derive(key: &Path, label: &str, out: &Path, serving: &ServingArgs) -> Result<Exit, Failure> {
    let master = load_key(key)?;
    let child = master.derive(label).map_err(key_failure(key))?;
    child.save(out).map_err(key_failure(out))?;
    match (&serving.scheme, ServingManifest::load_beside(key, &master)?) {
        (None, Some(m)) => {
            let written = ServingManifest::new(&child, &m.scheme()?, m.tokenizer.as_deref()).save_beside(out)?;
            crate::progress::note(&format!(
                "serving manifest (the master key's scheme): {}",
                written.display()
            ));
        }
        _ => write_manifest(&child, out, serving)?,
    }
    println!("{}", child.id());
    Ok(Exit::Success)
}
