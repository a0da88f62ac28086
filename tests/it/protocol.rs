//! The header protocol, black-box: what the backend sees, and how its
//! instructions change the session.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

use crate::support::{self, Gateway, TestClient, Upstream, encode};

fn get_with_headers(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

#[tokio::test]
async fn forged_session_headers_never_reach_the_backend() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "headers:\n  fields:\n    user: X-Auth-User\n").await;
    let mut client = TestClient::new();
    let forged = [
        ("X-Session-Id", "forged"),
        ("x_session_id", "forged"),
        ("X-Session-Data", r#"{"user":"root"}"#),
        ("X_SESSION_DATA", r#"{"user":"root"}"#),
        ("x-session_data", r#"{"user":"root"}"#),
        ("X-Auth-User", "root"),
        ("x_auth_user", "root"),
        ("X-Session-Update", r#"{"user":"root"}"#),
    ];
    let response = client
        .send(get_with_headers(&gateway.url("/"), &forged))
        .await;
    assert_eq!(response.status, 200);
    let seen = response.json()["headers"].clone();
    for name in seen.as_object().unwrap().keys() {
        let folded = name.replace('_', "-");
        assert!(
            !folded.contains("x-auth-user"),
            "{name} reached the backend"
        );
    }
    assert_eq!(response.upstream_header("x-session-data"), vec!["{}"]);
    assert_ne!(response.upstream_header("x-session-id"), vec!["forged"]);
    assert!(
        response.upstream_header("x_session_data").is_empty()
            && response.upstream_header("x_session_id").is_empty()
    );
    assert_eq!(response.session(), json!({}));

    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    let after = client
        .send(get_with_headers(&gateway.url("/"), &forged))
        .await;
    assert_eq!(after.upstream_header("x-auth-user"), vec!["ada"]);
    assert_eq!(after.session(), json!({"user": "ada"}));
}

#[tokio::test]
async fn updates_are_json_merge_patches() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    client.update(&gateway.url("/"), &json!({"a": 1, "b": {"c": 2, "d": 3}, "list": [1, 2], "big": 12345678901234567890123u128})).await;
    client
        .update(
            &gateway.url("/"),
            &json!({"a": null, "b": {"c": null, "e": "é"}, "list": []}),
        )
        .await;
    let response = client.get(&gateway.url("/")).await;
    assert_eq!(
        response.session(),
        json!({"b": {"d": 3, "e": "é"}, "list": [], "big": 12345678901234567890123u128})
    );
    let raw = &response.upstream_header("x-session-data")[0];
    assert!(
        raw.is_ascii() && raw.contains(r"\u00e9"),
        "X-Session-Data is ASCII with \\u escapes: {raw}"
    );
    assert!(
        raw.contains("12345678901234567890123"),
        "large integers unchanged: {raw}"
    );
}

#[tokio::test]
async fn an_invalid_update_is_a_502_and_leaves_the_session_alone() {
    let (_upstream, gateway, mut client) = support::logged_in("", json!({"user": "ada"})).await;
    for bad in ["[1,2]", "not json", "\"text\""] {
        let response = client
            .get(&gateway.url(&format!("/?update={}", encode(bad))))
            .await;
        assert_eq!(response.status, 502, "{bad}");
        assert!(response.headers.get("x-session-update").is_none());
        assert!(response.set_cookies().is_empty());
    }
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada"})
    );
}

#[tokio::test]
async fn instructions_are_removed_from_the_response() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    let response = client
        .get(&gateway.url(&format!("/?update={}&regenerate=1", encode(r#"{"a":1}"#))))
        .await;
    assert!(response.headers.get("x-session-update").is_none());
    assert!(response.headers.get("x-session-regenerate").is_none());
    let destroyed = client.get(&gateway.url("/?destroy=1")).await;
    assert!(destroyed.headers.get("x-session-destroy").is_none());
}

async fn regenerate_and_destroy(store_yaml: &str) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, store_yaml).await;
    let mut client = TestClient::new();
    let login = client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    let old_jar = client.jar.clone();

    let regenerated = client
        .get(&gateway.url(&format!(
            "/?update={}&regenerate=1",
            encode(r#"{"step":2}"#)
        )))
        .await;
    assert_eq!(regenerated.status, 200);
    assert_ne!(client.jar, old_jar, "a new cookie");
    let after = client.get(&gateway.url("/")).await;
    assert_eq!(
        after.session(),
        json!({"user": "ada", "step": 2}),
        "data moved with the update applied"
    );
    assert_ne!(after.session_id(), login.session_id(), "a new id");

    if store_yaml.contains("memory") {
        let mut thief = TestClient::new();
        thief.jar = old_jar;
        assert_eq!(
            thief.get(&gateway.url("/")).await.session(),
            json!({}),
            "the old id stops working"
        );
    }

    let destroyed = client.get(&gateway.url("/?destroy=1")).await;
    assert!(
        destroyed
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("sid=;") && c.contains("Max-Age=0"))
    );
    assert!(client.jar.is_empty());
    assert_eq!(client.get(&gateway.url("/")).await.session(), json!({}));
}

#[tokio::test]
async fn regenerate_moves_and_destroy_ends_a_cookie_session() {
    regenerate_and_destroy("").await;
}

#[tokio::test]
async fn regenerate_moves_and_destroy_ends_a_server_session() {
    regenerate_and_destroy("store:\n  type: memory\n").await;
}

#[tokio::test]
async fn a_destroyed_server_session_cannot_be_replayed() {
    let (_upstream, gateway, mut client) =
        support::logged_in("store:\n  type: memory\n", json!({"user": "ada"})).await;
    let saved = client.jar.clone();
    client.get(&gateway.url("/?destroy=1")).await;
    let mut replay = TestClient::new();
    replay.jar = saved;
    assert_eq!(replay.get(&gateway.url("/")).await.session(), json!({}));
}

#[tokio::test]
async fn only_the_session_cookie_is_removed_and_upstream_cookies_pass() {
    let (_upstream, gateway, mut client) = support::logged_in("", json!({"user": "ada"})).await;
    client.jar.insert("theme".into(), "dark".into());
    client.jar.insert("sidecar".into(), "1".into());
    let response = client
        .get(&gateway.url(&format!("/?set_cookie={}", encode("app=1; Path=/"))))
        .await;
    let cookie = response.upstream_header("cookie");
    assert_eq!(cookie.len(), 1);
    assert!(
        cookie[0].contains("theme=dark") && cookie[0].contains("sidecar=1"),
        "{cookie:?}"
    );
    assert!(!cookie[0].contains("sid="), "{cookie:?}");
    assert!(
        response.set_cookies().iter().any(|c| c == "app=1; Path=/"),
        "the backend's own cookie reaches the client"
    );
}

#[tokio::test]
async fn x_session_id_cannot_be_used_as_a_cookie() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "store:\n  type: memory\n").await;
    let mut client = TestClient::new();
    let response = client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    let public_id = response.session_id();
    let cookie = client.jar["sid"].clone();
    assert!(!cookie.contains(&public_id));
    let mut thief = TestClient::new();
    thief.jar.insert("sid".into(), public_id.clone());
    assert_eq!(thief.get(&gateway.url("/")).await.session(), json!({}));
    let (id, _mac) = cookie.split_once('.').unwrap();
    thief.jar.insert("sid".into(), format!("{id}.AAAA"));
    assert_eq!(
        thief.get(&gateway.url("/")).await.session(),
        json!({}),
        "a bad MAC is a new session"
    );
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let upstream = Upstream::start().await;
    let untrusted = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    let spoof = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
    ];
    let response = client
        .send(get_with_headers(&untrusted.url("/?update=%7B%7D"), &spoof))
        .await;
    assert_eq!(
        response.upstream_header("x-forwarded-for"),
        vec!["127.0.0.1"]
    );
    assert_eq!(response.upstream_header("x-forwarded-proto"), vec!["http"]);

    let trusted = Gateway::start(&upstream, "trusted_proxies: [127.0.0.0/8]\n").await;
    let response = client
        .send(get_with_headers(
            &trusted.url(&format!("/?update={}", encode(r#"{"a":1}"#))),
            &spoof,
        ))
        .await;
    assert_eq!(
        response.upstream_header("x-forwarded-for"),
        vec!["6.6.6.6, 127.0.0.1"]
    );
    assert_eq!(response.upstream_header("x-forwarded-proto"), vec!["https"]);
    assert!(
        response.set_cookies()[0].contains("; Secure"),
        "secure: auto follows a trusted X-Forwarded-Proto"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    let headers = [
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "1"),
        ("Proxy-Authorization", "Basic x"),
        ("TE", "trailers"),
    ];
    let response = client
        .send(get_with_headers(&gateway.url("/"), &headers))
        .await;
    for name in ["x-private", "proxy-authorization", "te"] {
        assert!(
            response.upstream_header(name).is_empty(),
            "{name} was forwarded"
        );
    }
}

/// `session.cookie.secure: true` marks the cookie `Secure` even on plain
/// HTTP (TLS ended at a load balancer that is not a trusted proxy);
/// `false` never does, even when a trusted proxy says https; `auto`
/// follows the transport.
#[tokio::test]
async fn cookie_secure_true_false_and_auto_are_obeyed() {
    let upstream = Upstream::start().await;
    let login = format!("/?update={}", encode(r#"{"a":1}"#));
    for (setting, https, expected) in [
        ("true", false, true),
        ("false", false, false),
        ("false", true, false),
        ("auto", false, false),
        ("auto", true, true),
    ] {
        let yaml =
            format!("trusted_proxies: [127.0.0.0/8]\nsession:\n  cookie:\n    secure: {setting}\n");
        let gateway = Gateway::start(&upstream, &yaml).await;
        let proto = if https { "https" } else { "http" };
        let response = TestClient::new()
            .send(get_with_headers(
                &gateway.url(&login),
                &[("X-Forwarded-Proto", proto)],
            ))
            .await;
        let cookie = &response.set_cookies()[0];
        assert_eq!(
            cookie.contains("; Secure"),
            expected,
            "secure: {setting} over {proto}: {cookie}"
        );
    }
}
