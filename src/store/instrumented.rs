//! Timeouts and metrics around any store, so that every backend is bounded
//! and measured the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis};

/// Wraps a store: every call gets the store's timeout, a latency sample and,
/// on failure, an error count and a log line.
pub struct Instrumented {
    inner: Arc<dyn SessionStore>,
    timeout: Duration,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn SessionStore>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let store = self.inner.kind();
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        metrics::histogram!("sessiongate_store_operation_duration_seconds", "store" => store, "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            metrics::counter!("sessiongate_store_errors_total", "store" => store, "operation" => operation, "kind" => error.label())
                .increment(1);
            tracing::warn!(store, operation, %error, "store operation failed");
        }
        result
    }
}

#[async_trait]
impl SessionStore for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.observe("load", self.inner.load(id)).await
    }

    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, StoreError> {
        self.observe("update", self.inner.update(id, change)).await
    }

    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.observe("insert", self.inner.insert(id, record)).await
    }

    async fn touch(&self, id: &SessionId, expires_at: UnixMillis) -> Result<(), StoreError> {
        self.observe("touch", self.inner.touch(id, expires_at))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.observe("delete", self.inner.delete(id)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.observe("ping", self.inner.ping()).await
    }
}
