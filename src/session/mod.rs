//! Sessions: the engine's phases, the header protocol, and the cookie codecs.
//!
//! * [`engine`]: resolve → prepare upstream → commit, per request;
//! * [`protocol`]: the `X-Session-*` headers both ways;
//! * [`cookies`]: reading, stripping, chunking and writing cookies;
//! * [`sealed`]: the cookie store's AES-256-GCM format;
//! * [`signed_id`]: the server stores' `id.mac` cookie;
//! * [`keys`]: per-purpose keys derived from the secrets;
//! * [`merge_patch`]: RFC 7396.

pub mod b64;
pub mod cookies;
pub mod engine;
pub mod keys;
pub mod merge_patch;
pub mod protocol;
pub mod sealed;
pub mod signed_id;

pub use engine::{CommitError, Engine, ResolveError, Session};
