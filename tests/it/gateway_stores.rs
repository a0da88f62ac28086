//! The binary in front of a real upstream with each server store: sessions
//! round-trip, several gateways share one store, and an outage gives 503s
//! that leave the client's cookie alone, then heals without a restart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::servers::{PrivateMariadb, PrivateRedis};
use crate::support::{self, Gateway, TestClient, Upstream};

fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn redis_store(url: &str, prefix: &str) -> String {
    format!("store:\n  type: redis\n  url: {url}\n  prefix: \"{prefix}\"\n  timeout: 1s\n")
}

fn mysql_store(url: &str, table: &str) -> String {
    format!("store:\n  type: mysql\n  url: {url}\n  table: {table}\n  timeout: 1s\n")
}

/// While the store is down: 503 quickly, no cookie change, /readyz 503.
async fn outage_is_a_fast_503(gateway: &Gateway, client: &mut TestClient) {
    let jar = client.jar.clone();
    let started = Instant::now();
    let response = client
        .update(&gateway.url("/"), &json!({"during": "outage"}))
        .await;
    assert_eq!(response.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "503 within a few seconds, took {:?}",
        started.elapsed()
    );
    assert!(
        response.set_cookies().is_empty(),
        "the cookie is left alone"
    );
    assert_eq!(client.jar, jar);
    let read = client.get(&gateway.url("/")).await;
    assert_eq!(read.status, 503);
    let ready = TestClient::new()
        .try_get(&gateway.admin_url("/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    let health = TestClient::new()
        .try_get(&gateway.admin_url("/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status, 200, "the process still serves");
}

/// After the store returns, the same session is served again.
async fn recovers(gateway: &Gateway, client: &mut TestClient, expected: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(&gateway.url("/")).await;
        if response.status == 200 {
            assert_eq!(response.session(), expected);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover: {}",
            response.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = TestClient::new()
        .try_get(&gateway.admin_url("/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
}

#[tokio::test]
async fn redis_sessions_through_the_gateway() {
    let upstream = Upstream::start().await;
    let url = env_or("SESSIONGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let gateway = Gateway::start(&upstream, &redis_store(&url, &unique("sgbb:"))).await;
    support::session_lifecycle(&gateway).await;
}

#[tokio::test]
async fn two_gateways_sharing_one_redis_lose_no_update() {
    let upstream = Upstream::start().await;
    let url = env_or("SESSIONGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let store = redis_store(&url, &unique("sgbb:"));
    let first = Gateway::start(&upstream, &store).await;
    let second = Gateway::start(&upstream, &store).await;
    support::concurrent_updates_across(&[&first, &second]).await;
}

#[tokio::test]
async fn a_redis_cluster_serves_sessions_through_the_gateway() {
    let seeds = std::env::var("SESSIONGATE_TEST_REDIS_CLUSTER")
        .expect("SESSIONGATE_TEST_REDIS_CLUSTER: run scripts/test.sh");
    let urls: Vec<String> = seeds.split(',').map(|s| format!("\"{s}\"")).collect();
    let upstream = Upstream::start().await;
    let store = format!(
        "store:\n  type: redis\n  cluster: true\n  urls: [{}]\n  prefix: \"{}\"\n",
        urls.join(", "),
        unique("sgbb:")
    );
    let first = Gateway::start(&upstream, &store).await;
    let second = Gateway::start(&upstream, &store).await;
    support::session_lifecycle(&first).await;
    support::concurrent_updates_across(&[&first, &second]).await;
}

#[tokio::test]
async fn a_redis_outage_gives_503s_and_heals_without_a_restart() {
    let mut redis = PrivateRedis::started();
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, &redis_store(&redis.url(), "sess:")).await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;

    // A clean shutdown writes the dataset to disk, so the same data comes back.
    let _ = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "shutdown", "save"])
        .status();
    redis.kill();
    outage_is_a_fast_503(&gateway, &mut client).await;
    redis.start();
    recovers(&gateway, &mut client, json!({"user": "ada"})).await;
}

#[tokio::test]
async fn mysql_sessions_through_the_gateway() {
    let upstream = Upstream::start().await;
    let url = env_or(
        "SESSIONGATE_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
    );
    let table = unique("sgbb_");
    let first = Gateway::start(&upstream, &mysql_store(&url, &table)).await;
    let second = Gateway::start(&upstream, &mysql_store(&url, &table)).await;
    support::session_lifecycle(&first).await;
    support::concurrent_updates_across(&[&first, &second]).await;
}

#[tokio::test]
async fn a_mysql_outage_gives_503s_and_heals_without_a_restart() {
    let mut mariadb = PrivateMariadb::install();
    mariadb.start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, &mysql_store(&mariadb.url("mysql"), "sessions")).await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;

    mariadb.kill();
    outage_is_a_fast_503(&gateway, &mut client).await;
    mariadb.start().await;
    recovers(&gateway, &mut client, json!({"user": "ada"})).await;
}

#[tokio::test]
async fn dynamodb_sessions_through_the_gateway() {
    let endpoint = std::env::var("SESSIONGATE_TEST_DYNAMODB_ENDPOINT")
        .expect("SESSIONGATE_TEST_DYNAMODB_ENDPOINT: run scripts/test.sh, which starts moto");
    let upstream = Upstream::start().await;
    let store = format!(
        "store:\n  type: dynamodb\n  table: {}\n  hash_key: pk\n  sort_key: sk\n  create_table: true\n  timeout: 10s\n  aws:\n    endpoint: {endpoint}\n    region: eu-central-1\n    access_key_id: test\n    secret_access_key: test\n",
        unique("sgbb-")
    );
    let first = Gateway::start(&upstream, &store).await;
    let second = Gateway::start(&upstream, &store).await;
    support::session_lifecycle(&first).await;
    support::concurrent_updates_across(&[&first, &second]).await;
}
