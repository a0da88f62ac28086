//! The store conformance suite against the in-process memory store.

use std::sync::Arc;
use std::time::Duration;

use sessiongate::config::MemoryStoreConfig;
use sessiongate::store::codec::express::Flavor;
use sessiongate::store::{SessionStore, StoreSettings, memory::MemoryStore};

use crate::conformance;

fn open(max_sessions: usize) -> MemoryStore {
    MemoryStore::open(
        &MemoryStoreConfig { max_sessions },
        &StoreSettings::new(Duration::from_secs(2), false)
            .indexed_by(Some(conformance::IDENTITY_KEY)),
    )
}

async fn make_store() -> Arc<dyn SessionStore> {
    Arc::new(open(10_000))
}

conformance::suite!();

async fn make_express_store() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::open(
        &MemoryStoreConfig {
            max_sessions: 10_000,
        },
        &conformance::express_settings(Duration::from_secs(2), Flavor::Plain),
    ))
}

conformance::express_suite!();

#[tokio::test]
async fn a_full_store_refuses_new_sessions_but_serves_old_ones() {
    let store = open(1);
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
        refused
            .as_ref()
            .is_err_and(sessiongate::Error::is_store_full),
        "{refused:?}"
    );
    assert!(store.load(&first).await.unwrap().is_some());
}

#[tokio::test]
async fn conformance_an_expired_record_read_is_deleted() {
    conformance::an_expired_record_read_is_deleted(Arc::new(open(10_000))).await;
}
