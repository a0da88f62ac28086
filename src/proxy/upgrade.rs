//! Protocol upgrades (WebSocket over HTTP/1.1): once the backend answers
//! `101 Switching Protocols`, bytes flow both ways untouched, until either
//! side closes or nothing has moved either way for
//! `limits.tunnel_idle_timeout`.
//!
//! An open tunnel keeps both of its places, each held by its [`Socket`]:
//! the client's holds a `limits.max_connections` permit (see `server`),
//! the upstream's a place in flight under `upstream.max_connections` (see
//! [`super::pool`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::pool::IdleLimits;

/// The client asks to switch to WebSocket (`Connection: upgrade` +
/// `Upgrade: websocket`). Other protocols (`h2c` and the like) are served as
/// plain requests without the upgrade: after a `101` raw bytes would pass
/// every header check by.
pub fn requested(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get_all(UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Joins the client's and the backend's upgraded connections and copies
/// bytes both ways until either side closes, or the tunnel is idle for the
/// client connection's `limits.tunnel_idle_timeout`.
/// `request` names the request (method and path) in logs.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, request: String) {
    let idle_timeout = IdleLimits::current().map(|limits| limits.tunnel);
    tokio::spawn(async move {
        let upgraded = async { tokio::try_join!(client, upstream) };
        let (client, upstream) = match within(idle_timeout, upgraded).await {
            Some(Ok(pair)) => pair,
            Some(Err(error)) => {
                tracing::warn!(%request, %error, "upgrade failed");
                return;
            }
            None => {
                tracing::warn!(%request, "upgrade failed: the client never took it");
                return;
            }
        };
        let started = Instant::now();
        let moved = AtomicU64::new(0);
        let mut client = Counted {
            io: TokioIo::new(client),
            started,
            moved: &moved,
        };
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = copied {
                    tracing::debug!(%request, %error, "upgraded connection ended");
                }
            }
            () = idle(started, &moved, idle_timeout) => {
                tracing::debug!(%request, ?idle_timeout, "idle tunnel closed");
            }
        }
    });
}

/// `future`'s output, or `None` once `limit` (if any) has passed.
async fn within<F: Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// Completes once no byte has moved for `timeout` (never without one).
/// `moved` is when a byte last did, in milliseconds from `started`.
async fn idle(started: Instant, moved: &AtomicU64, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let last = started + Duration::from_millis(moved.load(Ordering::Relaxed));
        // A limit past the clock's range never fires.
        let Some(deadline) = last.checked_add(timeout) else {
            return std::future::pending().await;
        };
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// The client's side of a tunnel, noting when bytes move. Every byte of
/// the tunnel passes through it, one way or the other.
struct Counted<'a, T> {
    io: T,
    started: Instant,
    moved: &'a AtomicU64,
}

impl<T> Counted<'_, T> {
    fn note(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.store(millis, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.note();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled
            && written > 0
        {
            self.note();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A socket and something that must live exactly as long as it: a
/// connection permit or a place in flight. It goes wherever the socket
/// goes, into a WebSocket tunnel included (after an upgrade hyper hands the
/// socket itself over), so open tunnels count against the connection
/// limits until they close.
#[derive(Debug)]
pub struct Socket<T, H> {
    io: T,
    _held: H,
}

impl<T, H> Socket<T, H> {
    /// `io`, keeping `held` until it is dropped.
    pub fn new(io: T, held: H) -> Self {
        Self { io, _held: held }
    }
}

impl<T: AsyncRead + Unpin, H: Unpin> AsyncRead for Socket<T, H> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, H: Unpin> AsyncWrite for Socket<T, H> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
