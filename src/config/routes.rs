//! `routes` and `csrf`: which backend a request goes to, how much session
//! work it gets, and which cross-origin requests are refused.
//!
//! Patterns are parsed here, when the configuration loads, so a bad one is
//! an error naming its key (`routes[2].host`) and the request path only
//! compares strings.

use serde::{Deserialize, Deserializer};

use super::Config;
use crate::error::Error;

/// One entry of `routes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name in metrics; see [`RouteConfig::label`].
    #[serde(default)]
    pub name: Option<String>,
    /// The request's host must match this (exact, or `*.example.com`).
    #[serde(default)]
    pub host: Option<HostPattern>,
    /// The request's path must be this prefix, segment by segment.
    #[serde(default)]
    pub path_prefix: PathPrefix,
    /// Another backend for this route; the top-level `upstream.url` without it.
    #[serde(default)]
    pub upstream: Option<String>,
    /// How much session work the route gets.
    #[serde(default)]
    pub session: RouteSession,
    /// Where a browser without an identity is sent on a `required` route;
    /// `{uri}` becomes the percent-encoded original path and query.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Cross-origin protection on this route; `csrf.enabled` without it.
    #[serde(default)]
    pub csrf: Option<bool>,
}

impl RouteConfig {
    /// The name metrics use: `name`, or the host and prefix as written.
    pub fn label(&self) -> String {
        match (&self.name, &self.host) {
            (Some(name), _) => name.clone(),
            (None, Some(host)) => format!("{}{}", host.written, self.path_prefix.written),
            (None, None) => self.path_prefix.written.clone(),
        }
    }

    /// Every request this route matches, `other` matches too: `other`
    /// placed before it leaves it unreachable.
    fn covered_by(&self, other: &RouteConfig) -> bool {
        let host_covered = match (&other.host, &self.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(broad), Some(narrow)) => broad.covers(narrow),
        };
        host_covered && other.path_prefix.matches(&self.path_prefix.trimmed)
    }
}

/// `routes[].session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteSession {
    /// The session is loaded when the cookie names one (the default).
    #[default]
    Optional,
    /// No session work at all: no store call, no cookie.
    Off,
    /// No identity in the session: refused before the backend runs.
    Required,
}

impl<'de> Deserialize<'de> for RouteSession {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            // YAML 1.1 readers turn a bare `off` into `false`.
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(false) => Ok(RouteSession::Off),
            Raw::Text(text) if text == "off" => Ok(RouteSession::Off),
            Raw::Text(text) if text == "optional" => Ok(RouteSession::Optional),
            Raw::Text(text) if text == "required" => Ok(RouteSession::Required),
            Raw::Bool(true) => Err(serde::de::Error::custom(
                "`true` is not one of optional, off, required",
            )),
            Raw::Text(other) => Err(serde::de::Error::custom(format!(
                "`{other}` is not one of optional, off, required"
            ))),
        }
    }
}

/// `routes[].host`: an exact host, or `*.` and a domain for every host
/// under it (at any depth, not the domain itself). Compared without case
/// and without the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lowercase; for a wildcard, the suffix with its leading dot.
    pattern: String,
    wildcard: bool,
    written: String,
}

impl HostPattern {
    /// `host` (lowercase, port and trailing dot removed) matches.
    pub fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.len() > self.pattern.len() && host.ends_with(&self.pattern)
        } else {
            host == self.pattern
        }
    }

    fn covers(&self, narrow: &HostPattern) -> bool {
        match (self.wildcard, narrow.wildcard) {
            (_, false) => self.matches(&narrow.pattern),
            (true, true) => narrow.pattern.ends_with(&self.pattern),
            (false, true) => false,
        }
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = String::deserialize(deserializer)?;
        let lower = written.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, lower.as_str()),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(serde::de::Error::custom(format!(
                "`{written}` is not a host name or `*.domain` (no port, no scheme, `*` only as the first label)"
            )));
        }
        let pattern = if wildcard {
            format!(".{name}")
        } else {
            name.to_owned()
        };
        Ok(Self {
            pattern,
            wildcard,
            written,
        })
    }
}

/// `routes[].path_prefix`: matched segment by segment, so `/api/` and
/// `/api` both match `/api`, `/api/` and `/api/users`, never `/apiary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix {
    /// Without its trailing `/`: empty for `/`, which matches every path.
    trimmed: String,
    written: String,
}

impl Default for PathPrefix {
    fn default() -> Self {
        Self {
            trimmed: String::new(),
            written: "/".into(),
        }
    }
}

impl PathPrefix {
    /// `path` (decoded, see `route::path`) is under this prefix.
    pub fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.trimmed.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl<'de> Deserialize<'de> for PathPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = String::deserialize(deserializer)?;
        let valid = written.starts_with('/')
            && !written.contains("//")
            && !written
                .bytes()
                .any(|b| b.is_ascii_control() || b" ?#%\\".contains(&b))
            && !written
                .split('/')
                .any(|segment| segment == "." || segment == "..");
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "`{written}` is not a path prefix: it starts with /, and holds no `.` or `..` segment, `//`, `%`, `?`, `#`, `\\` or spaces"
            )));
        }
        Ok(Self {
            trimmed: written.trim_end_matches('/').to_owned(),
            written,
        })
    }
}

/// `csrf`: cross-origin protection for unsafe methods.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsrfConfig {
    /// On unless a route says `csrf: false`.
    pub enabled: bool,
    /// Origins whose unsafe requests pass, e.g. an identity provider's.
    pub trusted_origins: Vec<String>,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            trusted_origins: Vec::new(),
        }
    }
}

/// An `Origin` as browsers serialise it (`scheme://host[:port]`),
/// lowercased; `None` for anything else, `null` included.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let authority_ok = !authority.is_empty()
        && authority.parse::<http::uri::Authority>().is_ok()
        && !authority.contains(['@', '/', '?', '#']);
    (scheme_ok && authority_ok).then(|| format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// The checks that need more than one key: called by `Config::validate`.
pub(super) fn validate(config: &Config) -> Result<(), Error> {
    for (index, origin) in config.csrf.trusted_origins.iter().enumerate() {
        if normalize_origin(origin).is_none() {
            return Err(Error::config(
                &format!("csrf.trusted_origins[{index}]"),
                format!("`{origin}` is not an origin (scheme://host[:port], no path)"),
            ));
        }
    }
    if config
        .session
        .identity_key
        .as_deref()
        .is_some_and(str::is_empty)
    {
        return Err(Error::config(
            "session.identity_key",
            "must not be empty (or leave it out)",
        ));
    }
    for (index, route) in config.routes.iter().enumerate() {
        let key = |field: &str| format!("routes[{index}].{field}");
        if let Some(url) = &route.upstream {
            super::load::check_upstream_url(&key("upstream"), url)?;
        }
        if route.session == RouteSession::Required && config.session.identity_key.is_none() {
            return Err(Error::config(
                "session.identity_key",
                format!(
                    "routes[{index}] has session: required, which needs session.identity_key (the session key that means \"signed in\")"
                ),
            ));
        }
        if let Some(login_url) = &route.login_url {
            check_login_url(&key("login_url"), login_url, route.session)?;
        }
        if route.name.as_deref().is_some_and(str::is_empty) {
            return Err(Error::config(
                &key("name"),
                "must not be empty (or leave it out)",
            ));
        }
    }
    Ok(())
}

fn check_login_url(key: &str, url: &str, session: RouteSession) -> Result<(), Error> {
    if session != RouteSession::Required {
        return Err(Error::config(
            key,
            "only means something with session: required",
        ));
    }
    let sample = url.replace("{uri}", "%2F");
    let absolute = sample.starts_with("http://") || sample.starts_with("https://");
    let valid = (sample.starts_with('/') && !sample.starts_with("//") || absolute)
        && sample.parse::<http::Uri>().is_ok()
        && http::HeaderValue::from_str(&sample).is_ok();
    if !valid {
        return Err(Error::config(
            key,
            format!("`{url}` is not a path (/login?next={{uri}}) or an http(s) URL"),
        ));
    }
    Ok(())
}

/// Routes no request can reach because an earlier one matches everything
/// they would: a warning for `check` and the start-up log, not an error
/// (the configuration still does what it says).
pub(super) fn shadowed(routes: &[RouteConfig]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, route) in routes.iter().enumerate() {
        if let Some(earlier) = routes[..index]
            .iter()
            .position(|earlier| route.covered_by(earlier))
        {
            warnings.push(format!(
                "routes[{index}] ({}) is unreachable: routes[{earlier}] ({}) comes first and matches every request it would",
                route.label(),
                routes[earlier].label()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(yaml: &str) -> Result<Config, Error> {
        let secret = "s".repeat(40);
        let text = format!("session:\n  secret: {secret}\n  identity_key: user\n{yaml}");
        Config::parse(&text, &|_| None)
    }

    fn host(pattern: &str) -> HostPattern {
        serde_json::from_value(serde_json::json!(pattern)).unwrap()
    }

    fn prefix(pattern: &str) -> PathPrefix {
        serde_json::from_value(serde_json::json!(pattern)).unwrap()
    }

    #[test]
    fn hosts_match_exactly_or_under_a_wildcard() {
        let exact = host("API.example.com.");
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        let wildcard = host("*.example.com");
        assert!(wildcard.matches("a.example.com"));
        assert!(wildcard.matches("a.b.example.com"));
        assert!(!wildcard.matches("example.com"));
        assert!(!wildcard.matches("badexample.com"));
        for bad in ["", "*", "a.*.com", "a:80", "http://a", "a b", "*.", "a..b"] {
            assert!(
                serde_json::from_value::<HostPattern>(serde_json::json!(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        for written in ["/api", "/api/"] {
            let api = prefix(written);
            for path in ["/api", "/api/", "/api/users"] {
                assert!(api.matches(path), "{written} {path}");
            }
            for path in ["/apiary", "/", "/other/api"] {
                assert!(!api.matches(path), "{written} {path}");
            }
        }
        assert!(prefix("/").matches("/anything"));
        for bad in [
            "api", "/a/../b", "/a/./b", "/a//b", "/a%2Fb", "/a?b", "/a b",
        ] {
            assert!(
                serde_json::from_value::<PathPrefix>(serde_json::json!(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn origins_normalise_or_are_refused() {
        assert_eq!(
            normalize_origin("HTTPS://IdP.Example.com:8443").as_deref(),
            Some("https://idp.example.com:8443")
        );
        for bad in [
            "null",
            "",
            "idp.example.com",
            "https://",
            "https://u@h",
            "https://h/path",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn route_keys_are_named_in_errors() {
        let error = parse("routes:\n  - path_prefix: /a/\n  - host: a.*.com\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes[1].host"), "{error}");
        let error = parse("routes:\n  - path_prefix: /a/../b\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes[0].path_prefix"), "{error}");
        let error = parse("routes:\n  - upstream: ftp://x\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes[0].upstream"), "{error}");
        let error = parse("routes:\n  - session: sometimes\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes[0].session"), "{error}");
        let error = parse("routes:\n  - login_url: /login\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes[0].login_url"), "{error}");
        let error = parse("csrf:\n  trusted_origins: [\"null\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("csrf.trusted_origins[0]"), "{error}");
    }

    #[test]
    fn required_needs_an_identity_key() {
        let text = format!(
            "session:\n  secret: {}\nroutes:\n  - session: required\n",
            "s".repeat(40)
        );
        let error = Config::parse(&text, &|_| None).unwrap_err().to_string();
        assert!(error.contains("session.identity_key"), "{error}");
    }

    #[test]
    fn off_parses_as_yaml_writes_it() {
        let config = parse(
            "routes:\n  - path_prefix: /static/\n    session: off\n  - path_prefix: /app/\n    session: required\n    login_url: /login?next={uri}\n",
        )
        .unwrap();
        assert_eq!(config.routes[0].session, RouteSession::Off);
        assert_eq!(config.routes[1].session, RouteSession::Required);
    }

    #[test]
    fn shadowed_routes_are_reported() {
        let config = parse(
            "routes:\n  - path_prefix: /api/\n  - path_prefix: /api/v2/\n  - host: '*.example.com'\n  - host: a.example.com\n    path_prefix: /x/\n  - host: b.test\n    path_prefix: /api/\n  - path_prefix: /apiary/\n",
        )
        .unwrap();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].starts_with("routes[1] (/api/v2/)"),
            "{warnings:?}"
        );
        assert!(warnings[1].starts_with("routes[3]"), "{warnings:?}");
        assert!(warnings[2].starts_with("routes[4]"), "{warnings:?}");
    }
}
