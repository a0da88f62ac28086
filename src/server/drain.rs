//! Draining: on shutdown every connection finishes the request in flight,
//! then closes; the listener waits until all have.
//!
//! Our own, because hyper-util's `GracefulShutdown` cannot watch an HTTP/1.1
//! connection that allows upgrades (WebSocket).

use tokio::sync::watch;

/// Held by the listener: starts the drain and waits for it.
pub struct Drain {
    started: watch::Sender<bool>,
}

/// Held by each connection: tells it the drain has started. The drain is
/// over when every watcher has been dropped.
#[derive(Clone)]
pub struct Watcher {
    started: watch::Receiver<bool>,
}

impl Drain {
    pub fn new() -> Self {
        Self {
            started: watch::Sender::new(false),
        }
    }

    pub fn watcher(&self) -> Watcher {
        Watcher {
            started: self.started.subscribe(),
        }
    }

    /// Asks every connection to close after its request in flight, and
    /// completes when all have closed.
    pub async fn run(self) {
        self.started.send_replace(true);
        self.started.closed().await;
    }
}

impl Watcher {
    /// Completes once the drain has started: the connection should then
    /// close after its requests in flight.
    pub async fn draining(&mut self) {
        // An error means the listener is gone: drain as well.
        let _ = self.started.wait_for(|started| *started).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_connections_and_tells_them_to_close() {
        let drain = Drain::new();
        let told = Arc::new(AtomicBool::new(false));
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let watched = {
            let mut watcher = drain.watcher();
            let told = told.clone();
            tokio::spawn(async move {
                watcher.draining().await;
                told.store(true, Ordering::SeqCst);
                // The connection finishes its request, then closes.
                let _ = finished.await;
                drop(watcher);
            })
        };
        let draining = tokio::spawn(drain.run());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(told.load(Ordering::SeqCst), "the connection was told");
        assert!(
            !draining.is_finished(),
            "the drain waits for the open connection"
        );
        finish.send(()).expect("the connection is waiting");
        watched.await.expect("joined");
        tokio::time::timeout(Duration::from_secs(1), draining)
            .await
            .expect("the drain ends once the connection has closed")
            .expect("joined");
    }
}
