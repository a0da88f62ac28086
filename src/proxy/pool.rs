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
//! each, which bounds both the upstream's load and our memory.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use super::ProxyBody;
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

    async fn connect(&self) -> Result<http1::SendRequest<ProxyBody>, Error> {
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
async fn handshake<T>(io: T) -> Result<http1::SendRequest<ProxyBody>, Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Flattened writes, as on the server side (see `server::Protocols`).
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::upstream(describe(&e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %describe(&error), "upstream connection ended");
        }
    });
    Ok(sender)
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
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

impl Pool {
    /// Empty: connections open as requests need them, at most
    /// `max_connections` in use at once.
    pub fn new(connector: Connector, max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            connector,
            idle: Mutex::new(VecDeque::new()),
            in_flight: Arc::new(Semaphore::new(max_connections)),
        })
    }

    /// Sends `request` on a kept connection, or a new one, and returns the
    /// response head; the body hands the connection back when it ends.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, Error> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| Error::upstream("the upstream pool is closed"))?;
        for attempt in 0..=STALE_RETRIES {
            let kept = if attempt < STALE_RETRIES {
                self.take_idle().await
            } else {
                None
            };
            let mut sender = match kept {
                Some(sender) => sender,
                // Boxed: connecting (TLS included) needs far more state than a
                // request on a kept connection, and every request would carry it.
                None => Box::pin(self.connector.connect()).await?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
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

    /// The newest idle connection still open, if any.
    async fn take_idle(&self) -> Option<http1::SendRequest<ProxyBody>> {
        loop {
            let mut sender = self.lock_idle().pop_back()?.sender;
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, sender: http1::SendRequest<ProxyBody>) {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        idle.push_back(Idle { sender, since: now });
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The list holds no invariant a panic could break.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request's hold on a connection and on a place in flight.
#[derive(Debug)]
struct Lease {
    sender: http1::SendRequest<ProxyBody>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The response ended: the connection can carry the next request.
    fn release(self) {
        let Lease { sender, pool, .. } = self;
        if sender.is_ready() {
            pool.put_idle(sender);
        } else if !sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Still finishing (the request body, or an upgrade): wait
            // for it off the request path.
            let mut sender = sender;
            runtime.spawn(async move {
                let ready = tokio::time::timeout(IDLE_TIMEOUT, sender.ready()).await;
                if let Ok(Ok(())) = ready {
                    pool.put_idle(sender);
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
