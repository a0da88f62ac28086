//! Operations: SIGHUP reload, secrets from files, the access log, and no
//! leak under a storm of reloads.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::support::servers::PrivateRedis;
use crate::support::{self, Gateway, TestClient, Upstream, encode};

/// The value of one series on `/metrics` (0 when absent).
async fn metric(gateway: &Gateway, series: &str) -> f64 {
    let response = TestClient::new()
        .try_get(&gateway.admin_url("/metrics"))
        .await
        .expect("metrics");
    String::from_utf8_lossy(&response.body)
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn reloads(gateway: &Gateway, result: &str) -> f64 {
    metric(
        gateway,
        &format!("sessiongate_config_reloads_total{{result=\"{result}\"}}"),
    )
    .await
}

/// Sends SIGHUP and waits until the reload is counted under `result`.
async fn reload(gateway: &Gateway, result: &str) {
    let before = reloads(gateway, result).await;
    gateway.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(gateway, result).await <= before {
        assert!(Instant::now() < deadline, "no reload counted as {result}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 connection to the gateway, kept alive across requests.
struct KeepAlive {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    async fn open(gateway: &Gateway) -> Self {
        let stream = tokio::net::TcpStream::connect(gateway.addr)
            .await
            .expect("connect");
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Self { sender }
    }

    /// GETs `path` on this very connection: fails if it was closed.
    async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap) {
        self.sender
            .ready()
            .await
            .expect("the connection is still open");
        let request = Request::get(path)
            .header("host", "gateway.test")
            .body(Full::default())
            .expect("request");
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(request))
                .await
                .expect("answer in time")
                .expect("answer on the kept connection");
        let (parts, body) = response.into_parts();
        body.collect().await.expect("body");
        (parts.status, parts.headers)
    }
}

fn cookie_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split('=').next().map(str::to_owned))
        .collect()
}

fn login_path() -> String {
    format!("/?update={}", encode(r#"{"user":"ada"}"#))
}

#[tokio::test]
async fn a_reload_changes_new_requests_while_kept_connections_and_requests_in_flight_go_on() {
    let upstream = Upstream::start().await;
    let base = format!("upstream:\n  url: {}\n", upstream.url());
    let gateway = Gateway::builder(&base).start().await;
    let mut kept = KeepAlive::open(&gateway).await;
    let (status, headers) = kept.get(&login_path()).await;
    assert_eq!(
        (status, cookie_names(&headers)),
        (StatusCode::OK, vec!["sid".to_owned()])
    );

    let slow_url = gateway.url(&format!(
        "/slow?ms=1500&update={}",
        encode(r#"{"user":"slow"}"#)
    ));
    let in_flight = tokio::spawn(async move { TestClient::new().get(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    gateway.rewrite_config(&format!("{base}session:\n  cookie:\n    name: fresh\n"));
    reload(&gateway, "ok").await;

    let (status, headers) = kept.get(&login_path()).await;
    assert_eq!(
        (status, cookie_names(&headers)),
        (StatusCode::OK, vec!["fresh".to_owned()]),
        "the connection opened before the reload serves the new configuration"
    );
    let slow = in_flight.await.expect("slow request");
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(
        slow.set_cookies()
            .iter()
            .map(|c| c.split('=').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>(),
        vec!["sid".to_owned()],
        "the request in flight finished on the configuration it began with"
    );
    let text = String::from_utf8_lossy(
        &TestClient::new()
            .try_get(&gateway.admin_url("/metrics"))
            .await
            .unwrap()
            .body,
    )
    .into_owned();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("sessiongate_config_info{") && l.ends_with(" 1"))
            .count(),
        1,
        "exactly one loaded configuration: {text}"
    );
    assert!(metric(&gateway, "sessiongate_config_loaded_timestamp_seconds").await > 1.0e9);
}

#[tokio::test]
async fn a_refused_reload_keeps_the_running_configuration() {
    let upstream = Upstream::start().await;
    let base = format!("upstream:\n  url: {}\n", upstream.url());
    let mut gateway = Gateway::builder(&base).start().await;
    let elsewhere = format!("127.0.0.1:{}", support::free_port());
    let cases = [
        (
            "an unknown key",
            format!(
                "listen: \"{}\"\nadmin:\n  listen: \"{}\"\n{base}session:\n  cookie:\n    nmae: fresh\n",
                gateway.addr, gateway.admin
            ),
            "session.cookie.nmae",
        ),
        (
            "a new listen address",
            format!(
                "listen: \"{elsewhere}\"\nadmin:\n  listen: \"{}\"\n{base}",
                gateway.admin
            ),
            "listen: changed from",
        ),
        (
            "a new admin address",
            format!(
                "listen: \"{}\"\nadmin:\n  listen: \"{elsewhere}\"\n{base}",
                gateway.addr
            ),
            "admin.listen: changed from",
        ),
    ];
    for (case, text, says) in cases {
        gateway.rewrite_config_text(&text);
        reload(&gateway, "error").await;
        let log = gateway.stderr();
        assert!(
            log.contains("configuration reload refused") && log.contains(says),
            "{case}: the log names the key: {log}"
        );
        let answer = TestClient::new().get(&gateway.url(&login_path())).await;
        assert_eq!(answer.status, StatusCode::OK, "{case}");
        assert_eq!(
            cookie_names(&answer.headers),
            vec!["sid".to_owned()],
            "{case}: the running configuration is kept"
        );
    }
    assert_eq!(reloads(&gateway, "ok").await, 0.0);
    assert_eq!(reloads(&gateway, "error").await, 3.0);
}

/// A secret file with the mode Kubernetes should give it.
fn write_secret(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

const OLD: &str = "old-secret-0123456789-abcdefghijklmnopq";
const NEW: &str = "new-secret-0123456789-abcdefghijklmnopq";

#[tokio::test]
async fn secrets_rotate_through_files_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let previous = dir.path().join("previous");
    write_secret(&secret, &format!("{OLD}\n"));
    write_secret(&previous, "");
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder(&format!("upstream:\n  url: {}\n", upstream.url()))
        .without_env("SESSION_SECRET")
        .env("SESSION_SECRET_FILE", &secret.display().to_string())
        .env(
            "SESSION_PREVIOUS_SECRETS_FILE",
            &previous.display().to_string(),
        )
        .start()
        .await;
    let mut ada = TestClient::new();
    ada.update(&gateway.url("/"), &json!({"user": "ada"})).await;
    let sealed_with_old = ada.jar.clone();
    let with_jar = |jar: &std::collections::BTreeMap<String, String>| {
        let mut client = TestClient::new();
        client.jar = jar.clone();
        client
    };

    write_secret(&secret, &format!("{NEW}\n"));
    write_secret(&previous, &format!("{OLD}\n"));
    reload(&gateway, "ok").await;
    assert_eq!(
        with_jar(&sealed_with_old)
            .get(&gateway.url("/"))
            .await
            .session(),
        json!({"user": "ada"}),
        "a cookie sealed with the previous secret still opens"
    );
    let mut bob = TestClient::new();
    bob.update(&gateway.url("/"), &json!({"user": "bob"})).await;

    write_secret(&previous, "");
    reload(&gateway, "ok").await;
    assert_eq!(
        with_jar(&sealed_with_old)
            .get(&gateway.url("/"))
            .await
            .session(),
        json!({}),
        "a retired secret opens nothing"
    );
    assert_eq!(
        bob.get(&gateway.url("/")).await.session(),
        json!({"user": "bob"})
    );

    write_secret(&secret, "too-short\n");
    reload(&gateway, "error").await;
    let mut gateway = gateway;
    let log = gateway.stderr();
    assert!(
        log.contains(&format!("SESSION_SECRET_FILE ({})", secret.display())) && log.contains("32"),
        "the refusal names the file: {log}"
    );
    assert_eq!(
        bob.get(&gateway.url("/")).await.session(),
        json!({"user": "bob"}),
        "the running secrets are kept"
    );
}

/// `sessiongate check` with `env`, for start-up refusals.
fn check(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, "upstream:\n  url: http://127.0.0.1:3000\n").unwrap();
    let mut command = std::process::Command::new(crate::support::binary());
    command
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env_remove("SESSION_SECRET")
        .env_remove("SESSION_PREVIOUS_SECRETS")
        .env_remove("SESSION_SECRET_FILE")
        .env_remove("SESSION_PREVIOUS_SECRETS_FILE")
        .env_remove("CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run sessiongate check");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_secret_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    write_secret(dir.path().join("empty").as_path(), "\n");
    write_secret(dir.path().join("short").as_path(), "short\n");
    write_secret(dir.path().join("good").as_path(), &format!("{OLD}\n"));
    for (case, file, says) in [
        ("missing", path("missing"), "cannot read"),
        ("empty", path("empty"), "empty"),
        ("too short", path("short"), "at least 32"),
    ] {
        let (ok, stderr) = check(&[("SESSION_SECRET_FILE", &file)]);
        assert!(!ok, "{case}: refused");
        assert!(
            stderr.contains(&format!("SESSION_SECRET_FILE ({file})")) && stderr.contains(says),
            "{case}: {stderr}"
        );
    }
    let (ok, stderr) = check(&[("SESSION_SECRET_FILE", &path("good"))]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("readable by every user"), "{stderr}");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("good"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let (ok, stderr) = check(&[("SESSION_SECRET_FILE", &path("good"))]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("readable by every user"),
        "warned: {stderr}"
    );
    let (ok, stderr) = check(&[
        ("SESSION_SECRET", support::SECRET),
        ("SESSION_SECRET_FILE", &path("missing")),
    ]);
    assert!(ok, "SESSION_SECRET wins, the file is not read: {stderr}");
}

/// The number of clients connected to `redis` (this query's own excluded).
async fn redis_clients(redis: &PrivateRedis) -> usize {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the private redis");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut connection)
        .await
        .expect("CLIENT LIST");
    list.lines().count().saturating_sub(1)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test]
async fn a_storm_of_reloads_leaks_no_store_and_no_socket() {
    let redis = PrivateRedis::started();
    let upstream = Upstream::start().await;
    let yaml = |n: usize| {
        format!(
            "upstream:\n  url: {}\nstore:\n  type: redis\n  url: {}\n  prefix: \"storm{n}:\"\n",
            upstream.url(),
            redis.url()
        )
    };
    let gateway = Gateway::builder(&yaml(0)).start().await;
    let mut client = TestClient::new();
    client.update(&gateway.url("/"), &json!({"n": 0})).await;
    let clients_before = redis_clients(&redis).await;
    let fds_before = open_fds(gateway.pid());
    assert!(clients_before >= 1, "the gateway is connected");

    for n in 1..=10 {
        gateway.rewrite_config(&yaml(n));
        gateway.hangup();
        tokio::time::sleep(Duration::from_millis(90)).await;
    }
    // Hang-ups that arrive during a reload fold into one more: wait until
    // the count stands still, then for the last file to be in force.
    let mut last = -1.0;
    loop {
        let now = reloads(&gateway, "ok").await + reloads(&gateway, "error").await;
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last >= 1.0, "reloaded at least once");
    assert_eq!(reloads(&gateway, "error").await, 0.0);
    let answer = client.update(&gateway.url("/"), &json!({"n": 10})).await;
    assert_eq!(answer.status, StatusCode::OK);
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("storm10:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "the last configuration is in force");
    drop(connection);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (clients, fds) = (redis_clients(&redis).await, open_fds(gateway.pid()));
        if clients <= clients_before && fds <= fds_before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {last} reloads: {clients} Redis clients (before: {clients_before}), {fds} fds (before: {fds_before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of the gateway's log from the access log, once there are
/// `expected` of them (the access log writes in batches, at most 100 ms
/// late), or after a second.
async fn access_lines(gateway: &mut Gateway, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let lines: Vec<String> = gateway
            .stderr()
            .lines()
            .filter(|line| line.contains("sessiongate::access"))
            .map(str::to_owned)
            .collect();
        if lines.len() >= expected || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_access_log_has_one_text_line_per_request() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::start(&upstream, "").await;
    let mut client = TestClient::new();
    let answer = client
        .get(&gateway.url(&format!(
            "/hello/world?token=hunter2&update={}",
            encode(r#"{"user":"ada"}"#)
        )))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let public_id = answer.session_id();
    let lines = access_lines(&mut gateway, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for expected in [
        "method=GET",
        "path=/hello/world",
        "status=200",
        "route=default",
        "client=127.0.0.1",
        &format!("session={public_id}"),
    ] {
        assert!(line.contains(expected), "{expected} in {line}");
    }
    for field in ["bytes=", "duration_ms=", "upstream_ms=", "store_ms="] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!line.contains("hunter2"), "no query string: {line}");

    let off = Gateway::start(&upstream, "log:\n  access: false\n").await;
    let mut off = off;
    TestClient::new().get(&off.url("/")).await;
    assert!(
        access_lines(&mut off, 1).await.is_empty(),
        "log.access: false"
    );
}

#[tokio::test]
async fn the_access_log_is_json_under_log_format_json() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::start(&upstream, "log:\n  format: json\n").await;
    let answer = TestClient::new().get(&gateway.url("/json?secret=1")).await;
    let bytes = answer.body.len() as u64;
    let lines = access_lines(&mut gateway, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    let fields = &line["fields"];
    assert_eq!(line["target"], "sessiongate::access");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/json");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["bytes"], bytes, "{line}");
    assert_eq!(
        fields["route"], "default",
        "no routes: the top-level upstream"
    );
    assert_eq!(fields["client"], "127.0.0.1");
    assert_eq!(fields["session"], answer.session_id().as_str());
    for timing in ["duration_ms", "upstream_ms", "store_ms"] {
        assert!(fields[timing].as_f64().is_some(), "{timing}: {line}");
    }
}

/// A development CA and a certificate it signs for localhost, in `dir`.
fn make_cert(dir: &std::path::Path) {
    let made = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/certs/make-dev-cert.sh"
        ))
        .arg(dir)
        .output()
        .expect("make-dev-cert.sh");
    assert!(made.status.success(), "{made:?}");
}

/// Whether a client that trusts only `ca` gets an answer over a new
/// connection.
async fn trusted_by(gateway: &Gateway, ca: &std::path::Path) -> bool {
    let client = crate::proxy::tls_client(ca);
    let url = format!("https://localhost:{}/", gateway.addr.port());
    let request = Request::get(url).body(Full::default()).expect("request");
    matches!(
        tokio::time::timeout(Duration::from_secs(10), client.request(request)).await,
        Ok(Ok(response)) if response.status() == StatusCode::OK
    )
}

#[tokio::test]
async fn a_reload_serves_a_rotated_certificate_to_new_connections() {
    let (first, second, live) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    make_cert(first.path());
    make_cert(second.path());
    let install = |from: &std::path::Path| {
        for file in ["gateway.crt", "gateway.key"] {
            std::fs::copy(from.join(file), live.path().join(file)).expect("copy");
        }
    };
    install(first.path());
    let upstream = Upstream::start().await;
    let yaml = format!(
        "tls:\n  cert: {0}/gateway.crt\n  key: {0}/gateway.key\nupstream:\n  url: {1}\n",
        live.path().display(),
        upstream.url()
    );
    let gateway = Gateway::builder(&yaml).start().await;
    let (first_ca, second_ca) = (
        first.path().join("dev-ca.crt"),
        second.path().join("dev-ca.crt"),
    );
    assert!(trusted_by(&gateway, &first_ca).await);
    assert!(!trusted_by(&gateway, &second_ca).await);

    install(second.path());
    reload(&gateway, "ok").await;
    assert!(
        trusted_by(&gateway, &second_ca).await,
        "the new certificate"
    );
    assert!(!trusted_by(&gateway, &first_ca).await, "not the old one");

    std::fs::write(live.path().join("gateway.crt"), "not a certificate\n").unwrap();
    reload(&gateway, "error").await;
    assert!(
        trusted_by(&gateway, &second_ca).await,
        "a certificate that does not load keeps the running one"
    );
}
