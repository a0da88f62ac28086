//! The store conformance suite against DynamoDB (a table with a hash key
//! only), plus the DynamoDB-specific behaviour: item layout, expired items,
//! start-up checks. Needs `SESSIONGATE_TEST_DYNAMODB_ENDPOINT` (the
//! project's test script starts moto and sets it); the pk/sk variant is in
//! `store_dynamodb_pk_sk.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use sessiongate::config::{DynamoConfig, DynamoLayout};
use sessiongate::store::StoreSettings;
use sessiongate::store::dynamodb::DynamoStore;
use sessiongate::store::{SessionId, SessionRecord, SessionStore, now_millis};

use crate::conformance;
use crate::dynamodb_support::{self, TIMEOUT, config, instrumented, raw_client};

async fn make_store() -> Arc<dyn SessionStore> {
    instrumented(&config(None), false).await
}

conformance::suite!();

/// connect-dynamodb's items (`store.layout: connect-dynamodb`).
async fn make_express_store() -> Arc<dyn SessionStore> {
    dynamodb_support::node_layout(DynamoLayout::ConnectDynamodb, None).await
}

conformance::express_suite!();

/// The item as stored, read directly from the table.
async fn raw_item(
    config: &DynamoConfig,
    id: &SessionId,
) -> Option<HashMap<String, AttributeValue>> {
    let value = AttributeValue::S(format!("{}{}", config.prefix, id.as_str()));
    let mut request = raw_client()
        .get_item()
        .table_name(&config.table)
        .consistent_read(true)
        .key(&config.hash_key, value.clone());
    if let Some(sort_key) = &config.sort_key {
        request = request.key(sort_key, value);
    }
    request.send().await.expect("raw GetItem").item
}

fn number(item: &HashMap<String, AttributeValue>, attribute: &str) -> u64 {
    item[attribute]
        .as_n()
        .expect("a number")
        .parse()
        .expect("an integer")
}

async fn check_layout(config: DynamoConfig) {
    let store = instrumented(&config, false).await;
    let id = SessionId::generate().unwrap();
    let written = store
        .update(&id, &conformance::patch(json!({"user": "ada"})))
        .await
        .unwrap();
    let item = raw_item(&config, &id).await.expect("item stored");
    let key = AttributeValue::S(format!("sess:{}", id.as_str()));
    assert_eq!(item[&config.hash_key], key);
    if let Some(sort_key) = &config.sort_key {
        assert_eq!(item[sort_key], key);
    }
    assert_eq!(number(&item, "expires"), written.expires_at.div_ceil(1000));
    assert_eq!(number(&item, "expires_ms"), written.expires_at);
    assert_eq!(number(&item, "version"), 1);
    let data = item["data"].as_s().expect("data is a string");
    assert!(data.contains(r#""data":{"user":"ada"}"#), "{data}");

    store
        .update(&id, &conformance::patch(json!({"n": 1})))
        .await
        .unwrap();
    let item = raw_item(&config, &id).await.expect("item stored");
    assert_eq!(
        number(&item, "version"),
        2,
        "every update bumps the version"
    );
}

#[tokio::test]
async fn items_use_the_documented_layout() {
    check_layout(config(None)).await;
}

#[tokio::test]
async fn pk_sk_items_hold_the_key_in_both_attributes() {
    check_layout(config(Some("sk"))).await;
}

#[tokio::test]
async fn touch_moves_only_the_ttl_attributes() {
    let config = config(None);
    let store = instrumented(&config, false).await;
    let id = SessionId::generate().unwrap();
    store
        .update(&id, &conformance::patch(json!({"k": 1})))
        .await
        .unwrap();
    let before = raw_item(&config, &id).await.unwrap();
    let later = now_millis() + 7_200_500;
    store.touch(&id, later, None).await.unwrap();
    let after = raw_item(&config, &id).await.unwrap();
    assert_eq!(number(&after, "expires"), later.div_ceil(1000));
    assert_eq!(after["data"], before["data"]);
    assert_eq!(after["version"], before["version"]);
}

/// Writes a session that expires in a moment, waits, and loads it.
async fn load_after_expiry(keep_expired: bool) -> Option<HashMap<String, AttributeValue>> {
    let config = config(None);
    let store = instrumented(&config, keep_expired).await;
    let id = SessionId::generate().unwrap();
    let now = now_millis();
    let record = SessionRecord {
        data: conformance::object(json!({"k": 1})),
        created_at: now,
        expires_at: now + 300,
    };
    store.insert(&id, &record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.load(&id).await.unwrap(),
        None,
        "expired: not returned"
    );
    raw_item(&config, &id).await
}

#[tokio::test]
async fn keep_expired_leaves_an_expired_item_for_native_ttl() {
    assert!(load_after_expiry(true).await.is_some());
}

#[tokio::test]
async fn an_expired_item_is_deleted_when_read() {
    assert!(load_after_expiry(false).await.is_none());
}

#[tokio::test]
async fn touch_does_not_revive_an_expired_session() {
    let config = config(None);
    let store = instrumented(&config, true).await;
    let id = SessionId::generate().unwrap();
    let now = now_millis();
    let record = SessionRecord {
        data: conformance::object(json!({"k": 1})),
        created_at: now,
        expires_at: now + 200,
    };
    store.insert(&id, &record).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.touch(&id, now_millis() + 60_000, None).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
}

#[tokio::test]
async fn inserting_an_expired_record_removes_the_session() {
    let config = config(None);
    let store = instrumented(&config, false).await;
    let id = SessionId::generate().unwrap();
    store
        .update(&id, &conformance::patch(json!({"k": 1})))
        .await
        .unwrap();
    let now = now_millis();
    let expired = SessionRecord {
        data: conformance::object(json!({"k": 2})),
        created_at: now - 10_000,
        expires_at: now - 1,
    };
    store.insert(&id, &expired).await.unwrap();
    assert!(raw_item(&config, &id).await.is_none());
}

fn connect_error(result: Result<DynamoStore, sessiongate::Error>) -> String {
    match result {
        Ok(_) => panic!("connect should have failed"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_missing_table_is_a_start_up_error_naming_it() {
    let mut config = config(None);
    config.create_table = false;
    let message = connect_error(
        DynamoStore::connect(&config, &StoreSettings::new(config.timeout.get(), false)).await,
    );
    assert!(message.starts_with("store.table:"), "{message}");
    assert!(message.contains(&config.table), "{message}");
    assert!(message.contains("create_table"), "{message}");
}

#[tokio::test]
async fn a_table_with_other_keys_is_a_start_up_error() {
    let created = config(None);
    instrumented(&created, false).await;
    let mut other = config(Some("sk"));
    other.table = created.table.clone();
    other.create_table = false;
    let message = connect_error(
        DynamoStore::connect(&other, &StoreSettings::new(other.timeout.get(), false)).await,
    );
    assert!(message.starts_with("store.hash_key:"), "{message}");
}

#[tokio::test]
async fn an_unreachable_endpoint_at_start_up_is_reported_by_ping() {
    let mut config = config(None);
    config.create_table = false;
    config.aws.endpoint = Some("http://127.0.0.1:9".into());
    let store = DynamoStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect("an unreachable endpoint does not stop the gateway");
    assert!(store.ping().await.is_err());
    let id = SessionId::generate().unwrap();
    assert!(store.load(&id).await.is_err(), "a failed read is an error");

    config.create_table = true;
    let message = connect_error(
        DynamoStore::connect(&config, &StoreSettings::new(config.timeout.get(), false)).await,
    );
    assert!(message.starts_with("store.aws.endpoint:"), "{message}");
}

/// Two gateways on one table: their updates of one session race through the
/// compare-and-set (updates within one gateway take turns locally, and
/// queued ones are written in groups).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_from_two_gateways_lose_nothing() {
    const PER_GATEWAY: usize = 10;
    let config = config(None);
    let gateways = [
        instrumented(&config, false).await,
        instrumented(&config, false).await,
    ];
    let id = SessionId::generate().unwrap();
    let mut tasks = Vec::new();
    for n in 0..2 * PER_GATEWAY {
        let store = gateways[n % 2].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let change = conformance::patch(json!({ format!("k{n}"): n }));
            store.update(&id, &change).await
        }));
    }
    for task in tasks {
        task.await.expect("writer task").expect("update");
    }
    let loaded = gateways[0].load(&id).await.unwrap().expect("session");
    assert_eq!(loaded.data.len(), 2 * PER_GATEWAY, "{:?}", loaded.data);
    let item = raw_item(&config, &id).await.unwrap();
    // One version per write; a group write carries several updates.
    let version = number(&item, "version");
    assert!(
        (2..=2 * PER_GATEWAY as u64).contains(&version),
        "version {version}"
    );
}

#[tokio::test]
async fn conformance_an_expired_record_read_is_deleted() {
    let config = config(None);
    let store = DynamoStore::connect(&config, &StoreSettings::new(TIMEOUT, false))
        .await
        .expect("DynamoDB store");
    conformance::an_expired_record_read_is_deleted(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_two_stores_lose_no_concurrent_update() {
    let config = config(None);
    let first = instrumented(&config, false).await;
    let second = instrumented(&config, false).await;
    conformance::two_stores_lose_no_concurrent_update(first, second).await;
}
