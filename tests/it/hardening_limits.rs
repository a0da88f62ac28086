//! Idle connections, bodies and tunnels are closed on every listener, open
//! tunnels count against both connection limits, and responses hyper makes
//! itself are counted: black-box, against the real binary.
//!
//! Timing margins are wide on purpose: each test's limit is 1 s and its
//! deadline several seconds, so a loaded machine slows the test without
//! failing it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::support::{Gateway, TestClient, Upstream};

/// How long a test waits for what should happen after a 1 s limit.
const PATIENCE: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------- HTTP/2

/// A development CA and a certificate for localhost, made for this test.
fn dev_certs() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/certs/make-dev-cert.sh"
        ))
        .arg(certs.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    certs
}

/// Opens an HTTP/2 connection over TLS: the preface and SETTINGS go out,
/// and nothing else unless the caller sends a request. The task ends when
/// the gateway closes the connection.
async fn h2_connection(
    addr: SocketAddr,
    ca: &Path,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

#[tokio::test]
async fn idle_http2_connections_are_closed_and_free_their_place() {
    let certs = dev_certs();
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder(&format!(
        "tls:\n  cert: {0}/gateway.crt\n  key: {0}/gateway.key\nupstream:\n  url: {1}\n\
         limits:\n  max_connections: 2\n  idle_timeout: 1s\n",
        certs.path().display(),
        upstream.url()
    ))
    .start()
    .await;
    let ca = certs.path().join("dev-ca.crt");
    // Two clients take both places and never send a request.
    let (_quiet_a, closed_a) = h2_connection(gateway.addr, &ca).await;
    let (_quiet_b, closed_b) = h2_connection(gateway.addr, &ca).await;

    let started = Instant::now();
    let third = tokio::time::timeout(PATIENCE, async {
        let (mut sender, _task) = h2_connection(gateway.addr, &ca).await;
        let request = Request::get(format!("https://localhost:{}/", gateway.addr.port()))
            .body(Full::default())
            .unwrap();
        sender.send_request(request).await.map(|r| r.status())
    })
    .await;
    assert!(
        matches!(third, Ok(Ok(StatusCode::OK))),
        "a third client is served once the idle ones are closed: {third:?} after {:?}",
        started.elapsed()
    );
    for closed in [closed_a, closed_b] {
        tokio::time::timeout(PATIENCE, closed)
            .await
            .expect("the gateway closed the idle connection")
            .unwrap();
    }
}

// ---------------------------------------------------------------- bodies

/// Sends `GET path` on a raw socket and never reads the answer.
async fn request_and_never_read(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn clients_that_stop_reading_give_their_upstream_connections_back() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::builder(&format!(
        "upstream:\n  url: {}\n  max_connections: 2\n  timeout: 10s\nlimits:\n  idle_timeout: 1s\n",
        upstream.url()
    ))
    .start()
    .await;
    let _stuck_a = request_and_never_read(gateway.addr, "/download?bytes=200000000").await;
    let _stuck_b = request_and_never_read(gateway.addr, "/download?bytes=200000000").await;
    // Both downloads are under way (and both upstream connections taken).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let response = TestClient::new().try_get(&gateway.url("/")).await.unwrap();
    assert_eq!(response.status, 200, "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < PATIENCE,
        "served only after {:?}",
        started.elapsed()
    );
    let log = gateway.stderr();
    assert!(
        log.contains("the client stopped reading"),
        "the log says why the connections closed: {log}"
    );
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gives_its_upstream_connection_back() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: {}\n  max_connections: 1\n  timeout: 10s\nlimits:\n  idle_timeout: 1s\n",
        upstream.url()
    ))
    .start()
    .await;
    // An upload that announces 1 MB, sends a few bytes and goes silent.
    let mut stuck = TcpStream::connect(gateway.addr).await.unwrap();
    stuck
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 1000000\r\n\r\nfirst bytes",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let response = TestClient::new().try_get(&gateway.url("/")).await.unwrap();
    assert_eq!(response.status, 200, "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < PATIENCE,
        "served only after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_full_upstream_pool_is_logged_as_such() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::builder(&format!(
        "upstream:\n  url: {}\n  max_connections: 1\n  timeout: 1s\n",
        upstream.url()
    ))
    .start()
    .await;
    // A download nobody reads holds the one upstream connection (for
    // `limits.idle_timeout`, 60 s by default).
    let _busy = request_and_never_read(gateway.addr, "/download?bytes=200000000").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = TestClient::new().try_get(&gateway.url("/")).await.unwrap();
    assert_eq!(response.status, 504);
    let log = gateway.stderr();
    assert!(
        log.contains("no free upstream connection within"),
        "the log names the full pool, not a slow upstream: {log}"
    );
    assert!(
        !log.contains("upstream sent no response"),
        "the request's error line blames a slow upstream: {log}"
    );
}

// ---------------------------------------------------------------- tunnels

/// A backend that answers plain requests with `plain`, and WebSocket
/// upgrades with an echo.
async fn websocket_or_plain_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(websocket_or_plain))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn websocket_or_plain(
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return Ok(Response::new(Full::from("plain")));
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_text() || message.is_binary() {
                let _ = socket.send(message).await;
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(Full::default())
        .unwrap())
}

type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket through the gateway, checked with one echo.
async fn open_websocket(gateway: &Gateway) -> WebSocket {
    let url = format!("ws://{}/socket", gateway.addr);
    let (mut socket, response) =
        tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("the upgrade is answered")
            .expect("upgrade through the gateway");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket.send(Message::text("ping")).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap();
    assert!(
        matches!(echo, Some(Ok(Message::Text(ref t))) if t.as_str() == "ping"),
        "{echo:?}"
    );
    socket
}

/// GETs `/` until it is answered 200, for at most [`PATIENCE`].
async fn eventually_ok(gateway: &Gateway) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            TestClient::new().try_get(&gateway.url("/")),
        )
        .await;
        if let Ok(Ok(response)) = &answer
            && response.status == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "still not served: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed() {
    let backend = websocket_or_plain_upstream().await;
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: http://{backend}\nlimits:\n  tunnel_idle_timeout: 1s\n"
    ))
    .start()
    .await;
    let mut socket = open_websocket(&gateway).await;
    let quiet_since = Instant::now();
    let next = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("the gateway closes the idle tunnel");
    assert!(
        !matches!(next, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{next:?}"
    );
    assert!(
        quiet_since.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the tunnel was idle for 1s",
        quiet_since.elapsed()
    );
}

#[tokio::test]
async fn an_open_tunnel_keeps_its_upstream_connection() {
    let backend = websocket_or_plain_upstream().await;
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: http://{backend}\n  max_connections: 1\n  timeout: 1s\n"
    ))
    .start()
    .await;
    let socket = open_websocket(&gateway).await;
    let response = TestClient::new().try_get(&gateway.url("/")).await.unwrap();
    assert_eq!(
        response.status, 504,
        "the tunnel holds the one upstream connection"
    );
    drop(socket);
    eventually_ok(&gateway).await;
}

#[tokio::test]
async fn an_open_tunnel_keeps_its_client_connection() {
    let backend = websocket_or_plain_upstream().await;
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: http://{backend}\nlimits:\n  max_connections: 1\n"
    ))
    .start()
    .await;
    let socket = open_websocket(&gateway).await;
    let waiting = tokio::time::timeout(
        Duration::from_secs(2),
        TestClient::new().try_get(&gateway.url("/")),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the tunnel holds the one client connection: {waiting:?}"
    );
    drop(socket);
    eventually_ok(&gateway).await;
}

// ---------------------------------------------------------------- admin

#[tokio::test]
async fn a_silent_admin_client_is_cut_off() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "limits:\n  header_read_timeout: 1s\n").await;
    let mut stream = TcpStream::connect(gateway.admin).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the admin connection was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------- hyper's own answers

/// Sends `raw` on a new connection and returns the status line.
async fn raw_status_line(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(raw).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The value of `sessiongate_requests_total{status="<status>"}`, 0 if absent.
fn requests_total(metrics: &str, status: u16) -> f64 {
    let series = format!("sessiongate_requests_total{{status=\"{status}\"}}");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn responses_hyper_makes_itself_are_counted_and_logged() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::start(&upstream, "").await;
    let too_large = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let status = raw_status_line(gateway.addr, too_large.as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let status = raw_status_line(gateway.addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");

    // The connection's end (and the count) may trail the answer a little.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics = TestClient::new()
            .try_get(&gateway.admin_url("/metrics"))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        if requests_total(&text, 431) >= 1.0 && requests_total(&text, 400) >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "not counted: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gateway.stderr();
    assert!(
        log.contains("431") && log.contains("400") && log.contains("request refused"),
        "each is logged: {log}"
    );
}
