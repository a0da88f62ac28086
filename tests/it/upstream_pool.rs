//! Upstream connections, black-box: kept alive and reused, bounded by
//! `upstream.max_connections`, and never reused once the backend closed them.
//!
//! The backend here is a raw socket server that counts what the gateway
//! does to it: connections opened, requests in flight at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Gateway, TestClient};

/// How the counting backend answers.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Before each response.
    delay: Duration,
    /// Closes the connection this long after each response, without saying
    /// so (no `Connection: close`), as a backend's keep-alive timeout does.
    close_after: Option<Duration>,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    requests: AtomicUsize,
}

struct Backend {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn({
            let counts = counts.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    counts.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, behaviour, counts.clone()));
                }
            }
        });
        Self { addr, counts, task }
    }

    fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }
}

/// Answers bodiless requests: `/empty` with 204, anything else with `ok`.
async fn serve(mut stream: TcpStream, behaviour: Behaviour, counts: Arc<Counts>) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end);
        counts.requests.fetch_add(1, Ordering::SeqCst);
        let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counts.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(behaviour.delay).await;
        counts.in_flight.fetch_sub(1, Ordering::SeqCst);
        let written = if head.starts_with("GET /stream ") {
            // The head at once, the body's second half 2.5 s later.
            let first = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
                .await;
            tokio::time::sleep(Duration::from_millis(2500)).await;
            match first {
                Ok(()) => stream.write_all(b"cd").await,
                Err(error) => Err(error),
            }
        } else if head.starts_with("GET /empty ") {
            stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await
        } else if head.starts_with("HEAD ") {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
                .await
        } else {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
        };
        if written.is_err() {
            return;
        }
        if let Some(after) = behaviour.close_after {
            tokio::time::sleep(after).await;
            return;
        }
    }
}

async fn gateway_in_front_of(backend: &Backend, upstream_yaml: &str) -> Gateway {
    Gateway::builder(&format!(
        "upstream:\n  url: http://{}\n{upstream_yaml}",
        backend.addr
    ))
    .start()
    .await
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let backend = Backend::start(Behaviour {
        delay: Duration::ZERO,
        close_after: None,
    })
    .await;
    let gateway = gateway_in_front_of(&backend, "").await;
    let mut client = TestClient::new();
    for round in 0..5 {
        let plain = client.get(&gateway.url("/page")).await;
        assert_eq!(plain.status, 200, "round {round}");
        assert_eq!(plain.body.as_ref(), b"ok");
        // Bodiless answers hand the connection back too.
        let empty = client.get(&gateway.url("/empty")).await;
        assert_eq!(empty.status, 204);
        let head = client
            .send_raw(
                Request::head(gateway.url("/page"))
                    .body(Full::default())
                    .expect("request"),
            )
            .await
            .expect("HEAD through the gateway");
        assert_eq!(head.status, 200);
    }
    assert_eq!(backend.counts.requests.load(Ordering::SeqCst), 15);
    assert_eq!(
        backend.connections(),
        1,
        "15 requests one after the other need one upstream connection"
    );
}

#[tokio::test]
async fn requests_beyond_max_connections_wait_for_a_free_one() {
    let backend = Backend::start(Behaviour {
        delay: Duration::from_millis(200),
        close_after: None,
    })
    .await;
    let gateway = gateway_in_front_of(&backend, "  max_connections: 2\n").await;
    let client = TestClient::new();
    let url = gateway.url("/slow");
    let requests = (0..6).map(|_| client.try_get(&url));
    let responses = futures_util::future::join_all(requests).await;
    for response in responses {
        assert_eq!(response.expect("answered").status, 200);
    }
    assert_eq!(backend.counts.requests.load(Ordering::SeqCst), 6);
    assert_eq!(backend.counts.most_in_flight.load(Ordering::SeqCst), 2);
    assert!(
        backend.connections() <= 2,
        "{} upstream connections for max_connections: 2",
        backend.connections()
    );
}

#[tokio::test]
async fn a_wait_for_a_free_connection_counts_toward_the_upstream_timeout() {
    let backend = Backend::start(Behaviour {
        delay: Duration::ZERO,
        close_after: None,
    })
    .await;
    let gateway = gateway_in_front_of(&backend, "  max_connections: 1\n  timeout: 1s\n").await;
    let client = TestClient::new();
    // The only connection is busy for 2.5 s streaming a body.
    let stream_url = gateway.url("/stream");
    let streaming = client.try_get(&stream_url);
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        (
            client.try_get(&gateway.url("/page")).await,
            started.elapsed(),
        )
    };
    let (streamed, (waited, elapsed)) = tokio::join!(streaming, waiting);
    let streamed = streamed.expect("the streaming request is answered");
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.body.as_ref(), b"abcd");
    assert_eq!(waited.expect("answered").status, 504);
    assert!(elapsed < Duration::from_secs(2), "504 after {elapsed:?}");
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_not_reused() {
    let backend = Backend::start(Behaviour {
        delay: Duration::ZERO,
        close_after: Some(Duration::from_millis(20)),
    })
    .await;
    let gateway = gateway_in_front_of(&backend, "").await;
    let mut client = TestClient::new();
    for _ in 0..3 {
        let response = client.get(&gateway.url("/page")).await;
        assert_eq!(response.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(backend.connections(), 3);
}
