//! Serving one client connection: HTTP/1.1 or HTTP/2, each request through
//! the gateway, until the client leaves, the connection goes idle, or the
//! drain closes it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Live;
use super::drain::Watcher;
use super::head;
use super::idle::{Activity, Close, Watched};
use crate::config::LimitsConfig;
use crate::proxy::Connection;
use crate::proxy::pool::IdleLimits;

/// Streams one HTTP/2 connection may have open at once: enough for a
/// browser's page, few enough that one connection cannot queue hundreds
/// of session loads.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2 pings: how often a quiet connection is checked, and how long the
/// peer has to answer before the connection is dropped as dead.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection asked to close (idle, or drained) with nothing open is
/// dropped after this long. HTTP/2's GOAWAY waits for the client to answer
/// a ping (one round trip, so that a request it sent meanwhile is not
/// lost): a client that never answers would otherwise hold it forever.
const GOAWAY_GRACE: Duration = Duration::from_secs(5);

/// How connections are served: the request head bounded in size (hyper
/// answers 431 past it) and in time, connections and bodies in idleness.
pub(super) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<Scoped>,
    idle_timeout: Duration,
}

impl Protocols {
    pub(super) fn new(limits: &LimitsConfig, idle_limits: IdleLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout.get())
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes)
            // One contiguous write per response head (and small body)
            // instead of a gather write: measurably cheaper in the kernel
            // for the small messages a gateway mostly relays.
            .writev(false);
        let mut http2 = http2::Builder::new(Scoped(idle_limits));
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT);
        Self {
            http1,
            http2,
            idle_timeout: limits.idle_timeout.get(),
        }
    }

    pub(super) async fn serve_http1<I>(
        &self,
        watcher: Watcher,
        io: I,
        live: Arc<Live>,
        connection: Connection,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = connection.peer;
        let activity = Activity::new(self.idle_timeout);
        let served = self
            .http1
            .serve_connection(
                TokioIo::new(io),
                service(live, connection, Arc::clone(&activity)),
            )
            .with_upgrades();
        let shutdown =
            |served: Pin<&mut _>| http1::UpgradeableConnection::graceful_shutdown(served);
        // Between requests hyper's header read timeout closes a quiet
        // HTTP/1.1 connection: only stalled bodies are ours to watch.
        if let Err(error) = drive(served, shutdown, watcher, &activity, false, peer).await {
            report(peer, &error);
        }
    }

    pub(super) async fn serve_http2<I>(
        &self,
        watcher: Watcher,
        io: I,
        live: Arc<Live>,
        connection: Connection,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = connection.peer;
        let activity = Activity::new(self.idle_timeout);
        let served = self.http2.serve_connection(
            TokioIo::new(io),
            service(live, connection, Arc::clone(&activity)),
        );
        let shutdown = |served: Pin<&mut _>| http2::Connection::graceful_shutdown(served);
        if let Err(error) = drive(served, shutdown, watcher, &activity, true, peer).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// Drives `connection` to its end. When the drain starts, or (with
/// `close_when_quiet`) no request has been open for the idle limit,
/// `shutdown` asks it to close gracefully; once nothing is open it gets
/// [`GOAWAY_GRACE`] more. A stalled body drops it at once, since nothing
/// graceful can pass a body that does not move.
async fn drive<C, E>(
    connection: C,
    shutdown: impl FnOnce(Pin<&mut C>),
    mut watcher: Watcher,
    activity: &Activity,
    close_when_quiet: bool,
    peer: SocketAddr,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = watcher.draining() => {}
        close = activity.watch(close_when_quiet) => match close {
            Close::Idle => tracing::debug!(%peer, "closing an idle connection"),
            Close::Stalled { upstream } => {
                stalled(peer, upstream);
                return Ok(());
            }
        },
    }
    shutdown(connection.as_mut());
    let mut stalls = std::pin::pin!(activity.watch(false));
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            close = &mut stalls => {
                if let Close::Stalled { upstream } = close {
                    stalled(peer, upstream);
                }
                return Ok(());
            }
            () = tokio::time::sleep(GOAWAY_GRACE) => {
                if activity.is_quiet() {
                    return Ok(());
                }
            }
        }
    }
}

/// Logs why a connection is dropped mid-response.
fn stalled(peer: SocketAddr, upstream: bool) {
    let who = if upstream {
        "the upstream stopped sending"
    } else {
        "the client stopped reading"
    };
    tracing::info!(%peer, "closing a connection whose response made no progress: {who}");
}

/// Each request on the connection goes through the gateway in force when
/// it starts (see [`Live`]); its response body reports its progress to
/// `activity`.
fn service(
    live: Arc<Live>,
    connection: Connection,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Watched>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<Watched>, std::convert::Infallible>> + Send,
> + Clone {
    service_fn(move |mut request| {
        head::detach(&mut request);
        let gateway = live.gateway();
        let connection = connection.clone();
        let exchange = activity.begin();
        async move {
            let response = gateway.handle(request, &connection).await;
            Ok(response.map(|body| Watched::new(body, exchange)))
        }
    })
}

/// Counts and logs a response hyper wrote itself: a request it could not
/// parse never reaches the gateway, so it would otherwise go unseen.
fn report(peer: SocketAddr, error: &hyper::Error) {
    let Some(status) = answered_by_hyper(error) else {
        tracing::debug!(%peer, %error, "connection ended with an error");
        return;
    };
    // The gateway's own counter and log line, for the statuses it never sees.
    metrics::counter!("sessiongate_requests_total", "status" => status.as_str().to_owned())
        .increment(1);
    tracing::warn!(%peer, status = status.as_u16(), %error, "request refused");
}

/// The status hyper's HTTP/1.1 server answered `error` with, if it did.
fn answered_by_hyper(error: &hyper::Error) -> Option<StatusCode> {
    if error.is_parse_version_h2() {
        // An HTTP/2 preface without TLS: hyper closes without an answer.
        None
    } else if error.is_parse_too_large() {
        // Past `max_header_bytes`; hyper answers 414 instead for a request
        // target over 64 KiB that still fits, which only a limit above
        // 64 KiB allows.
        let uri = error.to_string().starts_with("URI");
        Some(if uri {
            StatusCode::URI_TOO_LONG
        } else {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        })
    } else if error.is_parse() {
        Some(StatusCode::BAD_REQUEST)
    } else {
        None
    }
}

/// Runs each HTTP/2 stream's task under the connection's idle limits (an
/// HTTP/1.1 connection's requests run in its own task, which has them).
#[derive(Clone, Copy, Debug)]
struct Scoped(IdleLimits);

impl<F> hyper::rt::Executor<F> for Scoped
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(self.0.scope(future));
    }
}
