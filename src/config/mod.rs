//! The gateway's configuration: one YAML file, checked whole before anything
//! listens.
//!
//! Loading runs in three steps: YAML is parsed into a generic tree, `${VAR}`
//! references in its strings are substituted from the environment, and the
//! tree is deserialized into typed sections that refuse unknown keys. Every
//! error names the key it is about.

mod admin;
mod assertion;
mod compat;
mod duration;
mod env;
mod load;
mod routes;
mod secret_file;
pub mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

pub use assertion::AssertionConfig;
pub use compat::{Compat, EXPRESS_COOKIE_NAME};
pub use duration::{ConfigDuration, parse_duration};
pub(crate) use load::typed;
pub use load::{DEFAULT_CONFIG_PATH, MIN_SECRET_LEN, Secrets};
pub use routes::{
    CsrfConfig, HostPattern, PathPrefix, RouteConfig, RouteSession, normalize_origin,
};
pub use store::{
    AwsConfig, CookieStoreConfig, DynamoConfig, DynamoLayout, MemoryStoreConfig, MysqlConfig,
    RedisConfig, StoreConfig,
};

/// The whole configuration, as `gateway.yaml` gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The public address (`listen`).
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-*` headers are believed.
    #[serde(deserialize_with = "deserialize_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// TLS on the public listener; plain HTTP without it.
    pub tls: Option<TlsConfig>,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Where requests go.
    pub upstream: UpstreamConfig,
    /// Session lifetime, secrets and cookie.
    pub session: SessionConfig,
    /// Read separately (see [`StoreConfig::from_value`]): each store type has
    /// its own keys.
    #[serde(skip)]
    pub store: StoreConfig,
    /// Session keys sent upstream as headers of their own.
    pub headers: HeadersConfig,
    /// Bounds on clients.
    pub limits: LimitsConfig,
    /// Log format and level.
    pub log: LogConfig,
    /// Backends and session work by host and path; first match wins.
    pub routes: Vec<RouteConfig>,
    /// Cross-origin protection for unsafe methods.
    pub csrf: CsrfConfig,
    /// The signed session assertion; off without the section.
    pub assertion: Option<AssertionConfig>,
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
            routes: Vec::new(),
            csrf: CsrfConfig::default(),
            assertion: None,
        }
    }
}

/// `tls`: the public listener's certificate and key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `admin`: health, readiness, metrics, and the session API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin address; loopback by default.
    pub listen: SocketAddr,
    /// The session API's bearer token (`ADMIN_TOKEN` and
    /// `ADMIN_TOKEN_FILE` win); without one the API answers 404.
    pub token: Option<String>,
}

/// The token never reaches a log line.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
        }
    }
}

/// `upstream`: the backend behind the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `http://` or `https://` URL, optionally with a base path.
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

/// `session`: how sessions live and how their cookie looks.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// The current secret (`SESSION_SECRET` wins).
    pub secret: Option<String>,
    /// A file holding the current secret (`SESSION_SECRET` and
    /// `SESSION_SECRET_FILE` win; it wins over `secret`).
    pub secret_file: Option<String>,
    /// Older secrets whose cookies still open (rotation).
    pub previous_secrets: Vec<String>,
    /// A file of older secrets, one a line (wins over `previous_secrets`).
    pub previous_secrets_file: Option<String>,
    /// Idle lifetime.
    pub ttl: ConfigDuration,
    /// Hard limit from creation, whatever the activity.
    pub absolute_ttl: Option<ConfigDuration>,
    /// An unmodified session's expiry moves at most this often.
    pub touch_interval: ConfigDuration,
    /// Re-send the cookie on every response.
    pub rolling: bool,
    /// Store new sessions even when nothing was written to them.
    pub save_uninitialized: bool,
    /// Leave expired records found on read to the backend's own clean-up.
    pub keep_expired: bool,
    /// Largest session JSON, in bytes: an update past it gets 502 and
    /// leaves the session as it was.
    pub max_bytes: usize,
    /// The session cookie's name and attributes.
    pub cookie: CookieConfig,
    /// The top-level session key whose value is the user's identity: its
    /// presence means "signed in" to `session: required` routes.
    pub identity_key: Option<String>,
    /// Whose cookie and stored format to speak (a Node app's).
    pub compat: Compat,
    /// A session whose identity changes moves to a new id by itself.
    pub regenerate_on_identity_change: bool,
}

/// Secrets never reach a log line, even through `{:?}`.
impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("previous_secrets", &self.previous_secrets.len())
            .field("previous_secrets_file", &self.previous_secrets_file)
            .field("ttl", &self.ttl)
            .field("absolute_ttl", &self.absolute_ttl)
            .field("touch_interval", &self.touch_interval)
            .field("rolling", &self.rolling)
            .field("save_uninitialized", &self.save_uninitialized)
            .field("keep_expired", &self.keep_expired)
            .field("max_bytes", &self.max_bytes)
            .field("cookie", &self.cookie)
            .field("identity_key", &self.identity_key)
            .field("compat", &self.compat)
            .field(
                "regenerate_on_identity_change",
                &self.regenerate_on_identity_change,
            )
            .finish()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            secret: None,
            secret_file: None,
            previous_secrets: Vec::new(),
            previous_secrets_file: None,
            ttl: ConfigDuration::secs(24 * 3600),
            absolute_ttl: None,
            touch_interval: ConfigDuration::secs(30),
            rolling: false,
            save_uninitialized: false,
            keep_expired: false,
            max_bytes: 16_384,
            cookie: CookieConfig::default(),
            identity_key: None,
            compat: Compat::None,
            regenerate_on_identity_change: true,
        }
    }
}

/// `session.cookie`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieConfig {
    /// Cookie name (chunks are `name.1`, `name.2`, ...).
    pub name: String,
    /// `Domain` attribute; host-only without it.
    pub domain: Option<String>,
    /// `Path` attribute.
    pub path: String,
    /// When the cookie is marked `Secure`.
    pub secure: Secure,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `SameSite` attribute.
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
    /// Always `Secure` (TLS terminated before the gateway, say).
    Always,
    /// Never `Secure` (plain-HTTP development).
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

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level cross-site navigations.
    Lax,
    /// Sent on every request (needs `Secure`).
    None,
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// `headers`: session fields the backend gets as headers of their own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    /// Top-level session key -> request header that carries it upstream.
    pub fields: IndexMap<String, String>,
}

/// `limits`: bounds on what clients may hold or send.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request head accepted (431 past it).
    pub max_header_bytes: usize,
    /// Time allowed for a request head (and a TLS handshake).
    pub header_read_timeout: ConfigDuration,
    /// Client connections served at once.
    pub max_connections: usize,
    /// How long requests in flight may finish at shutdown.
    pub drain_timeout: ConfigDuration,
    /// An HTTP/2 connection without open streams, or a body that makes no
    /// progress in either direction, is closed after this long.
    pub idle_timeout: ConfigDuration,
    /// A WebSocket tunnel with no traffic either way is closed after this
    /// long.
    pub tunnel_idle_timeout: ConfigDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 65_536,
            header_read_timeout: ConfigDuration::secs(10),
            max_connections: 10_000,
            drain_timeout: ConfigDuration::secs(30),
            idle_timeout: ConfigDuration::secs(60),
            tunnel_idle_timeout: ConfigDuration::secs(3600),
        }
    }
}

/// Logging: not in the contract's example, an addition for operators.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `sessiongate=debug`; `RUST_LOG` wins.
    pub level: String,
    /// One line per request, target `sessiongate::access`.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            access: true,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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

/// A URL as it may be shown: a password in it replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
