//! The store conformance suite: the contract of `SessionStore` (see
//! `src/store/mod.rs`) as tests, run once per backend.
//!
//! A backend's test module defines `async fn make_store() -> Arc<dyn
//! SessionStore>` returning a fresh, isolated store (its own prefix, table or
//! database) and calls `conformance::suite!();`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sessiongate::config::CookieConfig;
use sessiongate::store::codec::express::{ExpressCodec, Flavor};
use sessiongate::store::{
    Backend, Change, Identity, Lifetime, SessionId, SessionRecord, SessionStore, StoreCore,
    StoreSettings, now_millis,
};

/// Stores that keep expiry in epoch seconds (MySQL, DynamoDB) may round it.
const EXPIRY_SLACK_MS: u64 = 1_000;

const HOUR: Duration = Duration::from_secs(3600);

/// `session.max_bytes` for the checks: the default.
const MAX_BYTES: usize = 16_384;

pub fn lifetime() -> Lifetime {
    Lifetime {
        idle: HOUR,
        absolute: None,
    }
}

pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub fn patch(value: Value) -> Change {
    Change {
        patches: vec![object(value)],
        now: now_millis(),
        lifetime: lifetime(),
        seen: None,
        must_exist: false,
        max_bytes: MAX_BYTES,
    }
}

fn new_id() -> SessionId {
    SessionId::generate().expect("OS CSPRNG")
}

fn assert_close(actual: u64, expected: u64, what: &str) {
    assert!(
        actual.abs_diff(expected) <= EXPIRY_SLACK_MS,
        "{what}: {actual} is not within {EXPIRY_SLACK_MS} ms of {expected}"
    );
}

/// `session.compat: express-session` stores no creation time: its stores
/// run the suite through [`ExpressMode`], and the checks of `created_at`
/// (and of `absolute_ttl`, which is refused in that mode) are left out.
pub struct ExpressMode(pub Arc<dyn SessionStore>);

/// What [`ExpressMode`] calls itself.
const EXPRESS_MODE: &str = "express-session";

fn keeps_creation(store: &Arc<dyn SessionStore>) -> bool {
    store.kind() != EXPRESS_MODE
}

fn assert_created(store: &Arc<dyn SessionStore>, actual: u64, expected: u64) {
    if keeps_creation(store) {
        assert_eq!(actual, expected, "created_at");
    }
}

#[async_trait::async_trait]
impl SessionStore for ExpressMode {
    fn kind(&self) -> &'static str {
        EXPRESS_MODE
    }
    async fn load(&self, id: &SessionId) -> sessiongate::Result<Option<SessionRecord>> {
        self.0.load(id).await
    }
    async fn update(&self, id: &SessionId, change: &Change) -> sessiongate::Result<SessionRecord> {
        self.0.update(id, change).await
    }
    async fn regenerate(
        &self,
        old: &SessionId,
        new: &SessionId,
        change: &Change,
    ) -> sessiongate::Result<SessionRecord> {
        self.0.regenerate(old, new, change).await
    }
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> sessiongate::Result<()> {
        self.0.insert(id, record).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: u64,
        identity: Option<&Identity>,
    ) -> sessiongate::Result<()> {
        self.0.touch(id, expires_at, identity).await
    }
    async fn sessions_of(&self, identity: &Identity) -> sessiongate::Result<Vec<SessionId>> {
        self.0.sessions_of(identity).await
    }
    async fn revoke(&self, identity: &Identity) -> sessiongate::store::Revoked {
        self.0.revoke(identity).await
    }
    async fn delete(&self, id: &SessionId) -> sessiongate::Result<()> {
        self.0.delete(id).await
    }
    async fn ping(&self) -> sessiongate::Result<()> {
        self.0.ping().await
    }
}

/// The express-session record codec as the gateway builds it for a
/// one-hour `session.ttl`, indexed by [`IDENTITY_KEY`].
pub fn express_settings(timeout: Duration, flavor: Flavor) -> StoreSettings {
    StoreSettings {
        codec: Arc::new(ExpressCodec::new(
            flavor,
            &CookieConfig::default(),
            HOUR.as_millis() as u64,
        )),
        ..StoreSettings::new(timeout, false).indexed_by(Some(IDENTITY_KEY))
    }
}

pub async fn missing_id_loads_nothing(store: Arc<dyn SessionStore>) {
    assert_eq!(store.load(&new_id()).await.unwrap(), None);
}

pub async fn update_creates_a_session_that_loads_back(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let before = now_millis();
    let written = store
        .update(&id, &patch(json!({"user": "ada", "roles": ["admin"]})))
        .await
        .unwrap();
    assert_eq!(
        Value::Object(written.data.clone()),
        json!({"user": "ada", "roles": ["admin"]})
    );
    let created = if keeps_creation(&store) {
        assert!(written.created_at >= before && written.created_at <= now_millis());
        written.created_at
    } else {
        before
    };
    assert_close(
        written.expires_at,
        created + HOUR.as_millis() as u64,
        "expiry of a new session",
    );

    let loaded = store
        .load(&id)
        .await
        .unwrap()
        .expect("the session just written");
    assert_eq!(loaded.data, written.data);
    assert_created(&store, loaded.created_at, written.created_at);
    assert_close(loaded.expires_at, written.expires_at, "loaded expiry");
}

/// Data comes back exactly as written: key order, empty containers, large
/// and fractional numbers, escapes and non-ASCII text.
pub async fn json_comes_back_exactly(store: Arc<dyn SessionStore>) {
    let text = r#"{"zeta":1,"alpha":{"empty_obj":{},"empty_arr":[]},"big":123456789012345678901234567890,"neg":-9007199254740993,"float":1.50,"text":"héllo \"quoted\" \\ 🦀","null":null,"nested":[[],[{}],{"k":[1,2,3]}]}"#;
    let data: Map<String, Value> = serde_json::from_str(text).unwrap();
    let id = new_id();
    store
        .update(
            &id,
            &Change {
                patches: Vec::new(),
                now: now_millis(),
                lifetime: lifetime(),
                seen: None,
                must_exist: false,
                max_bytes: MAX_BYTES,
            },
        )
        .await
        .unwrap();
    let record = SessionRecord {
        data: data.clone(),
        created_at: now_millis(),
        expires_at: now_millis() + 60_000,
    };
    store.insert(&id, &record).await.unwrap();
    let loaded = store.load(&id).await.unwrap().expect("stored");
    assert_eq!(
        serde_json::to_string(&loaded.data).unwrap(),
        serde_json::to_string(&data).unwrap()
    );
}

pub async fn merge_patch_applies_to_the_stored_session(store: Arc<dyn SessionStore>) {
    let id = new_id();
    store
        .update(
            &id,
            &patch(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]})),
        )
        .await
        .unwrap();
    let after = store
        .update(
            &id,
            &patch(json!({"a": null, "b": {"c": null, "x": true}, "e": []})),
        )
        .await
        .unwrap();
    let expected = json!({"b": {"d": 3, "x": true}, "e": []});
    assert_eq!(Value::Object(after.data), expected);
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(Value::Object(loaded.data), expected);
}

pub async fn an_update_without_a_patch_keeps_the_data(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let first = store.update(&id, &patch(json!({"k": "v"}))).await.unwrap();
    let second = store
        .update(
            &id,
            &Change {
                patches: Vec::new(),
                now: now_millis(),
                lifetime: lifetime(),
                seen: None,
                must_exist: false,
                max_bytes: MAX_BYTES,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.data, first.data);
    assert_created(&store, second.created_at, first.created_at);
}

pub async fn touch_moves_the_expiry_and_keeps_the_data(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let written = store.update(&id, &patch(json!({"k": "v"}))).await.unwrap();
    let later = written.expires_at + 2 * HOUR.as_millis() as u64;
    store.touch(&id, later, None).await.unwrap();
    let loaded = store.load(&id).await.unwrap().expect("touched session");
    assert_close(loaded.expires_at, later, "touched expiry");
    assert_eq!(loaded.data, written.data);
    assert_created(&store, loaded.created_at, written.created_at);
}

pub async fn touch_does_not_create_a_session(store: Arc<dyn SessionStore>) {
    let id = new_id();
    store.touch(&id, now_millis() + 60_000, None).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
}

pub async fn delete_removes_and_is_idempotent(store: Arc<dyn SessionStore>) {
    let id = new_id();
    store.update(&id, &patch(json!({"k": 1}))).await.unwrap();
    store.delete(&id).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
    store.delete(&id).await.unwrap();
}

/// Regenerate: the data moves to a new id and the old id stops working.
pub async fn a_session_moves_to_a_new_id(store: Arc<dyn SessionStore>) {
    let old = new_id();
    let record = store
        .update(&old, &patch(json!({"user": "ada"})))
        .await
        .unwrap();
    let new = new_id();
    store.insert(&new, &record).await.unwrap();
    store.delete(&old).await.unwrap();
    assert_eq!(store.load(&old).await.unwrap(), None);
    let moved = store.load(&new).await.unwrap().expect("moved session");
    assert_eq!(moved.data, record.data);
    assert_created(&store, moved.created_at, record.created_at);
}

pub async fn insert_replaces_what_is_there(store: Arc<dyn SessionStore>) {
    let id = new_id();
    store
        .update(&id, &patch(json!({"old": true})))
        .await
        .unwrap();
    let now = now_millis();
    let record = SessionRecord {
        data: object(json!({"new": true})),
        created_at: now,
        expires_at: now + 60_000,
    };
    store.insert(&id, &record).await.unwrap();
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(Value::Object(loaded.data), json!({"new": true}));
}

pub async fn an_expired_session_is_never_returned(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let now = now_millis();
    let record = SessionRecord {
        data: object(json!({"k": 1})),
        created_at: now,
        expires_at: now + 1_000,
    };
    store.insert(&id, &record).await.unwrap();
    assert!(
        store.load(&id).await.unwrap().is_some(),
        "alive before its expiry"
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(store.load(&id).await.unwrap(), None);
}

pub async fn an_update_of_an_expired_session_starts_over(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let now = now_millis();
    let record = SessionRecord {
        data: object(json!({"stale": 1})),
        created_at: now - 10_000,
        expires_at: now + 1_000,
    };
    store.insert(&id, &record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let fresh = store
        .update(&id, &patch(json!({"fresh": 1})))
        .await
        .unwrap();
    assert_eq!(Value::Object(fresh.data), json!({"fresh": 1}));
    if keeps_creation(&store) {
        assert!(fresh.created_at > record.created_at);
    }
}

pub async fn absolute_lifetime_caps_every_update(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let capped = Lifetime {
        idle: HOUR,
        absolute: Some(Duration::from_secs(60)),
    };
    let change = Change {
        patches: vec![object(json!({"k": 1}))],
        now: now_millis(),
        lifetime: capped,
        seen: None,
        must_exist: false,
        max_bytes: MAX_BYTES,
    };
    let record = store.update(&id, &change).await.unwrap();
    assert_close(
        record.expires_at,
        record.created_at + 60_000,
        "absolute expiry",
    );
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_close(
        loaded.expires_at,
        record.created_at + 60_000,
        "loaded absolute expiry",
    );
}

/// 40 concurrent updates of one session, each adding its own key: none lost.
pub async fn concurrent_updates_lose_nothing(store: Arc<dyn SessionStore>) {
    const WRITERS: usize = 40;
    let id = new_id();
    store
        .update(&id, &patch(json!({"seed": true})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..WRITERS {
        let store = store.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut change = patch(json!({}));
            change.patches[0].insert(format!("k{n}"), json!(n));
            store.update(&id, &change).await
        }));
    }
    for task in tasks {
        task.await.expect("writer task").expect("update");
    }
    let loaded = store.load(&id).await.unwrap().expect("session");
    let missing: Vec<usize> = (0..WRITERS)
        .filter(|n| !loaded.data.contains_key(&format!("k{n}")))
        .collect();
    assert!(missing.is_empty(), "lost updates: {missing:?}");
    assert_eq!(loaded.data.len(), WRITERS + 1);
}

/// The `seen` hint is only a hint: a stale one loses no update.
pub async fn a_stale_hint_is_never_trusted(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let first = store.update(&id, &patch(json!({"a": 1}))).await.unwrap();
    store.update(&id, &patch(json!({"b": 2}))).await.unwrap();
    let mut stale = patch(json!({"c": 3}));
    stale.seen = Some(first);
    let after = store.update(&id, &stale).await.unwrap();
    assert_eq!(Value::Object(after.data), json!({"a": 1, "b": 2, "c": 3}));
    let mut fresh = patch(json!({"d": 4}));
    fresh.seen = store.load(&id).await.unwrap();
    let after = store.update(&id, &fresh).await.unwrap();
    assert_eq!(
        Value::Object(after.data),
        json!({"a": 1, "b": 2, "c": 3, "d": 4})
    );
}

/// A touch never brings back a session that has expired.
pub async fn touching_an_expired_session_does_not_revive_it(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let now = now_millis();
    let record = SessionRecord {
        data: object(json!({"k": 1})),
        created_at: now,
        expires_at: now + 1_000,
    };
    store.insert(&id, &record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    store
        .touch(&id, now_millis() + HOUR.as_millis() as u64, None)
        .await
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None, "a touch revived it");
}

/// With `keep_expired: false`, an expired record that a read finds is
/// removed from the backend, not only hidden.
pub async fn an_expired_record_read_is_deleted<B: Backend>(store: Arc<StoreCore<B>>) {
    let id = new_id();
    let now = now_millis();
    let record = SessionRecord {
        data: object(json!({"k": 1})),
        created_at: now,
        expires_at: now + 1_000,
    };
    store.insert(&id, &record).await.unwrap();
    assert!(store.backend().read(&id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert!(
        store.backend().read(&id).await.unwrap().is_none(),
        "the expired record is still stored"
    );
}

/// Two stores on one backend (two gateways): 40 concurrent updates of one
/// session, split between them, lose nothing.
pub async fn two_stores_lose_no_concurrent_update(
    first: Arc<dyn SessionStore>,
    second: Arc<dyn SessionStore>,
) {
    const WRITERS: usize = 40;
    let id = new_id();
    first
        .update(&id, &patch(json!({"seed": true})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..WRITERS {
        let store = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut change = patch(json!({}));
            change.patches[0].insert(format!("k{n}"), json!(n));
            store.update(&id, &change).await
        }));
    }
    for task in tasks {
        task.await.expect("writer task").expect("update");
    }
    for store in [&first, &second] {
        let loaded = store.load(&id).await.unwrap().expect("session");
        let missing: Vec<usize> = (0..WRITERS)
            .filter(|n| !loaded.data.contains_key(&format!("k{n}")))
            .collect();
        assert!(missing.is_empty(), "lost updates: {missing:?}");
    }
}

/// The change a request that loaded the session makes: it must not bring
/// a session back that is gone.
pub fn loaded_patch(value: Value) -> Change {
    Change {
        must_exist: true,
        ..patch(value)
    }
}

/// Regenerate moves the changed session to the new id in one step: the old
/// id is gone, the new one holds the data before and the change.
pub async fn regenerate_moves_the_changed_session(store: Arc<dyn SessionStore>) {
    let (old, new) = (new_id(), new_id());
    store
        .update(&old, &patch(json!({"cart": [1]})))
        .await
        .unwrap();
    let moved = store
        .regenerate(&old, &new, &loaded_patch(json!({"user": "ada"})))
        .await
        .unwrap();
    assert_eq!(
        Value::Object(moved.data),
        json!({"cart": [1], "user": "ada"})
    );
    assert_eq!(
        store.load(&old).await.unwrap(),
        None,
        "the old id still works"
    );
    let loaded = store.load(&new).await.unwrap().expect("the new id works");
    assert_eq!(
        Value::Object(loaded.data),
        json!({"cart": [1], "user": "ada"})
    );
}

/// A new session (nothing stored yet) regenerated at once is simply
/// written under the new id.
pub async fn regenerate_of_a_new_session_writes_the_new_id(store: Arc<dyn SessionStore>) {
    let (old, new) = (new_id(), new_id());
    store
        .regenerate(&old, &new, &patch(json!({"user": "ada"})))
        .await
        .unwrap();
    assert_eq!(store.load(&old).await.unwrap(), None);
    assert!(store.load(&new).await.unwrap().is_some());
}

/// An update (or regenerate) for a session that was loaded and has since
/// been destroyed does not bring it back.
pub async fn a_destroyed_session_is_not_revived_by_a_late_update(store: Arc<dyn SessionStore>) {
    let id = new_id();
    store
        .update(&id, &patch(json!({"user": "ada"})))
        .await
        .unwrap();
    store.delete(&id).await.unwrap();
    let late = store.update(&id, &loaded_patch(json!({"x": 1}))).await;
    assert!(
        late.as_ref().is_err_and(|e| e.is_session_gone()),
        "{late:?}"
    );
    let moved = store
        .regenerate(&id, &new_id(), &loaded_patch(json!({"x": 1})))
        .await;
    assert!(
        moved.as_ref().is_err_and(|e| e.is_session_gone()),
        "{moved:?}"
    );
    assert_eq!(store.load(&id).await.unwrap(), None);
}

/// Updates racing a regenerate either land before the move (and travel
/// with the session) or find the old id gone: none is written under the
/// old id, none is lost silently.
pub async fn updates_racing_a_regenerate_never_revive_the_old_id(store: Arc<dyn SessionStore>) {
    const WRITERS: usize = 20;
    let (old, new) = (new_id(), new_id());
    store
        .update(&old, &patch(json!({"seed": true})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..WRITERS {
        let (store, old) = (store.clone(), old.clone());
        tasks.push(tokio::spawn(async move {
            let change = loaded_patch(json!({ format!("k{n}"): n }));
            (n, store.update(&old, &change).await)
        }));
    }
    let moved = store
        .regenerate(&old, &new, &loaded_patch(json!({"user": "ada"})))
        .await
        .unwrap();
    let mut landed = Vec::new();
    for task in tasks {
        let (n, result) = task.await.unwrap();
        match result {
            Ok(_) => landed.push(n),
            Err(error) => assert!(error.is_session_gone(), "{error}"),
        }
    }
    assert_eq!(
        store.load(&old).await.unwrap(),
        None,
        "the old id was revived"
    );
    let loaded = store.load(&new).await.unwrap().expect("the new id works");
    for n in landed {
        assert!(
            loaded.data.contains_key(&format!("k{n}")),
            "update {n} succeeded before the move but is not in the moved session"
        );
    }
    assert_eq!(loaded.data["user"], json!("ada"));
    assert_eq!(Value::Object(moved.data.clone())["user"], json!("ada"));
}

/// The session key the stores of this suite index by.
pub const IDENTITY_KEY: &str = "user";

/// A user name no other test uses.
fn someone(name: &str) -> String {
    format!("{name}-{}", &new_id().as_str()[..10])
}

async fn signed_in(store: &Arc<dyn SessionStore>, user: &str) -> SessionId {
    let id = new_id();
    store
        .update(&id, &patch(json!({IDENTITY_KEY: user, "cart": [1]})))
        .await
        .unwrap();
    id
}

async fn count(store: &Arc<dyn SessionStore>, user: &str) -> usize {
    store
        .sessions_of(&Identity::of_text(user))
        .await
        .unwrap()
        .len()
}

pub async fn the_identity_index_lists_and_revokes_one_users_sessions(store: Arc<dyn SessionStore>) {
    let (alice, bob) = (someone("alice"), someone("bob"));
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(signed_in(&store, &alice).await);
    }
    let bobs = signed_in(&store, &bob).await;
    let anonymous = new_id();
    store
        .update(&anonymous, &patch(json!({"cart": [2]})))
        .await
        .unwrap();
    assert_eq!(count(&store, &alice).await, 3);
    assert_eq!(count(&store, &bob).await, 1);

    let revoked = store.revoke(&Identity::of_text(&alice)).await;
    assert!(revoked.failure.is_none(), "{:?}", revoked.failure);
    assert_eq!(revoked.deleted, 3);
    for id in &alices {
        assert!(
            store.load(id).await.unwrap().is_none(),
            "alice's session ended"
        );
    }
    assert!(store.load(&bobs).await.unwrap().is_some(), "bob's lives");
    assert!(store.load(&anonymous).await.unwrap().is_some());
    assert_eq!(count(&store, &alice).await, 0);
    let again = store.revoke(&Identity::of_text(&alice)).await;
    assert_eq!(
        (again.deleted, again.failure.is_none()),
        (0, true),
        "a repeat is harmless"
    );
}

pub async fn an_identity_change_moves_the_session_in_the_index(store: Arc<dyn SessionStore>) {
    let (alice, carol) = (someone("alice"), someone("carol"));
    let id = signed_in(&store, &alice).await;
    store
        .update(&id, &loaded_patch(json!({IDENTITY_KEY: carol})))
        .await
        .unwrap();
    assert_eq!(count(&store, &alice).await, 0, "no longer alice's");
    assert_eq!(count(&store, &carol).await, 1);
    store
        .update(&id, &loaded_patch(json!({IDENTITY_KEY: null})))
        .await
        .unwrap();
    assert_eq!(count(&store, &carol).await, 0, "signed out");
    let revoked = store.revoke(&Identity::of_text(&alice)).await;
    assert_eq!(revoked.deleted, 0);
    assert!(
        store.load(&id).await.unwrap().is_some(),
        "a revoke of alice spares it"
    );
}

pub async fn a_regenerated_session_stays_indexed_under_its_new_id(store: Arc<dyn SessionStore>) {
    let alice = someone("alice");
    let old = signed_in(&store, &alice).await;
    let new = new_id();
    store
        .regenerate(&old, &new, &loaded_patch(json!({"step": 2})))
        .await
        .unwrap();
    let listed = store.sessions_of(&Identity::of_text(&alice)).await.unwrap();
    assert_eq!(listed, vec![new.clone()]);
    assert_eq!(store.revoke(&Identity::of_text(&alice)).await.deleted, 1);
    assert!(store.load(&new).await.unwrap().is_none());
}

pub async fn a_touched_session_stays_indexed_past_its_first_expiry(store: Arc<dyn SessionStore>) {
    let alice = someone("alice");
    let id = new_id();
    let short = Change {
        lifetime: Lifetime {
            idle: Duration::from_secs(2),
            absolute: None,
        },
        ..patch(json!({IDENTITY_KEY: alice}))
    };
    store.update(&id, &short).await.unwrap();
    let identity = Identity::of_text(&alice);
    store
        .touch(&id, now_millis() + 60_000, Some(&identity))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert!(store.load(&id).await.unwrap().is_some(), "touched: alive");
    assert_eq!(count(&store, &alice).await, 1, "and still indexed");
}

pub async fn expired_sessions_leave_the_index(store: Arc<dyn SessionStore>) {
    let alice = someone("alice");
    let short = Change {
        lifetime: Lifetime {
            idle: Duration::from_secs(1),
            absolute: None,
        },
        ..patch(json!({IDENTITY_KEY: alice}))
    };
    for _ in 0..3 {
        store.update(&new_id(), &short).await.unwrap();
    }
    assert_eq!(count(&store, &alice).await, 3);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        count(&store, &alice).await,
        0,
        "expired sessions are not listed"
    );
    signed_in(&store, &alice).await;
    assert_eq!(count(&store, &alice).await, 1);
}

pub async fn ping_answers(store: Arc<dyn SessionStore>) {
    store.ping().await.unwrap();
}

/// Generates one `#[tokio::test]` per conformance check, each calling the
/// calling module's `make_store()` for a fresh store. The tests are named
/// `MODULE::conformance_suite::CHECK` (e.g.
/// `store_redis::conformance_suite::ping_answers`).
macro_rules! suite {
    () => {
        $crate::conformance::suite!(
            missing_id_loads_nothing,
            update_creates_a_session_that_loads_back,
            json_comes_back_exactly,
            merge_patch_applies_to_the_stored_session,
            an_update_without_a_patch_keeps_the_data,
            touch_moves_the_expiry_and_keeps_the_data,
            touch_does_not_create_a_session,
            delete_removes_and_is_idempotent,
            a_session_moves_to_a_new_id,
            insert_replaces_what_is_there,
            an_expired_session_is_never_returned,
            an_update_of_an_expired_session_starts_over,
            absolute_lifetime_caps_every_update,
            concurrent_updates_lose_nothing,
            a_stale_hint_is_never_trusted,
            touching_an_expired_session_does_not_revive_it,
            regenerate_moves_the_changed_session,
            regenerate_of_a_new_session_writes_the_new_id,
            a_destroyed_session_is_not_revived_by_a_late_update,
            updates_racing_a_regenerate_never_revive_the_old_id,
            ping_answers,
            the_identity_index_lists_and_revokes_one_users_sessions,
            an_identity_change_moves_the_session_in_the_index,
            a_regenerated_session_stays_indexed_under_its_new_id,
            a_touched_session_stays_indexed_past_its_first_expiry,
            expired_sessions_leave_the_index,
        );
    };
    ($($check:ident),+ $(,)?) => {
        mod conformance_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    $crate::conformance::$check(super::make_store().await).await;
                }
            )+
        }
    };
}
pub(crate) use suite;

/// The suite in `session.compat: express-session` mode: each check gets
/// the calling module's `make_express_store()` through [`ExpressMode`].
/// Everything but `absolute_ttl` (refused in that mode); a layout whose
/// JSON cannot keep key order (Cyclic's native map) passes `unordered`.
macro_rules! express_suite {
    () => {
        $crate::conformance::express_suite!(@checks json_comes_back_exactly,);
    };
    (unordered) => {
        $crate::conformance::express_suite!(@checks);
    };
    (@checks $($extra:ident,)*) => {
        $crate::conformance::express_suite!(@run
            $($extra,)*
            missing_id_loads_nothing,
            update_creates_a_session_that_loads_back,
            merge_patch_applies_to_the_stored_session,
            an_update_without_a_patch_keeps_the_data,
            touch_moves_the_expiry_and_keeps_the_data,
            touch_does_not_create_a_session,
            delete_removes_and_is_idempotent,
            a_session_moves_to_a_new_id,
            insert_replaces_what_is_there,
            an_expired_session_is_never_returned,
            an_update_of_an_expired_session_starts_over,
            concurrent_updates_lose_nothing,
            a_stale_hint_is_never_trusted,
            touching_an_expired_session_does_not_revive_it,
            regenerate_moves_the_changed_session,
            regenerate_of_a_new_session_writes_the_new_id,
            a_destroyed_session_is_not_revived_by_a_late_update,
            updates_racing_a_regenerate_never_revive_the_old_id,
            ping_answers,
            the_identity_index_lists_and_revokes_one_users_sessions,
            an_identity_change_moves_the_session_in_the_index,
            a_regenerated_session_stays_indexed_under_its_new_id,
            a_touched_session_stays_indexed_past_its_first_expiry,
            expired_sessions_leave_the_index,
        );
    };
    (@run $($check:ident,)+) => {
        mod express_conformance_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let store = super::make_express_store().await;
                    $crate::conformance::$check(std::sync::Arc::new(
                        $crate::conformance::ExpressMode(store),
                    ))
                    .await;
                }
            )+
        }
    };
}
pub(crate) use express_suite;
