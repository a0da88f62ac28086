//! The session record and what changes it: the types every store and the
//! session engine share, with the expiry rules in one place.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;

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
/// carries it with a MAC, and `X-Session-Id` carries a one-way derivation,
/// its public id, derived at most once per id (or carried in the cookie
/// store's seal).
#[derive(Clone)]
pub struct SessionId {
    id: String,
    public: OnceLock<String>,
}

impl SessionId {
    /// A fresh id: 256 bits from the OS CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::internal(format!("cannot create a session id: {e}")))?;
        Ok(Self::from_trusted(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps an id that has already been authenticated (MAC checked) or that
    /// a store handed back.
    pub fn from_trusted(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            public: OnceLock::new(),
        }
    }

    /// As [`SessionId::from_trusted`], with its public id as a seal
    /// carried it (authenticated with the id).
    pub fn with_public_id(id: String, public_id: String) -> Self {
        Self {
            id,
            public: OnceLock::from(public_id),
        }
    }

    /// The whole id, for store keys and MACs: never for logs.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The public id (`X-Session-Id`, logs): the first 16 bytes of
    /// SHA-256 of `sessiongate/public-id/` and the id, base64url. Stable
    /// for the session; knowing it is not enough to use the session.
    pub fn public_id(&self) -> &str {
        self.public.get_or_init(|| {
            let digest = Sha256::new_with_prefix(b"sessiongate/public-id/")
                .chain_update(&self.id)
                .finalize();
            URL_SAFE_NO_PAD.encode(&digest[..16])
        })
    }
}

/// The same id is the same session, whether or not its public id has been
/// derived yet.
impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SessionId {}

/// Ids are secrets: never print them whole.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.id.chars().take(6).collect();
        write!(f, "SessionId({shown}…)")
    }
}

/// One stored session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// What the backend sees in `X-Session-Data` and changes with
    /// `X-Session-Update`.
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

    /// Dead at `now`, whatever the backend still holds: no store returns it.
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
    /// RFC 7396 merge patches (JSON objects), applied in order; none keeps
    /// the data.
    pub patches: Vec<Map<String, Value>>,
    /// The request's time: the new expiry counts from it, and a session the
    /// change starts is created at it.
    pub now: UnixMillis,
    /// The configured lifetimes, which set the new `expires_at`.
    pub lifetime: Lifetime,
    /// The record as this request loaded it, if it did: a hint that lets a
    /// compare-and-set store try its write without reading first. Never
    /// trusted: the store's own check decides whether it is still current.
    pub seen: Option<SessionRecord>,
    /// The request loaded this session: if it is gone by the time the
    /// change is written (destroyed, moved to a new id, expired), the change
    /// does not bring it back.
    pub must_exist: bool,
    /// `session.max_bytes`: the data's JSON may not grow past it.
    pub max_bytes: usize,
}

/// Why a change was not applied; the session stays as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The session the request loaded no longer exists.
    Gone,
    /// The data would grow past `session.max_bytes`.
    TooLarge {
        /// The data's size after the change.
        bytes: usize,
        /// The bound.
        limit: usize,
    },
}

impl Refusal {
    /// The error the writer gets.
    pub fn into_error(self) -> Error {
        match self {
            Refusal::Gone => Error::session_gone(),
            Refusal::TooLarge { bytes, limit } => Error::invalid_update(format!(
                "the update would grow the session to {bytes} bytes of JSON, past session.max_bytes ({limit}); the session is unchanged"
            )),
        }
    }
}

impl Change {
    /// The record after this change. `current` is what the store holds now;
    /// `None` (or an expired record) means the change starts a new session,
    /// unless it [`must_exist`](Self::must_exist).
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when the change must not be applied.
    pub fn apply(&self, current: Option<SessionRecord>) -> Result<SessionRecord, Refusal> {
        let mut record = match current {
            Some(record) if !record.is_expired(self.now) => record,
            _ if self.must_exist => return Err(Refusal::Gone),
            _ => SessionRecord::new(self.now, &self.lifetime),
        };
        if !self.patches.is_empty() {
            for patch in &self.patches {
                super::merge_patch::apply_object(&mut record.data, patch);
            }
            let bytes = json_len(&record.data);
            if bytes > self.max_bytes {
                return Err(Refusal::TooLarge {
                    bytes,
                    limit: self.max_bytes,
                });
            }
        }
        record.expires_at = self.lifetime.expires_at(record.created_at, self.now);
        Ok(record)
    }

    /// A copy without the `seen` hint, for a change that waits in a queue:
    /// by the time it is written, what its request loaded is stale.
    pub fn without_seen(&self) -> Self {
        Self {
            patches: self.patches.clone(),
            now: self.now,
            lifetime: self.lifetime,
            seen: None,
            must_exist: self.must_exist,
            max_bytes: self.max_bytes,
        }
    }
}

/// The length of `data` as JSON, counted without building the text.
fn json_len(data: &SessionData) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, data) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Epoch seconds for a store that keeps expiry in whole seconds (MySQL's
/// `expires` column, DynamoDB's TTL attribute), rounded up so that a
/// session never dies early.
pub fn expiry_seconds(expires_at: UnixMillis) -> u64 {
    expires_at.div_ceil(1_000)
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
            patches: vec![patch],
            now: 20,
            lifetime,
            must_exist: false,
            max_bytes: 1_000,
        };
        let record = change.apply(Some(old.clone())).unwrap();
        assert_eq!(Value::Object(record.data), serde_json::json!({"b": 2}));
        assert_eq!(record.created_at, 20);
        let loaded = Change {
            must_exist: true,
            ..change
        };
        assert_eq!(loaded.apply(Some(old)), Err(Refusal::Gone));
        assert_eq!(loaded.apply(None), Err(Refusal::Gone));
    }

    #[test]
    fn a_change_past_max_bytes_is_refused() {
        let change = Change {
            seen: None,
            patches: vec![serde_json::from_str(r#"{"big":"0123456789"}"#).unwrap()],
            now: 0,
            lifetime: Lifetime {
                idle: MIN,
                absolute: None,
            },
            must_exist: false,
            max_bytes: 16,
        };
        assert_eq!(
            change.apply(None),
            Err(Refusal::TooLarge {
                bytes: 20,
                limit: 16
            })
        );
        let small = Change {
            max_bytes: 20,
            ..change
        };
        assert!(small.apply(None).is_ok());
    }

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        assert_eq!(expiry_seconds(1_000), 1);
        assert_eq!(expiry_seconds(1_001), 2);
        assert_eq!(expiry_seconds(0), 0);
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
