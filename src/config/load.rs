//! Loading: the file is read, its `${VAR}` references substituted, its
//! sections typed and checked whole, and the secrets resolved, each error
//! naming its key.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Config, SameSite, Secure, StoreConfig, env};
use crate::error::Error;

/// Minimum length of a session secret, in characters.
pub const MIN_SECRET_LEN: usize = 32;

/// The secrets in force, after `SESSION_SECRET` and
/// `SESSION_PREVIOUS_SECRETS` have been applied.
#[derive(Clone)]
pub struct Secrets {
    /// The secret new cookies are sealed and signed with.
    pub current: String,
    /// Older secrets that still open cookies, newest first.
    pub previous: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secrets {{ current: <redacted>, previous: {} }}",
            self.previous.len()
        )
    }
}

/// Where the configuration file is when neither `--config` nor `CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "gateway.yaml";

impl Config {
    /// Reads and checks the file at `path`, substituting from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Self::parse(&Self::read_text(path)?, &|name| std::env::var(name).ok())
    }

    /// The configuration file's text, for [`Config::parse`].
    ///
    /// # Errors
    ///
    /// The file cannot be read (the message names it).
    pub fn read_text(path: &Path) -> Result<String, Error> {
        std::fs::read_to_string(path).map_err(|e| {
            Error::config_message(format!("cannot read configuration {}: {e}", path.display()))
        })
    }

    /// Parses and checks configuration text; `env` looks up variables.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let mut tree: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                Error::config_message(format!("configuration is not valid YAML: {e}"))
            })?
        };
        env::substitute(&mut tree, env).map_err(Error::config_message)?;
        let store = match &mut tree {
            Value::Object(map) => map.remove("store").unwrap_or(Value::Null),
            Value::Null => Value::Null,
            _ => {
                return Err(Error::config_message(
                    "configuration must be a YAML mapping",
                ));
            }
        };
        if tree.is_null() {
            tree = Value::Object(Default::default());
        }
        let cookie_named = tree
            .pointer("/session/cookie/name")
            .is_some_and(|name| !name.is_null());
        let mut config: Config = typed("", tree)?;
        config.store = StoreConfig::from_value(store)?;
        if config.session.compat == super::Compat::ExpressSession && !cookie_named {
            config.session.cookie.name = super::EXPRESS_COOKIE_NAME.into();
        }
        config.validate()?;
        Ok(config)
    }

    /// The secrets in force, from the environment, secret files or the
    /// configuration, the first that is set winning (see
    /// [`secret_file`](super::secret_file)).
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable or key and the file.
    pub fn secrets(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Secrets, Error> {
        super::secret_file::resolve(&self.session, env)
    }

    fn validate(&self) -> Result<(), Error> {
        check_upstream_url("upstream.url", &self.upstream.url)?;
        if self.admin.listen == self.listen {
            return Err(Error::config(
                "admin.listen",
                "must not be the public listen address",
            ));
        }
        let session = &self.session;
        if session.ttl.get().is_zero() {
            return Err(Error::config("session.ttl", "must be longer than 0s"));
        }
        if session.absolute_ttl.is_some_and(|d| d.get().is_zero()) {
            return Err(Error::config(
                "session.absolute_ttl",
                "must be longer than 0s",
            ));
        }
        if session.touch_interval >= session.ttl {
            return Err(Error::config(
                "session.touch_interval",
                "must be shorter than session.ttl",
            ));
        }
        let cookie = &session.cookie;
        if cookie.name.is_empty() || !cookie.name.bytes().all(is_cookie_name_byte) {
            return Err(Error::config(
                "session.cookie.name",
                format!("`{}` is not a valid cookie name", cookie.name),
            ));
        }
        if !cookie.path.starts_with('/') || !cookie.path.bytes().all(is_cookie_attr_byte) {
            return Err(Error::config(
                "session.cookie.path",
                "must start with / and hold no ; or control characters",
            ));
        }
        if let Some(domain) = &cookie.domain
            && (domain.is_empty() || !domain.bytes().all(is_cookie_attr_byte))
        {
            return Err(Error::config(
                "session.cookie.domain",
                format!("`{domain}` is not a valid domain"),
            ));
        }
        if cookie.same_site == SameSite::None && cookie.secure == Secure::Never {
            return Err(Error::config(
                "session.cookie.same_site",
                "none needs secure: true or auto (browsers drop SameSite=None cookies that are not Secure)",
            ));
        }
        for (key, name) in &self.headers.fields {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Error::config(
                    &format!("headers.fields.{key}"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(Error::config(
                "limits.max_header_bytes",
                "must be at least 8192",
            ));
        }
        if self.upstream.max_connections == 0 {
            return Err(Error::config(
                "upstream.max_connections",
                "must be at least 1",
            ));
        }
        for (key, duration) in [
            ("limits.idle_timeout", self.limits.idle_timeout),
            (
                "limits.tunnel_idle_timeout",
                self.limits.tunnel_idle_timeout,
            ),
        ] {
            if duration.get().is_zero() {
                return Err(Error::config(key, "must be longer than 0s"));
            }
        }
        if self.session.max_bytes < 2 {
            return Err(Error::config(
                "session.max_bytes",
                "must be at least 2 (the empty session `{}`)",
            ));
        }
        if self.limits.max_connections == 0 {
            return Err(Error::config(
                "limits.max_connections",
                "must be at least 1",
            ));
        }
        super::routes::validate(self)?;
        if let Some(assertion) = &self.assertion {
            assertion.validate(self)?;
        }
        super::compat::validate(self)?;
        self.store.validate()
    }

    /// What is allowed but probably not meant (a route no request can
    /// reach): printed by `check` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        super::routes::shadowed(&self.routes)
    }
}

/// An upstream URL: http or https, a host, no credentials.
pub(super) fn check_upstream_url(key: &str, url: &str) -> Result<(), Error> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::config(key, "must start with http:// or https://"));
    }
    let uri = url
        .parse::<http::Uri>()
        .ok()
        .filter(|uri| uri.host().is_some())
        .ok_or_else(|| Error::config(key, "is not a valid URL"))?;
    // Userinfo would be logged at start and could reach the backend as
    // `Host`; it is never needed to reach an upstream.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Error::config(
            key,
            "must not contain credentials (user:password@): authenticate the upstream another way",
        ));
    }
    Ok(())
}

/// Cookie names are RFC 6265 tokens.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_cookie_attr_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b';'
}

/// Deserializes `value` into `T`, reporting the failing key as a dotted path
/// under `prefix`.
pub(crate) fn typed<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, ".") => "configuration".to_owned(),
            (true, _) => inner,
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        Error::config(&path, e.into_inner())
    })
}
