//! Idle limits on what a client connection holds upstream: the limits
//! themselves, carried to the pool and the tunnels, and the request body
//! that fails when the client stops sending it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::ProxyBody;

/// The idle limits of the client connection a request came on
/// (`limits.idle_timeout`, `limits.tunnel_idle_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct IdleLimits {
    /// A request body that makes no progress this long is cut off.
    pub body: Duration,
    /// A tunnel with no bytes either way this long is closed.
    pub tunnel: Duration,
}

tokio::task_local! {
    /// Set by the listener around everything a client connection runs.
    /// Carried this way because between the listener and the pool the
    /// request path holds no per-connection settings, and these two are
    /// read only here and in [`super::upgrade`].
    static IDLE_LIMITS: IdleLimits;
}

impl IdleLimits {
    /// Runs `future` (a client connection, or one of its HTTP/2 streams)
    /// under these limits.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        IDLE_LIMITS.scope(self, future)
    }

    /// The limits of the connection being served, if any.
    pub fn current() -> Option<Self> {
        IDLE_LIMITS.try_with(|limits| *limits).ok()
    }
}

/// The request body on its way upstream. When the upstream waits for more
/// and the client sends nothing for the idle limit, the body fails: the
/// upstream connection closes and its place in flight frees.
pub(super) struct UpstreamBody {
    inner: ProxyBody,
    idle: Option<Duration>,
    /// Made on the first wait only: most bodies never wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait.
    armed: bool,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    pub(super) fn new(inner: ProxyBody, idle: Option<Duration>) -> Self {
        Self {
            inner,
            idle,
            timer: None,
            armed: false,
        }
    }
}

/// The request body stopped: the client sent nothing for the idle limit.
#[derive(Debug)]
struct RequestBodyStalled(Duration);

impl std::fmt::Display for RequestBodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client sent no request body for {:?}", self.0)
    }
}

impl std::error::Error for RequestBodyStalled {}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let Some(idle) = this.idle else {
            return Poll::Pending;
        };
        if !this.armed {
            // An idle limit past the clock's range never fires.
            let Some(deadline) = tokio::time::Instant::now().checked_add(idle) else {
                return Poll::Pending;
            };
            match &mut this.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.armed = true;
        }
        let Some(timer) = this.timer.as_mut() else {
            return Poll::Pending;
        };
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(RequestBodyStalled(idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
