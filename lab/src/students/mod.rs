//! The students of the distillation experiments: language models trained on
//! harvested answers, the suspects of a radioactivity test. [`Student`] is
//! what the experiments need from one: sampling (black-box outputs, see
//! [`answers`]) and next-token predictions on our texts (reading mode,
//! through [`tracemark_candle::ReadingModel`]). Two implementations: the
//! smoothed trigram model [`NGram`] and [`MlpLm`], a small neural model
//! trained with candle on the CPU. They live in the lab because they are the
//! experiment's suspects, not part of a decoder.

mod mlp;
mod ngram;

pub use mlp::{answers, Answer, MlpLm, Student, TrainOptions, TrainReport};
pub use ngram::NGram;
