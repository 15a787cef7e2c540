//! Reading-mode predictions: a suspect model's next-token predictions on our
//! watermarked texts, in the shape [`tracemark_verifier::reading_mode`] scores.
//!
//! With open weights, the strongest radioactivity test feeds our own
//! watermarked texts to the suspect model and asks, at every position, which
//! token it finds most likely next. A model that learned from watermarked
//! text predicts green tokens more often than chance; the verifier turns that
//! into one exact p-value over the whole set of texts.

use candle_core::D;
use tracemark_verifier::ReadingDoc;

use crate::error::{Error, Result};
use crate::model::{KvCache, Llama};

/// A model whose next-token predictions the verifier's reading mode can score.
pub trait ReadingModel {
    /// `predicted[i]`: the model's most likely token after `prompt ++ ids[..i]`,
    /// one per position of `ids`.
    fn predictions(&self, prompt: &[u32], ids: &[u32]) -> Result<Vec<u32>>;
}

/// One of our texts (`ids` after the context-only `prompt`) with `model`'s
/// predictions, ready for [`tracemark_verifier::reading_mode`].
pub fn reading_doc(model: &(impl ReadingModel + ?Sized), prompt: &[u32], ids: &[u32]) -> Result<ReadingDoc> {
    Ok(ReadingDoc {
        prompt_ids: prompt.to_vec(),
        ids: ids.to_vec(),
        predicted: model.predictions(prompt, ids)?,
    })
}

impl ReadingModel for Llama {
    /// One forward pass over the whole text (every position's logits), then
    /// the argmax of each row. Needs a non-empty prompt: the first token of
    /// `ids` must have a context to be predicted from.
    fn predictions(&self, prompt: &[u32], ids: &[u32]) -> Result<Vec<u32>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if prompt.is_empty() {
            return Err(Error::Usage(
                "reading mode needs a prompt of at least one token before the text".into(),
            ));
        }
        let seq: Vec<u32> = prompt.iter().chain(&ids[..ids.len() - 1]).copied().collect();
        let logits = self.forward(&[seq], &mut KvCache::new(), true)?.squeeze(0)?;
        let rows = logits.narrow(0, prompt.len() - 1, ids.len())?;
        Ok(rows.argmax(D::Minus1)?.to_vec1::<u32>()?)
    }
}
