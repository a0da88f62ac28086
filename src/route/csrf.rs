//! Cross-origin protection, decided as browsers report a request's origin
//! (the rule of Go's `http.CrossOriginProtection`): no token, no state.
//!
//! Safe methods pass. An unsafe request passes when `Sec-Fetch-Site` says
//! `same-origin` or `none` (typed by the user); with no `Sec-Fetch-Site`
//! (an older browser), when `Origin` is absent (not a browser, or a
//! same-origin request of a browser too old to send it) or names the
//! request's own host. An `Origin` in `csrf.trusted_origins` always passes.
//! Anything unclear (two `Origin` headers, an `Origin` that is not a URL or
//! is `null`, no `Host` to compare with) is refused.

use http::header::{HeaderMap, ORIGIN};
use http::{HeaderName, Method};

use crate::config::normalize_origin;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The request may reach the backend. `host` is the request's `Host` (or
/// HTTP/2 authority), port included, if it has one.
pub fn allows(
    method: &Method,
    headers: &HeaderMap,
    host: Option<&str>,
    trusted: &[String],
) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let mut sites = headers.get_all(SEC_FETCH_SITE).iter();
    match (sites.next(), sites.next()) {
        (Some(site), None) => {
            return matches!(site.as_bytes(), b"same-origin" | b"none")
                || origin(headers).is_some_and(|o| trusted.contains(&o));
        }
        (Some(_), Some(_)) => return false,
        (None, _) => {}
    }
    let mut origins = headers.get_all(ORIGIN).iter();
    if origins.next().is_none() {
        return true;
    }
    let Some(origin) = origin(headers) else {
        return false;
    };
    let same_host = match (origin.split_once("://"), host) {
        (Some((_, authority)), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    };
    same_host || trusted.contains(&origin)
}

/// The one `Origin` the request carries, normalised; `None` when it has
/// none, several, or one that is not an origin.
fn origin(headers: &HeaderMap) -> Option<String> {
    let mut origins = headers.get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(value), None) => normalize_origin(value.to_str().ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, headers: &[(&str, &str)], host: Option<&str>) -> bool {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        allows(&method, &map, host, &["https://idp.example.com".to_owned()])
    }

    /// Method, request headers, the request's host, and the verdict.
    type Case<'a> = (Method, &'a [(&'a str, &'a str)], Option<&'a str>, bool);

    #[test]
    fn the_rule_table() {
        let host = Some("app.example.com");
        let cases: &[Case] = &[
            (Method::GET, &[("sec-fetch-site", "cross-site")], host, true),
            (
                Method::OPTIONS,
                &[("origin", "https://evil.test")],
                host,
                true,
            ),
            (Method::POST, &[], host, true),
            (Method::POST, &[], None, true),
            (
                Method::POST,
                &[("sec-fetch-site", "same-origin")],
                host,
                true,
            ),
            (Method::POST, &[("sec-fetch-site", "none")], host, true),
            (
                Method::POST,
                &[("sec-fetch-site", "cross-site")],
                host,
                false,
            ),
            (
                Method::POST,
                &[("sec-fetch-site", "same-site")],
                host,
                false,
            ),
            (
                Method::POST,
                &[("sec-fetch-site", "Same-Origin")],
                host,
                false,
            ),
            (
                Method::DELETE,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://idp.example.com"),
                ],
                host,
                true,
            ),
            (
                Method::POST,
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("sec-fetch-site", "same-origin"),
                ],
                host,
                false,
            ),
            (
                Method::POST,
                &[("origin", "https://app.example.com")],
                host,
                true,
            ),
            (
                Method::POST,
                &[("origin", "http://APP.Example.com")],
                host,
                true,
            ),
            (Method::PUT, &[("origin", "https://evil.test")], host, false),
            (Method::PATCH, &[("origin", "null")], host, false),
            (Method::POST, &[("origin", "not a url")], host, false),
            (
                Method::POST,
                &[("origin", "https://app.example.com")],
                None,
                false,
            ),
            (
                Method::POST,
                &[("origin", "https://app.example.com:8443")],
                host,
                false,
            ),
            (
                Method::POST,
                &[("origin", "https://app.example.com:8443")],
                Some("app.example.com:8443"),
                true,
            ),
            (
                Method::POST,
                &[
                    ("origin", "https://app.example.com"),
                    ("origin", "https://app.example.com"),
                ],
                host,
                false,
            ),
            (
                Method::POST,
                &[("origin", "https://IDP.example.com")],
                host,
                true,
            ),
            (
                Method::from_bytes(b"PURGE").unwrap(),
                &[("origin", "https://evil.test")],
                host,
                false,
            ),
        ];
        for (method, headers, host, expected) in cases {
            assert_eq!(
                check(method.clone(), headers, *host),
                *expected,
                "{method} {headers:?} host {host:?}"
            );
        }
    }
}
