//! The in-process store: for development and tests only. Sessions vanish
//! with the process and are not shared between gateways.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis, now_millis};

/// How often expired sessions are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub struct MemoryStore {
    sessions: Arc<Mutex<HashMap<SessionId, SessionRecord>>>,
    max_sessions: usize,
    keep_expired: bool,
}

impl MemoryStore {
    /// A store holding at most `max_sessions` sessions. Must be called inside
    /// a Tokio runtime: it starts the sweeper.
    pub fn new(max_sessions: usize, keep_expired: bool) -> Self {
        let sessions = Arc::new(Mutex::new(HashMap::new()));
        spawn_sweeper(Arc::downgrade(&sessions));
        Self {
            sessions,
            max_sessions,
            keep_expired,
        }
    }

    /// Makes room for one more session, or says the store is full.
    fn ensure_room(
        &self,
        sessions: &mut HashMap<SessionId, SessionRecord>,
        id: &SessionId,
    ) -> Result<(), StoreError> {
        if sessions.len() < self.max_sessions || sessions.contains_key(id) {
            return Ok(());
        }
        let now = now_millis();
        sessions.retain(|_, record| !record.is_expired(now));
        if sessions.len() < self.max_sessions {
            Ok(())
        } else {
            Err(StoreError::Full(format!(
                "memory store holds its max_sessions ({})",
                self.max_sessions
            )))
        }
    }
}

fn spawn_sweeper(sessions: Weak<Mutex<HashMap<SessionId, SessionRecord>>>) {
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
                .await
                .retain(|_, record| !record.is_expired(now));
        }
    });
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let mut sessions = self.sessions.lock().await;
        match sessions.get(id) {
            Some(record) if record.is_expired(now_millis()) => {
                if !self.keep_expired {
                    sessions.remove(id);
                }
                Ok(None)
            }
            found => Ok(found.cloned()),
        }
    }

    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, StoreError> {
        let mut sessions = self.sessions.lock().await;
        self.ensure_room(&mut sessions, id)?;
        let record = change.apply(sessions.remove(id));
        sessions.insert(id.clone(), record.clone());
        Ok(record)
    }

    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let mut sessions = self.sessions.lock().await;
        self.ensure_room(&mut sessions, id)?;
        sessions.insert(id.clone(), record.clone());
        Ok(())
    }

    async fn touch(&self, id: &SessionId, expires_at: UnixMillis) -> Result<(), StoreError> {
        if let Some(record) = self.sessions.lock().await.get_mut(id) {
            record.expires_at = expires_at;
        }
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.sessions.lock().await.remove(id);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
