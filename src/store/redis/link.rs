//! The connection every Redis operation shares, and how it heals: a
//! connection manager (or cluster client) replaced by a fresh one after a
//! few failures in a row. Behind Sentinel the fresh one goes to whichever
//! server the sentinels name as master at that moment, so a failover is
//! followed by itself.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::io::tcp::socket2::TcpKeepalive;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Client, Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisConnectionInfo, RedisError, RedisFuture,
    ServerErrorKind, TlsMode, Value,
};
use tokio::sync::{Mutex, RwLock};

use crate::config::store::SentinelConfig;
use crate::error::{Error, Result};
use crate::store::record::now_millis;

/// Failures in a row after which the store opens a fresh connection.
const FRESH_CONNECTION_AFTER: u32 = 3;

/// After the sentinels could not name a reachable master, operations fail
/// at once for this long instead of asking again, so that a burst of
/// requests during a failover does not become a burst of lookups.
const ASK_AGAIN_AFTER_MS: u64 = 250;

/// Idle time before TCP keepalive probes start, so that a silently dropped
/// idle connection (a NAT or firewall timeout) is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

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
pub enum Connector {
    Single(Client, ConnectionManagerConfig),
    Cluster(ClusterClient, ClusterConfig),
    /// The sentinels, asked for the master whenever a connection is opened.
    Sentinel(Box<Sentinels>),
}

/// The sentinels and what it takes to reach the master they name.
pub struct Sentinels {
    /// `&mut` to ask: only the one caller that opens a connection does.
    client: Mutex<SentinelClient>,
    manager: ConnectionManagerConfig,
    timeout: Duration,
}

impl Connector {
    pub fn new(cluster: bool, seeds: Vec<ConnectionInfo>, timeout: Duration) -> Result<Self> {
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
                .map_err(|e| Error::config("store.urls", format!("unusable cluster seeds: {e}")))?;
            let config = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            return Ok(Self::Cluster(client, config));
        }
        let seed = seeds
            .into_iter()
            .next()
            .ok_or_else(|| Error::config("store.url", "is required"))?;
        let client =
            Client::open(seed).map_err(|e| Error::config("store.url", format!("unusable: {e}")))?;
        Ok(Self::Single(client, manager_config(timeout)))
    }

    /// The master that the sentinels in `config` name, reached with
    /// `config`'s credentials, database and TLS mode.
    pub fn sentinel(config: &SentinelConfig, timeout: Duration) -> Result<Self> {
        let tcp = tcp_settings(timeout);
        let sentinels: Vec<ConnectionInfo> = config
            .sentinels()?
            .into_iter()
            .map(|sentinel| sentinel.set_tcp_settings(tcp.clone()))
            .collect();
        let mut redis = RedisConnectionInfo::default().set_db(config.db);
        if let Some(username) = &config.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &config.password {
            redis = redis.set_password(password);
        }
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(redis)
            .set_tcp_settings(tcp);
        if config.tls {
            node = node.set_tls_mode(TlsMode::Secure);
        }
        let client = SentinelClient::build(
            sentinels,
            config.master.clone(),
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|e| Error::config("store.sentinel.urls", format!("unusable: {e}")))?;
        Ok(Self::Sentinel(Box::new(Sentinels {
            client: Mutex::new(client),
            manager: manager_config(timeout),
            timeout,
        })))
    }

    /// A connection that connects on first use, so this never waits;
    /// `None` behind Sentinel, where the master must be asked for first
    /// ([`Connector::find`]).
    fn open(&self) -> Result<Option<Connection>, RedisError> {
        match self {
            Self::Single(client, config) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(|manager| Some(Connection::Single(manager)))
            }
            Self::Cluster(client, config) => Ok(Some(Connection::Cluster(
                client.get_pending_async_connection_with_config(config.clone()),
            ))),
            Self::Sentinel(_) => Ok(None),
        }
    }

    /// A connection to the master the sentinels name now (they check that
    /// it says it is master), within the timeout.
    async fn find(&self) -> Result<Connection, RedisError> {
        let Self::Sentinel(sentinels) = self else {
            return self
                .open()?
                .ok_or_else(|| RedisError::from((ErrorKind::Client, "no connection to open")));
        };
        let ask = async {
            let client = sentinels.client.lock().await.async_get_client().await?;
            ConnectionManager::new_lazy_with_config(client, sentinels.manager.clone())
        };
        match tokio::time::timeout(sentinels.timeout, ask).await {
            Ok(found) => found.map(Connection::Single),
            Err(_) => Err(RedisError::from((
                ErrorKind::Io,
                "the sentinels did not name a reachable master in time",
            ))),
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
pub enum Connection {
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
pub struct Link {
    connector: Connector,
    /// `None` until the sentinels named a master, and again after that
    /// master kept failing.
    current: RwLock<Option<Connection>>,
    failures: AtomicU32,
    opened_at: AtomicU64,
    /// When the sentinels last failed to name a reachable master (0: not
    /// since the last success).
    asked_in_vain_at: AtomicU64,
    timeout: Duration,
}

impl Link {
    pub fn new(connector: Connector, timeout: Duration) -> Result<Self, RedisError> {
        let current = RwLock::new(connector.open()?);
        Ok(Self {
            connector,
            current,
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(now_millis()),
            asked_in_vain_at: AtomicU64::new(0),
            timeout,
        })
    }

    /// The shared connection; behind Sentinel the first caller after a
    /// failure asks the sentinels for the master, the others wait for it.
    pub async fn get(&self) -> Result<Connection, RedisError> {
        if let Some(connection) = self.current.read().await.as_ref() {
            return Ok(connection.clone());
        }
        let mut current = self.current.write().await;
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        let in_vain_at = self.asked_in_vain_at.load(Ordering::Relaxed);
        if in_vain_at != 0 && now_millis().saturating_sub(in_vain_at) < ASK_AGAIN_AFTER_MS {
            return Err(RedisError::from((
                ErrorKind::Io,
                "no reachable Redis master: the sentinels named none moments ago",
            )));
        }
        match self.connector.find().await {
            Ok(found) => {
                *current = Some(found.clone());
                self.opened_at.store(now_millis(), Ordering::Relaxed);
                self.asked_in_vain_at.store(0, Ordering::Relaxed);
                Ok(found)
            }
            Err(error) => {
                self.asked_in_vain_at
                    .store(now_millis().max(1), Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Starts watching one operation. An operation that is dropped before it
    /// settles (the caller gave up) counts as a failure.
    pub fn watch(&self) -> Health<'_> {
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

    /// `error` says the server is a replica now (a failover demoted it, or
    /// the sentinels were behind): behind Sentinel the master is asked for
    /// again at once, whatever the count of failures (reads that still
    /// succeed on the replica would keep resetting it).
    pub fn check_demoted(&self, error: &RedisError) {
        let read_only = error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            || error.to_string().contains("READONLY");
        let age = now_millis().saturating_sub(self.opened_at.load(Ordering::Relaxed));
        if read_only
            && matches!(self.connector, Connector::Sentinel(_))
            && age >= ASK_AGAIN_AFTER_MS
        {
            self.reopen();
        }
    }

    /// Swaps in a fresh connection unless another caller is doing so
    /// (behind Sentinel: drops the connection, so that the next operation
    /// asks the sentinels for the master again).
    fn reopen(&self) {
        let Ok(mut current) = self.current.try_write() else {
            return;
        };
        match self.connector.open() {
            Ok(fresh) => {
                let sentinel = fresh.is_none();
                *current = fresh;
                self.failures.store(0, Ordering::Relaxed);
                self.opened_at.store(now_millis(), Ordering::Relaxed);
                if sentinel {
                    tracing::warn!(
                        store = "redis",
                        "the Redis master keeps failing: asking the sentinels for the master again"
                    );
                } else {
                    tracing::warn!(
                        store = "redis",
                        "Redis keeps failing: opened a fresh connection"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(store = "redis", %error, "cannot open a fresh Redis connection")
            }
        }
    }
}

/// The outcome of one operation, reported to the [`Link`] when dropped.
pub struct Health<'a> {
    link: &'a Link,
    settled: bool,
}

impl Health<'_> {
    /// Only a store that cannot be reached counts: a lost race does not.
    pub fn settle<T>(mut self, result: &Result<T>) {
        self.settled = true;
        match result {
            Err(error) if error.is_store_unreachable() => self.link.failed(),
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
