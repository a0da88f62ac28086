//! The request as it goes upstream: the client connection it came on, the
//! target on the upstream, hop-by-hop headers out, `Host` and
//! `X-Forwarded-*` in.

use std::net::SocketAddr;

use http::header::{HOST, HeaderValue};
use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ipnet::IpNet;

use super::headers::{self, Forwarded};
use super::{ProxyBody, Upstream};
use crate::error::{Error, Result};

/// The client connection a request came in on.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The connection is TLS, terminated here.
    pub tls: bool,
    /// The peer's address as `X-Forwarded-For` carries it, formatted once
    /// per connection rather than per request (cloning it is a reference
    /// count).
    peer_ip: HeaderValue,
}

impl Connection {
    /// A connection from `peer`, over TLS or not.
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        // On a dual-stack listener an IPv4 peer is `::ffff:a.b.c.d`: the
        // plain IPv4 form is what trusted_proxies and X-Forwarded-For use.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let peer_ip = HeaderValue::from_maybe_shared(bytes::Bytes::from(peer.ip().to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { peer, tls, peer_ip }
    }

    /// The peer's IP address as text, formatted once per connection.
    pub fn peer_ip(&self) -> &str {
        self.peer_ip.to_str().unwrap_or("unknown")
    }
}

/// Who the client is, as far as this request is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    /// The peer is one of `trusted_proxies`: its `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// The client reached us over TLS, directly or through a trusted proxy
    /// that says `X-Forwarded-Proto: https`.
    pub https: bool,
}

impl Client {
    /// Decides trust and scheme for a request on `connection`.
    pub fn of<B>(request: &Request<B>, connection: &Connection, trusted_proxies: &[IpNet]) -> Self {
        let trusted = trusted_proxies
            .iter()
            .any(|net| net.contains(&connection.peer.ip()));
        let https = connection.tls
            || (trusted && headers::forwarded_proto(request.headers()) == Some("https"));
        Self { trusted, https }
    }
}

/// The request as it goes upstream, before the session is written in.
/// `upgrading` keeps the `Upgrade` handshake headers.
///
/// # Errors
///
/// A bad request when the target cannot be built.
pub fn upstream_request(
    request: Request<Incoming>,
    upstream: &Upstream,
    connection: &Connection,
    client: Client,
    upgrading: bool,
) -> Result<Request<ProxyBody>> {
    let (mut parts, body) = request.into_parts();
    if has_dot_segment(parts.uri.path()) {
        return Err(Error::bad_request(
            "the path has `.` or `..` segments, which could step outside the upstream's base path",
        ));
    }
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    parts.uri = upstream.target(&parts.uri).map_err(Error::bad_request)?;
    headers::remove_hop_by_hop(&mut parts.headers, upgrading);
    headers::remove_underscored(&mut parts.headers);
    if !client.trusted {
        headers::remove_untrusted_forwarding(&mut parts.headers);
    }
    // An HTTP/2 request has no Host header: HTTP/1.1 upstreams need one.
    if !parts.headers.contains_key(HOST) {
        let host = authority
            .as_deref()
            .unwrap_or(upstream.authority().as_str());
        if let Ok(value) = HeaderValue::from_str(host) {
            parts.headers.insert(HOST, value);
        }
    }
    let forwarded = Forwarded {
        peer: &connection.peer_ip,
        trusted: client.trusted,
        proto: if client.https { "https" } else { "http" },
    };
    headers::set_forwarded(&mut parts.headers, &forwarded, authority.as_deref());
    parts.version = Version::HTTP_11;
    Ok(Request::from_parts(parts, body.boxed()))
}

/// A path segment that is `.` or `..`, plainly or percent-encoded
/// (`%2e`): refused rather than normalised, because the backend may resolve
/// it differently from us and reach outside `upstream.url`'s base path.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| match segment.len() {
        1 => segment == ".",
        2 => segment == "..",
        // `%2e` is the only other spelling of a dot: `.%2e`, `%2e%2e`...
        3..=6 => {
            let decoded = segment.replace("%2e", ".").replace("%2E", ".");
            decoded == "." || decoded == ".."
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        for path in [
            "/app/../admin",
            "/app/%2e%2e/admin",
            "/a/%2E./b",
            "/%2e/x",
            "/./x",
            "/..",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in ["/", "/a.b/c", "/...", "/a/..b", "/%2e%2e%2e"] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn ipv4_mapped_peers_are_canonical() {
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:4000".parse().unwrap();
        let connection = Connection::new(mapped, false);
        assert_eq!(connection.peer.to_string(), "10.0.0.7:4000");
        assert_eq!(connection.peer_ip, "10.0.0.7");
    }
}
