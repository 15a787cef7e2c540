//! Text input: a `tokenizer.json` (Hugging Face `tokenizers` format) turns
//! text into the ids the scheme was applied to.
//!
//! Detection on text re-encodes it, and a model's generated ids do not always
//! come back as the same ids (a tokenizer has many ways to spell a string and
//! the model may pick a non-canonical one); positions that re-encode
//! differently are scored under different contexts and carry no signal.
//! `docs/verifier.md` measures how much signal that costs.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::canonical::{canonical_pair, canonicalize, Canonical, CanonicalReport, Form, FormTest};
use crate::detect::{Detection, Detector, TokenizerInfo, Verdict};
use crate::error::{Error, Result};

/// A tokenizer loaded from a `tokenizer.json`.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    info: TokenizerInfo,
}

impl core::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "TextTokenizer({}, vocab {})",
            self.info.fingerprint, self.info.vocab_size
        )
    }
}

/// Ids and byte offsets of an encoded text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Byte range of each token in the text.
    pub spans: Vec<(usize, usize)>,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Tokenizer { message } => Error::Tokenizer {
                message: format!("{}: {message}", path.display()),
            },
            other => other,
        })
    }

    /// Wraps a tokenizer built in memory (e.g. from a model file). It is
    /// serialised to its `tokenizer.json` form and parsed back, so that
    /// detection uses exactly what that JSON describes and the fingerprint
    /// stays the SHA-256 of it: the same fingerprint as
    /// [`from_file`](Self::from_file) on the file `tokenizer.save(path, false)`
    /// writes.
    pub fn from_tokenizer(tokenizer: &tokenizers::Tokenizer) -> Result<Self> {
        let json = tokenizer.to_string(false).map_err(|e| Error::Tokenizer {
            message: format!("cannot serialise the tokenizer: {e}"),
        })?;
        Self::from_bytes(json.as_bytes())
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self {
            inner,
            info: TokenizerInfo {
                fingerprint: sha256_hex(bytes),
                vocab_size,
            },
        })
    }

    /// Fingerprint and vocabulary size.
    pub fn info(&self) -> &TokenizerInfo {
        &self.info
    }

    /// The vocabulary size (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.info.vocab_size
    }

    /// Encodes `text` without adding special tokens.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            spans: enc.get_offsets().to_vec(),
        })
    }

    /// Decodes ids to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer { message: e.to_string() })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Reads bytes as UTF-8 text, naming `source` in the error.
pub fn utf8(bytes: &[u8], source: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::InvalidUtf8 {
        source: source.to_string(),
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}

impl Detector {
    /// Tests a text: `completion` is encoded and scored, `prompt` (if any) is
    /// encoded separately and used as context only. The report carries the
    /// tokenizer fingerprint, the SHA-256 of the completion bytes, and byte
    /// spans (into `completion` as given) for the marks and the window.
    ///
    /// With [`DetectOptions::canonicalize`](crate::DetectOptions) on (the
    /// default), the text's canonical form ([`canonicalize`]) is tested as
    /// well when it differs, and the verdict stands on the smaller p-value
    /// times the number of forms tested; the report's
    /// [`canonical`](Detection::canonical) section says what changed, both
    /// tests and the correction.
    pub fn detect_text(&self, tokenizer: &TextTokenizer, prompt: Option<&str>, completion: &str) -> Result<Detection> {
        if completion.trim().is_empty() {
            return Err(Error::EmptyInput);
        }
        let given = self.detect_form(tokenizer, prompt, completion, None)?;
        if !self.options().canonicalize {
            return Ok(given);
        }
        let given_test = FormTest {
            form: Form::AsGiven,
            sha256: sha256_hex(completion.as_bytes()),
            tokens: given.counts.seen,
            log10_p: given.form_log10_p(),
        };
        let mut forms = vec![given_test];
        let mut canonical_report = None;
        let pair = canonical_pair(prompt, completion);
        if let Some((canonical_prompt, canonical)) = &pair {
            let report = self.detect_form(
                tokenizer,
                canonical_prompt.as_ref().map(Canonical::text),
                canonical.text(),
                Some(canonical),
            )?;
            forms.push(FormTest {
                form: Form::Canonical,
                sha256: sha256_hex(canonical.text().as_bytes()),
                tokens: report.counts.seen,
                log10_p: report.form_log10_p(),
            });
            canonical_report = Some(report);
        }
        // The change summary is the completion's, also when only the prompt
        // changed or the canonical completion is empty.
        let canonical = pair.map_or_else(|| canonicalize(completion), |(_, c)| c);
        // Bonferroni over the forms tested; which forms those are depends on
        // the text only, never on a p-value.
        let correction_log10 = (forms.len() as f64).log10();
        let best = forms
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.log10_p.map(|l| (i, l)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let family_log10_p = best.map(|(_, l)| (l + correction_log10).min(0.0));
        let decided_by = best.map_or(Form::AsGiven, |(i, _)| forms[i].form);
        let mut d = match (decided_by, canonical_report) {
            (Form::Canonical, Some(c)) => c,
            _ => given,
        };
        d.input_sha256 = Some(sha256_hex(completion.as_bytes()));
        d.verdict = match family_log10_p {
            None => Verdict::Inconclusive,
            Some(l) if l < self.options().alpha.log10() => Verdict::Detected,
            Some(_) => Verdict::NotDetected,
        };
        d.canonical = Some(CanonicalReport {
            changes: canonical.summary(),
            forms,
            decided_by,
            correction_log10,
            family_log10_p,
        });
        Ok(d)
    }

    /// Tests one form of a text; `canonical` maps its spans back to the
    /// original when the form is a canonical one.
    fn detect_form(
        &self,
        tokenizer: &TextTokenizer,
        prompt: Option<&str>,
        completion: &str,
        canonical: Option<&Canonical>,
    ) -> Result<Detection> {
        let prompt_ids = match prompt {
            Some(p) => tokenizer.encode(p)?.ids,
            None => Vec::new(),
        };
        let enc = tokenizer.encode(completion)?;
        let mut d = self.detect_ids(&prompt_ids, &enc.ids)?;
        d.tokenizer = Some(tokenizer.info().clone());
        d.input_sha256 = Some(sha256_hex(completion.as_bytes()));
        let original = |span: (usize, usize)| canonical.map_or(span, |c| c.original_span(span));
        if let Some(marks) = &mut d.marks {
            for (m, span) in marks.iter_mut().zip(&enc.spans) {
                m.span = Some(original(*span));
            }
        }
        if let Some(w) = &mut d.window {
            let start = enc.spans.get(w.start).map(|s| s.0);
            let end = enc.spans.get(w.end.saturating_sub(1)).map(|s| s.1);
            w.span = start.zip(end).map(original);
        }
        Ok(d)
    }
}
