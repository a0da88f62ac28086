//! The one store policy, written once: every server store is this core in
//! front of a thin [`Backend`].
//!
//! The core decides everything that is not about one database:
//!
//! * **Timeouts and metrics.** Every call is bounded by the store's timeout
//!   (waiting for a turn and retries included), timed, and counted and
//!   logged when it fails.
//! * **Decoding.** The backend hands back the stored text; the core decodes
//!   it with the [`RecordCodec`]. Text that does not decode is no session
//!   (logged): an update replaces it, instead of failing every request of
//!   that user with a 503.
//! * **Expiry on read.** An expired record is never returned, whatever the
//!   backend's native expiry does. With `keep_expired: false` it is deleted
//!   when found, conditionally on it being unchanged since the read, so a
//!   session refreshed meanwhile survives; a failed clean-up is only logged.
//! * **Expiry rounding.** A backend that keeps whole seconds says so, and
//!   the core rounds the record's expiry up before writing, so the record a
//!   request gets back is exactly what is stored.
//! * **Atomic updates.** Updates of one session take turns inside this
//!   gateway and are written in groups ([`UpdateTurns`]); each group is
//!   committed by compare-and-set ([`Backend::write_if`]), which only has to
//!   settle races between gateways. The first attempt may skip the read
//!   (see [`Backend::text_is_version`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::codec::RecordCodec;
use super::identity::Identity;
use super::loaded::LoadedRecord;
use super::operation::{Operation, Timers};
use super::record::{Change, Refusal, SessionId, SessionRecord, UnixMillis, now_millis};
use super::turns::{Applied, Lead, Ticket, UpdateTurns};
use super::{Revoked, SessionStore, StoreSettings};
use crate::error::{Error, Result};

/// Compare-and-set rounds per group write. Within one gateway writers take
/// turns, so every lost round means another *gateway* committed in
/// between: 64 covers any realistic fleet writing one session at once, and
/// the store timeout cuts the loop off long before a pathological case runs
/// out.
const MAX_ATTEMPTS: u32 = 64;

/// A session as a backend holds it.
#[derive(Debug)]
pub struct Stored<V> {
    /// The codec's text.
    pub text: Vec<u8>,
    /// The expiry, from the backend's native place; `None` when the entry
    /// has none (then it is not one of ours).
    pub expires_at: Option<UnixMillis>,
    /// What the backend's compare-and-set checks besides the text (a version
    /// attribute), if anything.
    pub version: V,
}

/// What one write puts in the store.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The codec's text.
    pub text: Vec<u8>,
    /// The expiry, already rounded to the backend's precision.
    pub expires_at: UnixMillis,
    /// The identity the session is indexed under, if it has one (and
    /// `session.identity_key` is set).
    pub identity: Option<&'a Identity>,
}

/// What a database must do for the core. Each method is one round trip
/// where the database allows; none applies a timeout or decodes anything.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's compare-and-set token beyond the text, `()` if none.
    type Version: Send + Sync + 'static;

    /// The value of `store.type`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Expiry precision in milliseconds: 1000 for a backend that keeps
    /// whole seconds.
    fn expiry_precision_ms(&self) -> u64 {
        1
    }

    /// The entry under `id` as stored, expired or not.
    async fn read(&self, id: &SessionId) -> Result<Option<Stored<Self::Version>>>;

    /// Writes `text`, expiring at `expires_at`, if the entry is still
    /// `expected` (`None`: still absent). `Ok(false)`: it changed. The
    /// session is indexed under `identity` by the same write.
    async fn write_if(
        &self,
        id: &SessionId,
        expected: Option<&Stored<Self::Version>>,
        entry: Entry<'_>,
    ) -> Result<bool>;

    /// Writes `entry` whatever is there.
    async fn put(&self, id: &SessionId, entry: Entry<'_>) -> Result<()>;

    /// Moves the expiry of a live entry. A missing entry, or one expired at
    /// `now`, stays as it is: a touch never revives a session. An index
    /// that expires with its sessions moves with it.
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        now: UnixMillis,
        identity: Option<&Identity>,
    ) -> Result<()>;

    /// The ids the identity index lists under `identity`: every live
    /// session of it, and perhaps some that are gone or changed hands
    /// (the core checks each before acting on it).
    async fn indexed(&self, identity: &Identity) -> Result<Vec<SessionId>>;

    /// Drops index entries the core found stale. Backends whose index is
    /// a field of the record itself have nothing to do.
    async fn unindex(&self, _identity: &Identity, _ids: &[SessionId]) -> Result<()> {
        Ok(())
    }

    /// Removes the entry; removing a missing one succeeds.
    async fn delete(&self, id: &SessionId) -> Result<()>;

    /// Removes the entry if it is still `expected` (clean-up of an expired
    /// entry that another writer may be refreshing).
    async fn delete_if(&self, id: &SessionId, expected: &Stored<Self::Version>) -> Result<()>;

    /// Checks that the backend answers, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Moves a session to a new id: if `old` is still `expected`, removes it
    /// and writes `text` under `new` (which must not exist). `Ok(false)`:
    /// `old` changed. Atomic where the database allows; otherwise the old
    /// entry goes first, so the new data is never readable under the old id.
    async fn move_if(
        &self,
        old: &SessionId,
        expected: &Stored<Self::Version>,
        new: &SessionId,
        entry: Entry<'_>,
    ) -> Result<bool>;

    /// `Some` when the compare-and-set compares the text alone: then a
    /// record this gateway already holds stands for what is stored, and the
    /// first attempt of an update skips its read.
    fn text_is_version(&self) -> Option<Self::Version> {
        None
    }
}

/// A server store: the shared policy in front of one backend.
pub struct StoreCore<B: Backend> {
    backend: B,
    codec: Arc<dyn RecordCodec>,
    timeout: Duration,
    keep_expired: bool,
    identity_key: Option<String>,
    turns: UpdateTurns,
    timers: Timers,
}

impl<B: Backend> std::fmt::Debug for StoreCore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCore")
            .field("kind", &self.backend.kind())
            .field("timeout", &self.timeout)
            .field("keep_expired", &self.keep_expired)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> StoreCore<B> {
    /// The core in front of `backend`.
    pub fn new(backend: B, settings: &StoreSettings) -> Self {
        Self {
            timers: Timers::new(backend.kind()),
            backend,
            codec: Arc::clone(&settings.codec),
            timeout: settings.timeout,
            keep_expired: settings.keep_expired,
            identity_key: settings.identity_key.clone(),
            turns: UpdateTurns::new(),
        }
    }

    /// The backend, for what only it can answer.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs one operation within the timeout, timed, and logged on failure.
    async fn observe<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let store = self.backend.kind();
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::store_timeout(store, operation.label(), self.timeout)),
        };
        self.timers
            .record(operation, started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            let operation = operation.label();
            metrics::counter!("sessiongate_store_errors_total", "store" => store, "operation" => operation, "kind" => error.label())
                .increment(1);
            tracing::warn!(store, operation, %error, "store operation failed");
        }
        result
    }

    /// The record in `stored`, or `None` (logged) when it is not readable.
    fn decode(&self, stored: &Stored<B::Version>) -> Option<SessionRecord> {
        readable(
            self.backend.kind(),
            self.decode_lazily(stored)?.into_record(),
        )
    }

    /// The record in `stored`, its data left as text where the codec
    /// allows, or `None` (logged) when it is not readable.
    fn decode_lazily(&self, stored: &Stored<B::Version>) -> Option<LoadedRecord> {
        let store = self.backend.kind();
        let Some(expires_at) = stored.expires_at else {
            tracing::warn!(
                store,
                "a session entry has no expiry: treating it as no session"
            );
            return None;
        };
        readable(store, self.codec.decode_lazily(&stored.text, expires_at))
    }

    /// The identity `record` is indexed under.
    fn identity(&self, record: &SessionRecord) -> Option<Identity> {
        Identity::of(&record.data, self.identity_key.as_deref()?)
    }

    /// The live sessions of `identity`, each checked against the record
    /// itself; index entries found stale are dropped.
    async fn verified(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        let candidates = self.backend.indexed(identity).await?;
        let now = now_millis();
        let mut live = Vec::with_capacity(candidates.len());
        let mut stale = Vec::new();
        for id in candidates {
            let record = self.backend.read(&id).await?;
            let current = record
                .as_ref()
                .and_then(|stored| self.decode(stored))
                .filter(|record| !record.is_expired(now));
            match current {
                Some(record) if self.identity(&record).as_ref() == Some(identity) => live.push(id),
                _ => stale.push(id),
            }
        }
        if !stale.is_empty() {
            self.backend.unindex(identity, &stale).await?;
        }
        Ok(live)
    }

    /// The expiry as the backend will keep it.
    fn rounded(&self, expires_at: UnixMillis) -> UnixMillis {
        let precision = self.backend.expiry_precision_ms();
        expires_at.div_ceil(precision).saturating_mul(precision)
    }

    /// Writes the group's last record if the entry is still `expected`.
    /// A group whose every change was refused writes nothing.
    async fn commit(
        &self,
        id: &SessionId,
        expected: Option<&Stored<B::Version>>,
        applied: &Applied,
    ) -> Result<bool> {
        let Some(record) = applied.to_write() else {
            return Ok(true);
        };
        let identity = self.identity(record);
        let entry = Entry {
            text: self.codec.encode(record),
            expires_at: record.expires_at,
            identity: identity.as_ref(),
        };
        self.backend.write_if(id, expected, entry).await
    }

    /// Writes a group of changes: first against the copy this gateway holds
    /// (when the backend allows), then read, apply, compare-and-set, until
    /// one round commits.
    async fn write_group(&self, id: &SessionId, lead: &mut Lead<'_>) -> Result<Applied> {
        let precision = self.backend.expiry_precision_ms();
        if let Some(version) = self.backend.text_is_version()
            && let Some(copy) = lead.take_hint()
        {
            let expected = Stored {
                text: self.codec.encode(&copy),
                expires_at: Some(copy.expires_at),
                version,
            };
            let applied = lead.apply(Some(copy), precision);
            // Refusals judged on a copy are not trusted: only a write's
            // compare-and-set proves the copy was current.
            if applied.to_write().is_some() && self.commit(id, Some(&expected), &applied).await? {
                return Ok(applied);
            }
        }
        for round in 0..MAX_ATTEMPTS {
            let stored = self.backend.read(id).await?;
            let current = stored.as_ref().and_then(|stored| self.decode(stored));
            let applied = lead.apply(current, precision);
            if self.commit(id, stored.as_ref(), &applied).await? {
                return Ok(applied);
            }
            back_off(round).await;
        }
        Err(Error::store_contended(self.backend.kind(), MAX_ATTEMPTS))
    }
}

/// A short, jittered pause between compare-and-set rounds, so that racing
/// gateways spread out.
async fn back_off(round: u32) {
    let mut jitter = [0u8; 1];
    let _ = getrandom::fill(&mut jitter);
    let millis = u64::from(round.min(6)) * 2 + u64::from(jitter[0] % 8);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// The decoded record, or `None` for an unreadable one: treated as no
/// session, and logged.
fn readable<T, E: std::fmt::Display>(
    store: &'static str,
    decoded: std::result::Result<T, E>,
) -> Option<T> {
    decoded
        .inspect_err(
            |error| tracing::debug!(store, %error, "treating an unreadable session as no session"),
        )
        .ok()
}

#[async_trait]
impl<B: Backend> SessionStore for StoreCore<B> {
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let loaded = self.load_lazily(id).await?;
        Ok(loaded.and_then(|loaded| readable(self.backend.kind(), loaded.into_record())))
    }

    async fn load_lazily(&self, id: &SessionId) -> Result<Option<LoadedRecord>> {
        self.observe(Operation::Load, async {
            let Some(stored) = self.backend.read(id).await? else {
                return Ok(None);
            };
            let Some(record) = self.decode_lazily(&stored) else {
                return Ok(None);
            };
            if record.expires_at > now_millis() {
                return Ok(Some(record));
            }
            if !self.keep_expired
                && let Err(error) = self.backend.delete_if(id, &stored).await
            {
                tracing::warn!(store = self.backend.kind(), %error, "could not delete an expired session");
            }
            Ok(None)
        })
        .await
    }

    async fn regenerate(
        &self,
        old: &SessionId,
        new: &SessionId,
        change: &Change,
    ) -> Result<SessionRecord> {
        self.observe(Operation::Regenerate, async {
            for round in 0..MAX_ATTEMPTS {
                let stored = self.backend.read(old).await?;
                let current = stored.as_ref().and_then(|stored| self.decode(stored));
                let mut record = change.apply(current).map_err(Refusal::into_error)?;
                record.expires_at = self.rounded(record.expires_at);
                let identity = self.identity(&record);
                let entry = Entry {
                    text: self.codec.encode(&record),
                    expires_at: record.expires_at,
                    identity: identity.as_ref(),
                };
                let moved = match &stored {
                    Some(stored) => self.backend.move_if(old, stored, new, entry).await?,
                    None => self.backend.write_if(new, None, entry).await?,
                };
                if moved {
                    return Ok(record);
                }
                back_off(round).await;
            }
            Err(Error::store_contended(self.backend.kind(), MAX_ATTEMPTS))
        })
        .await
    }

    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord> {
        self.observe(Operation::Update, async {
            let mut lead = match self.turns.take(id, change).await {
                Ticket::Written(result) => return result,
                Ticket::Lead(lead) => lead,
            };
            let written = self.write_group(id, &mut lead).await;
            lead.finish(written)
        })
        .await
    }

    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<()> {
        self.observe(Operation::Insert, async {
            if record.is_expired(now_millis()) {
                return self.backend.delete(id).await;
            }
            let identity = self.identity(record);
            let entry = Entry {
                text: self.codec.encode(record),
                expires_at: self.rounded(record.expires_at),
                identity: identity.as_ref(),
            };
            self.backend.put(id, entry).await
        })
        .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        identity: Option<&Identity>,
    ) -> Result<()> {
        self.observe(Operation::Touch, async {
            let expires_at = self.rounded(expires_at);
            let identity = identity.filter(|_| self.identity_key.is_some());
            self.backend
                .touch(id, expires_at, now_millis(), identity)
                .await
        })
        .await
    }

    async fn sessions_of(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        self.observe(Operation::SessionsOf, self.verified(identity))
            .await
    }

    async fn revoke(&self, identity: &Identity) -> Revoked {
        let mut revoked = Revoked::default();
        let live = match self
            .observe(Operation::SessionsOf, self.verified(identity))
            .await
        {
            Ok(live) => live,
            Err(error) => {
                revoked.failure = Some(error);
                return revoked;
            }
        };
        for id in &live {
            if let Err(error) = self
                .observe(Operation::Delete, self.backend.delete(id))
                .await
            {
                revoked.failure = Some(error);
                return revoked;
            }
            revoked.deleted += 1;
        }
        if let Err(error) = self.backend.unindex(identity, &live).await {
            tracing::warn!(store = self.backend.kind(), %error, "revoked sessions stay listed in the identity index until they are checked again");
        }
        revoked
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.observe(Operation::Delete, self.backend.delete(id))
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.observe(Operation::Ping, self.backend.ping()).await
    }
}
