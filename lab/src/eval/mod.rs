//! The evaluation harness behind `make eval`: the arms, the records of their
//! cached generations, and the attacks of the robustness tables.

mod arms;
mod attacks;

pub use arms::{arms, ArmRecord, ArmSpec, PromptRecord};
pub use attacks::{delete, distinct_n, insert, substitute};
