//! The session engine: the phases of a request's session, in order.
//!
//! 1. [`Engine::resolve`]: read the cookie, load the session (or start one);
//! 2. [`Engine::prepare_upstream`]: strip forged headers and the session
//!    cookie, write the session into the request;
//! 3. [`Engine::commit`]: take the backend's instructions out of the
//!    response, apply them to the store, and set or clear the cookie, all
//!    before the response head goes to the client.

use std::sync::Arc;

use http::header::{HeaderMap, SET_COOKIE};
use sha2::{Digest, Sha256};

use super::cookies::{self, CookieWriter, IncomingCookie};
use super::keys::Keyring;
use super::protocol::{self, Instructions, InvalidUpdate, SessionHeaders};
use super::sealed::{self, SealError, SealedSession};
use super::{b64, signed_id};
use crate::config::{Config, CookieConfig, Secrets, StoreConfig};
use crate::store::{
    Change, Lifetime, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis, now_millis,
};

/// Where sessions live.
enum Backend {
    /// The whole session sealed in the cookie.
    Sealed { max_chunks: usize },
    /// A server store; the cookie holds a signed id.
    Server(Arc<dyn SessionStore>),
}

/// The session of one request, between resolve and commit.
pub struct Session {
    id: SessionId,
    record: SessionRecord,
    /// No stored session matched the cookie: this one starts now.
    is_new: bool,
    incoming: IncomingCookie,
}

impl Session {
    /// A stable, loggable identifier: a one-way hash of the id, so knowing
    /// it is not enough to use the session.
    pub fn public_id(&self) -> String {
        let digest = Sha256::new_with_prefix(b"sessiongate/public-id/")
            .chain_update(self.id.as_str())
            .finalize();
        b64::encode(&digest[..16])
    }

    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    pub fn is_new(&self) -> bool {
        self.is_new
    }
}

/// Why the session could not be resolved: the request gets 503.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create a session id: {0}")]
    Random(getrandom::Error),
}

/// Why the backend's instructions could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// 502: the backend spoke the protocol wrong.
    #[error(transparent)]
    InvalidUpdate(#[from] InvalidUpdate),
    /// 503: the store failed; the client's cookie is left alone.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: the session outgrew the cookie store's chunks.
    #[error("session too large for the cookie store: {0} bytes sealed, limit {1} cookies")]
    TooLarge(usize, usize),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("cannot create a session id: {0}")]
    Random(getrandom::Error),
}

pub struct Engine {
    keys: Keyring,
    backend: Backend,
    lifetime: Lifetime,
    touch_interval_ms: u64,
    rolling: bool,
    save_uninitialized: bool,
    cookie: CookieConfig,
    headers: SessionHeaders,
}

impl Engine {
    /// `store` is the opened server store, `None` for the cookie store.
    pub fn new(config: &Config, secrets: &Secrets, store: Option<Arc<dyn SessionStore>>) -> Self {
        let backend = match (store, &config.store) {
            (Some(store), _) => Backend::Server(store),
            (None, StoreConfig::Cookie(c)) => Backend::Sealed {
                max_chunks: c.max_chunks,
            },
            (None, _) => Backend::Sealed { max_chunks: 5 },
        };
        let session = &config.session;
        Self {
            keys: Keyring::new(secrets),
            backend,
            lifetime: Lifetime {
                idle: session.ttl.get(),
                absolute: session.absolute_ttl.map(|d| d.get()),
            },
            touch_interval_ms: session.touch_interval.get().as_millis() as u64,
            rolling: session.rolling,
            save_uninitialized: session.save_uninitialized,
            cookie: session.cookie.clone(),
            headers: SessionHeaders::new(&config.headers.fields),
        }
    }

    /// The server store, for readiness checks.
    pub fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        match &self.backend {
            Backend::Server(store) => Some(store),
            Backend::Sealed { .. } => None,
        }
    }

    /// Phase 1: the request's session, from its cookie and the store.
    ///
    /// A cookie that does not verify is a new, empty session. Only a store
    /// failure is an error.
    pub async fn resolve(&self, request: &HeaderMap) -> Result<Session, ResolveError> {
        let incoming = cookies::read(request, &self.cookie.name);
        let now = now_millis();
        let found = match (&self.backend, incoming.value.as_deref()) {
            (_, None) => None,
            (Backend::Sealed { .. }, Some(value)) => {
                sealed::open(&self.keys, &self.cookie.name, value, now).map(|s| (s.id, s.record))
            }
            (Backend::Server(store), Some(value)) => match signed_id::verify(&self.keys, value) {
                Some(id) => store.load(&id).await?.map(|record| (id, record)),
                None => {
                    reject_cookie();
                    None
                }
            },
        };
        if found.is_none()
            && matches!(self.backend, Backend::Sealed { .. })
            && incoming.value.is_some()
        {
            reject_cookie();
        }
        Ok(match found {
            Some((id, record)) => Session {
                id,
                record,
                is_new: false,
                incoming,
            },
            None => Session {
                id: SessionId::generate().map_err(ResolveError::Random)?,
                record: SessionRecord::new(now, &self.lifetime),
                is_new: true,
                incoming,
            },
        })
    }

    /// Phase 2: the request as the backend must see it.
    pub fn prepare_upstream(&self, session: &Session, request: &mut HeaderMap) {
        self.headers.strip_forged(request);
        cookies::strip(request, &self.cookie.name);
        self.headers
            .write(request, &session.public_id(), &session.record.data);
    }

    /// Phases 3 and 4: applies the backend's instructions and sets the
    /// cookie. `secure` says whether the cookie gets the `Secure` attribute.
    ///
    /// On error the instruction headers are already gone from `response`, and
    /// no cookie was set: the caller replaces the response.
    pub async fn commit(
        &self,
        session: Session,
        response: &mut HeaderMap,
        secure: bool,
    ) -> Result<(), CommitError> {
        let instructions = protocol::take_instructions(response)?;
        let writer = CookieWriter {
            config: &self.cookie,
            secure,
        };
        if instructions.destroy {
            return self.destroy(session, response, &writer).await;
        }
        match &self.backend {
            Backend::Sealed { max_chunks } => {
                self.commit_sealed(session, instructions, response, &writer, *max_chunks)
            }
            Backend::Server(store) => {
                self.commit_server(store, session, instructions, response, &writer)
                    .await
            }
        }
    }

    async fn destroy(
        &self,
        session: Session,
        response: &mut HeaderMap,
        writer: &CookieWriter<'_>,
    ) -> Result<(), CommitError> {
        if let Backend::Server(store) = &self.backend
            && !session.is_new
        {
            store.delete(&session.id).await?;
        }
        if !session.is_new {
            metrics::counter!("sessiongate_sessions_destroyed_total").increment(1);
        }
        expire_chunks(
            response,
            writer,
            &self.cookie.name,
            0,
            session.incoming.last_chunk,
        );
        Ok(())
    }

    fn commit_sealed(
        &self,
        session: Session,
        instructions: Instructions,
        response: &mut HeaderMap,
        writer: &CookieWriter<'_>,
        max_chunks: usize,
    ) -> Result<(), CommitError> {
        let now = now_millis();
        let Session {
            mut id,
            mut record,
            is_new,
            incoming,
        } = session;
        let modified = instructions.update.is_some() || instructions.regenerate;
        let write = if modified {
            let change = Change {
                patch: instructions.update,
                now,
                lifetime: self.lifetime,
                seen: None,
            };
            record = change.apply(Some(record));
            true
        } else if is_new {
            self.save_uninitialized
        } else if self.rolling || self.needs_touch(&record, now) {
            record.expires_at = self.lifetime.expires_at(record.created_at, now);
            true
        } else {
            false
        };
        if !write {
            if is_new && incoming.is_present() {
                // Whatever the client holds did not open: let it go.
                expire_chunks(response, writer, &self.cookie.name, 0, incoming.last_chunk);
            }
            return Ok(());
        }
        if instructions.regenerate {
            id = SessionId::generate().map_err(CommitError::Random)?;
        }
        let value = sealed::seal(
            &self.keys,
            &self.cookie.name,
            &SealedSession {
                id,
                record: record.clone(),
            },
        )?;
        let chunks = cookies::split(&value, max_chunks)
            .ok_or(CommitError::TooLarge(value.len(), max_chunks))?;
        let max_age = max_age_secs(&record, now);
        for (index, chunk) in chunks.iter().enumerate() {
            if let Some(header) = writer.set(
                &cookies::chunk_name(&self.cookie.name, index),
                chunk,
                max_age,
            ) {
                response.append(SET_COOKIE, header);
            }
        }
        expire_chunks(
            response,
            writer,
            &self.cookie.name,
            chunks.len(),
            incoming.last_chunk,
        );
        if is_new {
            metrics::counter!("sessiongate_sessions_created_total").increment(1);
        }
        Ok(())
    }

    async fn commit_server(
        &self,
        store: &Arc<dyn SessionStore>,
        session: Session,
        instructions: Instructions,
        response: &mut HeaderMap,
        writer: &CookieWriter<'_>,
    ) -> Result<(), CommitError> {
        let now = now_millis();
        let Session {
            mut id,
            record,
            is_new,
            incoming,
        } = session;
        let modified = instructions.update.is_some() || instructions.regenerate;
        let record = if modified || (is_new && self.save_uninitialized) {
            let change = Change {
                patch: instructions.update,
                now,
                lifetime: self.lifetime,
                seen: (!is_new).then_some(record),
            };
            let record = store.update(&id, &change).await?;
            if instructions.regenerate {
                let new_id = SessionId::generate().map_err(CommitError::Random)?;
                store.insert(&new_id, &record).await?;
                store.delete(&id).await?;
                id = new_id;
            }
            if is_new {
                metrics::counter!("sessiongate_sessions_created_total").increment(1);
            }
            record
        } else if is_new {
            if incoming.is_present() {
                expire_chunks(response, writer, &self.cookie.name, 0, incoming.last_chunk);
            }
            return Ok(());
        } else if self.needs_touch(&record, now) {
            let expires_at = self.lifetime.expires_at(record.created_at, now);
            store.touch(&id, expires_at).await?;
            SessionRecord {
                expires_at,
                ..record
            }
        } else if self.rolling {
            record
        } else {
            return Ok(());
        };
        let value = signed_id::sign(&self.keys, &id);
        if let Some(header) = writer.set(&self.cookie.name, &value, max_age_secs(&record, now)) {
            response.append(SET_COOKIE, header);
        }
        expire_chunks(response, writer, &self.cookie.name, 1, incoming.last_chunk);
        Ok(())
    }

    /// An unmodified session's expiry moves at most once per
    /// `touch_interval`: only when it would move by at least that much.
    fn needs_touch(&self, record: &SessionRecord, now: UnixMillis) -> bool {
        let refreshed = self.lifetime.expires_at(record.created_at, now);
        refreshed >= record.expires_at.saturating_add(self.touch_interval_ms)
            && refreshed > record.expires_at
    }
}

fn reject_cookie() {
    metrics::counter!("sessiongate_sessions_rejected_total").increment(1);
}

/// Seconds the cookie should live: the session's remaining lifetime,
/// rounded up so the cookie never dies before the session.
fn max_age_secs(record: &SessionRecord, now: UnixMillis) -> u64 {
    record.remaining_millis(now).div_ceil(1000)
}

/// Expires chunks `from..=last` of the session cookie (`from` 0 is the main
/// cookie itself).
fn expire_chunks(
    response: &mut HeaderMap,
    writer: &CookieWriter<'_>,
    name: &str,
    from: usize,
    last: usize,
) {
    let has_main = from == 0;
    let range = if has_main { 0..=last } else { from..=last };
    if !has_main && from > last {
        return;
    }
    for index in range {
        if let Some(header) = writer.expire(&cookies::chunk_name(name, index)) {
            response.append(SET_COOKIE, header);
        }
    }
}
