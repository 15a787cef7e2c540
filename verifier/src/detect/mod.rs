//! Detection of one scheme under one key: the observations of a text
//! (`observe`, the leaf every other part uses), the [`Detector`] over ids,
//! text and streams, the window search, the spoof-artifact test
//! ([`forgery`]), model-weighted tests ([`weighted`]), the semantic layer's
//! test ([`semantic`]) and the layered verdict ([`layered`]), and the report
//! of one detection ([`Detection`]).

mod detection;
mod detector;
pub mod forgery;
pub mod layered;
pub(crate) mod observe;
pub mod semantic;
mod strength;
mod text;
pub mod weighted;
mod window;

pub use detection::{Detection, Outcome, TestReport, Verdict};
pub use detector::{DetectOptions, DetectionStream, Detector};
pub use forgery::{ForgeryReference, ForgeryTest, FORGERY_ALPHA};
pub use layered::{Layer, LayeredVerdict, SemanticForm};
pub use observe::{Counts, Dedup, Mark, TokenStatus};
pub use strength::{p_in_words, Needed, Strength};
pub use window::{WindowOptions, WindowReport};
