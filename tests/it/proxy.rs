//! Forwarding, black-box: streaming bodies, upstream failures, limits,
//! HTTPS with HTTP/2, WebSocket upgrades.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Gateway, TestClient, Upstream, free_port};

#[tokio::test]
async fn an_8_mb_upload_and_download_pass_intact() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let client = TestClient::new();
    let body: Vec<u8> = (0..8 * 1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let digest: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let request = Request::post(gateway.url("/upload"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.send_raw(request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"bytes": 8 * 1024 * 1024, "sha256": digest})
    );

    let download = client
        .try_get(&gateway.url("/download?bytes=8388608"))
        .await
        .unwrap();
    assert_eq!(download.body.len(), 8 * 1024 * 1024);
}

#[tokio::test]
async fn a_dead_upstream_is_a_502() {
    let port = free_port();
    let gateway = Gateway::builder(&format!("upstream:\n  url: http://127.0.0.1:{port}\n"))
        .start()
        .await;
    let mut client = TestClient::new();
    let response = client.get(&gateway.url("/anything")).await;
    assert_eq!(response.status, 502);
    let mut gateway = gateway;
    let log = gateway.stderr();
    assert!(
        log.contains("GET") && log.contains("/anything"),
        "the log names the method and path: {log}"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder(&format!(
        "upstream:\n  url: {}\n  timeout: 500ms\n",
        upstream.url()
    ))
    .start()
    .await;
    let mut client = TestClient::new();
    let started = Instant::now();
    let response = client.get(&gateway.url("/slow?ms=3000")).await;
    assert_eq!(response.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_70_kb_header_is_refused_with_431() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "").await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = vec![0u8; 64];
    let n = stream.read(&mut answer).await.unwrap();
    let status_line = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(status_line.starts_with("HTTP/1.1 431"), "{status_line}");

    // A large but allowed head passes.
    let client = TestClient::new();
    let request = Request::get(gateway.url("/"))
        .header("x-big", "b".repeat(40 * 1024))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.send_raw(request).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_client_that_never_sends_its_head_is_cut_off() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&upstream, "limits:\n  header_read_timeout: 1s\n").await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(3));
}

pub(crate) fn tls_client(
    ca: &std::path::Path,
) -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

#[tokio::test]
async fn https_serves_http2_and_sets_secure_cookies() {
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
    let upstream = Upstream::start().await;
    let yaml = format!(
        "tls:\n  cert: {0}/gateway.crt\n  key: {0}/gateway.key\nupstream:\n  url: {1}\n",
        certs.path().display(),
        upstream.url()
    );
    let gateway = Gateway::builder(&yaml).start().await;
    let client = tls_client(&certs.path().join("dev-ca.crt"));
    let url = format!(
        "https://localhost:{}/h2?update=%7B%22user%22%3A%22ada%22%7D",
        gateway.addr.port()
    );
    let response = client
        .request(Request::get(url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("; Secure"),
        "secure: auto on a TLS connection: {cookie}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["version"], "HTTP/1.1", "the upstream gets HTTP/1.1");
    assert_eq!(
        seen["headers"]["host"][0].as_str().unwrap(),
        format!("localhost:{}", gateway.addr.port())
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
}

/// A WebSocket echo server (not the demo backend: it speaks WebSocket).
async fn websocket_echo() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        let _ = socket.send(message).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websockets_pass_through_both_ways() {
    let echo = websocket_echo().await;
    let gateway = Gateway::builder(&format!("upstream:\n  url: http://{echo}\n"))
        .start()
        .await;
    let url = format!("ws://{}/socket", gateway.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade through the gateway");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through the gateway"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let back = socket.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_and_exits_zero() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::start(&upstream, "").await;
    let url = gateway.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { TestClient::new().try_get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || gateway.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight completed");
    assert_eq!(response.status, 200);
}

/// An upstream that answers every request with a chunked body and a
/// `grpc-status` trailer, written by hand so nothing in between can hide it.
async fn trailer_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                    Trailer: grpc-status\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n";
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// `Trailer` is end-to-end (RFC 9110 §6.6.2): the header and the trailer
/// fields reach an HTTP/1.1 client.
#[tokio::test]
async fn response_trailers_reach_the_client() {
    let upstream = trailer_upstream().await;
    let gateway = Gateway::builder(&format!("upstream:\n  url: http://{upstream}\n"))
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /rpc HTTP/1.1\r\nHost: app\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the response ends")
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.contains("trailer: grpc-status"), "{head}");
    assert!(body.contains("hello"), "{body}");
    let after_last_chunk = body.split("\r\n0\r\n").nth(1).unwrap_or_default();
    assert!(
        after_last_chunk.contains("grpc-status: 0"),
        "the trailer is lost: {body:?}"
    );
}
