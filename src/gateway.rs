//! One request's trip through the gateway, phase by phase:
//! resolve the session → forward upstream → commit the backend's
//! instructions → answer. Every failure maps to one status in
//! [`GatewayError::status`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::config::{Config, ConfigError, Secrets};
use crate::proxy::headers::{self, Forwarded};
use crate::proxy::{ProxyBody, Upstream, UpstreamError, text_body, upgrade};
use crate::session::{CommitError, Engine, ResolveError};
use crate::store::SessionStore;

/// The client connection a request came in on.
#[derive(Clone, Debug)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's address as `X-Forwarded-For` carries it, formatted once
    /// per connection rather than per request (cloning it is a reference
    /// count).
    peer_ip: HeaderValue,
}

impl Connection {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let peer_ip = HeaderValue::from_maybe_shared(bytes::Bytes::from(peer.ip().to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { peer, tls, peer_ip }
    }
}

/// Everything that can stop a request, each with its one status code.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("session store failed while loading: {0}")]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("session instructions failed: {0}")]
    Commit(#[from] CommitError),
    #[error("cannot build the upstream request: {0}")]
    BadRequest(#[from] http::Error),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Resolve(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream(UpstreamError::Failed(_)) => StatusCode::BAD_GATEWAY,
            GatewayError::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Commit(CommitError::InvalidUpdate(_)) => StatusCode::BAD_GATEWAY,
            GatewayError::Commit(CommitError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Commit(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

pub struct Gateway {
    engine: Engine,
    upstream: Upstream,
    trusted_proxies: Vec<IpNet>,
    metrics: RequestMetrics,
}

impl Gateway {
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            engine: Engine::new(config, secrets, store),
            upstream: Upstream::new(&config.upstream)?,
            trusted_proxies: config.trusted_proxies.clone(),
            metrics: RequestMetrics::new(),
        })
    }

    pub fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.engine.store()
    }

    /// Answers one client request. Never fails: errors become responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Response<ProxyBody> {
        // Kept for the error log; cloning a parsed URI shares its bytes.
        let method = request.method().clone();
        let uri = request.uri().clone();
        let response = match self.forward(request, connection).await {
            Ok(response) => response,
            Err(error) => error_response(&method, uri.path(), &error),
        };
        self.metrics.count(response.status());
        response
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let trusted = self
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&connection.peer.ip()));
        let https = connection.tls
            || (trusted && headers::forwarded_proto(request.headers()) == Some("https"));

        let session = self.engine.resolve(request.headers()).await?;

        let upgrading = upgrade::requested(request.version(), request.headers());
        let client_upgrade = upgrading.then(|| {
            let label = format!("{} {}", request.method(), request.uri().path());
            (hyper::upgrade::on(&mut request), label)
        });
        let mut outgoing = self.upstream_request(request, connection, trusted, https, upgrading)?;
        self.engine
            .prepare_upstream(&session, outgoing.headers_mut());

        let started = Instant::now();
        let mut response = self.upstream.send(outgoing).await?;
        self.metrics
            .upstream_duration
            .record(started.elapsed().as_secs_f64());

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let Some((client, label)) = client_upgrade
            && switching
        {
            upgrade::tunnel(client, hyper::upgrade::on(&mut response), label);
        }
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, switching && upgrading);
        self.engine
            .commit(session, &mut parts.headers, https)
            .await?;
        Ok(Response::from_parts(parts, body.boxed()))
    }

    /// The request as it goes upstream, before the session is written in.
    fn upstream_request(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
        trusted: bool,
        https: bool,
        upgrading: bool,
    ) -> Result<Request<ProxyBody>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        parts.uri = self.upstream.target(&parts.uri)?;
        headers::remove_hop_by_hop(&mut parts.headers, upgrading);
        // An HTTP/2 request has no Host header: HTTP/1.1 upstreams need one.
        if !parts.headers.contains_key(HOST) {
            let host = authority
                .as_deref()
                .unwrap_or(self.upstream.authority().as_str());
            if let Ok(value) = HeaderValue::from_str(host) {
                parts.headers.insert(HOST, value);
            }
        }
        let forwarded = Forwarded {
            peer: &connection.peer_ip,
            trusted,
            proto: if https { "https" } else { "http" },
        };
        headers::set_forwarded(&mut parts.headers, &forwarded, authority.as_deref());
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body.boxed()))
    }
}

/// Request metrics, with handles looked up once: the hot path only bumps
/// atomics.
struct RequestMetrics {
    /// `sessiongate_requests_total` for the statuses a gateway mostly sees.
    by_status: Vec<(StatusCode, metrics::Counter)>,
    upstream_duration: metrics::Histogram,
}

impl RequestMetrics {
    const COMMON: [u16; 16] = [
        200, 201, 204, 301, 302, 303, 304, 400, 401, 403, 404, 431, 500, 502, 503, 504,
    ];

    fn new() -> Self {
        let by_status = Self::COMMON
            .iter()
            .filter_map(|code| StatusCode::from_u16(*code).ok())
            .map(|status| (status, requests_counter(status)))
            .collect();
        Self {
            by_status,
            upstream_duration: metrics::histogram!("sessiongate_upstream_duration_seconds"),
        }
    }

    fn count(&self, status: StatusCode) {
        match self.by_status.iter().find(|(known, _)| *known == status) {
            Some((_, counter)) => counter.increment(1),
            None => requests_counter(status).increment(1),
        }
    }
}

fn requests_counter(status: StatusCode) -> metrics::Counter {
    metrics::counter!("sessiongate_requests_total", "status" => status.as_str().to_owned())
}

/// The client sees a short status text; the log gets the reason, with the
/// request's method and path.
fn error_response(method: &Method, path: &str, error: &GatewayError) -> Response<ProxyBody> {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(%method, path, status = status.as_u16(), %error, "request failed");
    } else {
        tracing::warn!(%method, path, status = status.as_u16(), %error, "request refused");
    }
    let mut response = Response::new(text_body(format!(
        "{}\n",
        status.canonical_reason().unwrap_or("error")
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}
