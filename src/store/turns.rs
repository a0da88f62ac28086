//! Local turn-taking for updates of one session.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

use super::SessionId;

/// Lock stripes: bounded memory, no clean-up.
const UPDATE_STRIPES: usize = 1024;

/// Makes concurrent updates of one session from this gateway wait for each
/// other instead of racing.
///
/// Compare-and-set alone stays correct, but with n writers on one session
/// it costs O(n²) round trips (every round, all but one lose and read
/// again), which does not fit in a 2 s timeout for a burst of 40. Taking
/// turns locally leaves the compare-and-set to settle races between
/// gateways only. Stripes keep memory bounded with no clean-up; two sessions
/// sharing a stripe only wait for each other's single round trip.
pub struct UpdateTurns {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl Default for UpdateTurns {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateTurns {
    pub fn new() -> Self {
        Self {
            stripes: (0..UPDATE_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits for this session's turn; the turn ends when the guard drops.
    pub async fn take(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(id.as_str()) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}
