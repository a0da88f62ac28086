//! Routes, black-box: two real upstreams behind one session, `session: off`
//! and `required`, cross-origin protection, and paths that try to slip
//! past a prefix.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Gateway, TestClient, TestResponse, Upstream, encode, free_port};

/// Two echo backends; the gateway sends `/api/` and the host
/// `admin.test` to the second, `/static/` without session work, `/app/`
/// and `/locked/` (whose backend is down) only with a signed-in user,
/// `/saml/acs` without cross-origin protection.
struct Setup {
    old: Upstream,
    new: Upstream,
    gateway: Gateway,
}

async fn setup() -> Setup {
    let old = Upstream::start().await;
    let new = Upstream::start().await;
    let dead = free_port();
    let yaml = format!(
        r#"upstream:
  url: {old}
store:
  type: memory
session:
  identity_key: user
csrf:
  trusted_origins: ["https://idp.example.com"]
routes:
  - path_prefix: /static/
    session: off
  - path_prefix: /api/
    name: api
    upstream: {new}
  - host: admin.test
    upstream: {new}
  - path_prefix: /app/
    session: required
    login_url: /login?next={{uri}}
  - path_prefix: /locked/
    session: required
    upstream: http://127.0.0.1:{dead}
  - path_prefix: /saml/acs
    csrf: false
"#,
        old = old.url(),
        new = new.url(),
    );
    let gateway = Gateway::builder(&yaml).start().await;
    Setup { old, new, gateway }
}

fn server(response: &TestResponse) -> String {
    response.json()["server"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).unwrap()
}

#[tokio::test]
async fn host_and_path_pick_the_backend_and_the_session_is_shared() {
    let Setup { old, new, gateway } = setup().await;
    let mut client = TestClient::new();
    let login = client
        .update(&gateway.url("/login"), &json!({"user": "alice"}))
        .await;
    assert_eq!(server(&login), old.addr.to_string());

    let api = client.get(&gateway.url("/api/orders")).await;
    assert_eq!(
        server(&api),
        new.addr.to_string(),
        "/api/ goes to the new service"
    );
    assert_eq!(api.json()["path"], "/api/orders");
    assert_eq!(
        api.session(),
        json!({"user": "alice"}),
        "one login for both"
    );

    for path in ["/api", "/API/x", "/apiary", "/"] {
        let response = client.get(&gateway.url(path)).await;
        let expected = if path == "/api" { &new } else { &old };
        assert_eq!(server(&response), expected.addr.to_string(), "{path}");
    }

    let by_host = client
        .send(request(
            Method::GET,
            &gateway.url("/anything"),
            &[("host", "Admin.Test:8443")],
        ))
        .await;
    assert_eq!(server(&by_host), new.addr.to_string(), "the host route");
    let other_host = client
        .send(request(
            Method::GET,
            &gateway.url("/anything"),
            &[("host", "www.test")],
        ))
        .await;
    assert_eq!(server(&other_host), old.addr.to_string());
}

#[tokio::test]
async fn a_session_off_route_does_no_session_work() {
    let Setup {
        gateway,
        old: _old,
        new: _new,
    } = setup().await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/login"), &json!({"user": "alice"}))
        .await;
    let cookie = client.jar.clone();
    client.get(&gateway.url("/whoami")).await;
    let loads = store_loads(&gateway).await;
    assert!(loads > 0, "the metric counts loads");

    let url = format!(
        "/static/app.css?update={}&regenerate=1",
        encode(&json!({"user": "mallory"}).to_string())
    );
    for _ in 0..5 {
        let response = client
            .send(request(
                Method::GET,
                &gateway.url(&url),
                &[
                    ("x-session-data", "{\"user\":\"mallory\"}"),
                    ("X_Session_Id", "forged"),
                ],
            ))
            .await;
        assert_eq!(response.status, 200);
        assert!(
            response.set_cookies().is_empty(),
            "no cookie on an off route"
        );
        assert!(
            !response.headers.contains_key("x-session-update"),
            "instructions never reach the client"
        );
        let seen = response.json();
        assert_eq!(
            seen["session"],
            json!(null),
            "no session upstream, forged copy stripped"
        );
        assert_eq!(seen["session_id"], json!(null));
        assert!(response.upstream_header("x-session-id").is_empty());
        assert!(
            response
                .upstream_header("cookie")
                .iter()
                .all(|c| !c.contains("sid=")),
            "the session cookie never goes upstream: {:?}",
            response.upstream_header("cookie")
        );
    }
    assert_eq!(store_loads(&gateway).await, loads, "no store call");
    assert_eq!(client.jar, cookie);
    let after = client.get(&gateway.url("/whoami")).await;
    assert_eq!(
        after.session(),
        json!({"user": "alice"}),
        "the off route's instructions were not obeyed"
    );
}

/// How many session loads the memory store has served.
async fn store_loads(gateway: &Gateway) -> u64 {
    let metrics = TestClient::new()
        .try_get(&gateway.admin_url("/metrics"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines()
        .find(|line| {
            line.starts_with("sessiongate_store_operation_duration_seconds_count")
                && line.contains("operation=\"load\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_required_route_turns_away_anonymous_requests_before_the_backend() {
    let Setup {
        gateway,
        old: _old,
        new: _new,
    } = setup().await;
    let mut client = TestClient::new();

    let navigation = client
        .send(request(
            Method::GET,
            &gateway.url("/app/p?q=1"),
            &[("accept", "text/html,application/xhtml+xml")],
        ))
        .await;
    assert_eq!(navigation.status, StatusCode::FOUND);
    assert_eq!(
        navigation.headers["location"],
        "/login?next=%2Fapp%2Fp%3Fq%3D1"
    );
    let fetch_navigation = client
        .send(request(
            Method::GET,
            &gateway.url("/app/"),
            &[("sec-fetch-mode", "navigate")],
        ))
        .await;
    assert_eq!(fetch_navigation.status, StatusCode::FOUND);
    assert_eq!(
        fetch_navigation.headers["location"],
        "/login?next=%2Fapp%2F"
    );

    let api = client
        .send(request(
            Method::GET,
            &gateway.url("/app/data"),
            &[("accept", "application/json")],
        ))
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let post = client
        .send(request(
            Method::POST,
            &gateway.url("/app/form"),
            &[("accept", "text/html")],
        ))
        .await;
    assert_eq!(
        post.status,
        StatusCode::UNAUTHORIZED,
        "only GET and HEAD are redirected"
    );
    let no_login_url = client
        .send(request(
            Method::GET,
            &gateway.url("/locked/x"),
            &[("accept", "text/html")],
        ))
        .await;
    assert_eq!(
        no_login_url.status,
        StatusCode::UNAUTHORIZED,
        "the backend (down) was never called"
    );
    for sneaky in ["/app%2Fdata", "//app/data", "/App/../app/data"] {
        let response = client.get(&gateway.url(sneaky)).await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&response.status),
            "{sneaky}: {}",
            response.status
        );
    }

    client
        .update(&gateway.url("/login"), &json!({"user": ""}))
        .await;
    let empty = client.get(&gateway.url("/app/data")).await;
    assert_eq!(
        empty.status,
        StatusCode::UNAUTHORIZED,
        "an empty identity is no identity"
    );

    client
        .update(&gateway.url("/login"), &json!({"user": "alice"}))
        .await;
    let signed_in = client.get(&gateway.url("/app/data")).await;
    assert_eq!(signed_in.status, 200);
    assert_eq!(signed_in.session(), json!({"user": "alice"}));
    let locked = client.get(&gateway.url("/locked/x")).await;
    assert_eq!(
        locked.status,
        StatusCode::BAD_GATEWAY,
        "signed in, the request reaches the (dead) backend"
    );
}

/// Method, path, request headers, and the status expected.
type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, u16);

#[tokio::test]
async fn cross_origin_unsafe_requests_are_refused_before_the_backend() {
    let Setup {
        gateway,
        old: _old,
        new: _new,
    } = setup().await;
    let client = TestClient::new();
    let own = format!("http://{}", gateway.addr);
    let own_upper = own.to_uppercase();
    let cases: &[Case] = &[
        (
            Method::GET,
            "/x",
            vec![
                ("origin", "https://evil.test"),
                ("sec-fetch-site", "cross-site"),
            ],
            200,
        ),
        (Method::POST, "/x", vec![], 200),
        (
            Method::POST,
            "/x",
            vec![("sec-fetch-site", "same-origin")],
            200,
        ),
        (Method::POST, "/x", vec![("sec-fetch-site", "none")], 200),
        (
            Method::POST,
            "/x",
            vec![("sec-fetch-site", "cross-site")],
            403,
        ),
        (
            Method::POST,
            "/x",
            vec![("sec-fetch-site", "same-site")],
            403,
        ),
        (
            Method::DELETE,
            "/x",
            vec![("origin", "https://evil.test")],
            403,
        ),
        (
            Method::PUT,
            "/api/x",
            vec![("origin", "https://evil.test")],
            403,
        ),
        (Method::PATCH, "/x", vec![("origin", "null")], 403),
        (Method::POST, "/x", vec![("origin", "not a url")], 403),
        (Method::POST, "/x", vec![("origin", own.as_str())], 200),
        (
            Method::POST,
            "/x",
            vec![("origin", own_upper.as_str())],
            200,
        ),
        (
            Method::POST,
            "/x",
            vec![("origin", "http://127.0.0.1")],
            403,
        ),
        (
            Method::POST,
            "/x",
            vec![
                ("origin", "https://idp.example.com"),
                ("sec-fetch-site", "cross-site"),
            ],
            200,
        ),
        (
            Method::POST,
            "/saml/acs",
            vec![
                ("origin", "https://other-idp.test"),
                ("sec-fetch-site", "cross-site"),
            ],
            200,
        ),
        (
            Method::POST,
            "/static/x",
            vec![("origin", "https://evil.test")],
            403,
        ),
        (
            Method::POST,
            "/locked/x",
            vec![("origin", "https://evil.test")],
            403,
        ),
    ];
    for (method, path, headers, status) in cases {
        let response = client
            .send_raw(request(method.clone(), &gateway.url(path), headers))
            .await
            .unwrap();
        assert_eq!(
            response.status.as_u16(),
            *status,
            "{method} {path} {headers:?}"
        );
        if *status == 403 {
            assert!(
                String::from_utf8_lossy(&response.body).contains("cross-origin"),
                "the gateway answered, not the backend"
            );
        }
    }

    // HTTP/1.0 without Host: an Origin cannot be compared, so it is refused.
    let answer = raw_exchange(
        &gateway,
        "POST /x HTTP/1.0\r\nOrigin: http://127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.0 403") || answer.starts_with("HTTP/1.1 403"),
        "{answer}"
    );
    let answer = raw_exchange(&gateway, "POST /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n").await;
    assert!(
        answer.contains(" 200 "),
        "no Origin, no Host: not a browser: {answer}"
    );

    let metrics = client
        .try_get(&gateway.admin_url("/metrics"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(
            "sessiongate_requests_rejected_total{reason=\"cross_origin\",route=\"default\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("sessiongate_route_requests_total{route=\"api\"}"),
        "{text}"
    );
    assert!(
        text.contains("sessiongate_route_requests_total{route=\"/static/\"}"),
        "{text}"
    );
}

async fn raw_exchange(gateway: &Gateway, text: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn paths_that_try_to_slip_past_a_prefix_are_refused() {
    let Setup {
        gateway,
        old: _old,
        new: _new,
    } = setup().await;
    let client = TestClient::new();
    for path in [
        "/static/..%2Fapp/data",
        "/static%2F..%2Fapp%2Fdata",
        "/static/%2e%2e/app/data",
        "/static/%2E%2E%5Capp",
    ] {
        let response = client.try_get(&gateway.url(path)).await.unwrap();
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn without_routes_nothing_changes_but_csrf() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "csrf:\n  enabled: false\n").await;
    let client = TestClient::new();
    let response = client
        .send_raw(request(
            Method::POST,
            &gateway.url("/x"),
            &[("origin", "https://evil.test")],
        ))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "csrf.enabled: false lets it through");
    let encoded = client.try_get(&gateway.url("/a%2Fb")).await.unwrap();
    assert_eq!(
        encoded.status, 200,
        "an encoded slash is the backend's business without routes"
    );
}
