//! `store: {type: redis}`: one server, Redis Cluster seed nodes, or the
//! sentinels that know the master.

use redis::{ConnectionInfo, IntoConnectionInfo};
use serde::Deserialize;

use crate::config::ConfigDuration;
use crate::error::Error;

/// `store: {type: redis}`.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// One server: `redis://` or `rediss://`.
    pub url: Option<String>,
    /// Cluster seed nodes (with `cluster: true`).
    pub urls: Vec<String>,
    /// Put in front of every session id in the key.
    pub prefix: String,
    /// Use the Redis Cluster protocol.
    pub cluster: bool,
    /// Bound on each operation, retries included.
    pub timeout: ConfigDuration,
    /// Find the master through Redis Sentinel (instead of `url`).
    pub sentinel: Option<SentinelConfig>,
}

/// `store.sentinel`: the master is whichever server the sentinels name,
/// followed through a failover.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The master's name, as the sentinels monitor it.
    pub master: String,
    /// The sentinels: `redis://host:26379` (`redis://:password@...` when
    /// they require a password, `rediss://` for TLS to them).
    pub urls: Vec<String>,
    /// The master's ACL user, if it needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// The master's password, if it needs one.
    #[serde(default)]
    pub password: Option<String>,
    /// The database on the master.
    #[serde(default)]
    pub db: i64,
    /// Connect to the master (and its replicas) with TLS.
    #[serde(default)]
    pub tls: bool,
}

/// Passwords never reach a log line, even through `{:?}`.
impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|url| crate::config::redact_url(url))
            .collect();
        f.debug_struct("SentinelConfig")
            .field("master", &self.master)
            .field("urls", &urls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl SentinelConfig {
    /// The sentinels, parsed; the master's name is required.
    ///
    /// # Errors
    ///
    /// A [`Error`] naming `store.sentinel.master` or
    /// `store.sentinel.urls[i]`.
    pub fn sentinels(&self) -> Result<Vec<ConnectionInfo>, Error> {
        if self.master.trim().is_empty() {
            return Err(Error::config(
                "store.sentinel.master",
                "is required: the name the sentinels monitor the master under",
            ));
        }
        let sentinels = (self.urls.iter().enumerate())
            .filter(|(_, url)| !url.trim().is_empty())
            .map(|(i, url)| parse_url(&format!("store.sentinel.urls[{i}]"), url))
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(Error::config(
                "store.sentinel.urls",
                "needs at least one sentinel, e.g. [redis://127.0.0.1:26379]",
            ));
        }
        Ok(sentinels)
    }
}

/// Passwords in the URLs never reach a log line, even through `{:?}`.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |url: &String| crate::config::redact_url(url);
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_ref().map(redact))
            .field("urls", &self.urls.iter().map(redact).collect::<Vec<_>>())
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .field("sentinel", &self.sentinel)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            urls: Vec::new(),
            prefix: "sess:".into(),
            cluster: false,
            timeout: ConfigDuration::secs(2),
            sentinel: None,
        }
    }
}

impl RedisConfig {
    /// Checks the URLs and the timeout without connecting.
    ///
    /// # Errors
    ///
    /// A [`Error`] naming `store.url`, `store.urls[i]` or
    /// `store.timeout`, or a `store.sentinel` key.
    pub fn validate(&self) -> Result<(), Error> {
        match &self.sentinel {
            Some(sentinel) => {
                let beside = self.url.as_ref().is_some_and(|u| !u.trim().is_empty())
                    || !self.urls.is_empty()
                    || self.cluster;
                if beside {
                    return Err(Error::config(
                        "store.sentinel",
                        "replaces url, urls and cluster: the sentinels name the master",
                    ));
                }
                sentinel.sentinels()?;
            }
            None => {
                self.seeds()?;
            }
        }
        if self.timeout.get().is_zero() {
            return Err(Error::config("store.timeout", "must be more than 0"));
        }
        Ok(())
    }

    /// The configured servers, parsed. An empty `url` (say, `${REDIS_URL}`
    /// unset) counts as absent, so the error says it is required.
    pub fn seeds(&self) -> Result<Vec<ConnectionInfo>, Error> {
        let single = self.url.iter().map(|url| ("store.url".to_owned(), url));
        let listed =
            (self.urls.iter().enumerate()).map(|(i, url)| (format!("store.urls[{i}]"), url));
        let seeds = single
            .chain(listed)
            .filter(|(_, url)| !url.trim().is_empty())
            .map(|(key, url)| parse_url(&key, url))
            .collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err(Error::config(
                "store.url",
                "is required for store.type redis (e.g. redis://127.0.0.1:6379/0), or urls: [...] with cluster: true",
            ));
        }
        if seeds.len() > 1 && !self.cluster {
            return Err(Error::config(
                "store.urls",
                "several servers need cluster: true (they are Redis Cluster seed nodes); a single server takes one url",
            ));
        }
        Ok(seeds)
    }
}

/// Parses one URL. The message never repeats the URL: it may hold a password.
fn parse_url(key: &str, url: &str) -> Result<ConnectionInfo, Error> {
    url.trim().into_connection_info().map_err(|e| {
        Error::config(
            key,
            format!(
                "is not a usable Redis URL ({e}); expected redis://[user:password@]host[:port][/db], or rediss:// for TLS"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>, urls: &[&str], cluster: bool) -> RedisConfig {
        RedisConfig {
            url: url.map(String::from),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            cluster,
            ..RedisConfig::default()
        }
    }

    fn error(config: RedisConfig) -> String {
        match config.validate() {
            Ok(()) => panic!("accepted {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_url_is_required() {
        assert!(error(config(None, &[], false)).starts_with("store.url:"));
        assert!(error(config(Some(" "), &[], false)).starts_with("store.url:"));
    }

    #[test]
    fn bad_urls_are_named_and_not_repeated() {
        let message = error(config(Some("http://user:hunter2@host"), &[], false));
        assert!(message.starts_with("store.url:"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let message = error(config(None, &["redis://a:1", "nope"], true));
        assert!(message.starts_with("store.urls[1]:"), "{message}");
    }

    #[test]
    fn several_servers_need_cluster_mode() {
        let seeds = ["redis://a:7000", "redis://b:7001"];
        assert!(error(config(None, &seeds, false)).starts_with("store.urls:"));
        assert!(config(None, &seeds, true).validate().is_ok());
    }

    #[test]
    fn accepts_tls_credentials_and_databases() {
        let url = "rediss://user:secret@redis.example:6380/2";
        assert!(config(Some(url), &[], false).validate().is_ok());
    }

    #[test]
    fn sentinel_keys_are_checked_by_name() {
        let sentinel = |master: &str, urls: &[&str]| RedisConfig {
            sentinel: Some(SentinelConfig {
                master: master.into(),
                urls: urls.iter().map(|u| u.to_string()).collect(),
                username: None,
                password: Some("hunter2".into()),
                db: 0,
                tls: false,
            }),
            ..RedisConfig::default()
        };
        assert!(
            sentinel("mymaster", &["redis://127.0.0.1:26379"])
                .validate()
                .is_ok()
        );
        let cases = [
            (
                "no master",
                sentinel(" ", &["redis://a:26379"]),
                "store.sentinel.master:",
            ),
            ("no sentinel", sentinel("m", &[]), "store.sentinel.urls:"),
            (
                "bad url",
                sentinel("m", &["redis://a:1", "http://b"]),
                "store.sentinel.urls[1]:",
            ),
            (
                "beside url",
                RedisConfig {
                    url: Some("redis://a:6379".into()),
                    ..sentinel("m", &["redis://a:26379"])
                },
                "store.sentinel:",
            ),
        ];
        for (case, config, key) in cases {
            let message = error(config);
            assert!(message.starts_with(key), "{case}: {message}");
        }
        let shown = format!("{:?}", sentinel("m", &["redis://:pw-sentinel@a:26379"]));
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw-sentinel"),
            "{shown}"
        );
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let mut zero = config(Some("redis://127.0.0.1"), &[], false);
        zero.timeout = ConfigDuration::millis(0);
        assert!(error(zero).starts_with("store.timeout:"));
    }
}
