//! A Llama-architecture decoder over GGUF weights, written on candle's
//! primitives (quantized matmuls, RMS norm, interleaved rotary embeddings).
//!
//! candle-transformers' `quantized_llama` returns logits for the last
//! position only; perplexity and the distillation test's reading mode need
//! the next-token distribution at *every* position of a text, so this module
//! implements the forward pass itself and exposes both. It is checked against
//! `quantized_llama` in `tests/model.rs`.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Tensor, D};

use crate::error::{Error, Result};

/// Hyper-parameters read from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// RMS norm epsilon.
    pub rms_eps: f64,
    /// Rotary base frequency.
    pub rope_base: f32,
    /// Longest supported sequence.
    pub max_positions: usize,
}

impl LlamaConfig {
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

struct Block {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

/// How to load the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Requantize every matrix to Q8_0 at load: candle has no SIMD kernel for
    /// the shipped Q4_1, and Q8_0 decodes about 2.5x faster (+0.75 s at load).
    pub requantize_q8: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { requantize_q8: true }
    }
}

/// The key/value cache of a batch of sequences that advance together.
///
/// Cloning is cheap (the tensors are shared, never written in place: a
/// forward pass appends by building new ones), so a clone is a checkpoint
/// that a decoder can go back to, as [`crate::layered`] does to resample a
/// sentence.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
    /// Per row, how many leading positions are padding (empty: none).
    padding: Vec<usize>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache for rows whose first `padding[row]` positions will be
    /// padding (prompts of different lengths, left-padded to one length):
    /// no real position ever attends to a padding position. A padded row's
    /// tokens then sit at later absolute positions than they would alone;
    /// rotary embeddings depend on relative positions only, but the
    /// quantized matmuls round activations to 8 bits, so its next-token
    /// distributions differ from the unpadded row's by a little (on
    /// SmolLM2, a total variation of about 0.03 on average, as a test in
    /// `tests/model.rs` measures) rather than not at all.
    pub fn left_padded(padding: Vec<usize>) -> Self {
        Self {
            padding,
            ..Self::default()
        }
    }

    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The model.
pub struct Llama {
    config: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    Ok(ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::Model(format!("missing {key}")))?
        .to_u32()? as usize)
}

fn md_f32(ct: &gguf_file::Content, key: &str) -> Result<f32> {
    Ok(ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::Model(format!("missing {key}")))?
        .to_f32()?)
}

impl Llama {
    /// Loads a GGUF file (architecture `llama`) on the CPU.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let ct = gguf_file::Content::read(&mut file).map_err(|e| e.with_path(path))?;
        let device = Device::Cpu;
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned();
        if arch.as_deref() != Some("llama") {
            return Err(Error::Model(format!(
                "expected a llama GGUF, found architecture {arch:?}"
            )));
        }
        let tokens = match ct.metadata.get("tokenizer.ggml.tokens") {
            Some(v) => v.to_vec()?.len(),
            None => return Err(Error::Model("missing tokenizer.ggml.tokens".into())),
        };
        let config = LlamaConfig {
            vocab_size: tokens,
            hidden: md_u32(&ct, "llama.embedding_length")?,
            layers: md_u32(&ct, "llama.block_count")?,
            heads: md_u32(&ct, "llama.attention.head_count")?,
            kv_heads: md_u32(&ct, "llama.attention.head_count_kv")?,
            rms_eps: f64::from(md_f32(&ct, "llama.attention.layer_norm_rms_epsilon")?),
            rope_base: md_f32(&ct, "llama.rope.freq_base").unwrap_or(10_000.0),
            max_positions: md_u32(&ct, "llama.context_length").unwrap_or(2048).min(8192),
        };
        let mut tensor = |name: &str| -> Result<QTensor> { Ok(ct.tensor(&mut file, name, &device)?) };
        let qmm = |t: QTensor| -> Result<QMatMul> {
            let t = if options.requantize_q8 && t.dtype() != GgmlDType::Q8_0 && t.shape().dims().len() == 2 {
                QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
            } else {
                t
            };
            Ok(QMatMul::from_qtensor(t)?)
        };
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(&device)?;
        let output = match tensor("output.weight") {
            Ok(t) => qmm(t)?,
            // Tied embeddings.
            Err(_) => qmm(embed_q)?,
        };
        let norm = tensor("output_norm.weight")?.dequantize(&device)?;
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |n: &str| tensor(&format!("blk.{i}.{n}.weight"));
            blocks.push(Block {
                attn_norm: t("attn_norm")?.dequantize(&device)?,
                wq: qmm(t("attn_q")?)?,
                wk: qmm(t("attn_k")?)?,
                wv: qmm(t("attn_v")?)?,
                wo: qmm(t("attn_output")?)?,
                ffn_norm: t("ffn_norm")?.dequantize(&device)?,
                w_gate: qmm(t("ffn_gate")?)?,
                w_up: qmm(t("ffn_up")?)?,
                w_down: qmm(t("ffn_down")?)?,
            });
        }
        let half = config.head_dim() / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / config.rope_base.powf(2.0 * i as f32 / config.head_dim() as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, half), &device)?;
        let pos = Tensor::arange(0u32, config.max_positions as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((config.max_positions, 1))?;
        let freqs = pos.matmul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            config,
            embed,
            blocks,
            norm,
            output,
            device,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Runs `tokens` (one row per sequence, all of equal length) through the
    /// model after what `cache` holds, and appends them to the cache.
    /// Returns logits of shape `(batch, vocab)` for the last position, or
    /// `(batch, len, vocab)` for every position when `all_positions`.
    pub fn forward(&self, tokens: &[Vec<u32>], cache: &mut KvCache, all_positions: bool) -> Result<Tensor> {
        let b = tokens.len();
        let t = tokens.first().map_or(0, Vec::len);
        if b == 0 || t == 0 || tokens.iter().any(|r| r.len() != t) {
            return Err(Error::Usage(
                "forward needs a non-empty batch of equal-length rows".into(),
            ));
        }
        let start = cache.len;
        if start + t > self.config.max_positions {
            return Err(Error::Usage(format!(
                "sequence longer than {} positions",
                self.config.max_positions
            )));
        }
        if let Some(&bad) = tokens.iter().flatten().find(|&&x| x as usize >= self.config.vocab_size) {
            return Err(Error::Usage(format!("token id {bad} is outside the vocabulary")));
        }
        if cache.layers.is_empty() {
            cache.layers = (0..self.config.layers).map(|_| None).collect();
        }
        let (hd, nh, nkv) = (self.config.head_dim(), self.config.heads, self.config.kv_heads);
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * t, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?.reshape((b, t, self.config.hidden))?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        if !cache.padding.is_empty() && cache.padding.len() != b {
            return Err(Error::Usage(format!(
                "a cache padded for {} rows got {b}",
                cache.padding.len()
            )));
        }
        let mask = if cache.padding.iter().any(|&p| p > 0) {
            // Per row: causal, and no padding position as a key, except a padding
            // position for itself (so that its own softmax has a finite entry).
            let padding = &cache.padding;
            let m: Vec<f32> = (0..b)
                .flat_map(|r| {
                    (0..t).flat_map(move |i| {
                        (0..start + t).map(move |j| {
                            let q = start + i;
                            if j > q || (j < padding[r] && j != q) {
                                f32::NEG_INFINITY
                            } else {
                                0.0
                            }
                        })
                    })
                })
                .collect();
            Some(Tensor::from_vec(m, (b, 1, t, start + t), &self.device)?)
        } else if t > 1 {
            // Position i of the new rows sees every cached position and new positions <= i.
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..start + t).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (t, start + t), &self.device)?)
        } else {
            None
        };
        let scale = 1.0 / (hd as f64).sqrt();
        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, self.config.rms_eps as f32)?;
            let heads = |w: &QMatMul, n: usize| -> Result<Tensor> {
                Ok(w.forward(&h)?.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = candle_nn::rotary_emb::rope_i(&heads(&block.wq, nh)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&heads(&block.wk, nkv)?, &cos, &sin)?;
            let v = heads(&block.wv, nkv)?;
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));
            // Grouped-query attention: each key/value head serves heads / kv_heads query heads.
            let group = nh / nkv;
            let expand = |x: Tensor| -> Result<Tensor> {
                if group == 1 {
                    return Ok(x);
                }
                let (b, _, s, d) = x.dims4()?;
                Ok(x.unsqueeze(2)?.expand((b, nkv, group, s, d))?.reshape((b, nh, s, d))?)
            };
            let (k, v) = (expand(k)?, expand(v)?);
            let mut att = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v.contiguous()?)?
                .transpose(1, 2)?
                .reshape((b, t, self.config.hidden))?;
            x = (x + block.wo.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, self.config.rms_eps as f32)?;
            let gated = (candle_nn::ops::silu(&block.w_gate.forward(&h)?)? * block.w_up.forward(&h)?)?;
            x = (x + block.w_down.forward(&gated)?)?;
        }
        cache.len += t;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.config.rms_eps as f32)?;
        if all_positions {
            Ok(self.output.forward(&x)?)
        } else {
            Ok(self.output.forward(&x.i((.., t - 1, ..))?.contiguous()?)?)
        }
    }

    /// Log-probabilities of each next token under the model: for a sequence
    /// `ids`, row `i` of the result is `ln P(ids[i+1] | ids[..=i])` over the vocabulary.
    pub fn log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let mut cache = KvCache::new();
        let logits = self.forward(&[ids.to_vec()], &mut cache, true)?.squeeze(0)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        Ok(lp.to_vec2::<f32>()?)
    }

    /// Mean negative log-likelihood per token of `completion` after `prompt`,
    /// and the number of tokens scored. `exp` of it is the perplexity.
    pub fn nll(&self, prompt: &[u32], completion: &[u32]) -> Result<(f64, usize)> {
        if completion.is_empty() || prompt.is_empty() {
            return Err(Error::Usage("perplexity needs a prompt and a completion".into()));
        }
        let ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
        let lp = self.log_probs(&ids[..ids.len() - 1])?;
        let total: f64 = completion
            .iter()
            .enumerate()
            .map(|(i, &tok)| -f64::from(lp[prompt.len() - 1 + i][tok as usize]))
            .sum();
        Ok((total / completion.len() as f64, completion.len()))
    }
}

/// Sets candle's CPU thread count (it reads `CANDLE_NUM_THREADS` once, on first use).
pub fn set_threads(threads: usize) {
    if threads > 0 {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}
