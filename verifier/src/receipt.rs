//! Signed provenance receipts (Ed25519): the metadata layer beside the watermark.
