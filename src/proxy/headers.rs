//! Header rewriting for forwarding: hop-by-hop removal and `X-Forwarded-*`.

use http::header::{
    CONNECTION, FORWARDED, HOST, HeaderMap, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE,
};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every
/// header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Transfer-Encoding` and
/// `Upgrade`. `Trailer` is end-to-end (RFC 9110 §6.6.2) and stays: it
/// announces the trailer fields, which hyper then forwards. On a protocol upgrade the `Upgrade`
/// header and `Connection: upgrade` are what the next hop needs, so they stay.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none, or only `Connection: keep-alive`: one pass
    // over the names, and no parsing, settles those.
    if !upgrade {
        let mut present = headers.keys().filter(|name| is_hop_by_hop(name));
        match present.next() {
            None => return,
            Some(name)
                if name == CONNECTION
                    && present.next().is_none()
                    && names_only_persistence(headers) =>
            {
                headers.remove(CONNECTION);
                return;
            }
            Some(_) => {}
        }
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    // Only the names present are removed: each removal hashes its name.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name) || named.contains(name))
        .filter(|name| !(upgrade && *name == UPGRADE))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Every `Connection` token is `keep-alive` or `close`: it names no header.
fn names_only_persistence(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().all(|value| {
        value.as_bytes().split(|b| *b == b',').all(|token| {
            let token = token.trim_ascii();
            token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
        })
    })
}

/// A header that never crosses a hop by itself (those a `Connection` header
/// names aside).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [&CONNECTION, &KEEP_ALIVE, &TE, &TRANSFER_ENCODING, &UPGRADE].contains(&name)
        || name.as_str().starts_with("proxy-")
}

/// What the gateway knows about the client connection.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// The peer's IP address, formatted.
    pub peer: &'a HeaderValue,
    /// The peer is one of `trusted_proxies`: its `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// `http` or `https`, as seen by the client.
    pub proto: &'a str,
}

/// Sets `X-Forwarded-For` (appending the peer; an incoming chain is kept only
/// from a trusted proxy), `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded<'_>, authority: Option<&str>) {
    let chain = forwarded
        .trusted
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    let value = match chain {
        None => Some(forwarded.peer.clone()),
        Some(chain) => {
            let peer = forwarded.peer.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{chain}, {peer}")).ok()
        }
    };
    if let Some(value) = value {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !(forwarded.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if forwarded.proto == "https" {
                "https"
            } else {
                "http"
            }),
        );
    }
    if !(forwarded.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        let host = headers
            .get(HOST)
            .cloned()
            .or_else(|| authority.and_then(|a| HeaderValue::from_str(a).ok()));
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

/// Removes request headers whose names contain `_`, as nginx does by
/// default: a backend that folds `_` into `-` (PHP, CGI, older Ruby
/// servers) would read `X_Forwarded_For` or `Transfer_Encoding` as the
/// real thing, beside ours.
pub fn remove_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| name.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes the forwarding headers the gateway does not rewrite itself,
/// `Forwarded` and `X-Real-IP`, for a peer that is not a trusted proxy.
pub fn remove_untrusted_forwarding(headers: &mut HeaderMap) {
    // A scan of the names first: most requests carry neither, and a
    // removal hashes its name.
    if headers
        .keys()
        .any(|name| name == FORWARDED || name == X_REAL_IP)
    {
        headers.remove(FORWARDED);
        headers.remove(&X_REAL_IP);
    }
}

/// The scheme a trusted proxy says the client used.
pub fn forwarded_proto(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(&X_FORWARDED_PROTO)?.to_str().ok()?;
    // A chain of proxies may list several; the first is the client's.
    value.split(',').next().map(str::trim)
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("trailer", "grpc-status"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        let mut kept: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec!["trailer", "x-kept"]);
    }

    #[test]
    fn connection_alone_is_removed_and_what_it_names_too() {
        for (connection, kept) in [
            ("keep-alive", vec!["x-kept", "x-secret"]),
            ("Close , KEEP-ALIVE", vec!["x-kept", "x-secret"]),
            ("keep-alive, x-secret", vec!["x-kept"]),
            ("x-secret", vec!["x-kept"]),
        ] {
            let mut headers = map(&[
                ("connection", connection),
                ("x-secret", "1"),
                ("x-kept", "1"),
            ]);
            remove_hop_by_hop(&mut headers, false);
            let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
            names.sort_unstable();
            assert_eq!(names, kept, "Connection: {connection}");
        }
    }

    #[test]
    fn keeps_upgrade_on_upgrades() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
    }

    #[test]
    fn believes_forwarded_headers_only_from_trusted_proxies() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("host", "app.example"),
        ]);
        let untrusted = Forwarded {
            peer: &HeaderValue::from_static("10.0.0.9"),
            trusted: false,
            proto: "http",
        };
        set_forwarded(&mut headers, &untrusted, None);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.example");

        let mut headers = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let trusted = Forwarded {
            peer: &HeaderValue::from_static("10.0.0.9"),
            trusted: true,
            proto: "http",
        };
        set_forwarded(&mut headers, &trusted, Some("h2.example"));
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "h2.example");
    }
}
