//! Redis Sentinel: the gateway finds the master through a sentinel and
//! follows a failover by itself. The test starts its own master, replica
//! and sentinel on free ports and kills them at the end.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::support::servers::{PrivateRedis, PrivateSentinel};
use crate::support::{Gateway, TestClient, Upstream};

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every write so far on the master at `url` reached a replica
/// (`WAIT 1`).
async fn replicated(url: &str) {
    eventually(
        "the writes reached the replica (WAIT 1)",
        Duration::from_secs(10),
        || async {
            // Short waits: the client's own response timeout is brief.
            let acknowledged: redis::RedisResult<i64> = redis::cmd("WAIT")
                .arg(1)
                .arg(200)
                .query_async(&mut connection(url).await)
                .await;
            acknowledged == Ok(1)
        },
    )
    .await;
}

#[tokio::test]
async fn the_gateway_follows_a_failover_and_keeps_replicated_sessions() {
    let mut master = PrivateRedis::started();
    let mut replica = PrivateRedis::on_free_port();
    replica.extra = vec![
        "--replicaof".into(),
        "127.0.0.1".into(),
        master.port.to_string(),
    ];
    replica.start();
    let sentinel = PrivateSentinel::monitoring("sgmaster", master.port);
    let sentinel_url = sentinel.url();
    eventually(
        "the sentinel knows the replica",
        Duration::from_secs(20),
        || {
            let url = sentinel_url.clone();
            async move {
                let mut sentinel = connection(&url).await;
                let replicas: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg("sgmaster")
                    .query_async(&mut sentinel)
                    .await;
                replicas.is_ok_and(|replicas| !replicas.is_empty())
            }
        },
    )
    .await;

    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        &format!(
            "store:\n  type: redis\n  prefix: \"sentinel:\"\n  timeout: 1s\n  sentinel:\n    master: sgmaster\n    urls: [\"{sentinel_url}\"]\n"
        ),
    )
    .await;
    let mut client = TestClient::new();
    let login = client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    assert_eq!(login.status, StatusCode::OK);
    replicated(&master.url()).await;

    master.kill();
    let killed = Instant::now();
    let mut refusals = Vec::new();
    loop {
        let answer = client.get(&gateway.url("/")).await;
        if answer.status == StatusCode::OK {
            assert_eq!(
                answer.session(),
                json!({"user": "ada"}),
                "the session written before the failover is still there"
            );
            break;
        }
        refusals.push(answer.status);
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no recovery 30 s after the master died: {refusals:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refusals
            .iter()
            .all(|status| *status == StatusCode::SERVICE_UNAVAILABLE),
        "only 503 during the failover: {refusals:?}"
    );
    let mut promoted = connection(&replica.url()).await;
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(&mut promoted)
        .await
        .expect("ROLE");
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "the sentinel promoted the replica"
    );

    for n in 0..5 {
        let answer = client
            .update(&gateway.url("/"), &json!({ "after": n }))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "write {n} after the failover"
        );
    }
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada", "after": 4})
    );
    let ready = TestClient::new()
        .try_get(&gateway.admin_url("/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status, StatusCode::OK);
    replica.kill();
}

#[tokio::test]
async fn writes_follow_a_failover_whose_old_master_lives_on_as_a_replica() {
    let master = PrivateRedis::started();
    let mut replica = PrivateRedis::on_free_port();
    replica.extra = vec![
        "--replicaof".into(),
        "127.0.0.1".into(),
        master.port.to_string(),
    ];
    replica.start();
    let sentinel = PrivateSentinel::monitoring("sgswitch", master.port);
    let sentinel_url = sentinel.url();
    let replica_in_sync = || {
        let (sentinel_url, replica_url) = (sentinel_url.clone(), replica.url());
        async move {
            let mut sentinel = connection(&sentinel_url).await;
            let known: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg("sgswitch")
                .query_async(&mut sentinel)
                .await;
            let info: redis::RedisResult<String> = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut connection(&replica_url).await)
                .await;
            known.is_ok_and(|known| !known.is_empty())
                && info.is_ok_and(|info| info.contains("master_link_status:up"))
        }
    };
    eventually(
        "the replica is known and in sync",
        Duration::from_secs(20),
        replica_in_sync,
    )
    .await;

    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        &format!(
            "store:\n  type: redis\n  prefix: \"switch:\"\n  timeout: 1s\n  sentinel:\n    master: sgswitch\n    urls: [\"{sentinel_url}\"]\n"
        ),
    )
    .await;
    let mut client = TestClient::new();
    let login = client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    assert_eq!(login.status, StatusCode::OK);
    replicated(&master.url()).await;

    let mut sentinel = connection(&sentinel_url).await;
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg("sgswitch")
        .query_async(&mut sentinel)
        .await
        .expect("SENTINEL FAILOVER");
    let replica_url = replica.url();
    eventually("the replica is promoted", Duration::from_secs(20), || {
        let url = replica_url.clone();
        async move {
            let role: redis::RedisResult<Vec<redis::Value>> = redis::cmd("ROLE")
                .query_async(&mut connection(&url).await)
                .await;
            role.is_ok_and(|role| {
                role.first() == Some(&redis::Value::BulkString(b"master".to_vec()))
            })
        }
    })
    .await;

    // The old master still answers, now as a replica: reads would work on
    // it, writes get READONLY until the gateway asks the sentinels again.
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let answer = client.update(&gateway.url("/"), &json!({ "n": n })).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "writes did not follow the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada", "n": n})
    );
}
