//! The crate's one error type, in hyper's style: opaque, with a kind that
//! callers ask about (`is_*`), a source for the log, and one [`Error::status`]
//! mapping used by the one place that turns errors into responses.
//!
//! It is cheap to clone (one reference count): a failed group write in the
//! store hands the same error to every request in the group.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// A boxed cause, shared between clones.
type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong, from a configuration key to a store call.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    /// What failed: a configuration key, a store operation, an upstream.
    context: String,
    source: Option<Source>,
}

/// What kind of failure; private so that variants can grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The configuration (or start-up) is wrong: names the key.
    Config,
    /// A session store failed.
    Store(StoreFailure),
    /// The upstream gave no usable response head.
    Upstream,
    /// The upstream sent no response head in time.
    UpstreamTimeout,
    /// The backend spoke the session protocol wrong.
    InvalidUpdate,
    /// The session outgrew what its store can hold.
    TooLarge,
    /// The client's request cannot be forwarded.
    BadRequest,
    /// The gateway itself failed (no randomness, a cipher failure).
    Internal,
    /// The session a request loaded was destroyed or moved meanwhile.
    SessionGone,
}

/// How a store call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreFailure {
    Unavailable,
    Timeout,
    Contended,
    Full,
}

impl Error {
    fn new(kind: Kind, context: impl Into<String>, source: Option<Source>) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                context: context.into(),
                source,
            }),
        }
    }

    /// A configuration problem at `key`, worded for the operator.
    pub fn config(key: &str, message: impl fmt::Display) -> Self {
        Self::new(Kind::Config, format!("{key}: {message}"), None)
    }

    /// A configuration problem that is not about one key (a file that cannot
    /// be read, a missing secret).
    pub fn config_message(message: impl Into<String>) -> Self {
        Self::new(Kind::Config, message, None)
    }

    /// A store could not be reached or refused `operation`.
    pub fn store_unavailable(
        store: &str,
        operation: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(
            Kind::Store(StoreFailure::Unavailable),
            format!("{store} {operation}"),
            Some(Arc::from(source.into())),
        )
    }

    /// A store call did not finish within `timeout`.
    pub fn store_timeout(store: &str, operation: &str, timeout: Duration) -> Self {
        Self::new(
            Kind::Store(StoreFailure::Timeout),
            format!("{store} {operation} timed out after {timeout:?}"),
            None,
        )
    }

    /// An atomic update lost its race `attempts` times in a row.
    pub fn store_contended(store: &str, attempts: u32) -> Self {
        Self::new(
            Kind::Store(StoreFailure::Contended),
            format!("{store} update contended: gave up after {attempts} attempts"),
            None,
        )
    }

    /// A store that holds all it may (the memory store's `max_sessions`).
    pub fn store_full(store: &str, message: impl fmt::Display) -> Self {
        Self::new(
            Kind::Store(StoreFailure::Full),
            format!("{store} full: {message}"),
            None,
        )
    }

    /// The upstream refused, reset, or did not speak HTTP.
    pub fn upstream(message: impl fmt::Display) -> Self {
        Self::new(Kind::Upstream, format!("upstream failed: {message}"), None)
    }

    /// The upstream sent no response head within `timeout`.
    pub fn upstream_timeout(timeout: Duration) -> Self {
        Self::new(
            Kind::UpstreamTimeout,
            format!("upstream sent no response within {timeout:?}"),
            None,
        )
    }

    /// Every upstream connection stayed in use for `waited`: the upstream
    /// never got the request (a 504, but said as what it is).
    pub fn upstream_pool_exhausted(waited: Duration, max_connections: usize) -> Self {
        Self::new(
            Kind::UpstreamTimeout,
            format!(
                "upstream pool exhausted: no free upstream connection within {waited:?} (all {max_connections} upstream.max_connections in use)"
            ),
            None,
        )
    }

    /// The backend's session instructions are malformed.
    pub fn invalid_update(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidUpdate, message, None)
    }

    /// The session is larger than its store allows.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(Kind::TooLarge, message, None)
    }

    /// The client's request cannot be forwarded as it is.
    pub fn bad_request(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(
            Kind::BadRequest,
            "cannot build the upstream request",
            Some(Arc::from(source.into())),
        )
    }

    /// The session a request loaded was destroyed or moved before its
    /// update was written: the update is not applied.
    pub fn session_gone() -> Self {
        Self::new(
            Kind::SessionGone,
            "the session was destroyed or moved to a new id before this update",
            None,
        )
    }

    /// The gateway failed itself: no randomness, a cipher error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, message, None)
    }

    /// The configuration is wrong; the process should not start.
    pub fn is_config(&self) -> bool {
        self.inner.kind == Kind::Config
    }

    /// A session store failed.
    pub fn is_store(&self) -> bool {
        matches!(self.inner.kind, Kind::Store(_))
    }

    /// A store that could not be reached or answered too late: the kind of
    /// failure that a fresh connection may cure.
    pub fn is_store_unreachable(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Store(StoreFailure::Unavailable | StoreFailure::Timeout)
        )
    }

    /// The memory store is full.
    pub fn is_store_full(&self) -> bool {
        self.inner.kind == Kind::Store(StoreFailure::Full)
    }

    /// Something did not finish in time (a store call or the upstream).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Store(StoreFailure::Timeout) | Kind::UpstreamTimeout
        )
    }

    /// The upstream failed or timed out.
    pub fn is_upstream(&self) -> bool {
        matches!(self.inner.kind, Kind::Upstream | Kind::UpstreamTimeout)
    }

    /// The session the request loaded no longer exists.
    pub fn is_session_gone(&self) -> bool {
        self.inner.kind == Kind::SessionGone
    }

    /// The backend's instructions were malformed.
    pub fn is_invalid_update(&self) -> bool {
        self.inner.kind == Kind::InvalidUpdate
    }

    /// A short label for metrics, e.g. `unavailable` or `timeout`.
    pub fn label(&self) -> &'static str {
        match self.inner.kind {
            Kind::Config => "config",
            Kind::Store(StoreFailure::Unavailable) => "unavailable",
            Kind::Store(StoreFailure::Timeout) => "timeout",
            Kind::Store(StoreFailure::Contended) => "contended",
            Kind::Store(StoreFailure::Full) => "full",
            Kind::Upstream => "upstream",
            Kind::UpstreamTimeout => "upstream_timeout",
            Kind::InvalidUpdate => "invalid_update",
            Kind::TooLarge => "too_large",
            Kind::BadRequest => "bad_request",
            Kind::Internal => "internal",
            Kind::SessionGone => "gone",
        }
    }

    /// The status the client gets when this error ends its request.
    pub fn status(&self) -> StatusCode {
        match self.inner.kind {
            Kind::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Upstream | Kind::InvalidUpdate => StatusCode::BAD_GATEWAY,
            Kind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            // Never a response of its own: the engine answers with the
            // backend's response, without a cookie.
            Kind::SessionGone => StatusCode::CONFLICT,
            Kind::Config | Kind::TooLarge | Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.context)?;
        // The whole chain, so that one log line says everything.
        let mut source = self
            .inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("context", &self.inner.context)
            .field("source", &self.inner.source)
            .finish()
    }
}

/// The chain is printed by `Display`, so `source()` stays empty: a
/// reporter that walks it too would print every cause twice.
impl std::error::Error for Error {}

/// A result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_one_status() {
        let cases = [
            (Error::config("listen", "bad"), 500),
            (Error::store_unavailable("redis", "load", "refused"), 503),
            (
                Error::store_timeout("redis", "load", Duration::from_secs(1)),
                503,
            ),
            (Error::store_contended("redis", 3), 503),
            (Error::store_full("memory", "max"), 503),
            (Error::upstream("reset"), 502),
            (Error::upstream_timeout(Duration::from_secs(1)), 504),
            (Error::invalid_update("not json"), 502),
            (Error::too_large("5 cookies"), 500),
            (Error::bad_request("bad uri"), 400),
            (Error::internal("no randomness"), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn config_errors_name_the_key_and_stores_keep_their_cause() {
        assert_eq!(
            Error::config("store.url", "is required").to_string(),
            "store.url: is required"
        );
        let error = Error::store_unavailable("redis", "load", "connection refused");
        assert_eq!(error.to_string(), "redis load: connection refused");
        assert!(error.is_store_unreachable() && error.is_store());
        assert!(!error.clone().is_timeout());
    }
}
