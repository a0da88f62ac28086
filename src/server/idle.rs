//! When a client connection has gone quiet: the exchanges (a request and
//! its response) open on it, and whether their response bodies still move.
//!
//! A response body that does not move ties up an upstream connection: the
//! client stopped reading, or the upstream stopped sending. Neither shows
//! up as a pending poll we could time: a body hyper cannot write is not
//! polled at all. So each connection keeps its exchanges in a list and a
//! watch looks at them from the outside, a few times per
//! `limits.idle_timeout`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::ProxyBody;

/// An exchange's `moved` while the response head is being made: the
/// wait for the upstream's head is bounded by `upstream.timeout`, not by
/// the idle limit.
const WAITING_FOR_HEAD: u64 = u64::MAX;

/// Checks per idle period: a quiet connection closes between one and
/// one and a quarter idle periods after it went quiet.
const CHECKS_PER_PERIOD: u32 = 4;

/// One client connection's exchanges.
#[derive(Debug)]
pub(super) struct Activity {
    /// Times below are milliseconds from here, so they fit in atomics.
    epoch: Instant,
    timeout: Duration,
    /// Exchanges begun and not yet over.
    open: AtomicUsize,
    /// When `open` last fell to zero (zero: the connection's start).
    quiet_since: AtomicU64,
    /// Every exchange begun; dead entries are pruned as new ones come.
    exchanges: Mutex<Vec<Weak<Exchange>>>,
}

/// Why a connection should close before its client or the drain asks.
#[derive(Debug)]
pub(super) enum Close {
    /// No open exchange for the idle limit (HTTP/2 only: HTTP/1.1 waits for
    /// a request head under `limits.header_read_timeout`).
    Idle,
    /// A response body made no progress for the idle limit; `upstream`
    /// says the upstream was not sending (otherwise the client was not
    /// reading).
    Stalled { upstream: bool },
}

/// One request and its response, from the request head to the response
/// body's end. Shared by the service call and then the response body.
#[derive(Debug)]
pub(super) struct Exchange {
    activity: Arc<Activity>,
    /// When the response body last yielded a frame.
    moved: AtomicU64,
    /// The response body's last poll found nothing from the upstream.
    waiting_upstream: AtomicBool,
}

impl Activity {
    pub(super) fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            timeout,
            open: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            exchanges: Mutex::new(Vec::new()),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// A request head arrived: its exchange lasts until the response body
    /// ends or is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> Arc<Exchange> {
        let exchange = Arc::new(Exchange {
            activity: Arc::clone(self),
            moved: AtomicU64::new(WAITING_FOR_HEAD),
            waiting_upstream: AtomicBool::new(false),
        });
        self.open.fetch_add(1, Ordering::AcqRel);
        let mut exchanges = self.lock();
        exchanges.retain(|exchange| exchange.strong_count() > 0);
        exchanges.push(Arc::downgrade(&exchange));
        exchange
    }

    /// Completes when the connection should close: a stalled response
    /// body, or (with `close_when_quiet`) no exchange for the idle limit.
    pub(super) async fn watch(&self, close_when_quiet: bool) -> Close {
        // Bounded so that an absurd idle limit cannot overflow the timer.
        let period = (self.timeout / CHECKS_PER_PERIOD)
            .clamp(Duration::from_millis(10), Duration::from_secs(3600));
        let mut checks = tokio::time::interval(period);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checks.tick().await;
        loop {
            checks.tick().await;
            let now = self.now();
            if let Some(close) = self.stalled(now) {
                return close;
            }
            if close_when_quiet
                && self.is_quiet()
                && now.saturating_sub(self.quiet_since.load(Ordering::Acquire)) >= self.timeout_ms()
            {
                return Close::Idle;
            }
        }
    }

    /// No exchange is open.
    pub(super) fn is_quiet(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }

    fn stalled(&self, now: u64) -> Option<Close> {
        self.lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find_map(|exchange| {
                let moved = exchange.moved.load(Ordering::Acquire);
                (moved != WAITING_FOR_HEAD && now.saturating_sub(moved) >= self.timeout_ms()).then(
                    || Close::Stalled {
                        upstream: exchange.waiting_upstream.load(Ordering::Acquire),
                    },
                )
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Exchange>>> {
        // A list of weak references holds no invariant a panic could break.
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Exchange {
    fn moved(&self, waiting_upstream: bool) {
        self.moved.store(self.activity.now(), Ordering::Release);
        self.waiting_upstream
            .store(waiting_upstream, Ordering::Release);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.activity.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activity
                .quiet_since
                .store(self.activity.now(), Ordering::Release);
        }
    }
}

/// A response body on its way to the client, reporting each frame to its
/// exchange; the exchange ends with the body.
#[derive(Debug)]
pub(super) struct Watched {
    inner: ProxyBody,
    exchange: Option<Arc<Exchange>>,
}

impl Watched {
    /// The head is out: from now on the body must keep moving.
    pub(super) fn new(inner: ProxyBody, exchange: Arc<Exchange>) -> Self {
        exchange.moved(false);
        Self {
            inner,
            exchange: Some(exchange),
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) if !self.inner.is_end_stream() => {
                if let Some(exchange) = &self.exchange {
                    exchange.moved(false);
                }
            }
            Poll::Ready(_) => self.exchange = None,
            Poll::Pending => {
                // Not progress: only says who is holding the body up.
                if let Some(exchange) = &self.exchange {
                    exchange.waiting_upstream.store(true, Ordering::Release);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::proxy::text_body;

    const IDLE: Duration = Duration::from_millis(100);
    /// Far more than the idle limit: a watch that has not closed by then
    /// never will.
    const LONG: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn a_quiet_connection_closes_and_a_busy_one_does_not() {
        let activity = Activity::new(IDLE);
        let exchange = activity.begin();
        // Waiting for the upstream's head is not idleness.
        let watched = tokio::time::timeout(LONG, activity.watch(true)).await;
        assert!(watched.is_err(), "an open exchange keeps the connection");
        drop(exchange);
        let close = tokio::time::timeout(LONG, activity.watch(true)).await;
        assert!(matches!(close, Ok(Close::Idle)), "{close:?}");
    }

    #[tokio::test]
    async fn a_body_that_stops_moving_is_stalled_and_one_that_ends_is_not() {
        let activity = Activity::new(IDLE);
        let mut body = Watched::new(text_body("hello"), activity.begin());
        let close = tokio::time::timeout(LONG, activity.watch(false)).await;
        assert!(
            matches!(close, Ok(Close::Stalled { upstream: false })),
            "a body nobody reads: {close:?}"
        );
        assert!(body.frame().await.is_some());
        assert!(body.frame().await.is_none());
        let close = tokio::time::timeout(LONG, activity.watch(false)).await;
        assert!(close.is_err(), "a finished body: {close:?}");
    }
}
