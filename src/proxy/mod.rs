//! Forwarding one request upstream: the pooled client, hop-by-hop and
//! forwarded headers, and protocol upgrades.

pub mod client;
pub mod headers;
mod pool;
pub mod upgrade;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

pub use client::{Upstream, UpstreamError};

/// Bodies both ways: streamed, never collected.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A small body the gateway writes itself (errors, admin pages).
pub fn text_body(text: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}
