//! The in-process store: for development and tests only. Sessions vanish
//! with the process and are not shared between gateways.
//!
//! It keeps the codec's text, as the server stores do, so that it behaves
//! like them down to JSON fidelity, and it goes through the same core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::StoreSettings;
use super::core::{Backend, Entry as Write, StoreCore, Stored};
use super::identity::Identity;
use super::record::{SessionId, UnixMillis, now_millis};
use crate::config::MemoryStoreConfig;
use crate::error::{Error, Result};

/// The memory store's timeout: it never waits on a network, only on turns.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// How often expired sessions are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The memory store: the core in front of a map.
pub type MemoryStore = StoreCore<MemoryBackend>;

impl MemoryStore {
    /// A store holding at most `max_sessions` sessions. Must be called
    /// inside a Tokio runtime: it starts the sweeper.
    pub fn open(config: &MemoryStoreConfig, settings: &StoreSettings) -> Self {
        StoreCore::new(MemoryBackend::new(config.max_sessions), settings)
    }
}

/// One entry: the text, its expiry, a version for compare-and-set, and
/// the identity it is indexed under (the index is a scan of the entries:
/// it cannot disagree with them, and there is nothing to keep in step).
#[derive(Debug)]
struct Entry {
    text: Vec<u8>,
    expires_at: UnixMillis,
    version: u64,
    identity: Option<Identity>,
}

/// Keyed by the id's text: a `SessionId` also caches its public id.
type Map = HashMap<String, Entry>;

/// A map of sessions behind a lock that is never held across an await.
#[derive(Debug)]
pub struct MemoryBackend {
    sessions: Arc<Mutex<Map>>,
    max_sessions: usize,
}

impl MemoryBackend {
    fn new(max_sessions: usize) -> Self {
        let sessions = Arc::new(Mutex::new(HashMap::new()));
        spawn_sweeper(Arc::downgrade(&sessions));
        Self {
            sessions,
            max_sessions,
        }
    }

    /// A poisoned lock only means a panic elsewhere: the map itself is
    /// always consistent.
    fn lock(&self) -> MutexGuard<'_, Map> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for one more session, or says the store is full.
    fn ensure_room(&self, sessions: &mut Map, id: &SessionId) -> Result<()> {
        if sessions.len() < self.max_sessions || sessions.contains_key(id.as_str()) {
            return Ok(());
        }
        let now = now_millis();
        sessions.retain(|_, entry| entry.expires_at > now);
        if sessions.len() < self.max_sessions {
            Ok(())
        } else {
            Err(Error::store_full(
                "memory",
                format!("holds its max_sessions ({})", self.max_sessions),
            ))
        }
    }

    fn store(&self, sessions: &mut Map, id: &SessionId, write: Write<'_>) {
        let version = sessions.get(id.as_str()).map_or(0, |entry| entry.version) + 1;
        sessions.insert(
            id.as_str().to_owned(),
            Entry {
                text: write.text,
                expires_at: write.expires_at,
                version,
                identity: write.identity.cloned(),
            },
        );
    }
}

fn spawn_sweeper(sessions: Weak<Mutex<Map>>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        loop {
            ticks.tick().await;
            let Some(sessions) = sessions.upgrade() else {
                return;
            };
            let now = now_millis();
            sessions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .retain(|_, entry| entry.expires_at > now);
        }
    });
}

#[async_trait]
impl Backend for MemoryBackend {
    type Version = u64;

    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Stored<u64>>> {
        Ok(self.lock().get(id.as_str()).map(|entry| Stored {
            text: entry.text.clone(),
            expires_at: Some(entry.expires_at),
            version: entry.version,
        }))
    }

    async fn write_if(
        &self,
        id: &SessionId,
        expected: Option<&Stored<u64>>,
        write: Write<'_>,
    ) -> Result<bool> {
        let mut sessions = self.lock();
        let current = sessions.get(id.as_str()).map(|entry| entry.version);
        if current != expected.map(|stored| stored.version) {
            return Ok(false);
        }
        self.ensure_room(&mut sessions, id)?;
        self.store(&mut sessions, id, write);
        Ok(true)
    }

    async fn put(&self, id: &SessionId, write: Write<'_>) -> Result<()> {
        let mut sessions = self.lock();
        self.ensure_room(&mut sessions, id)?;
        self.store(&mut sessions, id, write);
        Ok(())
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        now: UnixMillis,
        _identity: Option<&Identity>,
    ) -> Result<()> {
        if let Some(entry) = self.lock().get_mut(id.as_str())
            && entry.expires_at > now
        {
            entry.expires_at = expires_at;
        }
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.lock().remove(id.as_str());
        Ok(())
    }

    async fn delete_if(&self, id: &SessionId, expected: &Stored<u64>) -> Result<()> {
        let mut sessions = self.lock();
        if sessions.get(id.as_str()).map(|entry| entry.version) == Some(expected.version) {
            sessions.remove(id.as_str());
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn indexed(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, entry)| entry.identity.as_ref() == Some(identity))
            .map(|(id, _)| SessionId::from_trusted(id.as_str()))
            .collect())
    }

    /// Under the one lock: atomic.
    async fn move_if(
        &self,
        old: &SessionId,
        expected: &Stored<u64>,
        new: &SessionId,
        write: Write<'_>,
    ) -> Result<bool> {
        let mut sessions = self.lock();
        let unchanged =
            sessions.get(old.as_str()).map(|entry| entry.version) == Some(expected.version);
        if !unchanged || sessions.contains_key(new.as_str()) {
            return Ok(false);
        }
        sessions.remove(old.as_str());
        self.store(&mut sessions, new, write);
        Ok(true)
    }
}
