//! Keep-alive connections to the upstream, HTTP/1.1 over
//! `hyper::client::conn`.
//!
//! A connection is leased for one request and goes back to the idle list
//! the moment its response body ends, so the next request reuses it at
//! once. hyper-util's legacy client does the same work with a keyed pool,
//! a lock per checkout and a task spawned per request to wait for the
//! connection to become idle; with one upstream none of that is needed.
//!
//! At most `upstream.max_connections` requests are in flight; more wait
//! their turn (within `upstream.timeout`) instead of opening a connection
//! each, which bounds both the upstream's load and our memory. A WebSocket
//! tunnel keeps its place for as long as it is open.
//!
//! A request body the client stops sending is cut off after the client
//! connection's idle limit ([`IdleLimits`]), so a silent client cannot hold
//! an upstream connection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_rustls::TlsConnector;

use super::ProxyBody;
pub use super::idle::IdleLimits;
use super::idle::UpstreamBody;
use super::upgrade::Socket;
use crate::error::Error;

/// An idle connection is closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts on kept connections the upstream closed meanwhile, before the
/// request goes out on a new one.
const STALE_RETRIES: usize = 2;

/// How to open a connection: where, and with TLS or not.
pub struct Connector {
    /// `host:port`, resolved at each connect so DNS changes are followed.
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// `tls` is the connector and the name to verify for an https upstream,
    /// `None` for plain http.
    pub fn new(
        address: String,
        tls: Option<(TlsConnector, ServerName<'static>)>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            address,
            tls,
            connect_timeout,
        }
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                Error::upstream(format!(
                    "connect to {} timed out after {:?}",
                    self.address, self.connect_timeout
                ))
            })?
            .map_err(|e| Error::upstream(format!("connect to {}: {e}", self.address)))?;
        // Requests are small writes that must leave at once.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY on an upstream connection");
        }
        match &self.tls {
            None => handshake(tcp).await,
            Some((tls, server_name)) => {
                let stream = tokio::time::timeout(
                    self.connect_timeout,
                    tls.connect(server_name.clone(), tcp),
                )
                .await
                .map_err(|_| Error::upstream("TLS handshake timed out"))?
                .map_err(|e| Error::upstream(format!("TLS handshake: {e}")))?;
                handshake(stream).await
            }
        }
    }
}

/// Starts HTTP/1.1 on `io`; the connection is driven by its own task, which
/// ends when the upstream or the pool closes it.
async fn handshake<T>(io: T) -> Result<Conn, Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tunnel = Arc::new(OnceLock::new());
    let socket = Socket::new(io, Arc::clone(&tunnel));
    // Flattened writes, as on the server side (see `server::connection`).
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(socket))
        .await
        .map_err(|e| Error::upstream(describe(&e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %describe(&error), "upstream connection ended");
        }
    });
    Ok(Conn { sender, tunnel })
}

/// An upstream connection as the pool holds it.
#[derive(Debug)]
struct Conn {
    sender: http1::SendRequest<UpstreamBody>,
    /// Set when the upstream answers `101`: the socket, now a tunnel's,
    /// keeps the request's place in flight (see [`Socket`]); the pool never
    /// sees the connection again.
    tunnel: Arc<OnceLock<OwnedSemaphorePermit>>,
}

/// The upstream's connections: idle ones kept for reuse, and a cap on
/// requests in flight.
#[derive(Debug)]
pub struct Pool {
    connector: Connector,
    /// Newest last: reuse takes the warmest connection, expiry drops the
    /// oldest from the front.
    idle: Mutex<VecDeque<Idle>>,
    in_flight: Arc<Semaphore>,
    /// `upstream.max_connections`, for the log.
    max_connections: usize,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    /// Empty: connections open as requests need them, at most
    /// `max_connections` in use at once.
    pub fn new(connector: Connector, max_connections: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            connector,
            idle: Mutex::new(VecDeque::new()),
            in_flight: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        });
        // Expiry in `put_idle` only runs while requests come: without this
        // a gateway whose traffic stops keeps its last burst's connections
        // (and their file descriptors) open for good.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(close_expired_idle(Arc::downgrade(&pool)));
        }
        pool
    }

    /// Sends `request` on a kept connection, or a new one, and returns the
    /// response head; the body hands the connection back when it ends.
    /// Sends `request`; a wait for a free connection ends at `deadline`
    /// with an error that says so.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<ProxyBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<PooledBody>, Error> {
        let idle = IdleLimits::current().map(|limits| limits.body);
        let mut request = request.map(|body| UpstreamBody::new(body, idle));
        let permit = self.place_in_flight(deadline).await?;
        for attempt in 0..=STALE_RETRIES {
            let kept = if attempt < STALE_RETRIES {
                self.take_idle().await
            } else {
                None
            };
            let mut conn = match kept {
                Some(conn) => conn,
                // Boxed: connecting (TLS included) needs far more state than a
                // request on a kept connection, and every request would carry it.
                None => Box::pin(self.connector.connect()).await?,
            };
            match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    let permit = if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                        // The socket keeps it for the tunnel's life.
                        let _ = conn.tunnel.set(permit);
                        None
                    } else {
                        Some(permit)
                    };
                    let lease = Lease {
                        conn,
                        pool: Arc::clone(self),
                        _permit: permit,
                    };
                    return Ok(response.map(|body| PooledBody {
                        inner: body,
                        lease: Some(lease),
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the kept connection closed under us.
                    Some(unsent) => {
                        tracing::debug!(error = %describe(error.error()), "retrying on another upstream connection");
                        request = unsent;
                    }
                    None => return Err(Error::upstream(describe(error.error()))),
                },
            }
        }
        Err(Error::upstream(
            "no upstream connection would take the request",
        ))
    }

    /// A place among the requests in flight, waiting for one to free if
    /// all are taken. The caller's `upstream.timeout` bounds the wait; a
    /// wait it cuts short is logged as what it is, an exhausted pool, and
    /// not as a slow upstream.
    async fn place_in_flight(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, Error> {
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => {
                return Err(Error::upstream("the upstream pool is closed"));
            }
            Err(TryAcquireError::NoPermits) => {}
        }
        let mut waiting = Exhausted {
            since: Instant::now(),
            max: self.max_connections,
            over: false,
        };
        let permit =
            tokio::time::timeout_at(deadline, Arc::clone(&self.in_flight).acquire_owned()).await;
        waiting.over = true;
        match permit {
            Ok(permit) => permit.map_err(|_| Error::upstream("the upstream pool is closed")),
            Err(_) => Err(Error::upstream_pool_exhausted(
                waiting.since.elapsed(),
                self.max_connections,
            )),
        }
    }

    /// The newest idle connection still open, if any.
    async fn take_idle(&self) -> Option<Conn> {
        loop {
            let mut conn = self.lock_idle().pop_back()?.conn;
            if conn.sender.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        drop_expired(&mut idle, now);
        idle.push_back(Idle { conn, since: now });
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The list holds no invariant a panic could break.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the idle connections unused for [`IDLE_TIMEOUT`] (the oldest are
/// at the front); dropping a connection's sender ends its task and closes
/// the socket.
fn drop_expired(idle: &mut VecDeque<Idle>, now: Instant) {
    while idle
        .front()
        .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_TIMEOUT)
    {
        idle.pop_front();
    }
}

/// Runs [`drop_expired`] every quarter of [`IDLE_TIMEOUT`] for as long as
/// the pool exists.
async fn close_expired_idle(pool: std::sync::Weak<Pool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        drop_expired(&mut pool.lock_idle(), Instant::now());
    }
}

/// Logs, when dropped before the wait is `over`, that a request gave up
/// waiting for a free upstream connection.
struct Exhausted {
    since: Instant,
    max: usize,
    over: bool,
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        if self.over {
            return;
        }
        tracing::warn!(
            max_connections = self.max,
            "upstream pool exhausted: no free upstream connection within {:?} \
             (all upstream.max_connections are in use)",
            self.since.elapsed()
        );
    }
}

/// One request's hold on a connection and on a place in flight (`None`
/// once a tunnel's socket holds it).
#[derive(Debug)]
struct Lease {
    conn: Conn,
    pool: Arc<Pool>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// The response ended: the connection can carry the next request.
    fn release(self) {
        let Lease { conn, pool, .. } = self;
        if conn.sender.is_ready() {
            pool.put_idle(conn);
        } else if !conn.sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Still finishing (the request body, or an upgrade): wait
            // for it off the request path.
            let mut conn = conn;
            runtime.spawn(async move {
                let ready = tokio::time::timeout(IDLE_TIMEOUT, conn.sender.ready()).await;
                if let Ok(Ok(())) = ready {
                    pool.put_idle(conn);
                }
            });
        }
    }
}

/// The upstream's response body, streamed as it arrives; when it ends the
/// connection returns to the pool, when it is dropped early the connection
/// closes (its state is unknown).
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    fn release_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
            }
            Some(Ok(_)) => self.release_if_done(),
            Some(Err(_)) => self.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing to read (HEAD, 204, 304, `Content-Length: 0`)
        // is dropped without being polled.
        self.release_if_done();
    }
}

/// The client error with its causes, for the log.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Found by the soak (docs/reliability.md): idle connections were only
    /// expired when another one was handed back, so a gateway whose traffic
    /// stopped kept them open. The pool now closes them on its own.
    #[tokio::test]
    async fn expired_idle_connections_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let pool = Pool::new(Connector::new(address, None, Duration::from_secs(1)), 4);
        let conn = pool.connector.connect().await.unwrap();
        let (mut upstream, _) = listener.accept().await.unwrap();
        let long_ago = Instant::now() - IDLE_TIMEOUT - Duration::from_secs(1);
        pool.lock_idle().push_back(Idle {
            conn,
            since: long_ago,
        });
        let fresh = pool.connector.connect().await.unwrap();
        pool.lock_idle().push_back(Idle {
            conn: fresh,
            since: Instant::now(),
        });

        drop_expired(&mut pool.lock_idle(), Instant::now());

        assert_eq!(pool.lock_idle().len(), 1, "only the fresh one is kept");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), upstream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the expired connection is closed: {read:?}"
        );
    }
}
