//! The admin listener, on its own address: `/healthz`, `/readyz`, `/metrics`.

pub mod metrics;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::proxy::{ProxyBody, text_body};
use crate::store::SessionStore;

/// What the admin endpoints report on.
pub struct Admin {
    /// Pinged by `/readyz`; `None` for the cookie store, which has nothing
    /// to reach.
    pub store: Option<Arc<dyn SessionStore>>,
    /// Rendered by `/metrics`; `None` when metrics are off.
    pub metrics: Option<PrometheusHandle>,
}

/// Stores are not `Debug`: shows which one, and whether metrics are on.
impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("store", &self.store.as_ref().map(|store| store.kind()))
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// Readiness waits at most this long for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

impl Admin {
    async fn answer(&self, request: &Request<Incoming>) -> Response<ProxyBody> {
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
            _ => respond(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
        }
    }

    async fn readiness(&self) -> Response<ProxyBody> {
        let Some(store) = &self.store else {
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

fn respond(
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

/// Serves the admin endpoints until the process exits.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.answer(&request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
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
