//! The session engine and its codecs.
pub mod b64;
pub mod merge_patch;
