//! The store conformance suite against a standalone Redis, plus what only
//! Redis has to show: the key layout, native expiry, touch without rewrite,
//! byte-exact JSON, and recovering from an outage.
//!
//! Runs against `SESSIONGATE_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), which may be shared: every store gets its own
//! random prefix and nothing is ever flushed. The outage and touch tests
//! start their own `redis-server` on a free port.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sessiongate::Error;
use sessiongate::config::ConfigDuration;
use sessiongate::config::RedisConfig;
use sessiongate::store::StoreSettings;
use sessiongate::store::codec::express::Flavor;
use sessiongate::store::redis::RedisStore;
use sessiongate::store::{SessionId, SessionRecord, SessionStore, now_millis};

use crate::conformance;
use crate::support::servers::PrivateRedis;

fn redis_url() -> String {
    std::env::var("SESSIONGATE_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// A prefix no other test (or test run) uses.
fn unique_prefix() -> String {
    let id = SessionId::generate().expect("OS CSPRNG");
    format!("sgtest:{}:", &id.as_str()[..12])
}

fn config(url: String, prefix: String, timeout: Duration) -> RedisConfig {
    RedisConfig {
        url: Some(url),
        prefix,
        timeout: ConfigDuration(timeout),
        ..RedisConfig::default()
    }
}

async fn connect(url: String, prefix: String, timeout: Duration) -> RedisStore {
    RedisStore::connect(
        &config(url, prefix, timeout),
        &StoreSettings::new(timeout, false).indexed_by(Some(conformance::IDENTITY_KEY)),
    )
    .await
    .expect("a valid Redis configuration")
}

async fn make_store() -> Arc<dyn SessionStore> {
    let store = connect(redis_url(), unique_prefix(), Duration::from_secs(2)).await;
    Arc::new(store)
}

conformance::suite!();

async fn make_express_store() -> Arc<dyn SessionStore> {
    let config = config(redis_url(), unique_prefix(), Duration::from_secs(2));
    let settings = conformance::express_settings(config.timeout.get(), Flavor::Plain);
    Arc::new(
        RedisStore::connect(&config, &settings)
            .await
            .expect("a valid Redis configuration"),
    )
}

conformance::express_suite!();

/// A plain client, to look at what the store wrote.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("test URL")
        .get_multiplexed_async_connection()
        .await
        .expect("test Redis answers")
}

async fn query<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &mut redis::Cmd,
) -> T {
    cmd.query_async(conn).await.expect("test query")
}

fn new_id() -> SessionId {
    SessionId::generate().expect("OS CSPRNG")
}

#[tokio::test]
async fn keys_are_prefix_plus_id_and_expire_with_the_session() {
    let prefix = unique_prefix();
    let store = connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await;
    let id = new_id();
    let record = store
        .update(&id, &conformance::patch(json!({"user": "ada"})))
        .await
        .unwrap();

    let mut conn = raw(&redis_url()).await;
    let key = format!("{prefix}{}", id.as_str());
    let kind: String = query(&mut conn, redis::cmd("TYPE").arg(&key)).await;
    assert_eq!(kind, "string");
    let pttl: i64 = query(&mut conn, redis::cmd("PTTL").arg(&key)).await;
    let remaining = record.expires_at.saturating_sub(now_millis());
    assert!(
        (pttl as u64).abs_diff(remaining) < 1_000,
        "PTTL {pttl} ms, but the session has {remaining} ms left"
    );
    let blob: String = query(&mut conn, redis::cmd("GET").arg(&key)).await;
    assert!(
        !blob.contains(&record.expires_at.to_string()),
        "expiry is not in the blob: {blob}"
    );
}

#[tokio::test]
async fn json_is_stored_byte_exact() {
    let prefix = unique_prefix();
    let store = connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await;
    let id = new_id();
    let data = r#"{"z":[],"big":123456789012345678901234567890,"f":1.50,"o":{"e":{}},"s":"é"}"#;
    let now = now_millis();
    let record = SessionRecord {
        data: serde_json::from_str(data).unwrap(),
        created_at: now,
        expires_at: now + 60_000,
    };
    store.insert(&id, &record).await.unwrap();
    store
        .update(&id, &conformance::patch(json!({"n": 1})))
        .await
        .unwrap();

    let mut conn = raw(&redis_url()).await;
    let blob: String = query(
        &mut conn,
        redis::cmd("GET").arg(format!("{prefix}{}", id.as_str())),
    )
    .await;
    let expected = r#""data":{"z":[],"big":123456789012345678901234567890,"f":1.50,"o":{"e":{}},"s":"é","n":1}"#;
    assert!(blob.contains(expected), "{blob}");
}

#[tokio::test]
async fn an_expired_insert_removes_the_key() {
    let prefix = unique_prefix();
    let store = connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await;
    let id = new_id();
    store
        .update(&id, &conformance::patch(json!({"k": 1})))
        .await
        .unwrap();
    let now = now_millis();
    let dead = SessionRecord {
        data: conformance::object(json!({"k": 2})),
        created_at: now - 10_000,
        expires_at: now - 1,
    };
    store.insert(&id, &dead).await.unwrap();
    let mut conn = raw(&redis_url()).await;
    let exists: i64 = query(
        &mut conn,
        redis::cmd("EXISTS").arg(format!("{prefix}{}", id.as_str())),
    )
    .await;
    assert_eq!(exists, 0);
}

/// A blob sessiongate cannot read is no session; an update replaces it.
#[tokio::test]
async fn a_foreign_value_is_no_session_and_an_update_replaces_it() {
    let prefix = unique_prefix();
    let store = connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await;
    let id = new_id();
    let key = format!("{prefix}{}", id.as_str());
    let mut conn = raw(&redis_url()).await;
    let _: () = query(
        &mut conn,
        redis::cmd("SET")
            .arg(&key)
            .arg("not json")
            .arg("PX")
            .arg(60_000),
    )
    .await;
    assert_eq!(store.load(&id).await.unwrap(), None);
    let record = store
        .update(&id, &conformance::patch(json!({"k": 1})))
        .await
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap().unwrap().data, record.data);
}

/// Two gateways on one Redis, 20 writers each, one session: nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_lose_no_update() {
    let prefix = unique_prefix();
    let gateways = [
        Arc::new(connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await),
        Arc::new(connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await),
    ];
    let id = new_id();
    let mut tasks = Vec::new();
    for n in 0..40 {
        let store = gateways[n % 2].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let patch = json!({ format!("k{n}"): n });
            store.update(&id, &conformance::patch(patch)).await
        }));
    }
    for task in tasks {
        task.await.expect("writer").expect("update");
    }
    let loaded = gateways[0].load(&id).await.unwrap().expect("session");
    assert_eq!(loaded.data.len(), 40, "{:?}", loaded.data.keys());
}

/// How many times each command has run, from `INFO commandstats`.
async fn calls(redis: &PrivateRedis, command: &str) -> u64 {
    let mut conn = raw(&redis.url()).await;
    let info: String = query(&mut conn, redis::cmd("INFO").arg("commandstats")).await;
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a call count"))
}

#[tokio::test]
async fn touch_is_one_pexpireat_and_never_a_rewrite() {
    let redis = PrivateRedis::started();
    let prefix = unique_prefix();
    let store = connect(redis.url(), prefix.clone(), Duration::from_secs(2)).await;
    let id = new_id();
    let record = store
        .update(&id, &conformance::patch(json!({"k": [1, {}]})))
        .await
        .unwrap();
    let key = format!("{prefix}{}", id.as_str());
    let mut conn = raw(&redis.url()).await;
    let before: Vec<u8> = query(&mut conn, redis::cmd("GET").arg(&key)).await;
    let writes = ["set", "eval", "evalsha", "pexpireat"];
    let mut counts = Vec::new();
    for command in writes {
        counts.push(calls(&redis, command).await);
    }

    let later = record.expires_at + 3_600_000;
    store.touch(&id, later, None).await.unwrap();

    let mut deltas = Vec::new();
    for (command, count) in writes.iter().zip(&counts) {
        deltas.push(calls(&redis, command).await - count);
    }
    assert_eq!(deltas, [0, 0, 0, 1], "calls of {writes:?} during a touch");
    let after: Vec<u8> = query(&mut conn, redis::cmd("GET").arg(&key)).await;
    assert_eq!(after, before, "the stored bytes changed");
    let pttl: i64 = query(&mut conn, redis::cmd("PTTL").arg(&key)).await;
    assert!((pttl as u64).abs_diff(later - now_millis()) < 1_000);
}

/// Runs `call` and checks that it fails, and fails within `limit`.
async fn fails_within<T: std::fmt::Debug>(
    limit: Duration,
    call: impl Future<Output = Result<T, Error>>,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the store hung");
    let took = started.elapsed();
    assert!(result.is_err(), "succeeded with Redis down: {result:?}");
    assert!(took <= limit, "took {took:?} to fail: {result:?}");
}

/// Polls until the store answers again, without rebuilding it.
async fn recovers(store: &RedisStore) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_the_store_recovers_by_itself() {
    let timeout = Duration::from_secs(1);
    let limit = timeout + Duration::from_millis(500);
    let mut redis = PrivateRedis::started();
    let store = connect(redis.url(), unique_prefix(), timeout).await;
    let id = new_id();
    let change = conformance::patch(json!({"user": "ada"}));
    store.update(&id, &change).await.unwrap();

    redis.kill();
    fails_within(limit, store.load(&id)).await;
    fails_within(limit, store.update(&id, &change)).await;
    fails_within(limit, store.touch(&id, now_millis() + 60_000, None)).await;
    fails_within(limit, store.ping()).await;

    redis.start();
    recovers(&store).await;
    let record = store.update(&id, &change).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap().unwrap().data, record.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_not_fatal() {
    let timeout = Duration::from_secs(1);
    let mut redis = PrivateRedis::on_free_port();
    let started = Instant::now();
    let store = connect(redis.url(), unique_prefix(), timeout).await;
    assert!(started.elapsed() <= timeout + Duration::from_millis(500));
    fails_within(timeout + Duration::from_millis(500), store.ping()).await;

    redis.start();
    recovers(&store).await;
    let id = new_id();
    store
        .update(&id, &conformance::patch(json!({"k": 1})))
        .await
        .unwrap();
    assert!(store.load(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_bad_url_is_a_configuration_error_naming_store_url() {
    let bad = config(
        "http://localhost".into(),
        "p:".into(),
        Duration::from_secs(1),
    );
    let error = match RedisStore::connect(&bad, &StoreSettings::new(bad.timeout.get(), false)).await
    {
        Ok(_) => panic!("an http URL was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(error.starts_with("store.url"), "{error}");
}

/// Runs `openssl` with the space-separated `args` in `dir`.
fn openssl(dir: &Path, args: &str) {
    let status = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl on the PATH");
    assert!(status.success(), "openssl {args} failed");
}

/// A throwaway CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`), in `dir`.
fn make_certificates(dir: &Path) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    let key = "-newkey rsa:2048 -nodes";
    openssl(
        dir,
        &format!("req -x509 {key} -days 1 -keyout ca.key -out ca.pem -subj /CN=test-ca"),
    );
    openssl(
        dir,
        &format!("req {key} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
    );
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile san.ext -out server.pem",
    );
}

/// The name the test harness gives `tls_client`: its module path within the
/// test binary (`store_redis::tls_client`), without the crate's name.
fn tls_client_test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::tls_client")
}

/// `rediss://` end to end against a TLS-only `redis-server`. The store trusts
/// the system roots, so a child process of this test binary runs the client
/// with `SSL_CERT_FILE` naming a throwaway CA (changing the environment of
/// this threaded process would not be safe).
#[test]
fn rediss_urls_connect_over_tls() {
    let mut redis = PrivateRedis::on_free_port();
    let dir = redis.dir.path().to_path_buf();
    make_certificates(&dir);
    let file = |name: &str| dir.join(name).display().to_string();
    redis.port_flag = "--tls-port";
    redis.extra = vec![
        "--port".into(),
        "0".into(),
        "--tls-cert-file".into(),
        file("server.pem"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    redis.start();
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            &tls_client_test_name(),
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", file("ca.pem"))
        .env(
            "SESSIONGATE_TEST_TLS_URL",
            format!("rediss://127.0.0.1:{}", redis.port),
        )
        .output()
        .expect("the test binary runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && report.contains("1 passed"),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The client half of `rediss_urls_connect_over_tls`.
#[tokio::test]
#[ignore = "run by rediss_urls_connect_over_tls, with SSL_CERT_FILE set"]
async fn tls_client() {
    let url = std::env::var("SESSIONGATE_TEST_TLS_URL").expect("set by the parent test");
    let store = connect(url, unique_prefix(), Duration::from_secs(2)).await;
    store.ping().await.expect("PING over TLS");
    let id = new_id();
    let record = store
        .update(&id, &conformance::patch(json!({"tls": true})))
        .await
        .expect("update over TLS");
    assert_eq!(store.load(&id).await.unwrap().unwrap().data, record.data);
}

/// Username and password come from the URL (Redis 6 ACL users).
#[tokio::test]
async fn credentials_come_from_the_url() {
    let redis = PrivateRedis::started();
    let mut admin = raw(&redis.url()).await;
    let mut acl = redis::cmd("ACL");
    acl.arg(&["SETUSER", "ada", "on", ">s3cret", "~*", "+@all"][..]);
    let _: () = query(&mut admin, &mut acl).await;
    let mut default = redis::cmd("ACL");
    default.arg(&["SETUSER", "default", "off"][..]);
    let _: () = query(&mut admin, &mut default).await;
    let url = |auth: &str| format!("redis://{auth}@127.0.0.1:{}", redis.port);
    let timeout = Duration::from_secs(1);
    let store = connect(url("ada:s3cret"), unique_prefix(), timeout).await;
    store.ping().await.expect("PING as ada");
    let wrong = connect(url("ada:wrong"), unique_prefix(), timeout).await;
    assert!(wrong.ping().await.is_err(), "a wrong password was accepted");
}

#[tokio::test]
async fn conformance_an_expired_record_read_is_deleted() {
    let store = connect(redis_url(), unique_prefix(), Duration::from_secs(2)).await;
    conformance::an_expired_record_read_is_deleted(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_two_stores_lose_no_concurrent_update() {
    let prefix = unique_prefix();
    let first = connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await;
    let second = connect(redis_url(), prefix, Duration::from_secs(2)).await;
    conformance::two_stores_lose_no_concurrent_update(Arc::new(first), Arc::new(second)).await;
}

/// The identity's sorted set holds live sessions only: members of expired
/// sessions are dropped by the next write, and the set expires with its
/// newest session.
#[tokio::test]
async fn the_identity_set_does_not_grow_with_expired_sessions() {
    use sessiongate::store::{Change, Identity, Lifetime};
    let prefix = unique_prefix();
    let store = connect(redis_url(), prefix.clone(), Duration::from_secs(2)).await;
    let short = |user: &str| Change {
        lifetime: Lifetime {
            idle: Duration::from_secs(1),
            absolute: None,
        },
        ..conformance::patch(json!({"user": user}))
    };
    for _ in 0..5 {
        store
            .update(&SessionId::generate().unwrap(), &short("grace"))
            .await
            .unwrap();
    }
    let key = format!("{prefix}identity:{}", Identity::of_text("grace").as_str());
    let mut conn = raw(&redis_url()).await;
    let members: usize = redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, 5);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1_000,
        "the set expires with its newest session: {ttl}"
    );

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    store
        .update(
            &SessionId::generate().unwrap(),
            &conformance::patch(json!({"user": "grace"})),
        )
        .await
        .unwrap();
    let members: usize = redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, 1, "the expired five are gone from the set");
}
