//! Local turn-taking for updates of one session.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

use super::{SessionId, SessionRecord};

/// Lock stripes: bounded memory, no clean-up.
const UPDATE_STRIPES: usize = 1024;

/// The last record this gateway wrote in a stripe, and under which id.
type LastWrite = Option<(SessionId, SessionRecord)>;

/// Makes concurrent updates of one session from this gateway wait for each
/// other instead of racing.
///
/// Compare-and-set alone stays correct, but with n writers on one session
/// it costs O(n²) round trips (every round, all but one lose and read
/// again), which does not fit in a 2 s timeout for a burst of 40. Taking
/// turns locally leaves the compare-and-set to settle races between
/// gateways only. Stripes keep memory bounded with no clean-up; two sessions
/// sharing a stripe only wait for each other's single round trip.
///
/// Each stripe also remembers the last record written through it, so that
/// the next writer in line can try its compare-and-set against that record
/// instead of reading the session again.
pub struct UpdateTurns {
    stripes: Box<[Mutex<LastWrite>]>,
    hasher: RandomState,
}

/// One writer's turn; it ends when this is dropped.
pub struct Turn<'a> {
    last: MutexGuard<'a, LastWrite>,
}

impl Turn<'_> {
    /// The record this gateway last wrote for `id`, if it was the last
    /// write through this stripe. A hint only: another gateway may have
    /// written since, which the store's compare-and-set detects.
    pub fn last_written(&self, id: &SessionId) -> Option<&SessionRecord> {
        self.last
            .as_ref()
            .filter(|(last_id, _)| last_id == id)
            .map(|(_, record)| record)
    }

    /// Remembers what this turn wrote for the next writer in line.
    pub fn wrote(&mut self, id: &SessionId, record: &SessionRecord) {
        *self.last = Some((id.clone(), record.clone()));
    }
}

impl Default for UpdateTurns {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateTurns {
    pub fn new() -> Self {
        Self {
            stripes: (0..UPDATE_STRIPES).map(|_| Mutex::new(None)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits for this session's turn.
    pub async fn take(&self, id: &SessionId) -> Turn<'_> {
        let stripe = self.hasher.hash_one(id.as_str()) as usize % self.stripes.len();
        Turn {
            last: self.stripes[stripe].lock().await,
        }
    }
}
