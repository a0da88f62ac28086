//! Forwarding one request upstream: building the upstream request
//! ([`forward`]), hop-by-hop and forwarded headers, the pooled client, and
//! protocol upgrades.

pub mod client;
pub mod forward;
pub mod headers;
mod idle;
pub mod pool;
pub mod upgrade;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

pub use client::Upstream;
pub use forward::{Client, Connection};

/// Bodies both ways: streamed, never collected.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A small body the gateway writes itself (errors, admin pages).
pub fn text_body(text: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}
