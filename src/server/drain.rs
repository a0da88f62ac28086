//! Draining: on shutdown every connection finishes the request in flight,
//! then closes; the listener waits until all have.
//!
//! Our own, because hyper-util's `GracefulShutdown` cannot watch an HTTP/1.1
//! connection that allows upgrades (WebSocket).

use std::future::Future;
use std::pin::Pin;

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
    /// Drives `connection` to its end; once the drain starts, `shutdown`
    /// asks it to close gracefully, and it is driven until it has.
    pub async fn watch<C, E>(
        mut self,
        connection: C,
        shutdown: impl FnOnce(Pin<&mut C>),
    ) -> Result<(), E>
    where
        C: Future<Output = Result<(), E>>,
    {
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => return result,
            // An error means the listener is gone: drain as well.
            _ = self.started.wait_for(|started| *started) => shutdown(connection.as_mut()),
        }
        connection.await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_connections_and_asks_them_to_close() {
        let drain = Drain::new();
        let asked = Arc::new(AtomicBool::new(false));
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let watched = {
            let watcher = drain.watcher();
            let asked = asked.clone();
            tokio::spawn(async move {
                let connection = async move { finished.await.map_err(|_| ()) };
                watcher
                    .watch(connection, |_| asked.store(true, Ordering::SeqCst))
                    .await
            })
        };
        let draining = tokio::spawn(drain.run());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            asked.load(Ordering::SeqCst),
            "the connection was asked to close"
        );
        assert!(
            !draining.is_finished(),
            "the drain waits for the open connection"
        );
        finish.send(()).expect("the connection is waiting");
        assert_eq!(watched.await.expect("joined"), Ok(()));
        tokio::time::timeout(Duration::from_secs(1), draining)
            .await
            .expect("the drain ends once the connection has closed")
            .expect("joined");
    }
}
