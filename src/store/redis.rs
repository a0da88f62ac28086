//! The Redis store: one server, or a Redis Cluster.
//!
//! # Layout
//!
//! Each session is one string key, `prefix + id`, holding the
//! [`NativeCodec`] blob. The key's Redis expiry *is* the session's expiry
//! (set with `PXAT`/`PEXPIREAT` to the absolute `expires_at`), so Redis
//! removes dead sessions itself and [`SessionStore::load`] reads the expiry
//! back from the key's `PTTL`. Because Redis never hands out an expired key,
//! `keep_expired` changes nothing here.
//!
//! # Atomic updates
//!
//! An update reads the blob, applies the [`Change`] in Rust, and commits with
//! a compare-and-set Lua script that writes only if the key still holds the
//! exact bytes that were read (or, for a new session, still does not exist).
//! A lost race is retried through [`retry_update`]. This:
//! * loses no concurrent update, from one gateway or many;
//! * keeps the JSON byte-exact, because Lua never parses it;
//! * touches a single key per script, so it works on a cluster;
//! * needs no `WATCH`, which a shared multiplexed connection cannot use.
//!
//! Inside one gateway the updates of a session take turns and are written in
//! groups ([`UpdateTurns`]): one compare-and-set commits every change that
//! queued up behind the previous write, so a busy session costs one round
//! trip per group instead of one per request. The first attempt skips the
//! read, trying the compare-and-set against the record this gateway wrote
//! last (or the request loaded).
//!
//! # Connections and outages
//!
//! A single server is reached through a [`ConnectionManager`], which
//! reconnects by itself; `cluster: true` uses the `cluster-async` client with
//! `url`/`urls` as seed nodes. `rediss://` uses rustls with the ring provider,
//! as the rest of the tree does; username and password come from the URL.
//!
//! Every operation is bounded by `timeout`: connection attempts and replies
//! time out at it, the socket gives up on unacknowledged data after it
//! (`TCP_USER_TIMEOUT`, so a vanished host is noticed), and the whole
//! operation, retries included, is cut off at it. Should the client library
//! get stuck anyway (it does not retry a failed handshake that was not an I/O
//! error, such as `LOADING` while Redis restarts), a few failures in a row
//! make the store open a fresh connection.
//!
//! **Redis down at start-up is not a configuration error.** A URL that does
//! not parse is refused (naming `store.url`), but an unreachable server only
//! logs an error: the gateway starts, `/readyz` answers 503 and requests get
//! 503 until Redis answers, then everything works without a restart. This
//! lets gateways and Redis start in any order (as in Kubernetes or Compose).

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::io::tcp::socket2::TcpKeepalive;
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, Script, Value,
};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::record::{NativeCodec, RecordCodec};
use super::turns::{Applied, Lead, Ticket, UpdateTurns};
use super::{
    Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis, now_millis,
    retry_update,
};
use crate::config::{ConfigDuration, ConfigError};

/// Compare-and-set attempts per update. Each lost race means another writer
/// committed, so 40 concurrent writers need at most 40; the timeout bounds
/// the loop long before a pathological case runs out.
const MAX_UPDATE_ATTEMPTS: u32 = 64;

/// Failures in a row after which the store opens a fresh connection.
const FRESH_CONNECTION_AFTER: u32 = 3;

/// Idle time before TCP keepalive probes start, so that a silently dropped
/// idle connection (a NAT or firewall timeout) is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Writes a session only if the key still holds exactly what was read.
/// ARGV: 'present' + the old blob, or 'absent' + ''; the new blob; the
/// absolute expiry in Unix ms.
const SWAP_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
return 1
";

/// `store: {type: redis}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: Option<String>,
    pub urls: Vec<String>,
    pub prefix: String,
    pub cluster: bool,
    pub timeout: ConfigDuration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            urls: Vec::new(),
            prefix: "sess:".into(),
            cluster: false,
            timeout: ConfigDuration::secs(2),
        }
    }
}

impl RedisConfig {
    /// Checks the URLs and the timeout without connecting.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `store.url`, `store.urls[i]` or
    /// `store.timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.seeds()?;
        if self.timeout.get().is_zero() {
            return Err(ConfigError::at("store.timeout", "must be more than 0"));
        }
        Ok(())
    }

    /// The configured servers, parsed. An empty `url` (say, `${REDIS_URL}`
    /// unset) counts as absent, so the error says it is required.
    fn seeds(&self) -> Result<Vec<ConnectionInfo>, ConfigError> {
        let single = self.url.iter().map(|url| ("store.url".to_owned(), url));
        let listed =
            (self.urls.iter().enumerate()).map(|(i, url)| (format!("store.urls[{i}]"), url));
        let seeds = single
            .chain(listed)
            .filter(|(_, url)| !url.trim().is_empty())
            .map(|(key, url)| parse_url(&key, url))
            .collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err(ConfigError::at(
                "store.url",
                "is required for store.type redis (e.g. redis://127.0.0.1:6379/0), or urls: [...] with cluster: true",
            ));
        }
        if seeds.len() > 1 && !self.cluster {
            return Err(ConfigError::at(
                "store.urls",
                "several servers need cluster: true (they are Redis Cluster seed nodes); a single server takes one url",
            ));
        }
        Ok(seeds)
    }
}

/// Parses one URL. The message never repeats the URL: it may hold a password.
fn parse_url(key: &str, url: &str) -> Result<ConnectionInfo, ConfigError> {
    url.trim().into_connection_info().map_err(|e| {
        ConfigError::at(
            key,
            format!(
                "is not a usable Redis URL ({e}); expected redis://[user:password@]host[:port][/db], or rediss:// for TLS"
            ),
        )
    })
}

/// The Redis session store. See the module docs.
pub struct RedisStore {
    link: Link,
    prefix: String,
    timeout: Duration,
    codec: Box<dyn RecordCodec>,
    swap_script: Script,
    /// Updates of one session from this gateway take turns and are written
    /// in groups, so that the compare-and-set only settles races between
    /// gateways.
    turns: UpdateTurns,
}

impl RedisStore {
    /// Builds the store from validated settings. Redis being unreachable
    /// right now is logged, not refused (see the module docs).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key when the settings cannot work at all
    /// (a bad URL, seeds with different credentials or TLS modes).
    pub async fn connect(config: &RedisConfig, _keep_expired: bool) -> Result<Self, ConfigError> {
        config.validate()?;
        let timeout = config.timeout.get();
        let seeds = config.seeds()?;
        if seeds
            .iter()
            .any(|seed| matches!(seed.addr(), ConnectionAddr::TcpTls { .. }))
        {
            install_ring_provider();
        }
        let addresses = describe(&seeds);
        let connector = Connector::new(config.cluster, seeds, timeout)?;
        let link = Link::new(connector, timeout).map_err(|e| {
            ConfigError::at("store.url", format!("cannot set up the Redis client: {e}"))
        })?;
        let store = Self {
            link,
            prefix: config.prefix.clone(),
            timeout,
            codec: Box::new(NativeCodec),
            swap_script: Script::new(SWAP_SCRIPT),
            turns: UpdateTurns::new(),
        };
        store.check_at_start(&addresses).await;
        Ok(store)
    }

    /// Pings once so that an unreachable Redis is reported right away.
    async fn check_at_start(&self, addresses: &str) {
        match self.ping().await {
            Ok(()) => tracing::info!(store = "redis", servers = addresses, "connected to Redis"),
            Err(error) => tracing::error!(
                store = "redis",
                servers = addresses,
                %error,
                "Redis is not answering at start-up: starting anyway; /readyz answers 503 and requests get 503 until it does"
            ),
        }
    }

    fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + id.as_str().len());
        key.push_str(&self.prefix);
        key.push_str(id.as_str());
        key
    }

    /// Runs one operation within the timeout and tells the link how it went.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let health = self.link.watch();
        let result = tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)));
        health.settle(&result);
        result
    }

    /// Turns a client error into a store error, saying which operation failed.
    fn failed(&self, operation: &'static str) -> impl Fn(RedisError) -> StoreError + '_ {
        move |error| {
            if error.is_timeout() {
                StoreError::Timeout(self.timeout)
            } else {
                StoreError::Unavailable(format!("redis {operation}: {error}"))
            }
        }
    }

    /// The blob under `key` and the record it holds, in one atomic read.
    async fn read(&self, conn: &mut Connection, key: &str) -> Result<Option<Stored>, StoreError> {
        // One round trip, two plain commands on one key (so one cluster
        // slot): cheaper for Redis than a script doing the same.
        let (text, ttl): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(self.failed("load"))?;
        Ok(text.map(|text| self.decode(text, ttl)))
    }

    /// Rebuilds a record. A blob that is not ours (unreadable, or a key
    /// without expiry) is no live session; an update replaces it.
    fn decode(&self, text: Vec<u8>, ttl_millis: i64) -> Stored {
        let Ok(ttl) = u64::try_from(ttl_millis) else {
            tracing::warn!(
                store = "redis",
                "a session key has no expiry: treating it as no session"
            );
            return Stored { text, record: None };
        };
        let expires_at = now_millis().saturating_add(ttl);
        let decoded = std::str::from_utf8(&text)
            .map_err(|e| e.to_string())
            .and_then(|blob| self.codec.decode(blob, expires_at));
        let record = decoded
            .inspect_err(
                |error| tracing::warn!(store = "redis", %error, "treating it as no session"),
            )
            .ok();
        Stored { text, record }
    }

    /// One optimistic round of a group's write: `None` when another
    /// gateway won.
    async fn try_update(
        &self,
        mut conn: Connection,
        key: &str,
        lead: &Lead<'_>,
    ) -> Result<Option<Applied>, StoreError> {
        let stored = self.read(&mut conn, key).await?;
        let (old, current) = match stored {
            Some(Stored { text, record }) => (Some(text), record),
            None => (None, None),
        };
        let applied = lead.apply(current);
        let committed = self.swap(&mut conn, key, old, applied.last()).await?;
        Ok(committed.then_some(applied))
    }

    /// The first round without a read: the copy this gateway already holds
    /// is usually still what Redis holds, and the compare-and-set says
    /// whether it is. `None` when there is no copy or it went stale.
    async fn try_update_from_hint(
        &self,
        mut conn: Connection,
        key: &str,
        lead: &mut Lead<'_>,
    ) -> Result<Option<Applied>, StoreError> {
        let Some(copy) = lead.take_hint() else {
            return Ok(None);
        };
        let old = self.codec.encode(&copy).into_bytes();
        let applied = lead.apply(Some(copy));
        let committed = self.swap(&mut conn, key, Some(old), applied.last()).await?;
        Ok(committed.then_some(applied))
    }

    /// Writes `record` if the key still holds `old` (or is still missing).
    async fn swap(
        &self,
        conn: &mut Connection,
        key: &str,
        old: Option<Vec<u8>>,
        record: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let mut call = self.swap_script.key(key);
        match old {
            Some(text) => call.arg("present").arg(text),
            None => call.arg("absent").arg(""),
        };
        call.arg(self.codec.encode(record)).arg(record.expires_at);
        let written: i64 = call
            .invoke_async(conn)
            .await
            .map_err(self.failed("update"))?;
        Ok(written == 1)
    }

    async fn run(&self, operation: &'static str, command: Cmd) -> Result<(), StoreError> {
        let mut conn = self.link.get().await;
        self.bounded(async {
            command
                .query_async::<()>(&mut conn)
                .await
                .map_err(self.failed(operation))
        })
        .await
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.key(id);
        let mut conn = self.link.get().await;
        let stored = self.bounded(self.read(&mut conn, &key)).await?;
        let now = now_millis();
        Ok(stored
            .and_then(|stored| stored.record)
            .filter(|record| !record.is_expired(now)))
    }

    /// Waits for this session's turn, or for a group write to take this
    /// change along (see [`UpdateTurns`]); a leader writes its group with
    /// one compare-and-set.
    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, StoreError> {
        let key = self.key(id);
        self.bounded(async {
            let mut lead = match self.turns.take(id, change).await {
                Ticket::Written(result) => return result,
                Ticket::Lead(lead) => lead,
            };
            let conn = self.link.get().await;
            let written = match self
                .try_update_from_hint(conn.clone(), &key, &mut lead)
                .await
            {
                Ok(Some(applied)) => Ok(applied),
                Ok(None) => {
                    let attempt = || self.try_update(conn.clone(), &key, &lead);
                    retry_update(MAX_UPDATE_ATTEMPTS, attempt).await
                }
                Err(error) => Err(error),
            };
            lead.finish(written)
        })
        .await
    }

    /// `SET ... PXAT`; a record that has already expired deletes the key, as
    /// Redis would a moment later.
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let key = self.key(id);
        if record.is_expired(now_millis()) {
            return self
                .run("insert", redis::cmd("DEL").arg(&key).to_owned())
                .await;
        }
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(self.codec.encode(record))
            .arg("PXAT")
            .arg(record.expires_at);
        self.run("insert", set).await
    }

    /// One `PEXPIREAT`: the data is not rewritten and a missing key stays
    /// missing.
    async fn touch(&self, id: &SessionId, expires_at: UnixMillis) -> Result<(), StoreError> {
        let mut touch = redis::cmd("PEXPIREAT");
        touch.arg(self.key(id)).arg(expires_at);
        self.run("touch", touch).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.run("delete", redis::cmd("DEL").arg(self.key(id)).to_owned())
            .await
    }

    /// `PING`; on a cluster every master must answer.
    async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", redis::cmd("PING")).await
    }
}

/// A blob as read from Redis, and the record in it when it holds one.
struct Stored {
    text: Vec<u8>,
    record: Option<SessionRecord>,
}

/// rustls needs a process-wide provider when more than one could apply; the
/// tree uses ring. Installing it twice is harmless, so the result is ignored.
fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `host:port` of each seed for logs: never the URL, which may hold a password.
fn describe(seeds: &[ConnectionInfo]) -> String {
    let addresses: Vec<String> = seeds.iter().map(|seed| seed.addr().to_string()).collect();
    addresses.join(",")
}

/// Socket settings: no Nagle delay, keepalive on idle connections, and on
/// Linux a bound on how long sent data may go unacknowledged.
fn tcp_settings(timeout: Duration) -> TcpSettings {
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(TcpKeepalive::new().with_time(KEEPALIVE_IDLE));
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(timeout.max(Duration::from_secs(1)));
    #[cfg(not(target_os = "linux"))]
    let _ = timeout;
    settings
}

/// What it takes to open a connection, kept so that a fresh one can be opened
/// later.
enum Connector {
    Single(Client, ConnectionManagerConfig),
    Cluster(ClusterClient, ClusterConfig),
}

impl Connector {
    fn new(
        cluster: bool,
        seeds: Vec<ConnectionInfo>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let tcp = tcp_settings(timeout);
        let seeds = seeds
            .into_iter()
            .map(|seed| seed.set_tcp_settings(tcp.clone()));
        if cluster {
            let client = ClusterClientBuilder::new(seeds)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .tcp_settings(tcp)
                .build()
                .map_err(|e| {
                    ConfigError::at("store.urls", format!("unusable cluster seeds: {e}"))
                })?;
            let config = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            return Ok(Self::Cluster(client, config));
        }
        let seed = seeds
            .into_iter()
            .next()
            .ok_or_else(|| ConfigError::at("store.url", "is required"))?;
        let client = Client::open(seed)
            .map_err(|e| ConfigError::at("store.url", format!("unusable: {e}")))?;
        Ok(Self::Single(client, manager_config(timeout)))
    }

    /// A connection that connects on first use, so this never waits.
    fn open(&self) -> Result<Connection, RedisError> {
        match self {
            Self::Single(client, config) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Connection::Single)
            }
            Self::Cluster(client, config) => Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(config.clone()),
            )),
        }
    }
}

/// The connection manager fails fast while Redis is down (one quick retry,
/// then the error) instead of retrying past the timeout, and tries again on
/// the next request.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(timeout / 4)
}

/// The one connection every operation shares (multiplexed: cloning is cheap).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The current connection, replaced by a fresh one after
/// [`FRESH_CONNECTION_AFTER`] failures in a row (at most once per timeout).
struct Link {
    connector: Connector,
    current: RwLock<Connection>,
    failures: AtomicU32,
    opened_at: AtomicU64,
    timeout: Duration,
}

impl Link {
    fn new(connector: Connector, timeout: Duration) -> Result<Self, RedisError> {
        let current = RwLock::new(connector.open()?);
        Ok(Self {
            connector,
            current,
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(now_millis()),
            timeout,
        })
    }

    async fn get(&self) -> Connection {
        self.current.read().await.clone()
    }

    /// Starts watching one operation. An operation that is dropped before it
    /// settles (the caller gave up) counts as a failure.
    fn watch(&self) -> Health<'_> {
        Health {
            link: self,
            settled: false,
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    fn failed(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let age = now_millis().saturating_sub(self.opened_at.load(Ordering::Relaxed));
        if failures >= FRESH_CONNECTION_AFTER && u128::from(age) >= self.timeout.as_millis() {
            self.reopen();
        }
    }

    /// Swaps in a fresh connection unless another caller is doing so.
    fn reopen(&self) {
        let Ok(mut current) = self.current.try_write() else {
            return;
        };
        match self.connector.open() {
            Ok(fresh) => {
                *current = fresh;
                self.failures.store(0, Ordering::Relaxed);
                self.opened_at.store(now_millis(), Ordering::Relaxed);
                tracing::warn!(
                    store = "redis",
                    "Redis keeps failing: opened a fresh connection"
                );
            }
            Err(error) => {
                tracing::warn!(store = "redis", %error, "cannot open a fresh Redis connection")
            }
        }
    }
}

/// The outcome of one operation, reported to the [`Link`] when dropped.
struct Health<'a> {
    link: &'a Link,
    settled: bool,
}

impl Health<'_> {
    /// Only a store that cannot be reached counts: a lost race does not.
    fn settle<T>(mut self, result: &Result<T, StoreError>) {
        self.settled = true;
        match result {
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => self.link.failed(),
            _ => self.link.succeeded(),
        }
    }
}

impl Drop for Health<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.link.failed();
        }
    }
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
    fn a_zero_timeout_is_refused() {
        let mut zero = config(Some("redis://127.0.0.1"), &[], false);
        zero.timeout = ConfigDuration::millis(0);
        assert!(error(zero).starts_with("store.timeout:"));
    }
}
