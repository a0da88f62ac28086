//! The Redis store: one server, or a Redis Cluster.
//!
//! # Layout
//!
//! Each session is one string key, `prefix + id`, holding the
//! codec's blob. The key's Redis expiry *is* the session's expiry
//! (set with `PXAT`/`PEXPIREAT` to the absolute `expires_at`), so Redis
//! removes dead sessions itself and a read takes the expiry
//! back from the key's `PTTL`. Because Redis never hands out an expired key,
//! `keep_expired` changes nothing here.
//!
//! # Atomic updates
//!
//! The core ([`StoreCore`]) reads the blob, applies the change in Rust, and
//! commits with [`Backend::write_if`]: a compare-and-set Lua script that
//! writes only if the key still holds the exact bytes that were read (or,
//! for a new session, still does not exist). This:
//! * loses no concurrent update, from one gateway or many;
//! * keeps the JSON byte-exact, because Lua never parses it;
//! * touches a single key per script, so it works on a cluster;
//! * needs no `WATCH`, which a shared multiplexed connection cannot use.
//!
//! Because the script compares the text alone, the core's first attempt
//! skips the read and tries the compare-and-set against the record this
//! gateway wrote last (or the request loaded).
//!
//! # The identity index
//!
//! With `session.identity_key` set, each identity has a sorted set,
//! `prefix + "identity:" + hash`, whose members are its session ids scored
//! by their expiry. Every write adds the session, drops members whose
//! expiry has passed (so sessions that expire never make it grow), and
//! sets the set's own expiry to its newest member's. On a single server
//! this happens inside the same script as the session's write. On a
//! cluster a script may only touch keys of one slot, and a session and its
//! identity's set hash to different slots: there the set is written just
//! *before* the session. A session is therefore never missing from its
//! identity's set; an entry left by a write that then lost its race, or by
//! a session that moved on, is harmless, because a revoke reads each listed
//! session and acts only on those that still hold that identity.
//!
//! # Connections and outages
//!
//! A single server is reached through a [`ConnectionManager`], which
//! reconnects by itself; with `sentinel` that server is the master the
//! sentinels name, asked again whenever it keeps failing (so a failover is
//! followed without a restart: requests get 503 until a replica is
//! promoted); `cluster: true` uses the `cluster-async` client with
//! `url`/`urls` as seed nodes. `rediss://` uses rustls with the ring provider,
//! as the rest of the tree does; username and password come from the URL.
//!
//! Every operation is bounded by `timeout`: connection attempts and replies
//! time out at it, the socket gives up on unacknowledged data after it
//! (`TCP_USER_TIMEOUT`, so a vanished host is noticed), and the core cuts
//! the whole operation, retries included, off at it. Should the client library
//! get stuck anyway (it does not retry a failed handshake that was not an I/O
//! error, such as `LOADING` while Redis restarts), a few failures in a row
//! make the store open a fresh connection.
//!
//! **Redis down at start-up is not a configuration error.** A URL that does
//! not parse is refused (naming `store.url`), but an unreachable server only
//! logs an error: the gateway starts, `/readyz` answers 503 and requests get
//! 503 until Redis answers, then everything works without a restart. This
//! lets gateways and Redis start in any order (as in Kubernetes or Compose).

mod link;

use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, ConnectionAddr, ConnectionInfo, RedisError, Script};

use self::link::{Connection, Connector, Link};
use super::StoreSettings;
use super::core::{Backend, Entry, StoreCore, Stored};
use super::identity::Identity;
use super::record::{SessionId, UnixMillis, now_millis};
use crate::config::RedisConfig;
use crate::error::{Error, Result};

/// Adds a session to its identity's sorted set (when the script got that
/// key), drops members already expired, and keeps the set alive as long
/// as its newest member. Prefixed to the scripts that write a session.
const INDEX_LUA: &str = r"
local function index(key, id, expires_at, now)
  if not key then return end
  redis.call('ZADD', key, expires_at, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if newest[2] then redis.call('PEXPIREAT', key, newest[2]) end
end
";

/// Writes a session only if the key still holds exactly what was read.
/// KEYS: the session, and its identity's set if indexed. ARGV: 'present' +
/// the old blob, or 'absent' + ''; the new blob; the absolute expiry in
/// Unix ms; the session id; now in Unix ms.
const SWAP_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
index(KEYS[2], ARGV[5], ARGV[4], ARGV[6])
return 1
";

/// Writes a session whatever is there. KEYS: the session, and its
/// identity's set if indexed. ARGV: the blob, the expiry, the id, now.
const PUT_SCRIPT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
index(KEYS[2], ARGV[3], ARGV[2], ARGV[4])
return 1
";

/// Moves the expiry of a live session and, if indexed, its score. KEYS:
/// the session, and its identity's set if indexed. ARGV: the expiry, the
/// id, now.
const TOUCH_SCRIPT: &str = r"
if redis.call('PEXPIREAT', KEYS[1], ARGV[1]) == 1 then
  index(KEYS[2], ARGV[2], ARGV[1], ARGV[3])
end
return 1
";

/// Only the index, for a cluster (see the module docs). KEYS: the set.
/// ARGV: the id, the expiry, now.
const INDEX_SCRIPT: &str = r"
index(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
";

/// Moves a session to a new key in one step, if the old key still holds
/// what was read and the new one is free. KEYS: old, new, and the new
/// session's identity set if indexed. ARGV: the old blob, the new blob,
/// the absolute expiry in Unix ms, the new id, now. All keys must be on
/// one server: not used on a cluster, where they hash to different slots.
const MOVE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
index(KEYS[3], ARGV[4], ARGV[3], ARGV[5])
return 1
";

/// Deletes a key only if it still holds what was read. KEYS: the key.
/// ARGV: the blob.
const DELETE_IF_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// A script that may call `index`.
fn indexing_script(body: &str) -> Script {
    Script::new(&format!("{INDEX_LUA}{body}"))
}

/// The Redis session store: the core in front of [`RedisBackend`].
pub type RedisStore = StoreCore<RedisBackend>;

impl RedisStore {
    /// Builds the store from validated settings. Redis being unreachable
    /// right now is logged, not refused (see the module docs).
    ///
    /// # Errors
    ///
    /// A configuration error naming the key when the settings cannot work
    /// at all (a bad URL, seeds with different credentials or TLS modes).
    pub async fn connect(config: &RedisConfig, settings: &StoreSettings) -> Result<Self> {
        config.validate()?;
        let timeout = config.timeout.get();
        let (connector, addresses) = match &config.sentinel {
            Some(sentinel) => {
                let sentinels = sentinel.sentinels()?;
                if sentinel.tls || uses_tls(&sentinels) {
                    install_ring_provider();
                }
                let addresses = format!(
                    "master {} via sentinels {}",
                    sentinel.master,
                    describe(&sentinels)
                );
                (Connector::sentinel(sentinel, timeout)?, addresses)
            }
            None => {
                let seeds = config.seeds()?;
                if uses_tls(&seeds) {
                    install_ring_provider();
                }
                let addresses = describe(&seeds);
                (Connector::new(config.cluster, seeds, timeout)?, addresses)
            }
        };
        let link = Link::new(connector, timeout).map_err(|e| {
            Error::config("store.url", format!("cannot set up the Redis client: {e}"))
        })?;
        let backend = RedisBackend {
            link,
            prefix: config.prefix.clone(),
            swap_script: indexing_script(SWAP_SCRIPT),
            put_script: indexing_script(PUT_SCRIPT),
            touch_script: indexing_script(TOUCH_SCRIPT),
            index_script: indexing_script(INDEX_SCRIPT),
            move_script: indexing_script(MOVE_SCRIPT),
            delete_if_script: Script::new(DELETE_IF_SCRIPT),
            cluster: config.cluster,
            timeout,
        };
        let store = StoreCore::new(backend, settings);
        check_at_start(&store, &addresses).await;
        Ok(store)
    }
}

/// Pings once so that an unreachable Redis is reported right away.
async fn check_at_start(store: &RedisStore, addresses: &str) {
    use super::SessionStore;
    match store.ping().await {
        Ok(()) => tracing::info!(store = "redis", servers = addresses, "connected to Redis"),
        Err(error) => tracing::error!(
            store = "redis",
            servers = addresses,
            %error,
            "Redis is not answering at start-up: starting anyway; /readyz answers 503 and requests get 503 until it does"
        ),
    }
}

/// One string key per session, `prefix + id`, expiring with the session.
pub struct RedisBackend {
    link: Link,
    prefix: String,
    swap_script: Script,
    put_script: Script,
    touch_script: Script,
    index_script: Script,
    move_script: Script,
    delete_if_script: Script,
    /// Keys of one session move across slots: no multi-key script.
    cluster: bool,
    /// For errors: the client's own timeouts are set to it.
    timeout: Duration,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + id.as_str().len());
        key.push_str(&self.prefix);
        key.push_str(id.as_str());
        key
    }

    /// The sorted set of `identity`'s sessions.
    fn index_key(&self, identity: &Identity) -> String {
        format!("{}identity:{}", self.prefix, identity.as_str())
    }

    /// The index key to pass to a writing script: on a single server the
    /// script keeps the index itself; on a cluster the index is written
    /// first, on its own (see the module docs), and the script gets none.
    async fn index_for(
        &self,
        operation: &'static str,
        id: &SessionId,
        identity: Option<&Identity>,
        expires_at: UnixMillis,
    ) -> Result<Option<String>> {
        let Some(identity) = identity else {
            return Ok(None);
        };
        let key = self.index_key(identity);
        if !self.cluster {
            return Ok(Some(key));
        }
        let mut call = self.index_script.key(&key);
        call.arg(id.as_str()).arg(expires_at).arg(now_millis());
        self.call(operation, async |conn| call.invoke_async::<i64>(conn).await)
            .await?;
        Ok(None)
    }

    /// Runs one call on the shared connection and tells the link how it
    /// went; a call the core gives up on counts as a failure.
    async fn call<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        run: impl AsyncFnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let health = self.link.watch();
        let result = match self.link.get().await {
            Ok(mut conn) => run(&mut conn).await,
            Err(error) => Err(error),
        }
        .map_err(|e| {
            self.link.check_demoted(&e);
            failed(operation, e, self.timeout)
        });
        health.settle(&result);
        result
    }

    async fn run(&self, operation: &'static str, command: Cmd) -> Result<()> {
        self.call(operation, async |conn| {
            command.query_async::<()>(conn).await
        })
        .await
    }
}

/// A client error as a store error, saying which operation failed.
fn failed(operation: &str, error: RedisError, timeout: Duration) -> Error {
    if error.is_timeout() {
        Error::store_timeout("redis", operation, timeout)
    } else {
        Error::store_unavailable("redis", operation, error)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    type Version = ();

    fn kind(&self) -> &'static str {
        "redis"
    }

    /// `GET` and `PTTL` in one pipeline: one round trip, two plain commands
    /// on one key (so one cluster slot), cheaper for Redis than a script.
    async fn read(&self, id: &SessionId) -> Result<Option<Stored<()>>> {
        let key = self.key(id);
        let (text, ttl): (Option<Vec<u8>>, i64) = self
            .call("load", async |conn| {
                redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(conn)
                    .await
            })
            .await?;
        // A key without expiry (PTTL -1) is not one of ours.
        let expires_at = u64::try_from(ttl)
            .ok()
            .map(|ttl| now_millis().saturating_add(ttl));
        Ok(text.map(|text| Stored {
            text,
            expires_at,
            version: (),
        }))
    }

    async fn write_if(
        &self,
        id: &SessionId,
        expected: Option<&Stored<()>>,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let key = self.key(id);
        let index = self
            .index_for("update", id, entry.identity, entry.expires_at)
            .await?;
        let mut call = self.swap_script.key(&key);
        if let Some(index) = &index {
            call.key(index);
        }
        match expected {
            Some(stored) => call.arg("present").arg(&stored.text),
            None => call.arg("absent").arg(""),
        };
        call.arg(entry.text)
            .arg(entry.expires_at)
            .arg(id.as_str())
            .arg(now_millis());
        let written: i64 = self
            .call("update", async |conn| call.invoke_async(conn).await)
            .await?;
        Ok(written == 1)
    }

    async fn put(&self, id: &SessionId, entry: Entry<'_>) -> Result<()> {
        let key = self.key(id);
        let index = self
            .index_for("insert", id, entry.identity, entry.expires_at)
            .await?;
        let mut call = self.put_script.key(&key);
        if let Some(index) = &index {
            call.key(index);
        }
        call.arg(entry.text)
            .arg(entry.expires_at)
            .arg(id.as_str())
            .arg(now_millis());
        self.call("insert", async |conn| call.invoke_async::<i64>(conn).await)
            .await
            .map(drop)
    }

    /// `PEXPIREAT`: the data is not rewritten, and a missing (or, since
    /// Redis drops them itself, expired) key stays missing. The identity's
    /// set moves with it.
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        now: UnixMillis,
        identity: Option<&Identity>,
    ) -> Result<()> {
        let Some(identity) = identity else {
            let mut touch = redis::cmd("PEXPIREAT");
            touch.arg(self.key(id)).arg(expires_at);
            return self.run("touch", touch).await;
        };
        let key = self.key(id);
        let index = self
            .index_for("touch", id, Some(identity), expires_at)
            .await?;
        let mut call = self.touch_script.key(&key);
        if let Some(index) = &index {
            call.key(index);
        }
        call.arg(expires_at).arg(id.as_str()).arg(now);
        self.call("touch", async |conn| call.invoke_async::<i64>(conn).await)
            .await
            .map(drop)
    }

    /// The members of the identity's set.
    async fn indexed(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        let key = self.index_key(identity);
        let ids: Vec<String> = self
            .call("sessions_of", async |conn| {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(conn)
                    .await
            })
            .await?;
        Ok(ids.into_iter().map(SessionId::from_trusted).collect())
    }

    async fn unindex(&self, identity: &Identity, ids: &[SessionId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut remove = redis::cmd("ZREM");
        remove.arg(self.index_key(identity));
        for id in ids {
            remove.arg(id.as_str());
        }
        self.run("revoke", remove).await
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.run("delete", redis::cmd("DEL").arg(self.key(id)).to_owned())
            .await
    }

    /// Redis removes expired keys itself: nothing to clean up.
    async fn delete_if(&self, _id: &SessionId, _expected: &Stored<()>) -> Result<()> {
        Ok(())
    }

    /// `PING`; on a cluster every master must answer.
    async fn ping(&self) -> Result<()> {
        self.run("ping", redis::cmd("PING")).await
    }

    /// The swap script compares the blob alone.
    fn text_is_version(&self) -> Option<()> {
        Some(())
    }

    /// One script on a single server; on a cluster, where the two keys live
    /// in different slots, a compare-and-delete of the old key first, then
    /// `SET NX` of the new one.
    async fn move_if(
        &self,
        old: &SessionId,
        expected: &Stored<()>,
        new: &SessionId,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let (old_key, new_key) = (self.key(old), self.key(new));
        let index = self
            .index_for("regenerate", new, entry.identity, entry.expires_at)
            .await?;
        let Entry {
            text, expires_at, ..
        } = entry;
        if !self.cluster {
            let mut call = self.move_script.key(&old_key);
            call.key(&new_key);
            if let Some(index) = &index {
                call.key(index);
            }
            call.arg(&expected.text)
                .arg(text)
                .arg(expires_at)
                .arg(new.as_str())
                .arg(now_millis());
            let moved: i64 = self
                .call("regenerate", async |conn| call.invoke_async(conn).await)
                .await?;
            return Ok(moved == 1);
        }
        let mut delete = self.delete_if_script.key(&old_key);
        delete.arg(&expected.text);
        let deleted: i64 = self
            .call("regenerate", async |conn| delete.invoke_async(conn).await)
            .await?;
        if deleted != 1 {
            return Ok(false);
        }
        let mut set = redis::cmd("SET");
        set.arg(&new_key)
            .arg(text)
            .arg("PXAT")
            .arg(expires_at)
            .arg("NX");
        let written: Option<String> = self
            .call("regenerate", async |conn| set.query_async(conn).await)
            .await?;
        Ok(written.is_some())
    }
}

/// rustls needs a process-wide provider when more than one could apply; the
/// tree uses ring. Installing it twice is harmless, so the result is ignored.
fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn uses_tls(servers: &[ConnectionInfo]) -> bool {
    servers
        .iter()
        .any(|server| matches!(server.addr(), ConnectionAddr::TcpTls { .. }))
}

/// `host:port` of each seed for logs: never the URL, which may hold a password.
fn describe(seeds: &[ConnectionInfo]) -> String {
    let addresses: Vec<String> = seeds.iter().map(|seed| seed.addr().to_string()).collect();
    addresses.join(",")
}
