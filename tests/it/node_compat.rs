//! `session.compat` against the real Node packages: the app under
//! `tests/node/` (installed by `scripts/test.sh` with `npm ci`) keeps its
//! sessions with express-session and each store, or with iron-session, and
//! the gateway in front of the echo backend shares them, both ways, with
//! one cookie.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sessiongate::config::Secrets;
use sessiongate::session::express::ExpressSigner;

use crate::dynamodb_support;
use crate::support::{self, Gateway, SECRET, TestClient, Upstream, free_port};

/// The Node app, on a free port, with its store settings in its
/// environment (never in ours).
struct NodeApp {
    child: Child,
    port: u16,
}

impl NodeApp {
    async fn start(store: &str, env: &[(&str, String)]) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        assert!(
            dir.join("node_modules/express-session").is_dir(),
            "tests/node/node_modules is missing: run scripts/test.sh (or `npm ci` in tests/node)"
        );
        let port = free_port();
        let mut command = Command::new("node");
        command
            .arg("app.js")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("SESSION_SECRET", SECRET)
            .env("STORE", store)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("node is installed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the Node app ({store}) exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the Node app ({store}) did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("OS CSPRNG");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn redis_url() -> String {
    env_or("SESSIONGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

fn mysql_url() -> String {
    env_or(
        "SESSIONGATE_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
    )
}

/// What the Node app says its session is.
async fn node_session(client: &mut TestClient, node: &NodeApp) -> Value {
    let response = client.get(&node.url("/whoami")).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.json()["session"].clone()
}

/// Both directions on one store: the Node app logs in and the gateway's
/// backend sees the user; the gateway writes and the Node app sees it; the
/// cookie either side sets works on the other; the gateway keeps
/// express-session's `cookie` away from the backend.
async fn both_directions(gateway: &Gateway, node: &NodeApp, cookie_name: &str) {
    // The Node app logs in; the backend behind the gateway sees the user.
    let mut client = TestClient::new();
    let login = client.get(&node.url("/login?user=ada")).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let cookie = client
        .jar
        .get(cookie_name)
        .cloned()
        .expect("Node set the cookie");
    let seen = client.get(&gateway.url("/")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.session(),
        json!({"user": "ada"}),
        "the backend never sees `cookie`"
    );
    // The gateway writes; the Node app sees it under the same cookie.
    let written = client
        .update(&gateway.url("/"), &json!({"role": "admin"}))
        .await;
    assert_eq!(written.status, 200);
    let session = node_session(&mut client, node).await;
    assert_eq!(session["user"], "ada");
    assert_eq!(session["role"], "admin");
    if cookie_name == "connect.sid" {
        assert_eq!(
            client.jar.get(cookie_name),
            Some(&cookie),
            "one session, one cookie"
        );
        assert!(session["cookie"]["originalMaxAge"].is_number(), "{session}");
        // express-session's own object is the gateway's to keep.
        let refused = client
            .update(&gateway.url("/"), &json!({"cookie": null}))
            .await;
        assert_eq!(refused.status, 502);
    }

    // The gateway starts a session; the Node app reads it, writes to it,
    // and the gateway's backend sees that.
    let mut other = TestClient::new();
    let started = other
        .update(&gateway.url("/"), &json!({"user": "bob"}))
        .await;
    assert_eq!(started.status, 200);
    assert!(
        other.jar.contains_key(cookie_name),
        "{:?}",
        started.set_cookies()
    );
    assert_eq!(node_session(&mut other, node).await["user"], "bob");
    let set = other
        .get(&node.url(&format!("/set?json={}", support::encode(r#"{"n":1}"#))))
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let seen = other.get(&gateway.url("/")).await;
    assert_eq!(seen.session(), json!({"user": "bob", "n": 1}));

    if cookie_name == "connect.sid" {
        concurrent_patches_on_what_node_wrote(gateway, node, &other).await;
    }

    // A cookie no secret signed is a new, empty session on the gateway.
    let mut forged = TestClient::new();
    forged
        .jar
        .insert(cookie_name.into(), "s%3Aforged.bad".into());
    let fresh = forged.get(&gateway.url("/")).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.session(), json!({}));
}

/// The gateway's updates stay atomic on a record the Node app wrote last:
/// concurrent patches through the gateway all land, beside what the Node
/// app wrote, and the Node app sees every one.
async fn concurrent_patches_on_what_node_wrote(
    gateway: &Gateway,
    node: &NodeApp,
    browser: &TestClient,
) {
    const WRITERS: usize = 20;
    let mut tasks = Vec::new();
    for n in 0..WRITERS {
        let mut client = TestClient::new();
        client.jar = browser.jar.clone();
        let url = gateway.url("/");
        tasks.push(tokio::spawn(async move {
            client
                .update(&url, &json!({ format!("k{n}"): n }))
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("writer"), 200);
    }
    let mut reader = TestClient::new();
    reader.jar = browser.jar.clone();
    let session = node_session(&mut reader, node).await;
    for n in 0..WRITERS {
        assert_eq!(
            session[format!("k{n}")],
            json!(n),
            "update {n} lost: {session}"
        );
    }
    assert_eq!(session["n"], 1);
    assert_eq!(session["user"], "bob");
}

fn express(store_yaml: &str) -> String {
    format!("session:\n  compat: express-session\n{store_yaml}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_redis_both_directions() {
    let prefix = unique("sgnode:");
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        &express(&format!(
            "store:\n  type: redis\n  url: {}\n  prefix: \"{prefix}\"\n",
            redis_url()
        )),
    )
    .await;
    let node = NodeApp::start("redis", &[("REDIS_URL", redis_url()), ("PREFIX", prefix)]).await;
    both_directions(&gateway, &node, "connect.sid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_mysql_session_both_directions() {
    let table = unique("sgnode_");
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        &express(&format!(
            "store:\n  type: mysql\n  url: {}\n  table: {table}\n",
            mysql_url()
        )),
    )
    .await;
    let node = NodeApp::start("mysql", &[("MYSQL_URL", mysql_url()), ("TABLE", table)]).await;
    both_directions(&gateway, &node, "connect.sid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iron_session_both_directions() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        "session:\n  compat: iron-session\nstore:\n  type: cookie\n",
    )
    .await;
    let node = NodeApp::start("iron", &[]).await;
    both_directions(&gateway, &node, "sid").await;
}

fn dynamodb_store(table: &str, layout: &str) -> String {
    format!(
        "store:\n  type: dynamodb\n  table: {table}\n  layout: {layout}\n  create_table: true\n  timeout: 10s\n  aws:\n    region: eu-central-1\n    endpoint: {}\n    access_key_id: testing\n    secret_access_key: testing\n",
        dynamodb_support::endpoint()
    )
}

/// The gateway creates the table (neither Node store does by itself here),
/// so it starts first.
async fn dynamodb_both_directions(layout: &str, store: &str) {
    let table = dynamodb_support::unique_table();
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, &express(&dynamodb_store(&table, layout))).await;
    let node = NodeApp::start(
        store,
        &[
            ("DYNAMODB_ENDPOINT", dynamodb_support::endpoint()),
            ("TABLE", table),
            ("PREFIX", "sess:".into()),
        ],
    )
    .await;
    both_directions(&gateway, &node, "connect.sid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_dynamodb_both_directions() {
    dynamodb_both_directions("connect-dynamodb", "dynamodb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyclic_session_store_both_directions() {
    dynamodb_both_directions("cyclic", "cyclic").await;
}

/// Values the gateway cannot take for an express-session (not JSON, no
/// `cookie`, a `cookie` of the wrong shape) are new, empty sessions: never
/// a 5xx. The cookie is signed as express-session would sign it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_stored_values_are_new_sessions() {
    let prefix = unique("sgnode:");
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        &express(&format!(
            "store:\n  type: redis\n  url: {}\n  prefix: \"{prefix}\"\n",
            redis_url()
        )),
    )
    .await;
    let signer = ExpressSigner::new(&Secrets {
        current: SECRET.into(),
        previous: Vec::new(),
    });
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    for value in [
        "not json",
        "[1]",
        r#"{"user":"mallory"}"#,
        r#"{"cookie":"x","user":"mallory"}"#,
        r#"{"cookie":{"expires":5},"user":"mallory"}"#,
    ] {
        let id = sessiongate::session::express::new_id().expect("OS CSPRNG");
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}{}", id.as_str()))
            .arg(value)
            .arg("EX")
            .arg(600)
            .query_async(&mut redis)
            .await
            .expect("SET");
        let mut browser = TestClient::new();
        browser.jar.insert("connect.sid".into(), signer.sign(&id));
        let response = browser.get(&gateway.url("/")).await;
        assert_eq!(response.status, 200, "{value}");
        assert_eq!(response.session(), json!({}), "{value}");
    }
    // What the gateway writes is express-session's JSON, `cookie` first.
    let mut browser = TestClient::new();
    browser
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    let cookie = browser.jar.get("connect.sid").expect("a cookie").clone();
    let id = signer.verify(&cookie).expect("signed like express-session");
    assert_eq!(id.as_str().len(), 32);
    let stored: String = redis::cmd("GET")
        .arg(format!("{prefix}{}", id.as_str()))
        .query_async(&mut redis)
        .await
        .expect("GET");
    assert!(
        stored.starts_with(r#"{"cookie":{"originalMaxAge":86400000,"expires":""#),
        "{stored}"
    );
    assert!(
        stored.ends_with(r#""path":"/","sameSite":"lax"},"user":"ada"}"#),
        "{stored}"
    );
}

/// iron-session reads one cookie: a seal that does not fit in one is an
/// error (500, the old cookie kept), never chunks the Node app cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iron_seal_never_spans_two_cookies() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        "session:\n  compat: iron-session\nstore:\n  type: cookie\n",
    )
    .await;
    let mut browser = TestClient::new();
    let small = browser
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    assert_eq!(small.status, 200);
    let kept = browser.jar.clone();
    let big = browser
        .update(&gateway.url("/"), &json!({"blob": "x".repeat(4_000)}))
        .await;
    assert_eq!(big.status, 500);
    assert_eq!(browser.jar, kept);
}
