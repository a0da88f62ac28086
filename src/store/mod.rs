//! Server-side session stores: one trait, one record type, one file per
//! backend.
//!
//! The cookie store is not here: it keeps the whole session in the client's
//! cookie (see `session::sealed`). Every store in this module keeps the
//! session on a server and the cookie carries only a signed id.
//!
//! # The contract every store keeps
//!
//! * **Keys.** A store keeps one record per [`SessionId`], under its own key
//!   layout (Redis and DynamoDB put a configurable prefix in front of the id).
//! * **Expiry.** A record lives until its `expires_at`. [`SessionStore::load`]
//!   never returns a record whose `expires_at` has passed, whatever the
//!   backend's native expiry does (DynamoDB's TTL deletes up to two days
//!   late). With `keep_expired: false` an expired record found on read is
//!   deleted; with `true` it is left for the backend's own cleanup.
//! * **Atomic updates.** [`SessionStore::update`] applies a [`Change`] to the
//!   record as it is in the store at that moment, never to a copy read
//!   earlier: concurrent updates of one session, from one gateway or many,
//!   all survive. A missing (or expired) record is created by the update.
//! * **Touch.** [`SessionStore::touch`] moves `expires_at` only; it never
//!   rewrites the data.
//! * **JSON fidelity.** Data comes back exactly as written: key order, empty
//!   arrays, nested objects and large integers unchanged.
//! * **Errors.** Any failure to reach or use the backend is a [`StoreError`];
//!   the gateway answers 503 and leaves the client's cookie alone. Every call
//!   is bounded by the store's timeout (see [`Instrumented`]).

pub mod dynamodb;
pub mod memory;
pub mod mysql;
pub mod record;
pub mod redis;

mod instrumented;
mod turns;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use instrumented::Instrumented;
pub use record::{NativeCodec, RecordCodec};

use crate::config::{Config, ConfigError, StoreConfig};

/// A session's data: the JSON object the backend sees in `X-Session-Data`.
pub type SessionData = Map<String, Value>;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// The current wall-clock time in Unix milliseconds.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A session id: at least 128 random bits from the OS CSPRNG, base64url.
///
/// It is the store's key and is never shown to the backend: the cookie
/// carries it with a MAC, and `X-Session-Id` carries a one-way derivation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id: 256 bits from the OS CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(crate::session::b64::encode(&bytes)))
    }

    /// Wraps an id that has already been authenticated (MAC checked) or that
    /// a store handed back.
    pub fn from_trusted(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Ids are secrets: never print them whole.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(6).collect();
        write!(f, "SessionId({shown}…)")
    }
}

/// One stored session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub data: SessionData,
    /// When the session was created: the start of its absolute lifetime.
    pub created_at: UnixMillis,
    /// When the session dies unless it is touched or updated again.
    pub expires_at: UnixMillis,
}

impl SessionRecord {
    /// An empty session created at `now`.
    pub fn new(now: UnixMillis, lifetime: &Lifetime) -> Self {
        Self {
            data: Map::new(),
            created_at: now,
            expires_at: lifetime.expires_at(now, now),
        }
    }

    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at <= now
    }

    /// Milliseconds left to live at `now` (0 when expired).
    pub fn remaining_millis(&self, now: UnixMillis) -> u64 {
        self.expires_at.saturating_sub(now)
    }
}

/// How long sessions live: `session.ttl` and `session.absolute_ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// Idle lifetime: a session unused this long is gone.
    pub idle: Duration,
    /// Hard limit from creation, whatever the activity.
    pub absolute: Option<Duration>,
}

impl Lifetime {
    /// The expiry of a session created at `created_at` and used at `now`.
    pub fn expires_at(&self, created_at: UnixMillis, now: UnixMillis) -> UnixMillis {
        let idle = now.saturating_add(self.idle.as_millis() as u64);
        match self.absolute {
            Some(absolute) => idle.min(created_at.saturating_add(absolute.as_millis() as u64)),
            None => idle,
        }
    }
}

/// What a request does to its session: applied by [`SessionStore::update`]
/// to the stored record, atomically.
#[derive(Clone, Debug)]
pub struct Change {
    /// An RFC 7396 merge patch (a JSON object), or `None` to keep the data.
    pub patch: Option<Map<String, Value>>,
    pub now: UnixMillis,
    pub lifetime: Lifetime,
    /// The record as this request loaded it, if it did: a hint that lets a
    /// compare-and-set store try its write without reading first. Never
    /// trusted: the store's own check decides whether it is still current.
    pub seen: Option<SessionRecord>,
}

impl Change {
    /// The record after this change. `current` is what the store holds now;
    /// `None` (or an expired record) means the change starts a new session.
    pub fn apply(&self, current: Option<SessionRecord>) -> SessionRecord {
        let mut record = match current {
            Some(record) if !record.is_expired(self.now) => record,
            _ => SessionRecord::new(self.now, &self.lifetime),
        };
        if let Some(patch) = &self.patch {
            crate::session::merge_patch::apply_object(&mut record.data, patch);
        }
        record.expires_at = self.lifetime.expires_at(record.created_at, self.now);
        record
    }

    /// A copy without the `seen` hint, for a change that waits in a queue:
    /// by the time it is written, what its request loaded is stale.
    pub fn without_seen(&self) -> Self {
        Self {
            patch: self.patch.clone(),
            now: self.now,
            lifetime: self.lifetime,
            seen: None,
        }
    }
}

/// A store failed: the gateway answers 503 and leaves the cookie alone.
///
/// `Clone`, because one failed group write fails every update in the group.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within the store's timeout.
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    /// An atomic update lost its race too many times in a row.
    #[error("store update contended: gave up after {0} attempts")]
    Contended(u32),
    /// A full store (the memory store's `max_sessions`).
    #[error("store full: {0}")]
    Full(String),
}

impl StoreError {
    pub fn unavailable(error: impl fmt::Display) -> Self {
        StoreError::Unavailable(error.to_string())
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout(_) => "timeout",
            StoreError::Contended(_) => "contended",
            StoreError::Full(_) => "full",
        }
    }
}

/// A server-side session store. See the module docs for the contract.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The value of `store.type`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// The live record under `id`, or `None` when there is none or it has
    /// expired.
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// Applies `change` atomically to the record under `id` (creating it when
    /// missing or expired) and returns the record right after it. Concurrent
    /// updates of the same session may be committed with it in one write
    /// (see `turns`), so the store may already hold later changes on top.
    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, StoreError>;

    /// Writes `record` under `id`, replacing whatever is there. Used to move
    /// a session to a new id.
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError>;

    /// Moves the expiry of the record under `id` to `expires_at` without
    /// rewriting its data. A missing record stays missing.
    async fn touch(&self, id: &SessionId, expires_at: UnixMillis) -> Result<(), StoreError>;

    /// Removes the record under `id`; removing a missing record succeeds.
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Checks that the backend answers, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Retries an optimistic read-modify-write until it commits.
///
/// `attempt` returns `Ok(Some(written))` when its write committed and
/// `Ok(None)` when it lost a race (a version or WATCH check failed). Stores
/// that implement [`SessionStore::update`] by compare-and-set share this loop.
pub async fn retry_update<T, F, Fut>(max_attempts: u32, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    for round in 0..max_attempts {
        if let Some(record) = attempt().await? {
            return Ok(record);
        }
        // Back off a little, with jitter, so that racing writers spread out.
        let jitter = u64::from(random_u16() % 8);
        tokio::time::sleep(Duration::from_millis(u64::from(round.min(6)) * 2 + jitter)).await;
    }
    Err(StoreError::Contended(max_attempts))
}

fn random_u16() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_le_bytes(bytes)
}

/// Opens the server store named by the configuration, wrapped with timeouts
/// and metrics. Returns `None` for the cookie store, which has no server.
pub async fn open(config: &Config) -> Result<Option<Arc<dyn SessionStore>>, ConfigError> {
    let keep_expired = config.session.keep_expired;
    let (store, timeout): (Arc<dyn SessionStore>, Duration) = match &config.store {
        StoreConfig::Cookie(_) => return Ok(None),
        StoreConfig::Memory(c) => {
            tracing::warn!(
                "store.type memory keeps sessions in this process only: for development and tests, not production"
            );
            (
                Arc::new(memory::MemoryStore::new(c.max_sessions, keep_expired)),
                Duration::from_secs(2),
            )
        }
        StoreConfig::Redis(c) => (
            Arc::new(redis::RedisStore::connect(c, keep_expired).await?),
            c.timeout.get(),
        ),
        StoreConfig::Dynamodb(c) => (
            Arc::new(dynamodb::DynamoStore::connect(c, keep_expired).await?),
            c.timeout.get(),
        ),
        StoreConfig::Mysql(c) => (
            Arc::new(mysql::MysqlStore::connect(c, keep_expired).await?),
            c.timeout.get(),
        ),
    };
    Ok(Some(Arc::new(Instrumented::new(store, timeout))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn absolute_lifetime_caps_idle_expiry() {
        let lifetime = Lifetime {
            idle: MIN,
            absolute: Some(2 * MIN),
        };
        assert_eq!(lifetime.expires_at(0, 0), 60_000);
        assert_eq!(lifetime.expires_at(0, 90_000), 120_000);
        let unbounded = Lifetime {
            idle: MIN,
            absolute: None,
        };
        assert_eq!(unbounded.expires_at(0, 90_000), 150_000);
    }

    #[test]
    fn change_starts_over_when_the_record_expired() {
        let lifetime = Lifetime {
            idle: MIN,
            absolute: None,
        };
        let old = SessionRecord {
            data: serde_json::from_str(r#"{"a":1}"#).unwrap(),
            created_at: 0,
            expires_at: 10,
        };
        let patch = serde_json::from_str(r#"{"b":2}"#).unwrap();
        let change = Change {
            seen: None,
            patch: Some(patch),
            now: 20,
            lifetime,
        };
        let record = change.apply(Some(old));
        assert_eq!(Value::Object(record.data), serde_json::json!({"b": 2}));
        assert_eq!(record.created_at, 20);
    }

    #[test]
    fn generated_ids_are_long_and_distinct() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43);
        assert!(!format!("{a:?}").contains(a.as_str()));
    }
}
