//! The store conformance suite against the in-process memory store.

use std::sync::Arc;
use std::time::Duration;

use sessiongate::store::{Instrumented, SessionStore, memory::MemoryStore};

use crate::conformance;

async fn make_store() -> Arc<dyn SessionStore> {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(10_000, false));
    Arc::new(Instrumented::new(store, Duration::from_secs(2)))
}

conformance::suite!();

#[tokio::test]
async fn a_full_store_refuses_new_sessions_but_serves_old_ones() {
    let store = MemoryStore::new(1, false);
    let first = sessiongate::store::SessionId::generate().unwrap();
    store
        .update(&first, &conformance::patch(serde_json::json!({"a": 1})))
        .await
        .unwrap();
    let second = sessiongate::store::SessionId::generate().unwrap();
    let refused = store
        .update(&second, &conformance::patch(serde_json::json!({"b": 1})))
        .await;
    assert!(
        matches!(refused, Err(sessiongate::store::StoreError::Full(_))),
        "{refused:?}"
    );
    assert!(store.load(&first).await.unwrap().is_some());
}
