//! Sessions: the engine's phases, the header protocol, and the cookie codecs.
//!
//! * [`engine`]: resolve → prepare upstream → commit, per request;
//! * [`decision`]: whether a commit writes, touches, resends or clears;
//! * [`protocol`]: the `X-Session-*` headers both ways;
//! * [`cookies`]: reading, stripping, chunking and writing cookies;
//! * [`sealed`]: the cookie store's AES-256-GCM format;
//! * [`signed_id`]: the server stores' `id.mac` cookie;
//! * [`keys`]: per-purpose keys derived from the secrets;
//! * [`assertion`]: the signed session assertion (a JWT) and its JWKS;
//! * [`compat`]: the cookie codec `session.compat` picks: ours,
//!   [`express`]'s `s:` cookie, or [`iron`]'s seal;

pub mod assertion;
pub mod b64;
pub mod compat;
pub mod cookies;
pub mod decision;
pub mod engine;
pub mod express;
pub mod iron;
pub mod keys;
pub mod protocol;
mod response;
pub mod sealed;
pub mod signed_id;

pub use engine::{Engine, Session};
