//! The model's tokenizer, rebuilt from the GGUF file's own vocabulary and merges.
//!
//! candle's GGUF tokenizer is wrong for SmolLM2 (it ignores the `smollm`
//! pre-tokenizer and adds a leading space). What matches llama.cpp: a
//! byte-level BPE over `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`,
//! pre-tokenized by splitting digits individually and then byte-level
//! splitting without a prefix space, decoded byte-level, with the control
//! tokens (type 3) as special tokens. It can be saved as a `tokenizer.json`
//! so that the `tracemark` CLI verifies this model's text.

use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// Token type of control tokens in GGUF metadata.
const CONTROL: i32 = 3;

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::Model(format!("missing {key}")))?;
    v.to_vec()?.iter().map(|s| Ok(s.to_string()?.clone())).collect()
}

/// Builds the tokenizer from a GGUF file's metadata.
pub fn from_gguf(path: &Path) -> Result<Tokenizer> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let ct = gguf_file::Content::read(&mut file).map_err(|e| e.with_path(path))?;
    let tokens = strings(&ct, "tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings(&ct, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Model(format!("malformed merge {m:?}")))
        })
        .collect::<Result<_>>()?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()?
            .iter()
            .map(|t| t.to_i32())
            .collect::<candle_core::Result<_>>()?,
        None => vec![1; tokens.len()],
    };
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("BPE from GGUF: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == CONTROL)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Writes the tokenizer as `tokenizer.json`.
pub fn save(tok: &Tokenizer, path: &Path) -> Result<()> {
    tok.save(path, false)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
}

/// Encodes text (special tokens in the text are recognised, none are added).
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec())
}

/// Decodes ids, dropping special tokens.
pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))
}

/// The id of a token string.
pub fn token_id(tok: &Tokenizer, token: &str) -> Result<u32> {
    tok.token_to_id(token)
        .ok_or_else(|| Error::Model(format!("the vocabulary has no {token:?}")))
}
