//! The gateway's configuration: one YAML file, checked whole before anything
//! listens.
//!
//! Loading runs in three steps: YAML is parsed into a generic tree, `${VAR}`
//! references in its strings are substituted from the environment, and the
//! tree is deserialized into typed sections that refuse unknown keys. Every
//! error names the key it is about.

mod duration;
mod env;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub use duration::{ConfigDuration, parse_duration};

use crate::store;

/// Minimum length of a session secret, in characters.
pub const MIN_SECRET_LEN: usize = 32;

/// A configuration problem, worded for the operator: it names the key or the
/// environment variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn at(key: &str, message: impl std::fmt::Display) -> Self {
        Self(format!("{key}: {message}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    #[serde(deserialize_with = "deserialize_networks")]
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsConfig>,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub session: SessionConfig,
    /// Read separately (see [`StoreConfig::from_value`]): each store type has
    /// its own keys.
    #[serde(skip)]
    pub store: StoreConfig,
    pub headers: HeadersConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            trusted_proxies: Vec::new(),
            tls: None,
            admin: AdminConfig::default(),
            upstream: UpstreamConfig::default(),
            session: SessionConfig::default(),
            store: StoreConfig::default(),
            headers: HeadersConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: String,
    /// Time allowed for the upstream to send its response head.
    pub timeout: ConfigDuration,
    /// Time allowed to open a connection to the upstream.
    pub connect_timeout: ConfigDuration,
    /// Requests in flight to the upstream at once, each on its own
    /// keep-alive connection; more wait (within `timeout`) for one to free.
    pub max_connections: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:3000".into(),
            timeout: ConfigDuration::secs(30),
            connect_timeout: ConfigDuration::secs(5),
            max_connections: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub secret: Option<String>,
    pub previous_secrets: Vec<String>,
    pub ttl: ConfigDuration,
    pub absolute_ttl: Option<ConfigDuration>,
    pub touch_interval: ConfigDuration,
    pub rolling: bool,
    pub save_uninitialized: bool,
    pub keep_expired: bool,
    pub cookie: CookieConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            secret: None,
            previous_secrets: Vec::new(),
            ttl: ConfigDuration::secs(24 * 3600),
            absolute_ttl: None,
            touch_interval: ConfigDuration::secs(30),
            rolling: false,
            save_uninitialized: false,
            keep_expired: false,
            cookie: CookieConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieConfig {
    pub name: String,
    pub domain: Option<String>,
    pub path: String,
    pub secure: Secure,
    pub http_only: bool,
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "sid".into(),
            domain: None,
            path: "/".into(),
            secure: Secure::Auto,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

/// When the cookie carries the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secure {
    Always,
    Never,
    /// Secure when the client reached us over TLS, directly or through a
    /// trusted proxy that says `X-Forwarded-Proto: https`.
    Auto,
}

impl<'de> Deserialize<'de> for Secure {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(true) => Ok(Secure::Always),
            Raw::Bool(false) => Ok(Secure::Never),
            Raw::Text(text) => match text.as_str() {
                "true" => Ok(Secure::Always),
                "false" => Ok(Secure::Never),
                "auto" => Ok(Secure::Auto),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not one of true, false, auto"
                ))),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    /// Top-level session key -> request header that carries it upstream.
    pub fields: IndexMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_header_bytes: usize,
    pub header_read_timeout: ConfigDuration,
    pub max_connections: usize,
    pub drain_timeout: ConfigDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 65_536,
            header_read_timeout: ConfigDuration::secs(10),
            max_connections: 10_000,
            drain_timeout: ConfigDuration::secs(30),
        }
    }
}

/// Logging: not in the contract's example, an addition for operators.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `sessiongate=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The `store` section: one variant per backend, each with its own keys.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Cookie(CookieStoreConfig),
    Memory(MemoryStoreConfig),
    Redis(store::redis::RedisConfig),
    Dynamodb(store::dynamodb::DynamoConfig),
    Mysql(store::mysql::MysqlConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Cookie(CookieStoreConfig::default())
    }
}

impl StoreConfig {
    /// The value of `store.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Cookie(_) => "cookie",
            StoreConfig::Memory(_) => "memory",
            StoreConfig::Redis(_) => "redis",
            StoreConfig::Dynamodb(_) => "dynamodb",
            StoreConfig::Mysql(_) => "mysql",
        }
    }

    /// Reads `store` by its `type`, so that a key of another store type is
    /// refused by name instead of being silently ignored.
    fn from_value(value: Value) -> Result<Self, ConfigError> {
        let mut map = match value {
            Value::Object(map) => map,
            Value::Null => return Ok(Self::default()),
            _ => return Err(ConfigError::at("store", "must be a mapping with a `type`")),
        };
        let kind = match map.remove("type") {
            None => "cookie".to_owned(),
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(ConfigError::at("store.type", "must be a string")),
        };
        let rest = Value::Object(map);
        Ok(match kind.as_str() {
            "cookie" => StoreConfig::Cookie(typed("store", rest)?),
            "memory" => StoreConfig::Memory(typed("store", rest)?),
            "redis" => StoreConfig::Redis(typed("store", rest)?),
            "dynamodb" => StoreConfig::Dynamodb(typed("store", rest)?),
            "mysql" => StoreConfig::Mysql(typed("store", rest)?),
            other => {
                return Err(ConfigError::at(
                    "store.type",
                    format!(
                        "unknown store `{other}`: use cookie, memory, redis, dynamodb or mysql"
                    ),
                ));
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieStoreConfig {
    /// How many cookies one session may span (`sid`, `sid.1`, ...).
    pub max_chunks: usize,
}

impl Default for CookieStoreConfig {
    fn default() -> Self {
        Self { max_chunks: 5 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    pub max_sessions: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
        }
    }
}

/// The secrets in force, after `SESSION_SECRET` and
/// `SESSION_PREVIOUS_SECRETS` have been applied.
#[derive(Clone)]
pub struct Secrets {
    pub current: String,
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
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("cannot read configuration {}: {e}", path.display()))
        })?;
        Self::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and checks configuration text; `env` looks up variables.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut tree: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(text)
                .map_err(|e| ConfigError(format!("configuration is not valid YAML: {e}")))?
        };
        env::substitute(&mut tree, env).map_err(ConfigError)?;
        let store = match &mut tree {
            Value::Object(map) => map.remove("store").unwrap_or(Value::Null),
            Value::Null => Value::Null,
            _ => return Err(ConfigError("configuration must be a YAML mapping".into())),
        };
        if tree.is_null() {
            tree = Value::Object(Default::default());
        }
        let mut config: Config = typed("", tree)?;
        config.store = StoreConfig::from_value(store)?;
        config.validate()?;
        Ok(config)
    }

    /// The secrets in force: `SESSION_SECRET` wins over `session.secret`, and
    /// `SESSION_PREVIOUS_SECRETS` (comma-separated) over
    /// `session.previous_secrets`.
    pub fn secrets(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Secrets, ConfigError> {
        let current = env("SESSION_SECRET")
            .filter(|s| !s.is_empty())
            .or_else(|| self.session.secret.clone().filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                ConfigError(format!(
                    "no session secret: set SESSION_SECRET (or session.secret) to at least {MIN_SECRET_LEN} random characters, e.g. from `sessiongate keygen`"
                ))
            })?;
        check_secret_length("SESSION_SECRET", &current)?;
        let previous: Vec<String> =
            match env("SESSION_PREVIOUS_SECRETS").filter(|s| !s.trim().is_empty()) {
                Some(list) => list
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                None => self
                    .session
                    .previous_secrets
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect(),
            };
        for secret in &previous {
            check_secret_length("SESSION_PREVIOUS_SECRETS", secret)?;
        }
        Ok(Secrets { current, previous })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.upstream.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::at(
                "upstream.url",
                format!("`{url}` must start with http:// or https://"),
            ));
        }
        url.parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(|_| ()))
            .ok_or_else(|| {
                ConfigError::at("upstream.url", format!("`{url}` is not a valid URL"))
            })?;
        if self.admin.listen == self.listen {
            return Err(ConfigError::at(
                "admin.listen",
                "must not be the public listen address",
            ));
        }
        let session = &self.session;
        if session.ttl.get().is_zero() {
            return Err(ConfigError::at("session.ttl", "must be longer than 0s"));
        }
        if session.absolute_ttl.is_some_and(|d| d.get().is_zero()) {
            return Err(ConfigError::at(
                "session.absolute_ttl",
                "must be longer than 0s",
            ));
        }
        if session.touch_interval >= session.ttl {
            return Err(ConfigError::at(
                "session.touch_interval",
                "must be shorter than session.ttl",
            ));
        }
        let cookie = &session.cookie;
        if cookie.name.is_empty() || !cookie.name.bytes().all(is_cookie_name_byte) {
            return Err(ConfigError::at(
                "session.cookie.name",
                format!("`{}` is not a valid cookie name", cookie.name),
            ));
        }
        if !cookie.path.starts_with('/') || !cookie.path.bytes().all(is_cookie_attr_byte) {
            return Err(ConfigError::at(
                "session.cookie.path",
                "must start with / and hold no ; or control characters",
            ));
        }
        if let Some(domain) = &cookie.domain
            && (domain.is_empty() || !domain.bytes().all(is_cookie_attr_byte))
        {
            return Err(ConfigError::at(
                "session.cookie.domain",
                format!("`{domain}` is not a valid domain"),
            ));
        }
        if cookie.same_site == SameSite::None && cookie.secure == Secure::Never {
            return Err(ConfigError::at(
                "session.cookie.same_site",
                "none needs secure: true or auto (browsers drop SameSite=None cookies that are not Secure)",
            ));
        }
        for (key, name) in &self.headers.fields {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::at(
                    &format!("headers.fields.{key}"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(ConfigError::at(
                "limits.max_header_bytes",
                "must be at least 8192",
            ));
        }
        if self.upstream.max_connections == 0 {
            return Err(ConfigError::at(
                "upstream.max_connections",
                "must be at least 1",
            ));
        }
        if self.limits.max_connections == 0 {
            return Err(ConfigError::at(
                "limits.max_connections",
                "must be at least 1",
            ));
        }
        match &self.store {
            StoreConfig::Cookie(c) if !(1..=50).contains(&c.max_chunks) => Err(ConfigError::at(
                "store.max_chunks",
                "must be between 1 and 50",
            )),
            StoreConfig::Memory(m) if m.max_sessions == 0 => {
                Err(ConfigError::at("store.max_sessions", "must be at least 1"))
            }
            StoreConfig::Redis(c) => c.validate(),
            StoreConfig::Dynamodb(c) => c.validate(),
            StoreConfig::Mysql(c) => c.validate(),
            _ => Ok(()),
        }
    }
}

fn check_secret_length(variable: &str, secret: &str) -> Result<(), ConfigError> {
    if secret.chars().count() < MIN_SECRET_LEN {
        return Err(ConfigError(format!(
            "{variable}: a secret must be at least {MIN_SECRET_LEN} characters long (got {})",
            secret.chars().count()
        )));
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
fn typed<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, ".") => "configuration".to_owned(),
            (true, _) => inner,
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        ConfigError::at(&path, e.into_inner())
    })
}

/// Accepts CIDRs (`10.0.0.0/8`) and single addresses (`10.0.0.7`).
fn deserialize_networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{entry}` is not an IP address or CIDR"))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;
