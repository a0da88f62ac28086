//! Black-box test support: the real `sessiongate` binary in front of a real
//! upstream, and a cookie-aware HTTP client.

pub mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

/// A free local port, never the same one twice in this test process.
///
/// The OS may hand out a port it just handed out once the probe socket is
/// closed, so two calls in a row (a gateway's `listen` and `admin`) could
/// name one port. A port can still be taken by another process before its
/// user binds it; [`GatewayBuilder::start`] retries that case.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// The built-in echo backend, in this test process.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let task = tokio::spawn(sessiongate::demo::serve(listener));
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateway binary: cargo's, unless `SESSIONGATE_TEST_BIN` names
/// another (a copy, when several checkouts share one target directory and
/// may replace cargo's while the tests run).
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("SESSIONGATE_TEST_BIN")
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sessiongate").into())
}

/// A running gateway process.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
    config: PathBuf,
    _dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// How to start a gateway: `yaml` is the configuration without `listen` and
/// `admin` (they get free ports).
pub struct GatewayBuilder {
    yaml: String,
    env: Vec<(String, String)>,
    listen: Option<SocketAddr>,
}

impl GatewayBuilder {
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts without the variable `name` (e.g. `SESSION_SECRET`, to read
    /// the secret from a file instead).
    pub fn without_env(mut self, name: &str) -> Self {
        self.env.retain(|(set, _)| set != name);
        self
    }

    /// Listen on a fixed address (to restart on the same port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Starts the gateway on free ports. A port another process took
    /// between [`free_port`] and the gateway's bind is retried on new ports.
    pub async fn start(self) -> Gateway {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let mut gateway = self.configure();
            match gateway.try_spawn().await {
                Ok(()) => return gateway,
                Err(log) if attempt < ATTEMPTS && log.contains("in use") => attempt += 1,
                Err(log) => panic!("sessiongate exited early: {log}"),
            }
        }
    }

    fn configure(&self) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.path().join("gateway.yaml");
        let text = format!(
            "listen: \"{addr}\"\nadmin:\n  listen: \"{admin}\"\n{}",
            self.yaml
        );
        std::fs::write(&config, text).expect("write config");
        Gateway {
            addr,
            admin,
            child: None,
            config,
            _dir: dir,
            env: self.env.clone(),
        }
    }
}

impl Gateway {
    /// A gateway with `yaml` and `SESSION_SECRET` set to [`SECRET`].
    pub fn builder(yaml: &str) -> GatewayBuilder {
        GatewayBuilder {
            yaml: yaml.to_owned(),
            env: vec![("SESSION_SECRET".into(), SECRET.into())],
            listen: None,
        }
    }

    /// The usual test gateway: `store_yaml` (e.g. `store: {type: memory}`)
    /// in front of `upstream`.
    pub async fn start(upstream: &Upstream, extra_yaml: &str) -> Gateway {
        Self::builder(&format!(
            "upstream:\n  url: {}\n{extra_yaml}",
            upstream.url()
        ))
        .start()
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    async fn spawn(&mut self) {
        if let Err(log) = self.try_spawn().await {
            panic!("sessiongate exited early: {log}");
        }
    }

    /// Starts the process and waits for `/healthz`; `Err` holds the log of a
    /// process that exited first.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&self.config)
            .env_remove("SESSION_SECRET")
            .env_remove("SESSION_PREVIOUS_SECRETS")
            .env_remove("SESSION_SECRET_FILE")
            .env_remove("SESSION_PREVIOUS_SECRETS_FILE")
            .env_remove("CONFIG")
            .env("RUST_LOG", "sessiongate=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log_path()).expect("gateway log file"));
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start sessiongate");
        self.child = Some(child);
        self.wait_until_healthy().await
    }

    async fn wait_until_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = TestClient::new();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("({status}) {}", self.stderr()));
            }
            if let Ok(response) = client.try_get(&self.admin_url("/healthz")).await
                && response.status == StatusCode::OK
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "sessiongate did not become healthy: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.config.with_file_name("gateway.log")
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Replaces the configuration file: `listen` and `admin` as at start,
    /// then `yaml` (for a reload).
    pub fn rewrite_config(&self, yaml: &str) {
        let text = format!(
            "listen: \"{}\"\nadmin:\n  listen: \"{}\"\n{yaml}",
            self.addr, self.admin
        );
        self.rewrite_config_text(&text);
    }

    /// Replaces the whole configuration file with `text`.
    pub fn rewrite_config_text(&self, text: &str) {
        std::fs::write(&self.config, text).expect("rewrite config");
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running gateway").id()
    }

    /// Sends SIGHUP: reload the configuration.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Stops the process with SIGKILL and starts it again with the same
    /// configuration and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running gateway");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait for sessiongate")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The usual start of a test: the echo upstream, a gateway with
/// `extra_yaml` in front of it, and a client whose session holds `data`.
pub async fn logged_in(extra_yaml: &str, data: Value) -> (Upstream, Gateway, TestClient) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, extra_yaml).await;
    let mut client = TestClient::new();
    let login = client.update(&gateway.url("/"), &data).await;
    assert_eq!(login.status, StatusCode::OK, "login through the gateway");
    (upstream, gateway, client)
}

/// Login, update, regenerate (old cookie dead), destroy.
pub async fn session_lifecycle(gateway: &Gateway) {
    let mut client = TestClient::new();
    client
        .update(&gateway.url("/login"), &json!({"user": "ada", "cart": []}))
        .await;
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada", "cart": []})
    );
    let before = client.jar.clone();
    let regenerated = client
        .get(&gateway.url(&format!(
            "/?regenerate=1&update={}",
            encode(r#"{"cart":[1]}"#)
        )))
        .await;
    assert_eq!(regenerated.status, 200);
    let mut old = TestClient::new();
    old.jar = before;
    assert_eq!(
        old.get(&gateway.url("/")).await.session(),
        json!({}),
        "the old id stops working"
    );
    assert_eq!(
        client.get(&gateway.url("/")).await.session(),
        json!({"user": "ada", "cart": [1]})
    );
    client.get(&gateway.url("/?destroy=1")).await;
    assert_eq!(client.get(&gateway.url("/")).await.session(), json!({}));
}

/// 40 concurrent updates of one session spread over `gateways`: none lost.
pub async fn concurrent_updates_across(gateways: &[&Gateway]) {
    let mut client = TestClient::new();
    client
        .update(&gateways[0].url("/"), &json!({"seed": true}))
        .await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let url = gateways[n % gateways.len()].url(&format!(
            "/?update={}",
            encode(&json!({ format!("k{n}"): n }).to_string())
        ));
        let jar = client.jar.clone();
        tasks.push(tokio::spawn(async move {
            let mut writer = TestClient::new();
            writer.jar = jar;
            writer.get(&url).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let session = client
        .get(&gateways[1 % gateways.len()].url("/"))
        .await
        .session();
    assert_eq!(
        session.as_object().unwrap().len(),
        41,
        "lost updates: {session}"
    );
}

/// A response, body collected.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// What the echo backend saw of the session.
    pub fn session(&self) -> Value {
        self.json()["session"].clone()
    }

    pub fn session_id(&self) -> String {
        self.json()["session_id"]
            .as_str()
            .expect("x-session-id reached the backend")
            .to_owned()
    }

    /// The values of header `name` the echo backend received.
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        match &self.json()["headers"][name] {
            Value::Array(values) => values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// A client that keeps cookies the way a browser does (by name; Max-Age=0
/// removes).
pub struct TestClient {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    pub jar: BTreeMap<String, String>,
}

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    pub fn new() -> Self {
        Self {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            jar: BTreeMap::new(),
        }
    }

    pub async fn get(&mut self, url: &str) -> TestResponse {
        self.send(Request::get(url).body(Full::default()).expect("request"))
            .await
    }

    /// GET with the session instruction `update` for the echo backend.
    pub async fn update(&mut self, base: &str, patch: &Value) -> TestResponse {
        self.get(&format!("{base}?update={}", encode(&patch.to_string())))
            .await
    }

    /// Sends `request` with the jar's cookies and stores what comes back.
    pub async fn send(&mut self, mut request: Request<Full<Bytes>>) -> TestResponse {
        if !self.jar.is_empty() {
            let line: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request
                .headers_mut()
                .append("cookie", line.join("; ").parse().expect("cookie header"));
        }
        let response = self
            .send_raw(request)
            .await
            .expect("request to the gateway");
        for line in response.set_cookies() {
            self.store_cookie(&line);
        }
        response
    }

    /// Sends without cookies or jar updates.
    pub async fn send_raw(&self, request: Request<Full<Bytes>>) -> Result<TestResponse, String> {
        let response = tokio::time::timeout(Duration::from_secs(30), self.http.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn try_get(&self, url: &str) -> Result<TestResponse, String> {
        self.send_raw(Request::get(url).body(Full::default()).expect("request"))
            .await
    }

    fn store_cookie(&mut self, line: &str) {
        let Some((pair, attributes)) = line.split_once(';').or(Some((line, ""))) else {
            return;
        };
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        if attributes.contains("Max-Age=0") {
            self.jar.remove(name.trim());
        } else {
            self.jar
                .insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
