//! Evidence a person reads: the self-contained HTML report and its sealed
//! JSON ([`report`]), the terminal rendering of a verdict ([`render`]), and
//! Ed25519-signed provenance receipts ([`receipt`]).

pub mod receipt;
pub mod render;
pub mod report;
