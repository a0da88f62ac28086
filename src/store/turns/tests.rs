//! The turn-taking and group commit, driven the way a store drives them.

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

#[tokio::test]
async fn the_written_record_is_kept_only_for_a_queued_writer() {
    let turns = UpdateTurns::new();
    let session = id("s");
    let (a, b, c) = (change("a", 1), change("b", 2), change("c", 3));
    let index = turns.hasher.hash_one(session.as_str()) as usize % UPDATE_STRIPES;
    let stripe = Arc::clone(&turns.stripes[index]);

    // A writer queued behind the leader gets what the leader wrote.
    let Ticket::Lead(first) = turns.take(&session, &a).await else {
        panic!("the first writer leads");
    };
    // Queued after the leader took its group: it leads the next turn.
    let mut second = Box::pin(turns.take(&session, &b));
    assert!(queued(&mut second));
    let applied = first.apply(None, 1);
    first.finish(Ok(applied)).unwrap();
    let Ticket::Lead(mut second) = second.await else {
        panic!("the queued writer leads next");
    };
    let hint = second.take_hint().expect("the leader's record, as a hint");
    assert_eq!(serde_json::Value::Object(hint.data), json!({"a": 1}));

    // With nobody queued, the stripe keeps nothing once the turn ends.
    let applied = second.apply(None, 1);
    second.finish(Ok(applied)).unwrap();
    assert!(
        stripe.lock().last.is_none(),
        "an idle stripe holds no record"
    );
    let Ticket::Lead(mut third) = turns.take(&session, &c).await else {
        panic!("the turn is free");
    };
    assert!(third.take_hint().is_none());
}
