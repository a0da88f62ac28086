//! `assertion`: the signed session assertion, a JWT on every upstream
//! request with a session, by which a backend tells the gateway's requests
//! from any other.

use serde::Deserialize;

use super::{Config, ConfigDuration};
use crate::error::Error;

/// The assertion header's default name.
const DEFAULT_ASSERTION_HEADER: &str = "X-Session-Assertion";

/// `assertion`; off when the section is absent (`assertion: {}` turns it on
/// with the defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssertionConfig {
    /// The request header that carries the token.
    pub header: String,
    /// The token's `aud`; without it, the origin (`scheme://host[:port]`)
    /// of the upstream the request goes to.
    pub audience: Option<String>,
    /// How long a token is valid after it was signed (`exp - iat`).
    pub ttl: ConfigDuration,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        Self {
            header: DEFAULT_ASSERTION_HEADER.into(),
            audience: None,
            ttl: ConfigDuration::secs(60),
        }
    }
}

impl AssertionConfig {
    /// Checks the section against the rest of `config`, naming the key.
    pub(super) fn validate(&self, config: &Config) -> Result<(), Error> {
        if self.ttl.get().is_zero() {
            return Err(Error::config("assertion.ttl", "must be longer than 0s"));
        }
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            return Err(Error::config(
                "assertion.header",
                format!("`{}` is not a valid header name", self.header),
            ));
        }
        let taken = ["X-Session-Id", "X-Session-Data"]
            .into_iter()
            .chain(config.headers.fields.values().map(String::as_str))
            .find(|name| same_header(name, &self.header));
        if let Some(name) = taken {
            return Err(Error::config(
                "assertion.header",
                format!("`{}` already carries {name}", self.header),
            ));
        }
        if self
            .audience
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            return Err(Error::config(
                "assertion.audience",
                "must not be empty (leave it out for the upstream's origin)",
            ));
        }
        Ok(())
    }
}

/// Header names as the gateway's stripping compares them: case and `_`/`-`
/// folded.
fn same_header(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, &|_| None)
    }

    #[test]
    fn off_without_the_section_and_defaults_with_an_empty_one() {
        assert_eq!(parse("").unwrap().assertion, None);
        assert_eq!(
            parse("assertion: {}\n").unwrap().assertion,
            Some(AssertionConfig::default())
        );
        let config = parse("assertion:\n  audience: billing\n  ttl: 5m\n").unwrap();
        let assertion = config.assertion.unwrap();
        assert_eq!(assertion.header, "X-Session-Assertion");
        assert_eq!(assertion.audience.as_deref(), Some("billing"));
        assert_eq!(assertion.ttl.get().as_secs(), 300);
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        for (yaml, key) in [
            ("assertion:\n  ttl: 0s\n", "assertion.ttl"),
            ("assertion:\n  header: \"X Proof\"\n", "assertion.header"),
            ("assertion:\n  header: x_session_data\n", "assertion.header"),
            (
                "headers:\n  fields:\n    user: X-User\nassertion:\n  header: x-user\n",
                "assertion.header",
            ),
            ("assertion:\n  audience: \"\"\n", "assertion.audience"),
            ("assertion:\n  issuer: me\n", "assertion"),
        ] {
            let error = parse(yaml).expect_err(yaml).to_string();
            assert!(error.contains(key), "{yaml}: {error}");
        }
    }
}
