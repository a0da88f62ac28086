//! One request's trip through the gateway, phase by phase, in the order
//! they run:
//!
//! 0. **choose the route**: its backend and session rule; refuse a
//!    cross-origin request, or one without an identity on a `required`
//!    route, before the backend runs;
//! 1. **resolve the session** from the cookie and the store (not on a
//!    `session: off` route);
//! 2. **build the upstream request**: target, forwarded headers, the
//!    session written in (and signed, with `assertion` on) and the session
//!    cookie taken out;
//! 3. **send** it and wait for the response head;
//! 4. **apply the backend's instructions** to the store, before the head
//!    goes to the client;
//! 5. **set the cookie**;
//! 6. **log and count**: one access line per request ([`access`]).
//!
//! Every failure is one [`Error`] whose [`Error::status`] is the answer.

mod access;

pub use self::access::flush as flush_access_log;

use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use ipnet::IpNet;

use crate::config::RouteSession;
use crate::config::{Config, LogFormat, Secrets};
use crate::error::{Error, Result};
use crate::proxy::pool::PooledBody;
use crate::proxy::{Client, Connection, ProxyBody, forward, headers, text_body, upgrade};
use crate::route::{Route, Routes};
use crate::session::assertion::Assertion;
use crate::session::keys::Keyring;
use crate::session::{Engine, Session};
use crate::store::Sessions;

use self::access::Trace;

/// The gateway: the session engine in front of the upstream.
#[derive(Debug)]
pub struct Gateway {
    engine: Engine,
    routes: Routes,
    trusted_proxies: Vec<IpNet>,
    metrics: RequestMetrics,
    /// `assertion`: the signed session assertion; off without the section.
    assertion: Option<Assertion>,
    /// `log.access`: in which format, or `None` when off.
    access_log: Option<LogFormat>,
    /// `/.well-known/jwks.json` on the admin listener: the public keys of
    /// these secrets, so that a reload that rotates them publishes at once.
    jwks: bytes::Bytes,
    /// `session.identity_key` is set: server stores index sessions by it
    /// (the admin session API needs that).
    identity_indexed: bool,
}

/// A client's protocol upgrade, waiting for the backend's `101`.
struct PendingUpgrade {
    client: OnUpgrade,
    /// Method and path, for logs.
    label: String,
}

impl Gateway {
    /// The gateway for `config`, over the opened `sessions`.
    ///
    /// # Errors
    ///
    /// A configuration error when an upstream is unusable.
    pub fn new(config: &Config, secrets: &Secrets, sessions: Sessions) -> Result<Self> {
        Ok(Self {
            engine: Engine::new(config, secrets, sessions),
            routes: Routes::new(config)?,
            trusted_proxies: config.trusted_proxies.clone(),
            metrics: RequestMetrics::new(),
            assertion: config
                .assertion
                .as_ref()
                .map(|assertion| {
                    let identity_key = config.session.identity_key.clone();
                    Assertion::new(assertion, identity_key, &Keyring::new(secrets))
                })
                .transpose()?,
            access_log: config.log.access.then_some(config.log.format),
            jwks: crate::session::assertion::jwks(&Keyring::new(secrets))?.into(),
            identity_indexed: config.session.identity_key.is_some(),
        })
    }

    /// Where sessions live, for readiness checks.
    pub fn sessions(&self) -> &Sessions {
        self.engine.sessions()
    }

    /// The JWKS document of this gateway's secrets.
    pub fn jwks(&self) -> &bytes::Bytes {
        &self.jwks
    }

    /// Sessions are indexed by `session.identity_key`.
    pub fn identity_indexed(&self) -> bool {
        self.identity_indexed
    }

    /// Answers one client request. Never fails: errors become responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        // Kept for the logs; cloning a parsed URI shares its bytes.
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut trace = Trace::default();
        let response = match self.forward(request, connection, &mut trace).await {
            Ok(response) => response,
            Err(error) => error_response(&method, uri.path(), &error),
        };
        self.metrics.count(response.status());
        if let Some(format) = self.access_log {
            let line = access::Line {
                method: &method,
                uri: &uri,
                response: &response,
                connection,
                trace: &trace,
                started,
            };
            access::log(format, &line);
        }
        response
    }

    /// Phases 0 to 5.
    async fn forward<'g>(
        &'g self,
        mut request: Request<Incoming>,
        connection: &Connection,
        trace: &mut Trace<'g>,
    ) -> Result<Response<ProxyBody>> {
        let route = self.routes.select(&request)?;
        trace.route = Some(route.label());
        if !self.routes.allows_origin(route, &request) {
            return Ok(cross_origin_refusal());
        }
        let client = Client::of(&request, connection, &self.trusted_proxies);
        let session = match route.session {
            RouteSession::Off => None,
            RouteSession::Optional => {
                Some(trace.store(self.engine.resolve(request.headers())).await?)
            }
            RouteSession::Required => {
                let session = trace.store(self.engine.resolve(request.headers())).await?;
                if !self.engine.has_identity(&session) {
                    return Ok(route.login_required(&request));
                }
                Some(session)
            }
        };
        if self.access_log.is_some() {
            trace.session = session.as_ref().map(|s| s.public_id().to_owned());
        }
        let pending = take_upgrade(&mut request);
        let outgoing = self.upstream_request(
            request,
            route,
            connection,
            client,
            session.as_ref(),
            pending.is_some(),
        )?;
        let response = self.send(route, outgoing, trace).await?;
        // Boxed: the response phase's state is the largest (a store write
        // included), and a request spends most of its life before it,
        // waiting for the upstream, so it need not carry that state then.
        Box::pin(self.respond(response, pending, session, client, trace)).await
    }

    /// Phase 2: the request as the backend sees it.
    fn upstream_request(
        &self,
        request: Request<Incoming>,
        route: &Route,
        connection: &Connection,
        client: Client,
        session: Option<&Session>,
        upgrading: bool,
    ) -> Result<Request<ProxyBody>> {
        let mut outgoing =
            forward::upstream_request(request, &route.upstream, connection, client, upgrading)?;
        self.engine
            .prepare_upstream(session, outgoing.headers_mut())?;
        if let Some(assertion) = &self.assertion {
            let data = session.map(Session::data).transpose()?;
            assertion.write(outgoing.headers_mut(), data, route.upstream.origin())?;
        }
        Ok(outgoing)
    }

    /// Phase 3: the upstream's response head, timed.
    async fn send(
        &self,
        route: &Route,
        outgoing: Request<ProxyBody>,
        trace: &mut Trace<'_>,
    ) -> Result<Response<PooledBody>> {
        let started = Instant::now();
        let response = route.upstream.send(outgoing).await?;
        let elapsed = started.elapsed();
        self.metrics.upstream_duration.record(elapsed.as_secs_f64());
        trace.upstream = Some(elapsed);
        Ok(response)
    }

    /// Phases 4 and 5: the response as the client gets it, with the
    /// session committed and the cookie set.
    async fn respond(
        &self,
        mut response: Response<PooledBody>,
        pending: Option<PendingUpgrade>,
        session: Option<Session>,
        client: Client,
        trace: &mut Trace<'_>,
    ) -> Result<Response<ProxyBody>> {
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upgraded = match pending {
            Some(PendingUpgrade { client, label }) if switching => {
                upgrade::tunnel(client, hyper::upgrade::on(&mut response), label);
                true
            }
            _ => false,
        };
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, upgraded);
        match session {
            Some(session) => {
                trace
                    .store(
                        self.engine
                            .commit(session, &mut parts.headers, client.https),
                    )
                    .await?
            }
            None => self.engine.discard_instructions(&mut parts.headers),
        }
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// Takes the client's side of a protocol upgrade out of the request, if it
/// asks for one.
fn take_upgrade(request: &mut Request<Incoming>) -> Option<PendingUpgrade> {
    if !upgrade::requested(request.version(), request.headers()) {
        return None;
    }
    let label = format!("{} {}", request.method(), request.uri().path());
    Some(PendingUpgrade {
        client: hyper::upgrade::on(request),
        label,
    })
}

/// Request metrics, with handles looked up once: the hot path only bumps
/// atomics.
#[derive(Debug)]
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

/// 403 for a cross-origin request the route does not accept.
fn cross_origin_refusal() -> Response<ProxyBody> {
    let mut response = Response::new(text_body("Forbidden: cross-origin request\n"));
    *response.status_mut() = StatusCode::FORBIDDEN;
    for (name, value) in [
        (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (http::header::CACHE_CONTROL, "no-store"),
    ] {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Phase 6 for a failed request: the client sees a short status text; the
/// log gets the reason, with the request's method and path.
fn error_response(method: &Method, path: &str, error: &Error) -> Response<ProxyBody> {
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
