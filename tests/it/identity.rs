//! Identity, black-box: a user's sessions revoked on one gateway are dead
//! on another sharing the store, the id moves by itself at sign-in, and
//! the admin session API guards itself.

use serde_json::{Value, json};

use crate::dynamodb_support::{endpoint, unique_table};
use crate::support::{Gateway, TestClient, Upstream, encode};

const TOKEN: &str = "admin-token-for-the-tests-0123456789";

fn random() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn redis_store() -> String {
    format!(
        "store:\n  type: redis\n  url: {}\n  prefix: \"sgid:{}:\"\n",
        env_or("SESSIONGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        random()
    )
}

fn mysql_store() -> String {
    format!(
        "store:\n  type: mysql\n  url: {}\n  table: sgid_{}\n",
        env_or(
            "SESSIONGATE_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test"
        ),
        random()
    )
}

fn dynamodb_store() -> String {
    format!(
        "store:\n  type: dynamodb\n  table: {}\n  create_table: true\n  timeout: 10s\n  aws:\n    endpoint: {}\n    region: eu-central-1\n    access_key_id: test\n    secret_access_key: test\n",
        unique_table(),
        endpoint()
    )
}

async fn gateway(upstream: &Upstream, store: &str, extra: &str) -> Gateway {
    Gateway::builder(&format!(
        "upstream:\n  url: {}\nsession:\n  identity_key: user\n{store}{extra}",
        upstream.url()
    ))
    .env("ADMIN_TOKEN", TOKEN)
    .start()
    .await
}

async fn admin(gateway: &Gateway, method: &str, query: &str, token: Option<&str>) -> (u16, String) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(gateway.admin_url(&format!("/sessions{query}")));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = TestClient::new()
        .send_raw(request.body(Default::default()).unwrap())
        .await
        .unwrap();
    (
        response.status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

async fn sign_in(gateway: &Gateway, user: &str) -> TestClient {
    let mut client = TestClient::new();
    let response = client
        .update(&gateway.url("/login"), &json!({"user": user}))
        .await;
    assert_eq!(response.status, 200);
    client
}

/// Three sessions of alice and one of bob; alice revoked on the first
/// gateway; on the second, alice's three cookies open nothing and bob's
/// still works.
async fn revoke_everywhere(store: &str) {
    let upstream = Upstream::start().await;
    let first = gateway(&upstream, store, "").await;
    let second = gateway(&upstream, store, "").await;
    let alice = format!("alice-{}@example.com", random());
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(sign_in(&first, &alice).await);
    }
    let mut bob = sign_in(&second, &format!("bob-{}", random())).await;
    let query = format!("?identity={}", encode(&alice));

    assert_eq!(
        admin(&second, "GET", &query, Some(TOKEN)).await,
        (200, "{\"sessions\":3}\n".to_owned())
    );
    assert_eq!(
        admin(&first, "DELETE", &query, Some(TOKEN)).await,
        (200, "{\"deleted\":3}\n".to_owned())
    );
    for client in &mut alices {
        let seen = client.get(&second.url("/whoami")).await;
        assert_eq!(seen.session(), json!({}), "alice's cookie opens nothing");
    }
    let seen = bob.get(&second.url("/whoami")).await;
    assert!(
        seen.session()["user"].is_string(),
        "bob lives: {}",
        seen.session()
    );
    assert_eq!(
        admin(&second, "GET", &query, Some(TOKEN)).await,
        (200, "{\"sessions\":0}\n".to_owned())
    );
    assert_eq!(
        admin(&first, "DELETE", &query, Some(TOKEN)).await,
        (200, "{\"deleted\":0}\n".to_owned()),
        "repeating is safe"
    );
    let mut first = first;
    let log = first.stderr();
    assert!(log.contains("sessions revoked"), "{log}");
    assert!(!log.contains(&alice), "the identity never appears in clear");
}

#[tokio::test]
async fn redis_revoke_reaches_every_gateway() {
    revoke_everywhere(&redis_store()).await;
}

#[tokio::test]
async fn mysql_revoke_reaches_every_gateway() {
    revoke_everywhere(&mysql_store()).await;
}

#[tokio::test]
async fn dynamodb_revoke_reaches_every_gateway() {
    revoke_everywhere(&dynamodb_store()).await;
}

#[tokio::test]
async fn memory_revoke_ends_the_sessions() {
    let upstream = Upstream::start().await;
    let gateway = gateway(&upstream, "store:\n  type: memory\n", "").await;
    let mut alice = sign_in(&gateway, "alice").await;
    assert_eq!(
        admin(&gateway, "DELETE", "?identity=alice", Some(TOKEN)).await,
        (200, "{\"deleted\":1}\n".to_owned())
    );
    assert_eq!(alice.get(&gateway.url("/")).await.session(), json!({}));
}

/// Signing in moves the session to a new id by itself: the cookie an
/// attacker planted or saw before is worthless after it.
#[tokio::test]
async fn signing_in_moves_the_session_to_a_new_id() {
    let upstream = Upstream::start().await;
    let gateway = gateway(&upstream, &redis_store(), "").await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/cart"), &json!({"cart": [1]}))
        .await;
    let before = client.jar.clone();
    let anonymous_id = client.get(&gateway.url("/")).await.session_id();

    let login = client
        .update(&gateway.url("/login"), &json!({"user": "alice"}))
        .await;
    assert!(!login.set_cookies().is_empty(), "a new cookie");
    assert_ne!(client.jar, before, "the cookie changed");
    let after = client.get(&gateway.url("/")).await;
    assert_eq!(after.session(), json!({"cart": [1], "user": "alice"}));
    assert_ne!(after.session_id(), anonymous_id, "a new id");

    let mut planted = TestClient::new();
    planted.jar = before;
    let old = planted.get(&gateway.url("/")).await;
    assert_eq!(
        old.session(),
        json!({}),
        "the id known before sign-in opens nothing"
    );

    // Same identity again: no move. Another identity: a move.
    let jar = client.jar.clone();
    client
        .update(&gateway.url("/"), &json!({"user": "alice", "step": 2}))
        .await;
    assert_eq!(client.jar, jar, "the same user: the id stays");
    client
        .update(&gateway.url("/"), &json!({"user": "mallory"}))
        .await;
    assert_ne!(client.jar, jar, "another user: a new id");
    // Signing out does not move it.
    let jar = client.jar.clone();
    client
        .update(&gateway.url("/"), &json!({"user": null}))
        .await;
    assert_eq!(client.jar, jar);
}

#[tokio::test]
async fn rotation_can_be_turned_off() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: {}\nsession:\n  identity_key: user\n  regenerate_on_identity_change: false\nstore:\n  type: memory\n",
        upstream.url()
    ))
    .start()
    .await;
    let mut client = TestClient::new();
    client.update(&gateway.url("/"), &json!({"cart": 1})).await;
    let jar = client.jar.clone();
    client
        .update(&gateway.url("/login"), &json!({"user": "alice"}))
        .await;
    assert_eq!(client.jar, jar);
}

#[tokio::test]
async fn an_identity_that_is_not_a_string_or_number_is_refused() {
    let upstream = Upstream::start().await;
    let gateway = gateway(&upstream, "store:\n  type: memory\n", "").await;
    let mut client = TestClient::new();
    for bad in [json!({"id": 1}), json!([1]), json!(true)] {
        let response = client
            .update(&gateway.url("/"), &json!({"user": bad}))
            .await;
        assert_eq!(response.status, 502, "{bad}");
    }
    let numeric = client.update(&gateway.url("/"), &json!({"user": 42})).await;
    assert_eq!(numeric.status, 200);
    assert_eq!(
        admin(&gateway, "GET", "?identity=42", Some(TOKEN)).await,
        (200, "{\"sessions\":1}\n".to_owned())
    );
}

#[tokio::test]
async fn the_session_api_guards_itself() {
    let upstream = Upstream::start().await;
    let gateway = gateway(&upstream, "store:\n  type: memory\n", "").await;
    let mut alice = sign_in(&gateway, "alice").await;
    for (method, query, token, status) in [
        ("DELETE", "?identity=alice", None, 401),
        (
            "DELETE",
            "?identity=alice",
            Some("wrong-token-0123456789"),
            401,
        ),
        (
            "GET",
            "?identity=alice",
            Some("admin-token-for-the-tests-012345678"),
            401,
        ),
        ("DELETE", "", Some(TOKEN), 400),
        ("DELETE", "?identity=", Some(TOKEN), 400),
        ("DELETE", "?identity=alice&identity=bob", Some(TOKEN), 400),
        ("POST", "?identity=alice", Some(TOKEN), 405),
    ] {
        let (got, body) = admin(&gateway, method, query, token).await;
        assert_eq!(got, status, "{method} {query} {token:?}: {body}");
    }
    let still: Value = alice.get(&gateway.url("/")).await.session();
    assert_eq!(still, json!({"user": "alice"}), "nothing was deleted");

    let without_token = Gateway::start(&upstream, "store:\n  type: memory\n").await;
    assert_eq!(
        admin(&without_token, "GET", "?identity=alice", Some(TOKEN))
            .await
            .0,
        404,
        "no token configured: no API"
    );
    let cookie_store = Gateway::builder(&format!(
        "upstream:\n  url: {}\nsession:\n  identity_key: user\n",
        upstream.url()
    ))
    .env("ADMIN_TOKEN", TOKEN)
    .start()
    .await;
    let (status, body) = admin(&cookie_store, "DELETE", "?identity=alice", Some(TOKEN)).await;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("cookie"), "{body}");
}
