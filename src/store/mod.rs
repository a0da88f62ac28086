//! Server-side session stores: one trait, one core, thin backends.
//!
//! [`SessionStore`] is what the session engine calls. It is implemented
//! once, by [`StoreCore`], which holds the policy every store shares
//! (timeouts, metrics, decoding, expiry on read, compare-and-set with group
//! commit); each backend ([`memory`], [`redis`], [`mysql`], [`dynamodb`])
//! only implements [`Backend`]: read, write-if-unchanged, put, touch,
//! delete, ping.
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
//!   rewrites the data, and never revives a missing or expired session.
//! * **JSON fidelity.** Data comes back exactly as written: key order, empty
//!   arrays, nested objects and large integers unchanged.
//! * **Errors.** Any failure to reach or use the backend is a store
//!   [`Error`](crate::Error); the gateway answers 503 and leaves the client's cookie
//!   alone. Every call is bounded by the store's timeout.

pub mod codec;
pub mod core;
pub mod dynamodb;
pub mod identity;
pub mod loaded;
pub mod memory;
pub mod merge_patch;
pub mod mysql;
mod operation;
pub mod record;
pub mod redis;

mod turns;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use codec::{NativeCodec, RecordCodec};
pub use core::{Backend, Entry, StoreCore, Stored};
pub use identity::{Identity, IdentityValue};
pub use loaded::LoadedRecord;
pub use record::{
    Change, Lifetime, Refusal, SessionData, SessionId, SessionRecord, UnixMillis, expiry_seconds,
    now_millis,
};

use crate::config::{Config, DynamoLayout, StoreConfig};
use crate::error::Result;

/// A server-side session store. See the module docs.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The value of `store.type`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// The live record under `id`, or `None` when there is none or it has
    /// expired.
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>>;

    /// As [`SessionStore::load`], with the data left as the text the store
    /// held where the layout allows: the request path's read (see
    /// [`LoadedRecord`]).
    async fn load_lazily(&self, id: &SessionId) -> Result<Option<LoadedRecord>> {
        Ok(self.load(id).await?.map(LoadedRecord::parsed))
    }

    /// Applies `change` atomically to the record under `id` (creating it when
    /// missing or expired) and returns the record right after it. Concurrent
    /// updates of the same session may be committed with it in one write
    /// (see `turns`), so the store may already hold later changes on top.
    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord>;

    /// Applies `change` to the record under `old` and moves it to `new` in
    /// one step: the changed data is never written under `old`, and `old`
    /// stops working. Atomic where the backend allows it (one script, one
    /// transaction); otherwise `old` is removed first.
    async fn regenerate(
        &self,
        old: &SessionId,
        new: &SessionId,
        change: &Change,
    ) -> Result<SessionRecord>;

    /// Writes `record` under `id`, replacing whatever is there.
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<()>;

    /// Moves the expiry of the record under `id` to `expires_at` without
    /// rewriting its data. A missing record stays missing. `identity` is
    /// the session's, for an index that expires with its sessions.
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        identity: Option<&Identity>,
    ) -> Result<()>;

    /// The live sessions of `identity` (`session.identity_key`), each
    /// checked against its record.
    async fn sessions_of(&self, identity: &Identity) -> Result<Vec<SessionId>>;

    /// Deletes every live session of `identity`. A failure part-way is
    /// reported with the count deleted before it; calling again finishes
    /// the job (what is deleted stays deleted).
    async fn revoke(&self, identity: &Identity) -> Revoked;

    /// Removes the record under `id`; removing a missing record succeeds.
    async fn delete(&self, id: &SessionId) -> Result<()>;

    /// Checks that the backend answers, for `/readyz`.
    async fn ping(&self) -> Result<()>;
}

/// What a revoke did.
#[derive(Debug, Default)]
pub struct Revoked {
    /// Sessions deleted.
    pub deleted: u64,
    /// The failure that stopped it, if one did.
    pub failure: Option<crate::error::Error>,
}

/// What every server store needs beyond its own section.
#[derive(Clone)]
pub struct StoreSettings {
    /// Bound on every call, retries and waiting for a turn included.
    pub timeout: Duration,
    /// `session.keep_expired`: leave expired records found on read.
    pub keep_expired: bool,
    /// How records are written as text.
    pub codec: Arc<dyn RecordCodec>,
    /// `session.identity_key`: sessions are indexed by its value.
    pub identity_key: Option<String>,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("timeout", &self.timeout)
            .field("keep_expired", &self.keep_expired)
            .finish_non_exhaustive()
    }
}

impl StoreSettings {
    /// The native codec with `timeout` and `keep_expired`.
    pub fn new(timeout: Duration, keep_expired: bool) -> Self {
        Self {
            timeout,
            keep_expired,
            codec: Arc::new(NativeCodec),
            identity_key: None,
        }
    }

    /// Sessions indexed by the value of `identity_key`.
    pub fn indexed_by(mut self, identity_key: Option<&str>) -> Self {
        self.identity_key = identity_key.map(str::to_owned);
        self
    }
}

/// Where a gateway's sessions live: chosen once, at start-up.
#[derive(Clone)]
pub enum Sessions {
    /// The whole session sealed in the cookie, in at most `max_chunks`
    /// cookies.
    Sealed {
        /// `store.max_chunks`.
        max_chunks: usize,
    },
    /// A server store; the cookie holds a signed id.
    Server(Arc<dyn SessionStore>),
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sessions::Sealed { max_chunks } => write!(f, "Sealed {{ max_chunks: {max_chunks} }}"),
            Sessions::Server(store) => write!(f, "Server({})", store.kind()),
        }
    }
}

impl Sessions {
    /// The server store, if there is one (for readiness checks).
    pub fn server(&self) -> Option<&Arc<dyn SessionStore>> {
        match self {
            Sessions::Server(store) => Some(store),
            Sessions::Sealed { .. } => None,
        }
    }
}

/// The record codec `session.compat` asks for: express-session's JSON, or
/// the native layout. Chosen once, at start-up.
pub fn codec_for(config: &Config) -> Arc<dyn RecordCodec> {
    match codec::express::for_config(config) {
        Some(express) => Arc::new(express),
        None => Arc::new(NativeCodec),
    }
}

/// Opens the store the configuration names, writing records with `codec`.
///
/// # Errors
///
/// A configuration error naming the key when the store cannot work at all.
pub async fn open(
    config: &StoreConfig,
    keep_expired: bool,
    identity_key: Option<&str>,
    codec: Arc<dyn RecordCodec>,
) -> Result<Sessions> {
    let settings = |timeout| StoreSettings {
        codec: Arc::clone(&codec),
        ..StoreSettings::new(timeout, keep_expired).indexed_by(identity_key)
    };
    let store: Arc<dyn SessionStore> = match config {
        StoreConfig::Cookie(c) => {
            return Ok(Sessions::Sealed {
                max_chunks: c.max_chunks,
            });
        }
        StoreConfig::Memory(c) => {
            tracing::warn!(
                "store.type memory keeps sessions in this process only: for development and tests, not production"
            );
            Arc::new(memory::MemoryStore::open(c, &settings(memory::TIMEOUT)))
        }
        StoreConfig::Redis(c) => {
            Arc::new(redis::RedisStore::connect(c, &settings(c.timeout.get())).await?)
        }
        StoreConfig::Dynamodb(c) if c.layout != DynamoLayout::Native => {
            Arc::new(dynamodb::node::connect(c, &settings(c.timeout.get())).await?)
        }
        StoreConfig::Dynamodb(c) => {
            Arc::new(dynamodb::DynamoStore::connect(c, &settings(c.timeout.get())).await?)
        }
        StoreConfig::Mysql(c) => {
            Arc::new(mysql::MysqlStore::connect(c, &settings(c.timeout.get())).await?)
        }
    };
    Ok(Sessions::Server(store))
}
