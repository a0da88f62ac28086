//! The cookie store, black-box: the whole session sealed in the client's
//! cookie, chunked when large, opened under current and previous secrets.

use std::time::Duration;

use serde_json::json;

use crate::support::{self, Gateway, SECRET, TestClient, Upstream};

#[tokio::test]
async fn a_session_round_trips_through_the_cookie() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();

    let first = client.get(&gateway.url("/")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.session(), json!({}));
    assert!(
        first.set_cookies().is_empty(),
        "an untouched new session sends no cookie (save_uninitialized: false)"
    );

    let login = client
        .update(
            &gateway.url("/login"),
            &json!({"user": "ada", "roles": ["admin"]}),
        )
        .await;
    assert_eq!(login.status, 200);
    let cookie = &login.set_cookies()[0];
    assert!(cookie.starts_with("sid=v1."), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP without a trusted proxy: not Secure"
    );

    let next = client.get(&gateway.url("/")).await;
    assert_eq!(next.session(), json!({"user": "ada", "roles": ["admin"]}));
    assert_eq!(
        next.session_id(),
        login.session_id(),
        "X-Session-Id is stable"
    );
    assert!(
        next.upstream_header("cookie").is_empty(),
        "the session cookie never goes upstream"
    );
}

#[tokio::test]
async fn tampered_truncated_and_garbage_cookies_start_a_new_session() {
    let (_upstream, gateway, client) = support::logged_in("", json!({"user": "ada"})).await;
    let good = client.jar["sid"].clone();

    let mut tampered = good.clone().into_bytes();
    let at = tampered.len() - 8;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let cases = [
        String::from_utf8(tampered).unwrap(),
        good[..good.len() / 2].to_owned(),
        "garbage".to_owned(),
        "v1.00000000.AAAA".to_owned(),
        "v9.x.y".to_owned(),
        String::new(),
    ];
    for bad in cases {
        let mut attacker = TestClient::new();
        attacker.jar.insert("sid".into(), bad.clone());
        let response = attacker.get(&gateway.url("/")).await;
        assert_eq!(response.status, 200, "{bad:?}");
        assert_eq!(
            response.session(),
            json!({}),
            "{bad:?} must give a new, empty session"
        );
    }
    let metrics = TestClient::new().get(&gateway.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("sessiongate_sessions_rejected_total 6"),
        "{text}"
    );
}

#[tokio::test]
async fn a_12_kb_session_travels_in_chunks_and_shrinks_back_to_one_cookie() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    let big = "x".repeat(12 * 1024);

    let grown = client
        .update(&gateway.url("/"), &json!({"big": big, "user": "ada"}))
        .await;
    assert_eq!(grown.status, 200);
    for line in grown.set_cookies() {
        assert!(line.len() < 4096, "Set-Cookie of {} bytes", line.len());
    }
    let chunks: Vec<String> = client.jar.keys().cloned().collect();
    assert!(chunks.len() >= 4, "12 KB needs several chunks: {chunks:?}");
    assert!(chunks.contains(&"sid".to_owned()) && chunks.contains(&"sid.1".to_owned()));

    let read = client.get(&gateway.url("/")).await;
    assert_eq!(
        read.session()["big"].as_str().map(str::len),
        Some(12 * 1024)
    );

    let shrunk = client
        .update(&gateway.url("/"), &json!({"big": null}))
        .await;
    let expired: Vec<String> = shrunk
        .set_cookies()
        .into_iter()
        .filter(|c| c.contains("Max-Age=0"))
        .collect();
    assert_eq!(
        expired.len(),
        chunks.len() - 1,
        "every chunk no longer needed is expired: {expired:?}"
    );
    assert_eq!(client.jar.keys().collect::<Vec<_>>(), vec!["sid"]);
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada"})
    );
}

#[tokio::test]
async fn a_session_too_large_for_the_chunk_limit_is_an_error_not_a_loss() {
    let (_upstream, gateway, mut client) = support::logged_in(
        "store:\n  type: cookie\n  max_chunks: 2\n",
        json!({"user": "ada"}),
    )
    .await;
    let too_big = client
        .update(&gateway.url("/"), &json!({"big": "y".repeat(20_000)}))
        .await;
    assert!(too_big.status.is_server_error(), "{}", too_big.status);
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada"}),
        "the old session is intact"
    );
}

#[tokio::test]
async fn a_restart_with_the_same_secret_keeps_sessions() {
    let (_upstream, mut gateway, mut client) = support::logged_in("", json!({"user": "ada"})).await;
    gateway.restart().await;
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada"})
    );
}

#[tokio::test]
async fn previous_secrets_open_old_cookies_and_new_cookies_use_the_new_secret() {
    let upstream = Upstream::start().await;
    let old = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    client.update(&old.url("/"), &json!({"user": "ada"})).await;
    let listen = old.addr;
    drop(old);

    let new_secret = "rotated-secret-9876543210-zyxwvutsrqpo";
    let yaml = format!("upstream:\n  url: {}\n", upstream.url());
    let rotated = Gateway::builder(&yaml)
        .env("SESSION_SECRET", new_secret)
        .env("SESSION_PREVIOUS_SECRETS", SECRET)
        .listen(listen)
        .start()
        .await;
    assert_eq!(
        client.get(&rotated.url("/")).await.session(),
        json!({"user": "ada"}),
        "old cookie still opens"
    );
    client.update(&rotated.url("/"), &json!({"step": 2})).await;
    drop(rotated);

    // Once the old secret is retired, cookies written after the rotation
    // still open: they were sealed with the new secret.
    let retired = Gateway::builder(&yaml)
        .env("SESSION_SECRET", new_secret)
        .listen(listen)
        .start()
        .await;
    assert_eq!(
        client.get(&retired.url("/")).await.session(),
        json!({"user": "ada", "step": 2})
    );
    let mut stale = TestClient::new();
    let old_gateway = Gateway::start(&upstream, "").await;
    stale
        .update(&old_gateway.url("/"), &json!({"user": "eve"}))
        .await;
    let mut moved = TestClient::new();
    moved.jar = stale.jar.clone();
    assert_eq!(
        moved.get(&retired.url("/")).await.session(),
        json!({}),
        "a retired secret opens nothing"
    );
}

#[tokio::test]
async fn idle_sessions_expire() {
    let (_upstream, gateway, mut client) = support::logged_in(
        "session:\n  ttl: 2s\n  touch_interval: 500ms\n",
        json!({"user": "ada"}),
    )
    .await;
    // Activity inside the idle window keeps it alive...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(
            client.get(&gateway.url("/")).await.session(),
            json!({"user": "ada"})
        );
    }
    // ...and a replayed cookie past its expiry does not.
    let replay = client.jar.clone();
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let mut replayer = TestClient::new();
    replayer.jar = replay;
    assert_eq!(replayer.get(&gateway.url("/")).await.session(), json!({}));
}

#[tokio::test]
async fn absolute_ttl_ends_a_session_whatever_the_activity() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        "session:\n  ttl: 1h\n  absolute_ttl: 3s\n  touch_interval: 100ms\n  rolling: true\n",
    )
    .await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada"})
    );
    client.update(&gateway.url("/"), &json!({"more": 1})).await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({}),
        "3 s after creation it is gone"
    );
}

#[tokio::test]
async fn touch_reseals_at_most_once_per_interval() {
    let (_upstream, gateway, mut client) =
        support::logged_in("session:\n  touch_interval: 1s\n", json!({"user": "ada"})).await;
    let quick = client.get(&gateway.url("/")).await;
    assert!(
        quick.set_cookies().is_empty(),
        "inside touch_interval nothing is re-sent"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = client.get(&gateway.url("/")).await;
    assert_eq!(
        later.set_cookies().len(),
        1,
        "past touch_interval the cookie is re-sealed with the new expiry"
    );
    assert!(later.set_cookies()[0].contains("Max-Age=86400"));
}

#[tokio::test]
async fn save_uninitialized_sends_a_cookie_for_new_sessions() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "session:\n  save_uninitialized: true\n").await;
    let mut client = TestClient::new();
    let first = client.get(&gateway.url("/")).await;
    assert_eq!(first.set_cookies().len(), 1);
    let second = client.get(&gateway.url("/")).await;
    assert_eq!(second.session_id(), first.session_id());
}
