//! Server-store sessions through the gateway (memory store): the signed-id
//! cookie, touch policy, concurrency.

use std::time::Duration;

use serde_json::json;

use crate::support::{self, Gateway, TestClient, Upstream};

#[tokio::test]
async fn the_cookie_is_a_signed_id_and_the_data_stays_on_the_server() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "store:\n  type: memory\n").await;
    let mut client = TestClient::new();
    client
        .update(
            &gateway.url("/"),
            &json!({"secret_plan": "world domination"}),
        )
        .await;
    let cookie = client.jar["sid"].clone();
    assert!(
        !cookie.contains("world") && !cookie.starts_with("v1."),
        "{cookie}"
    );
    let (id, mac) = cookie.split_once('.').expect("id.mac");
    assert!(id.len() >= 22 && mac.len() >= 22);
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"secret_plan": "world domination"})
    );
}

#[tokio::test]
async fn an_unmodified_session_is_touched_at_most_once_per_interval() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        "store:\n  type: memory\nsession:\n  touch_interval: 1s\n",
    )
    .await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    let metrics = || async {
        let text = TestClient::new()
            .try_get(&gateway.admin_url("/metrics"))
            .await
            .unwrap()
            .body;
        let text = String::from_utf8_lossy(&text).to_string();
        text.lines()
            .find(|l| l.starts_with("sessiongate_store_operation_duration_seconds_count{store=\"memory\",operation=\"touch\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    for _ in 0..5 {
        assert!(client.get(&gateway.url("/")).await.set_cookies().is_empty());
    }
    assert_eq!(metrics().await, 0, "no touch inside the interval");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let touched = client.get(&gateway.url("/")).await;
    assert_eq!(
        touched.set_cookies().len(),
        1,
        "the cookie's Max-Age is refreshed with the touch"
    );
    client.get(&gateway.url("/")).await;
    assert_eq!(metrics().await, 1, "one touch for the interval");
}

#[tokio::test]
async fn concurrent_updates_through_the_gateway_lose_nothing() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "store:\n  type: memory\n").await;
    support::concurrent_updates_across(&[&gateway]).await;
}

#[tokio::test]
async fn rolling_resends_the_cookie_on_every_response() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &upstream,
        "store:\n  type: memory\nsession:\n  rolling: true\n",
    )
    .await;
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/"), &json!({"user": "ada"}))
        .await;
    for _ in 0..3 {
        assert_eq!(client.get(&gateway.url("/")).await.set_cookies().len(), 1);
    }
}
