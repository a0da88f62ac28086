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
//! share its queue, and each group holds changes of one session only.

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
        if let Some(stripe) = &baton.stripe
            && applied.changed
            && let Some(last) = &applied.last
        {
            stripe.lock().last = Some((id, last.clone()));
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
    /// The last record written through this stripe, and under which id.
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
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::store::record::Lifetime;

    fn change(key: &str, value: i64) -> Change {
        let patch = json!({ key: value });
        Change {
            patches: patch.as_object().cloned().into_iter().collect(),
            now: 1_000,
            lifetime: Lifetime {
                idle: Duration::from_secs(60),
                absolute: None,
            },
            seen: None,
            must_exist: false,
            max_bytes: 16_384,
        }
    }

    fn id(name: &str) -> SessionId {
        SessionId::from_trusted(name)
    }

    /// A store of one value per id that counts its writes, to run the
    /// protocol the way a store's `update` does.
    #[derive(Default)]
    struct Counted {
        records: Mutex<std::collections::HashMap<String, SessionRecord>>,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl Counted {
        async fn update(
            &self,
            turns: &UpdateTurns,
            id: &SessionId,
            change: &Change,
        ) -> Result<SessionRecord, Error> {
            let lead = match turns.take(id, change).await {
                Ticket::Written(result) => return result,
                Ticket::Lead(lead) => lead,
            };
            // A round trip, during which others queue up.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let current = self.records.lock().unwrap().get(id.as_str()).cloned();
            let applied = lead.apply(current, 1);
            if let Some(record) = applied.to_write() {
                self.records
                    .lock()
                    .unwrap()
                    .insert(id.as_str().to_owned(), record.clone());
            }
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            lead.finish(Ok(applied))
        }
    }

    #[tokio::test]
    async fn a_busy_session_is_written_in_groups_and_loses_nothing() {
        let turns = UpdateTurns::new();
        let store = Counted::default();
        let session = id("busy");
        let changes: Vec<Change> = (0..40).map(|i| change(&format!("k{i}"), i)).collect();
        let results = futures_util::future::join_all(
            changes
                .iter()
                .map(|change| store.update(&turns, &session, change)),
        )
        .await;
        let stored = store.records.lock().unwrap()["busy"].clone();
        assert_eq!(stored.data.len(), 40, "every change survives");
        let writes = store.writes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(writes < 5, "40 changes took {writes} writes");
        // Each writer sees the record right after its own change: its key,
        // and only keys of the changes before it.
        for (i, result) in results.into_iter().enumerate() {
            let record = result.unwrap();
            assert_eq!(record.data[&format!("k{i}")], json!(i));
            assert!(record.data.len() <= stored.data.len());
        }
    }

    /// Polls a future once, so that a writer queues up.
    fn queued<F: std::future::Future + Unpin>(future: &mut F) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::Pin::new(future).poll(&mut cx).is_pending()
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped_and_the_turn_moves_on() {
        let turns = UpdateTurns::new();
        let session = id("s");
        let (a, b, c) = (change("a", 1), change("b", 2), change("c", 3));
        let Ticket::Lead(first) = turns.take(&session, &a).await else {
            panic!("the first writer leads");
        };
        let mut quitter = Box::pin(turns.take(&session, &b));
        assert!(queued(&mut quitter));
        let mut follower = Box::pin(turns.take(&session, &c));
        assert!(queued(&mut follower));
        drop(quitter);
        let applied = first.apply(None, 1);
        first.finish(Ok(applied)).unwrap();
        let Ticket::Lead(next) = follower.await else {
            panic!("the turn skips the writer that gave up");
        };
        let record = next.apply(None, 1).last.unwrap();
        assert_eq!(serde_json::Value::Object(record.data), json!({"c": 3}));
    }

    #[tokio::test]
    async fn a_cancelled_leader_passes_the_turn_and_fails_its_group() {
        let turns = UpdateTurns::new();
        let session = id("s");
        let (a, b, c) = (change("a", 1), change("b", 2), change("c", 3));
        let Ticket::Lead(first) = turns.take(&session, &a).await else {
            panic!("the first writer leads");
        };
        let mut second = Box::pin(turns.take(&session, &b));
        assert!(queued(&mut second));
        let mut third = Box::pin(turns.take(&session, &c));
        assert!(queued(&mut third));
        drop(first); // cancelled mid-write
        let Ticket::Lead(second) = second.await else {
            panic!("the turn passes to the next waiter");
        };
        assert_eq!(second.group.len(), 1, "the third joins the second's group");
        drop(second);
        assert!(matches!(third.await, Ticket::Written(Err(_))));
        let Ticket::Lead(_) = turns.take(&session, &a).await else {
            panic!("the turn is free again");
        };
    }

    #[tokio::test]
    async fn groups_hold_one_session_only() {
        let turns = UpdateTurns::new();
        let (one, other) = (id("one"), id("other"));
        let (a, b, c) = (change("a", 1), change("b", 2), change("c", 3));
        // Force a shared stripe: both ids wait behind the same leader.
        let index = turns.hasher.hash_one(one.as_str()) as usize % UPDATE_STRIPES;
        let Ticket::Lead(first) = turns.take(&one, &a).await else {
            panic!("the first writer leads");
        };
        let stripe = Arc::clone(&turns.stripes[index]);
        let (wake, woken) = oneshot::channel();
        stripe.lock().waiting.push_back(Waiter {
            id: other.clone(),
            change: b.without_seen(),
            wake,
        });
        let mut same = Box::pin(turns.take(&one, &c));
        assert!(queued(&mut same));
        drop(first);
        // The other session's waiter arrived first, so it leads next...
        let Ok(Wake::Lead(baton)) = woken.await else {
            panic!("the other session's waiter is next");
        };
        let lead = Lead::new(baton, stripe.lock(), &other, &b);
        assert!(lead.group.is_empty(), "no change of another session joins");
        drop(lead);
        // ...and then the first session's.
        assert!(matches!(same.await, Ticket::Lead(_)));
    }
}
