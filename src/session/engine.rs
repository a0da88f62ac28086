//! The session engine: the phases of a request's session, in order.
//!
//! 1. [`Engine::resolve`]: read the cookie, load the session (or start one);
//! 2. [`Engine::prepare_upstream`]: strip forged headers and the session
//!    cookie, write the session into the request;
//! 3. [`Engine::commit`]: take the backend's instructions out of the
//!    response, decide what they mean ([`decide`]), apply them to the
//!    store, and set or clear the cookie, all before the response head goes
//!    to the client.

use http::header::{HeaderMap, SET_COOKIE};
use serde_json::{Map, Value};

use super::compat::CookieCodec;
use super::cookies::{self, CookieWriter, IncomingCookie};
use super::decision::{Facts, Outcome, decide};
use super::keys::Keyring;
use super::protocol::{self, Instructions, SessionHeaders};
use super::response::{expire_chunks, keep_out_of_shared_caches, max_age_secs};
use crate::config::{Config, CookieConfig, Secrets, Secure};
use crate::error::{Error, Result};
use crate::store::merge_patch;
use crate::store::{
    Change, Identity, IdentityValue, Lifetime, LoadedRecord, Refusal, SessionData, SessionId,
    SessionRecord, Sessions, UnixMillis, now_millis,
};

/// The session of one request, between resolve and commit.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    /// As loaded: from the cookie or a store, the data stays text until a
    /// field is read or the session changes.
    record: LoadedRecord,
    /// No stored session matched the cookie: this one starts now.
    is_new: bool,
    incoming: IncomingCookie,
}

impl Session {
    /// A stable, loggable identifier: a one-way hash of the id, so knowing
    /// it is not enough to use the session.
    pub fn public_id(&self) -> &str {
        self.id.public_id()
    }

    /// The session's data, parsed on first use.
    ///
    /// # Errors
    ///
    /// An internal error when stored data does not parse.
    pub fn data(&self) -> Result<&SessionData> {
        self.record.data()
    }

    /// No stored session matched the cookie.
    pub fn is_new(&self) -> bool {
        self.is_new
    }
}

/// Sessions for every request: the keys, the store, and the rules.
pub struct Engine {
    keys: Keyring,
    sessions: Sessions,
    lifetime: Lifetime,
    touch_interval_ms: u64,
    rolling: bool,
    save_uninitialized: bool,
    max_bytes: usize,
    cookie: CookieConfig,
    headers: SessionHeaders,
    identity_key: Option<String>,
    regenerate_on_identity_change: bool,
    /// `session.compat`'s cookie format.
    codec: CookieCodec,
    /// Session keys the Node library owns (`session.compat`).
    reserved: &'static [&'static str],
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sessions", &self.sessions)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine over `sessions`, opened from the same configuration.
    pub fn new(config: &Config, secrets: &Secrets, sessions: Sessions) -> Self {
        let session = &config.session;
        Self {
            keys: Keyring::new(secrets),
            sessions,
            lifetime: Lifetime {
                idle: session.ttl.get(),
                absolute: session.absolute_ttl.map(|d| d.get()),
            },
            touch_interval_ms: session.touch_interval.get().as_millis() as u64,
            rolling: session.rolling,
            save_uninitialized: session.save_uninitialized,
            max_bytes: session.max_bytes,
            cookie: session.cookie.clone(),
            headers: SessionHeaders::new(&config.headers.fields),
            identity_key: session.identity_key.clone(),
            regenerate_on_identity_change: session.regenerate_on_identity_change,
            codec: CookieCodec::new(session.compat, secrets),
            reserved: crate::store::codec::express::for_config(config)
                .map_or(&[], |codec| codec.reserved()),
        }
    }

    /// Where sessions live.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Phase 1: the request's session, from its cookie and the store.
    ///
    /// A cookie that does not verify is a new, empty session. Only a store
    /// failure is an error.
    pub async fn resolve(&self, request: &HeaderMap) -> Result<Session> {
        let incoming = cookies::read(request, &self.cookie.name);
        let now = now_millis();
        let found = match incoming.value.as_deref() {
            None => None,
            Some(value) => self.open(value, now).await?,
        };
        Ok(match found {
            Some((id, record)) => Session {
                id,
                record,
                is_new: false,
                incoming,
            },
            None => Session {
                id: self.codec.new_id()?,
                record: LoadedRecord::parsed(SessionRecord::new(now, &self.lifetime)),
                is_new: true,
                incoming,
            },
        })
    }

    /// The session a cookie value opens, if any.
    async fn open(
        &self,
        value: &str,
        now: UnixMillis,
    ) -> Result<Option<(SessionId, LoadedRecord)>> {
        let found = match &self.sessions {
            Sessions::Sealed { .. } => {
                self.codec
                    .open_sealed(&self.keys, &self.cookie.name, value, now)
            }
            Sessions::Server(store) => match self.codec.verify_id(&self.keys, value) {
                Some(id) => {
                    return Ok(store.load_lazily(&id).await?.map(|record| (id, record)));
                }
                None => None,
            },
        };
        if found.is_none() {
            reject_cookie();
        }
        Ok(found)
    }

    /// The session holds an identity (`session.identity_key` set to a
    /// non-empty string or a number, see [`IdentityValue`]): someone
    /// signed in.
    pub fn has_identity(&self, session: &Session) -> bool {
        let Some(key) = &self.identity_key else {
            return false;
        };
        // Data that does not parse holds nobody: a required route refuses.
        let value = session.record.data().ok().and_then(|data| data.get(key));
        matches!(IdentityValue::of(value), IdentityValue::Text(_))
    }

    /// Phase 2: the request as the backend must see it. Without a session
    /// (a `session: off` route) the client's session headers and the
    /// session cookie are still taken out.
    pub fn prepare_upstream(
        &self,
        session: Option<&Session>,
        request: &mut HeaderMap,
    ) -> Result<()> {
        self.headers.strip_forged(request);
        cookies::strip(request, &self.cookie.name);
        match session {
            Some(session) => self
                .headers
                .write(request, session.public_id(), &session.record),
            None => Ok(()),
        }
    }

    /// Phase 4 without a session (a `session: off` route): instructions
    /// the backend sent anyway never reach the client, and are not obeyed.
    pub fn discard_instructions(&self, response: &mut HeaderMap) {
        if protocol::remove_instructions(response) {
            tracing::debug!(
                "the backend sent session instructions on a route with session: off; ignored"
            );
        }
    }

    /// Phases 3 and 4: applies the backend's instructions and sets the
    /// cookie. `https` says whether the client reached us over TLS.
    ///
    /// On error the instruction headers are already gone from `response`, and
    /// no cookie was set: the caller replaces the response.
    pub async fn commit(
        &self,
        mut session: Session,
        response: &mut HeaderMap,
        https: bool,
    ) -> Result<()> {
        let instructions = protocol::take_instructions(response)?;
        let writer = CookieWriter {
            config: &self.cookie,
            secure: match self.cookie.secure {
                Secure::Always => true,
                Secure::Never => false,
                Secure::Auto => https,
            },
        };
        if instructions.destroy {
            return self.destroy(session, response, &writer).await;
        }
        let now = now_millis();
        let outcome = decide(Facts {
            modified: !instructions.updates.is_empty() || instructions.regenerate,
            is_new: session.is_new,
            cookie_present: session.incoming.is_present(),
            save_uninitialized: self.save_uninitialized,
            rolling: self.rolling,
            needs_touch: self.needs_touch(
                session.record.created_at,
                session.record.expires_at,
                now,
            ),
        });
        let sent = std::mem::take(&mut session.incoming.chunks);
        let (id, record) = match outcome {
            Outcome::Nothing => return Ok(()),
            Outcome::Clear => {
                expire_chunks(response, &writer, &self.cookie.name, 0, &sent);
                return Ok(());
            }
            Outcome::Write => match self.write(session, instructions, now).await? {
                Some(written) => written,
                None => return Ok(()),
            },
            Outcome::Touch => match self.touch(session, now).await {
                Ok(touched) => touched,
                // The backend has already acted (a POST may not be safe to
                // repeat): a missed refresh only shortens the session, so
                // the response stands, without a new cookie.
                Err(error) => {
                    tracing::warn!(%error, "could not refresh a session's expiry; the response goes out without a new cookie");
                    metrics::counter!("sessiongate_session_touch_failures_total").increment(1);
                    return Ok(());
                }
            },
            Outcome::Resend => (session.id, session.record.into_record()?),
        };
        self.set_cookie(response, &writer, &id, record, &sent, now)
    }

    async fn destroy(
        &self,
        session: Session,
        response: &mut HeaderMap,
        writer: &CookieWriter<'_>,
    ) -> Result<()> {
        if !session.is_new {
            if let Sessions::Server(store) = &self.sessions {
                store.delete(&session.id).await?;
            }
            metrics::counter!("sessiongate_sessions_destroyed_total").increment(1);
        }
        expire_chunks(
            response,
            writer,
            &self.cookie.name,
            0,
            &session.incoming.chunks,
        );
        Ok(())
    }

    /// Applies the backend's update (and new id) to the session. `None`
    /// when the session the request loaded is gone meanwhile (destroyed or
    /// moved by another request): the update is dropped, logged and
    /// counted, and the response sets no cookie for the old id.
    async fn write(
        &self,
        session: Session,
        instructions: Instructions,
        now: UnixMillis,
    ) -> Result<Option<(SessionId, SessionRecord)>> {
        let Session {
            id, record, is_new, ..
        } = session;
        let record = record.into_record()?;
        self.codec
            .check_updates(self.reserved, &instructions.updates)?;
        let signs_in = self.signs_in(&record, &instructions.updates)?;
        let change = Change {
            patches: instructions.updates,
            now,
            lifetime: self.lifetime,
            seen: (!is_new).then_some(record.clone()),
            must_exist: !is_new,
            max_bytes: self.max_bytes,
        };
        let new_id = if instructions.regenerate || (signs_in && !is_new) {
            Some(self.codec.new_id()?)
        } else {
            None
        };
        let written = match (&self.sessions, &new_id) {
            (Sessions::Sealed { .. }, _) => change.apply(Some(record)).map_err(Refusal::into_error),
            (Sessions::Server(store), None) => store.update(&id, &change).await,
            (Sessions::Server(store), Some(new_id)) => store.regenerate(&id, new_id, &change).await,
        };
        match written {
            Ok(record) => {
                if is_new {
                    metrics::counter!("sessiongate_sessions_created_total").increment(1);
                }
                Ok(Some((new_id.unwrap_or(id), record)))
            }
            Err(error) if error.is_session_gone() => {
                tracing::warn!(session = %id.public_id(), "an update arrived for a session that was destroyed or moved meanwhile: it was not applied");
                metrics::counter!("sessiongate_session_updates_dropped_total").increment(1);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Whether `patches` give the session a new identity (absent to
    /// present included; removing it does not count): then, with
    /// `session.regenerate_on_identity_change`, the session moves to a new
    /// id, so an id known before the sign-in is worthless (session
    /// fixation). An identity that is not a string or a number is refused.
    fn signs_in(&self, record: &SessionRecord, patches: &[Map<String, Value>]) -> Result<bool> {
        let Some(key) = self.identity_key.as_deref() else {
            return Ok(false);
        };
        if !patches.iter().any(|patch| patch.contains_key(key)) {
            return Ok(false);
        }
        // The merge patches applied to the identity alone.
        let mut identity = Map::new();
        if let Some(before) = record.data.get(key) {
            identity.insert(key.to_owned(), before.clone());
        }
        for patch in patches {
            if let Some(value) = patch.get(key) {
                let mut only = Map::new();
                only.insert(key.to_owned(), value.clone());
                merge_patch::apply_object(&mut identity, &only);
            }
        }
        let before = IdentityValue::of(record.data.get(key));
        match IdentityValue::of(identity.get(key)) {
            IdentityValue::Invalid => Err(Error::invalid_update(format!(
                "session.identity_key `{key}` must be a string or a number (or null to sign out)"
            ))),
            IdentityValue::Absent => Ok(false),
            after => Ok(self.regenerate_on_identity_change && after != before),
        }
    }

    /// Moves an unmodified session's expiry.
    async fn touch(&self, session: Session, now: UnixMillis) -> Result<(SessionId, SessionRecord)> {
        let Session { id, record, .. } = session;
        let mut record = record.into_record()?;
        record.expires_at = self.lifetime.expires_at(record.created_at, now);
        if let Sessions::Server(store) = &self.sessions {
            let identity = self
                .identity_key
                .as_deref()
                .and_then(|key| Identity::of(&record.data, key));
            store
                .touch(&id, record.expires_at, identity.as_ref())
                .await?;
        }
        Ok((id, record))
    }

    /// Sets the session cookie (all its chunks, for the cookie store) and
    /// expires chunks the client holds beyond them.
    fn set_cookie(
        &self,
        response: &mut HeaderMap,
        writer: &CookieWriter<'_>,
        id: &SessionId,
        record: SessionRecord,
        sent: &[usize],
        now: UnixMillis,
    ) -> Result<()> {
        let max_age = max_age_secs(&record, now);
        let name = &self.cookie.name;
        let written = match &self.sessions {
            Sessions::Sealed { max_chunks } => {
                let value = self.codec.seal(&self.keys, name, id, record)?;
                let max_chunks = self.codec.max_chunks(*max_chunks);
                let chunks = cookies::split(&value, max_chunks).ok_or_else(|| {
                    Error::too_large(format!(
                        "session too large for the cookie store: {} bytes sealed, limit {max_chunks} cookies",
                        value.len()
                    ))
                })?;
                for (index, chunk) in chunks.iter().enumerate() {
                    if let Some(header) =
                        writer.set(&cookies::chunk_name(name, index), chunk, max_age)
                    {
                        response.append(SET_COOKIE, header);
                    }
                }
                chunks.len()
            }
            Sessions::Server(_) => {
                let value = self.codec.sign(&self.keys, id);
                if let Some(header) = writer.set(name, &value, max_age) {
                    response.append(SET_COOKIE, header);
                }
                1
            }
        };
        expire_chunks(response, writer, name, written, sent);
        keep_out_of_shared_caches(response);
        Ok(())
    }

    /// An unmodified session's expiry moves at most once per
    /// `touch_interval`: only when it would move by at least that much.
    fn needs_touch(&self, created_at: UnixMillis, expires_at: UnixMillis, now: UnixMillis) -> bool {
        let refreshed = self.lifetime.expires_at(created_at, now);
        refreshed >= expires_at.saturating_add(self.touch_interval_ms) && refreshed > expires_at
    }
}

fn reject_cookie() {
    metrics::counter!("sessiongate_sessions_rejected_total").increment(1);
}
