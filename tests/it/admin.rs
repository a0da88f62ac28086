//! The admin listener: health, readiness and metrics.

use serde_json::json;

use crate::support::{self, Gateway, TestClient, Upstream};

#[tokio::test]
async fn health_readiness_and_metrics_answer_on_the_admin_port_only() {
    let (_upstream, gateway, mut client) =
        support::logged_in("store:\n  type: memory\n", json!({"user": "ada"})).await;
    client.get(&gateway.url("/?destroy=1")).await;
    let mut stranger = TestClient::new();
    stranger.jar.insert("sid".into(), "forged.value".into());
    stranger.get(&gateway.url("/")).await;

    let admin = TestClient::new();
    assert_eq!(
        admin
            .try_get(&gateway.admin_url("/healthz"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        admin
            .try_get(&gateway.admin_url("/readyz"))
            .await
            .unwrap()
            .status,
        200
    );
    let metrics = admin.try_get(&gateway.admin_url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "sessiongate_requests_total{status=\"200\"} 3",
        "sessiongate_sessions_created_total 1",
        "sessiongate_sessions_destroyed_total 1",
        "sessiongate_sessions_rejected_total 1",
        "sessiongate_upstream_duration_seconds_count 3",
        "sessiongate_store_operation_duration_seconds_count{store=\"memory\",operation=\"update\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for name in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(name.starts_with("sessiongate_"), "{name}");
    }
    let public = admin.try_get(&gateway.url("/metrics")).await.unwrap();
    assert!(
        String::from_utf8_lossy(&public.body).contains("\"path\""),
        "/metrics on the public port goes upstream"
    );
}

#[tokio::test]
async fn healthcheck_subcommand_probes_the_admin_port() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let ok = std::process::Command::new(crate::support::binary())
        .args(["healthcheck", "--url", &gateway.admin_url("/healthz")])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let dead = std::process::Command::new(crate::support::binary())
        .args([
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{}/healthz", support::free_port()),
        ])
        .output()
        .unwrap();
    assert!(!dead.status.success());
}
