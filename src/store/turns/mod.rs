//! Local turn-taking and group commit for updates of one session.
//!
//! Every update of a session must apply to the record as it is in the store
//! (see the module docs of [`super`]), so n writers of one session are
//! serial: with compare-and-set alone each round all but one lose and read
//! again, O(n²) round trips. Inside one gateway the writers of a session
//! therefore take turns, and the compare-and-set only settles races between
//! gateways.
//!
//! Taking turns one write at a time still costs one round trip per update
//! of a busy session. So the writer whose turn it is (the *leader*) commits
//! a **group**: its own change and every change of the same session that is
//! waiting, applied in arrival order, in one write. Each writer in the group
//! gets back the record as it stood right after its own change, exactly as if
//! the writes had run one after the other; the store holds the record after
//! the last. When the leader is done it hands the turn to the next waiter.
//!
//! A waiter that gave up (its request timed out or went away) before a leader
//! took its change is skipped: its change is never written. A leader that is
//! cancelled passes the turn on all the same, and the writers in its group
//! get an error, since nobody can tell whether their write landed.
//!
//! Stripes keep memory bounded with no clean-up; sessions that share a stripe
//! share its queue, and each group holds changes of one session only. A
//! stripe with nobody queued holds no record, so an idle gateway keeps no
//! session data here, whatever the size of the sessions that passed through.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::record::{Change, Refusal, SessionId, SessionRecord};
use crate::error::Error;

/// Lock stripes: bounded memory, no clean-up.
const UPDATE_STRIPES: usize = 1024;

/// Updates of sessions, in turns and groups. See the module docs.
pub struct UpdateTurns {
    stripes: Box<[Arc<Stripe>]>,
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
            stripes: (0..UPDATE_STRIPES).map(|_| Arc::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits until `change` was written by another writer's group, or until
    /// it is this writer's turn to write a group that starts with it.
    pub async fn take<'c>(&self, id: &SessionId, change: &'c Change) -> Ticket<'c> {
        let index = self.hasher.hash_one(id.as_str()) as usize % self.stripes.len();
        let stripe = &self.stripes[index];
        let woken = {
            let mut state = stripe.lock();
            if !state.leading {
                state.leading = true;
                let baton = Baton::new(stripe);
                return Ticket::Lead(Lead::new(baton, state, id, change));
            }
            let (wake, woken) = oneshot::channel();
            state.waiting.push_back(Waiter {
                id: id.clone(),
                change: change.without_seen(),
                wake,
            });
            woken
        };
        match woken.await {
            Ok(Wake::Written(result)) => Ticket::Written(result),
            Ok(Wake::Lead(baton)) => {
                let state = stripe.lock();
                Ticket::Lead(Lead::new(baton, state, id, change))
            }
            Err(_) => Ticket::Written(Err(Error::store_unavailable(
                "store",
                "update",
                "the write this update was grouped into was cancelled",
            ))),
        }
    }
}

/// What [`UpdateTurns::take`] hands back.
pub enum Ticket<'c> {
    /// Another writer's group wrote this change: the record right after it,
    /// or why the write failed.
    Written(Result<SessionRecord, Error>),
    /// This writer's turn: write the group, then [`Lead::finish`].
    Lead(Lead<'c>),
}

/// One writer's turn, with the group of changes it writes.
pub struct Lead<'c> {
    baton: Baton,
    id: SessionId,
    own: &'c Change,
    /// Waiters whose changes follow `own`, in arrival order.
    group: Vec<Waiter>,
    /// What this gateway wrote last for this session, if it was the last
    /// write through the stripe.
    last_written: Option<SessionRecord>,
}

impl<'c> Lead<'c> {
    fn new(
        baton: Baton,
        mut state: MutexGuard<'_, State>,
        id: &SessionId,
        own: &'c Change,
    ) -> Self {
        let mut group = Vec::new();
        if !state.waiting.is_empty() {
            let mut others = VecDeque::with_capacity(state.waiting.len());
            for waiter in state.waiting.drain(..) {
                if waiter.wake.is_closed() {
                    continue; // gave up: never written
                }
                if waiter.id == *id {
                    group.push(waiter);
                } else {
                    others.push_back(waiter);
                }
            }
            state.waiting = others;
        }
        // Taken, not copied: no other writer of this stripe runs until this
        // turn ends, and `finish` puts the new record back.
        let last_written = match state.last.take() {
            Some((last_id, record)) if last_id == *id => Some(record),
            other => {
                state.last = other;
                None
            }
        };
        Self {
            baton,
            id: id.clone(),
            own,
            group,
            last_written,
        }
    }

    /// The freshest copy of the record this gateway has: what it wrote last,
    /// else what this writer's request loaded. A hint only: another gateway
    /// may have written since, which the store's compare-and-set detects.
    /// Taken once: a store that finds it stale reads the record instead.
    pub fn take_hint(&mut self) -> Option<SessionRecord> {
        self.last_written.take().or_else(|| self.own.seen.clone())
    }

    /// Applies the group's changes in order to `current` (what the store
    /// holds), each expiry rounded up to the store's `precision_ms`. A
    /// refused change leaves the record as it was for the next one.
    pub fn apply(&self, current: Option<SessionRecord>, precision_ms: u64) -> Applied {
        let precision = precision_ms.max(1);
        let mut last = current;
        let mut changed = false;
        let mut outcomes = Vec::with_capacity(self.group.len() + 1);
        let changes =
            std::iter::once(self.own).chain(self.group.iter().map(|waiter| &waiter.change));
        for change in changes {
            let outcome = change.apply(last.clone()).map(|mut record| {
                record.expires_at = record
                    .expires_at
                    .div_ceil(precision)
                    .saturating_mul(precision);
                record
            });
            if let Ok(record) = &outcome {
                last = Some(record.clone());
                changed = true;
            }
            outcomes.push(outcome);
        }
        Applied {
            outcomes,
            last,
            changed,
        }
    }

    /// Ends the turn with the outcome of the group's write (what
    /// [`Lead::apply`] gave, once committed): answers every writer in the
    /// group, hands the turn on, and returns this writer's own outcome.
    pub fn finish(self, written: Result<Applied, Error>) -> Result<SessionRecord, Error> {
        let Self {
            baton, id, group, ..
        } = self;
        let applied = match written {
            Ok(applied) => applied,
            Err(error) => {
                for waiter in group {
                    let _ = waiter.wake.send(Wake::Written(Err(error.clone())));
                }
                return Err(error);
            }
        };
        if let Some(stripe) = &baton.stripe {
            let mut state = stripe.lock();
            // Kept only for a writer already queued: a hint left in an idle
            // stripe would pin up to one record per stripe for good.
            state.last = match &applied.last {
                Some(last) if applied.changed && !state.waiting.is_empty() => {
                    Some((id, last.clone()))
                }
                _ => None,
            };
        }
        let mut outcomes = applied
            .outcomes
            .into_iter()
            .map(|outcome| outcome.map_err(Refusal::into_error));
        let own = outcomes.next();
        for (waiter, outcome) in group.into_iter().zip(outcomes) {
            let _ = waiter.wake.send(Wake::Written(outcome));
        }
        own.unwrap_or_else(|| Err(Error::internal("a group write returned no record")))
    }
}

/// What a group's changes produce, in order: the store writes `last` when
/// any change was applied.
#[derive(Debug)]
pub struct Applied {
    /// Each change's record right after it, or why it was refused.
    outcomes: Vec<Result<SessionRecord, Refusal>>,
    /// The record after the whole group.
    last: Option<SessionRecord>,
    /// Some change was applied: there is something to write.
    changed: bool,
}

impl Applied {
    /// The record to store, when there is one to write.
    pub fn to_write(&self) -> Option<&SessionRecord> {
        self.last.as_ref().filter(|_| self.changed)
    }
}

#[derive(Default)]
struct Stripe {
    state: Mutex<State>,
}

impl Stripe {
    /// The state; never held across an await. A poisoned lock only means a
    /// panic elsewhere: the queue itself is always consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Default)]
struct State {
    /// A writer holds the turn; new writers wait in `waiting`.
    leading: bool,
    waiting: VecDeque<Waiter>,
    /// The last record written through this stripe, and under which id,
    /// while writers are queued behind it (see [`Lead::finish`]).
    last: Option<(SessionId, SessionRecord)>,
}

struct Waiter {
    id: SessionId,
    change: Change,
    wake: oneshot::Sender<Wake>,
}

enum Wake {
    Written(Result<SessionRecord, Error>),
    Lead(Baton),
}

/// The turn in one stripe. Dropping it, wherever that happens (a finished
/// leader, a cancelled one, a waiter that went away with the turn in its
/// channel), hands the turn to the next waiter that is still there.
struct Baton {
    /// `None` once disarmed: a baton that came back from a waiter that left.
    stripe: Option<Arc<Stripe>>,
}

impl Baton {
    fn new(stripe: &Arc<Stripe>) -> Self {
        Self {
            stripe: Some(Arc::clone(stripe)),
        }
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        let Some(stripe) = self.stripe.take() else {
            return;
        };
        loop {
            let next = {
                let mut state = stripe.lock();
                match state.waiting.pop_front() {
                    Some(next) => next,
                    None => {
                        state.leading = false;
                        return;
                    }
                }
            };
            if next.wake.is_closed() {
                continue;
            }
            let baton = Baton::new(&stripe);
            match next.wake.send(Wake::Lead(baton)) {
                Ok(()) => return,
                // The waiter left between the check and the send: the baton
                // came back; disarm it and try the next one.
                Err(Wake::Lead(mut baton)) => baton.stripe = None,
                Err(Wake::Written(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
