//! The admin listener, on its own address: `/healthz`, `/readyz`,
//! `/metrics`, `/.well-known/jwks.json`, and with a token the session API
//! ([`sessions`]).
//!
//! Served with the public listener's care: a request head must arrive
//! within `limits.header_read_timeout`, and connections are capped, so a
//! client that connects and says nothing cannot take the port from the
//! health checks and scrapers that need it.

pub mod metrics;
pub mod sessions;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::proxy::{ProxyBody, text_body};
use crate::server::Live;

/// What the admin endpoints report on.
pub struct Admin {
    /// The gateway in force: `/readyz` pings its store (the cookie store
    /// has nothing to reach), so a reload that changes the store changes
    /// what readiness checks.
    pub live: Arc<Live>,
    /// Rendered by `/metrics`; `None` when metrics are off.
    pub metrics: Option<PrometheusHandle>,
    /// `/sessions`, over the store of the gateway in force; `None`
    /// without an admin token (404).
    pub sessions: Option<sessions::SessionsApi>,
}

/// Shows which store readiness checks, and whether metrics are on.
impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("store", self.live.gateway().sessions())
            .field("metrics", &self.metrics.is_some())
            .field("sessions", &self.sessions.is_some())
            .finish()
    }
}

/// Readiness waits at most this long for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// Admin connections at once: a few probes and scrapers need far fewer,
/// and more only serve whoever floods the port.
const MAX_CONNECTIONS: usize = 64;
/// The largest request head: admin requests are a path and a few headers.
const MAX_HEAD_BYTES: usize = 8192;
/// A connection is asked to close after this long, so that one whose client
/// stopped reading a response cannot hold its place forever; a keep-alive
/// scraper simply reconnects.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

impl Admin {
    async fn answer(&self, request: &Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        if request.uri().path() == "/sessions" {
            return match &self.sessions {
                Some(api) => {
                    let gateway = self.live.gateway();
                    let store = gateway.sessions().server();
                    api.answer(request, peer, store, gateway.identity_indexed())
                        .await
                }
                None => respond(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
            };
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return respond(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
        }
        match request.uri().path() {
            "/healthz" => respond(StatusCode::OK, "ok\n", "text/plain"),
            "/readyz" => self.readiness().await,
            "/metrics" => match &self.metrics {
                Some(handle) => {
                    respond(StatusCode::OK, handle.render(), "text/plain; version=0.0.4")
                }
                None => respond(StatusCode::NOT_FOUND, "metrics are off\n", "text/plain"),
            },
            "/.well-known/jwks.json" => {
                // The keys of the secrets in force: a reload that rotates
                // the secret publishes the new key at once.
                respond(
                    StatusCode::OK,
                    self.live.gateway().jwks().clone(),
                    "application/json",
                )
            }
            _ => respond(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
        }
    }

    async fn readiness(&self) -> Response<ProxyBody> {
        let gateway = self.live.gateway();
        let Some(store) = gateway.sessions().server() else {
            return respond(StatusCode::OK, "ready: cookie store\n", "text/plain");
        };
        match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => respond(
                StatusCode::OK,
                format!("ready: {} store answers\n", store.kind()),
                "text/plain",
            ),
            Ok(Err(error)) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {error}\n"),
                "text/plain",
            ),
            Err(_) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: store timed out\n",
                "text/plain",
            ),
        }
    }
}

pub(crate) fn respond(
    status: StatusCode,
    body: impl Into<bytes::Bytes>,
    content_type: &'static str,
) -> Response<ProxyBody> {
    let mut response = Response::new(text_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Serves the admin endpoints (HTTP/1.1) until the process exits; a
/// client must send its request head within `header_read_timeout`.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, header_read_timeout: Duration) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let http = Arc::new(http);
    loop {
        // As on the public listener: excess clients wait in the backlog.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.answer(&request, peer).await) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let served = match tokio::time::timeout(MAX_CONNECTION_AGE, connection.as_mut()).await {
                Ok(served) => served,
                Err(_) => {
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(header_read_timeout, connection)
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "admin connection ended with an error");
            }
        });
    }
}

/// GETs `url` and succeeds on a 200: the `healthcheck` subcommand, so that a
/// container image needs no curl or shell.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), crate::error::Error> {
    use crate::error::Error;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::config_message(format!("{url}: {e}")))?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Ok(Ok(response)) if response.status() == StatusCode::OK => Ok(()),
        Ok(Ok(response)) => Err(Error::config_message(format!(
            "{url} answered {}",
            response.status()
        ))),
        Ok(Err(error)) => Err(Error::config_message(format!("{url}: {error}"))),
        Err(_) => Err(Error::config_message(format!(
            "{url}: no answer within {timeout:?}"
        ))),
    }
}
