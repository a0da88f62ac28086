//! The store conformance suite against a Redis Cluster of three masters.
//!
//! The project's test script starts the cluster on local ports (see
//! `scripts/services/redis.sh`) and names its seed nodes, comma-separated, in
//! `SESSIONGATE_TEST_REDIS_CLUSTER`.

use std::sync::Arc;

use serde_json::json;
use sessiongate::config::ConfigDuration;
use sessiongate::config::RedisConfig;
use sessiongate::store::StoreSettings;
use sessiongate::store::codec::express::Flavor;
use sessiongate::store::redis::RedisStore;
use sessiongate::store::{SessionId, SessionStore};

use crate::conformance;

fn seeds() -> Vec<String> {
    let seeds = std::env::var("SESSIONGATE_TEST_REDIS_CLUSTER").unwrap_or_default();
    let seeds: Vec<String> = seeds
        .split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(String::from)
        .collect();
    assert!(
        !seeds.is_empty(),
        "SESSIONGATE_TEST_REDIS_CLUSTER is not set: run the project's test script, which starts \
         a 3-master Redis Cluster (scripts/services/redis.sh, ensure_redis_cluster) and sets it"
    );
    seeds
}

fn unique_prefix() -> String {
    let id = SessionId::generate().expect("OS CSPRNG");
    format!("sgtest:{}:", &id.as_str()[..12])
}

async fn connect(prefix: String) -> RedisStore {
    let config = RedisConfig {
        urls: seeds(),
        cluster: true,
        prefix,
        timeout: ConfigDuration::secs(2),
        ..RedisConfig::default()
    };
    RedisStore::connect(
        &config,
        &StoreSettings::new(config.timeout.get(), false)
            .indexed_by(Some(conformance::IDENTITY_KEY)),
    )
    .await
    .expect("a valid Redis Cluster configuration")
}

async fn make_store() -> Arc<dyn SessionStore> {
    let store = connect(unique_prefix()).await;
    Arc::new(store)
}

conformance::suite!();

async fn make_express_store() -> Arc<dyn SessionStore> {
    let config = RedisConfig {
        urls: seeds(),
        cluster: true,
        prefix: unique_prefix(),
        timeout: ConfigDuration::secs(2),
        ..RedisConfig::default()
    };
    let settings = conformance::express_settings(config.timeout.get(), Flavor::Plain);
    Arc::new(
        RedisStore::connect(&config, &settings)
            .await
            .expect("a valid Redis Cluster configuration"),
    )
}

conformance::express_suite!();

/// Sessions spread over the masters: the store really uses the cluster.
#[tokio::test]
async fn sessions_land_on_every_master() {
    let prefix = unique_prefix();
    let store = connect(prefix.clone()).await;
    for _ in 0..30 {
        let id = SessionId::generate().unwrap();
        store
            .update(&id, &conformance::patch(json!({"k": 1})))
            .await
            .unwrap();
    }
    let mut total = 0;
    for seed in seeds() {
        let mut conn = redis::Client::open(seed.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("a seed node answers");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!keys.is_empty(), "no session on {seed}");
        total += keys.len();
    }
    assert_eq!(total, 30);
}

#[tokio::test]
async fn conformance_an_expired_record_read_is_deleted() {
    let store = connect(unique_prefix()).await;
    conformance::an_expired_record_read_is_deleted(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_two_stores_lose_no_concurrent_update() {
    let prefix = unique_prefix();
    let (first, second) = (connect(prefix.clone()).await, connect(prefix).await);
    conformance::two_stores_lose_no_concurrent_update(Arc::new(first), Arc::new(second)).await;
}
