//! The access log: one line per request, under the tracing target
//! `sessiongate::access` (so a filter can route or silence it), text or
//! JSON as `log.format` says.
//!
//! | field | value |
//! |---|---|
//! | `method`, `path` | the request's; the path without its query string, which may carry secrets |
//! | `status` | the status sent to the client |
//! | `bytes` | the response body's length when known up front (`Content-Length`, or a body of known size); absent for a streamed body of unknown length |
//! | `duration_ms` | from the request's arrival to its response head (the body streams after the line is written) |
//! | `upstream_ms` | waiting for the backend's response head; absent when the backend was not called |
//! | `store_ms` | resolving and committing the session: store calls, or for the cookie store opening and sealing the cookie |
//! | `route` | the route that matched; `-` (no routes yet) |
//! | `session` | the session's public id (`X-Session-Id`); absent when no session was resolved |
//! | `client` | the peer's IP address (a load balancer's, when there is one) |

use std::future::Future;
use std::time::{Duration, Instant};

use http::{Method, Response, Uri};
use http_body::Body;

use crate::proxy::{Connection, ProxyBody};

/// What one request's phases measured, for its access line.
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// Waiting for the upstream's response head.
    pub(super) upstream: Option<Duration>,
    /// Store work: loading and committing the session.
    pub(super) store: Duration,
    /// The session's public id, once resolved.
    pub(super) session: Option<String>,
}

impl Trace {
    /// Runs `work` and adds its time to the store's.
    pub(super) async fn store<T>(&mut self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        self.store += started.elapsed();
        output
    }
}

/// Milliseconds with microsecond precision.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// Writes the request's access line.
pub(super) fn log(
    method: &Method,
    uri: &Uri,
    response: &Response<ProxyBody>,
    connection: &Connection,
    trace: &Trace,
    started: Instant,
) {
    let bytes = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| response.body().size_hint().exact());
    tracing::info!(
        target: "sessiongate::access",
        method = %method,
        path = %uri.path(),
        status = response.status().as_u16(),
        bytes,
        duration_ms = millis(started.elapsed()),
        upstream_ms = trace.upstream.map(millis),
        store_ms = millis(trace.store),
        route = %"-",
        session = trace.session.as_deref().map(tracing::field::display),
        client = %connection.peer.ip(),
    );
}
