//! Hostile clients and sloppy backends, black-box: each test is one item of
//! the contract's hardening rules, against the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::servers::PrivateRedis;
use crate::support::{self, Gateway, TestClient, Upstream, encode, free_port};

fn get_with_headers(url: &str, headers: &[(&str, &[u8])]) -> Request<Full<Bytes>> {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    request.body(Full::default()).unwrap()
}

/// Item 5: a 12-byte `sid.999=x` gets one expiring `Set-Cookie`, not 1,000.
#[tokio::test]
async fn only_chunk_names_the_client_sent_are_expired() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let response = TestClient::new()
        .send_raw(get_with_headers(
            &gateway.url("/"),
            &[("cookie", b"sid.999=x")],
        ))
        .await
        .unwrap();
    let cookies = response.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("sid.999=;"), "{cookies:?}");
}

/// Item 9: several `X-Session-Update` headers apply one after the other:
/// `{"user":null}` then `{"user":{"name":"bob"}}` leaves no old `role`.
#[tokio::test]
async fn several_updates_apply_in_order() {
    for store in ["", "store:\n  type: memory\n"] {
        let (_upstream, gateway, mut client) =
            support::logged_in(store, json!({"user": {"name": "ada", "role": "admin"}})).await;
        let url = gateway.url(&format!(
            "/?update={}&update={}",
            encode(r#"{"user":null}"#),
            encode(r#"{"user":{"name":"bob"}}"#)
        ));
        assert_eq!(client.get(&url).await.status, 200);
        let next = client.get(&gateway.url("/")).await;
        assert_eq!(
            next.session(),
            json!({"user": {"name": "bob"}}),
            "store: {store:?}"
        );
    }
}

/// Item 10: a non-ASCII byte elsewhere in `Cookie` neither disables the
/// session nor lets the session cookie through to the backend.
#[tokio::test]
async fn a_non_ascii_cookie_header_still_has_its_session_cookie_read_and_removed() {
    let (_upstream, gateway, client) =
        support::logged_in("store:\n  type: memory\n", json!({"user": "ada"})).await;
    let sid = client.jar["sid"].clone();
    let line = [
        b"pref=caf\xc3\xa9; sid=".as_slice(),
        sid.as_bytes(),
        b"; theme=d\xe9",
    ]
    .concat();
    let response = TestClient::new()
        .send_raw(get_with_headers(&gateway.url("/"), &[("cookie", &line)]))
        .await
        .unwrap();
    assert_eq!(response.session(), json!({"user": "ada"}));
    let forwarded = response.upstream_header("cookie");
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert!(
        !forwarded[0].contains(&sid),
        "the session cookie went upstream"
    );
    assert!(forwarded[0].starts_with("pref=caf") && forwarded[0].contains("theme=d"));
}

/// Item 11: U+007F in a session string is escaped, never replaced by `{}`.
#[tokio::test]
async fn a_delete_character_in_the_session_reaches_the_backend_escaped() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    // The backend writes the character escaped, as JSON allows.
    let login = gateway.url(&format!("/?update={}", encode(r#"{"note":"a\u007fb"}"#)));
    assert_eq!(client.get(&login).await.status, 200);
    let next = client.get(&gateway.url("/")).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.session(), json!({"note": "a\u{7f}b"}));
    let raw = next.upstream_header("x-session-data");
    assert_eq!(raw, vec![r#"{"note":"a\u007fb"}"#]);
}

/// Item 12: a refresh that fails after the backend answered leaves the
/// response alone (no 503), without a new cookie.
#[tokio::test]
async fn a_failed_refresh_after_the_backend_answered_keeps_the_response() {
    let mut redis = PrivateRedis::started();
    let upstream = Upstream::start().await;
    let yaml = format!(
        "session:\n  ttl: 1h\n  touch_interval: 1s\nstore:\n  type: redis\n  url: {}\n  timeout: 500ms\n",
        redis.url()
    );
    let gateway = Gateway::start(&upstream, &yaml).await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    // The session loads, then Redis goes away while the backend is busy.
    let slow = tokio::spawn({
        let url = gateway.url("/slow?ms=1500");
        let jar = client.jar.clone();
        async move {
            let mut client = TestClient::new();
            client.jar = jar;
            client.get(&url).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    let response = slow.await.unwrap();
    assert_eq!(response.status, 200, "the backend's answer stands");
    assert_eq!(response.session(), json!({"user": "ada"}));
    assert!(
        response.set_cookies().is_empty(),
        "{:?}",
        response.set_cookies()
    );
}

/// Item 13: header names with `_` never reach the backend (it may fold them
/// into `-`), and `Forwarded`/`X-Real-IP` only come from trusted proxies.
#[tokio::test]
async fn underscored_and_untrusted_forwarding_headers_are_dropped() {
    let upstream = Upstream::start().await;
    let spoof: &[(&str, &[u8])] = &[
        ("x_forwarded_for", b"6.6.6.6"),
        ("x-forwarded_proto", b"https"),
        ("transfer_encoding", b"chunked"),
        ("x_custom", b"1"),
        ("forwarded", b"for=6.6.6.6"),
        ("x-real-ip", b"6.6.6.6"),
    ];
    let untrusted = Gateway::start(&upstream, "").await;
    let response = TestClient::new()
        .send_raw(get_with_headers(&untrusted.url("/"), spoof))
        .await
        .unwrap();
    for name in [
        "x_forwarded_for",
        "x-forwarded_proto",
        "transfer_encoding",
        "x_custom",
        "forwarded",
        "x-real-ip",
    ] {
        assert!(
            response.upstream_header(name).is_empty(),
            "{name} reached the backend"
        );
    }
    assert_eq!(
        response.upstream_header("x-forwarded-for"),
        vec!["127.0.0.1"]
    );

    let trusted = Gateway::start(&upstream, "trusted_proxies: [127.0.0.0/8]\n").await;
    let response = TestClient::new()
        .send_raw(get_with_headers(&trusted.url("/"), spoof))
        .await
        .unwrap();
    assert_eq!(response.upstream_header("forwarded"), vec!["for=6.6.6.6"]);
    assert_eq!(response.upstream_header("x-real-ip"), vec!["6.6.6.6"]);
    assert!(response.upstream_header("x_forwarded_for").is_empty());
}

/// Item 14: only `Upgrade: websocket` is tunnelled; `h2c` is answered as a
/// plain request, without the upgrade reaching the backend.
#[tokio::test]
async fn an_h2c_upgrade_is_served_as_a_plain_request() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"GET /plain HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&head[..read]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("\r\nupgrade:"), "{text}");
    assert!(text.contains("\"/plain\""), "{text}");
    assert!(
        !text.contains("h2c"),
        "the upgrade reached the backend: {text}"
    );
}

/// Item 15: on a dual-stack listener an IPv4 peer is a plain IPv4 address,
/// so IPv4 trusted proxies match and `X-Forwarded-For` carries `127.0.0.1`.
#[tokio::test]
async fn ipv4_peers_on_a_dual_stack_listener_match_ipv4_trusted_proxies() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let listen: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: {}\ntrusted_proxies: [127.0.0.0/8]\n",
        upstream.url()
    ))
    .listen(listen)
    .start()
    .await;
    let url = format!("http://127.0.0.1:{}/", gateway.addr.port());
    let response = TestClient::new()
        .send_raw(get_with_headers(&url, &[("x-forwarded-for", b"6.6.6.6")]))
        .await
        .unwrap();
    assert_eq!(
        response.upstream_header("x-forwarded-for"),
        vec!["6.6.6.6, 127.0.0.1"]
    );
}

/// Item 16: credentials in `upstream.url` are refused, naming the key and
/// without repeating the password.
#[tokio::test]
async fn credentials_in_upstream_url_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "upstream:\n  url: http://admin:hunter2@127.0.0.1:3000\n",
    )
    .unwrap();
    let output = std::process::Command::new(crate::support::binary())
        .args(["check", "--config"])
        .arg(&config)
        .env("SESSION_SECRET", support::SECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("upstream.url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Item 17: dot-segments, plain or percent-encoded, are refused with 400
/// before they can step outside the upstream's base path.
#[tokio::test]
async fn dot_segments_are_refused() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder(&format!("upstream:\n  url: {}/app\n", upstream.url()))
        .start()
        .await;
    for path in [
        "/x/../admin",
        "/x/%2e%2e/admin",
        "/x/%2E%2E/admin",
        "/./admin",
    ] {
        let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 400"), "{path}: {text}");
    }
    let fine = TestClient::new()
        .try_get(&gateway.url("/x/a.b/c"))
        .await
        .unwrap();
    assert_eq!(fine.json()["path"], "/app/x/a.b/c");
}

/// Item 18: a response that sets the session cookie is kept out of shared
/// caches, even when the backend marked it `public`.
#[tokio::test]
async fn a_response_with_a_session_cookie_is_private() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    let url = gateway.url(&format!(
        "/?update={}&cache_control={}",
        encode(r#"{"user":"ada"}"#),
        encode("public, max-age=600")
    ));
    let response = client.get(&url).await;
    assert!(!response.set_cookies().is_empty());
    assert_eq!(response.headers["cache-control"], "private, max-age=600");
    let no_store = client
        .get(&gateway.url(&format!(
            "/?update={}&cache_control=no-store",
            encode(r#"{"n":1}"#)
        )))
        .await;
    assert_eq!(no_store.headers["cache-control"], "no-store");
}

/// Item 6: `session.max_bytes` bounds the session on every store: an update
/// past it gets 502 and the session stays as it was.
#[tokio::test]
async fn an_update_past_max_bytes_gets_502_and_changes_nothing() {
    for store in ["", "store:\n  type: memory\n"] {
        let yaml = format!("session:\n  max_bytes: 200\n{store}");
        let (_upstream, gateway, mut client) =
            support::logged_in(&yaml, json!({"user": "ada"})).await;
        let big = json!({ "blob": "x".repeat(300) });
        let response = client.update(&gateway.url("/"), &big).await;
        assert_eq!(response.status, 502, "store: {store:?}");
        let next = client.get(&gateway.url("/")).await;
        assert_eq!(next.session(), json!({"user": "ada"}), "store: {store:?}");
    }
}

/// Item 8: a slow request that carries an update, started before a logout,
/// does not bring the session back after it, and sends no cookie for it.
#[tokio::test]
async fn a_slow_update_does_not_undo_a_logout() {
    let (_upstream, gateway, client) =
        support::logged_in("store:\n  type: memory\n", json!({"user": "ada"})).await;
    let slow = tokio::spawn({
        let url = gateway.url(&format!("/slow?ms=1000&update={}", encode(r#"{"seen":1}"#)));
        let jar = client.jar.clone();
        async move {
            let mut client = TestClient::new();
            client.jar = jar;
            client.get(&url).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut logout = TestClient::new();
    logout.jar = client.jar.clone();
    let out = logout.get(&gateway.url("/?destroy=1")).await;
    assert_eq!(out.status, 200);
    let late = slow.await.unwrap();
    assert_eq!(late.status, 200, "the backend's answer stands");
    assert!(late.set_cookies().is_empty(), "{:?}", late.set_cookies());
    // The old cookie opens nothing: the logout held.
    let mut old = TestClient::new();
    old.jar = client.jar.clone();
    assert_eq!(old.get(&gateway.url("/")).await.session(), json!({}));
}

/// Item 7: after a regenerate through the gateway the old cookie opens
/// nothing and the new one carries the update.
#[tokio::test]
async fn a_regenerate_moves_the_session_and_kills_the_old_cookie() {
    for store in ["store:\n  type: memory\n", ""] {
        let (_upstream, gateway, mut client) =
            support::logged_in(store, json!({"cart": [1]})).await;
        let before = client.jar.clone();
        let url = gateway.url(&format!(
            "/?regenerate=1&update={}",
            encode(r#"{"user":"ada"}"#)
        ));
        assert_eq!(client.get(&url).await.status, 200);
        assert_ne!(client.jar, before, "a new cookie");
        let next = client.get(&gateway.url("/")).await;
        assert_eq!(next.session(), json!({"cart": [1], "user": "ada"}));
        if store.is_empty() {
            continue; // a sealed cookie cannot be revoked: see the README
        }
        let mut old = TestClient::new();
        old.jar = before;
        assert_eq!(old.get(&gateway.url("/")).await.session(), json!({}));
    }
}

/// Item 20: a MySQL URL that reaches another host without requiring TLS is
/// warned about at start (`.invalid` never resolves: nothing is contacted).
#[tokio::test]
async fn a_mysql_url_without_tls_to_another_host_is_warned_about() {
    let upstream = Upstream::start().await;
    let yaml = "store:\n  type: mysql\n  url: mysql://app:hunter2@db.invalid:3306/sessions\n  create_table: false\n";
    let mut gateway = Gateway::start(&upstream, yaml).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.kill();
    let log = gateway.stderr();
    assert!(log.contains("without requiring TLS"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}
