//! The public listener: accepts connections (plain or TLS), bounds them,
//! serves HTTP/1.1 (and HTTP/2 when TLS negotiates it by ALPN), and drains
//! on shutdown.
//!
//! Every connection holds one of `limits.max_connections` permits for as
//! long as its socket lives, a WebSocket tunnel's life included; it is
//! closed when it goes idle (see `idle`).

mod connection;
mod drain;
mod head;
mod idle;
mod live;
pub mod shutdown;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::connection::Protocols;
use self::drain::Drain;
pub use self::live::Live;
use crate::config::LimitsConfig;
use crate::proxy::Connection;
use crate::proxy::pool::IdleLimits;
use crate::proxy::upgrade::Socket;

/// Serves `listener` until `stop` completes, then waits up to
/// `limits.drain_timeout` for requests in flight. Each request goes to the
/// gateway `live` holds when it starts; each TLS handshake uses its
/// acceptor. `limits` are the listener's, fixed at start.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    limits: &LimitsConfig,
    stop: impl Future<Output = ()>,
) {
    let idle_limits = IdleLimits {
        body: limits.idle_timeout.get(),
        tunnel: limits.tunnel_idle_timeout.get(),
    };
    let protocols = Arc::new(Protocols::new(limits, idle_limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let drain = Drain::new();
    let handshake_timeout = limits.header_read_timeout.get();
    tokio::pin!(stop);
    loop {
        // Waiting for a permit first keeps excess clients in the kernel's
        // backlog instead of accepting connections we cannot serve.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        // The permit lives as long as the socket: a WebSocket tunnel's
        // life included.
        let socket = Socket::new(stream, permit);
        let live = live.clone();
        let protocols = protocols.clone();
        let watcher = drain.watcher();
        // Two tasks, not one with a branch: a task is as large as its
        // largest state, and a plain connection need not carry TLS's.
        let Some(acceptor) = live.tls() else {
            let connection = Connection::new(peer, false);
            tokio::spawn(idle_limits.scope(async move {
                protocols
                    .serve_http1(watcher, socket, live, connection)
                    .await;
            }));
            continue;
        };
        tokio::spawn(idle_limits.scope(async move {
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let connection = Connection::new(peer, true);
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                // Boxed: an HTTP/2 connection's state is large, and most
                // connections are HTTP/1.1.
                Box::pin(protocols.serve_http2(watcher, stream, live, connection)).await;
            } else {
                protocols
                    .serve_http1(watcher, stream, live, connection)
                    .await;
            }
        }));
    }
    drop(listener);
    let drain_timeout = limits.drain_timeout.get();
    tracing::info!(
        ?drain_timeout,
        "no longer accepting; draining requests in flight"
    );
    if tokio::time::timeout(drain_timeout, drain.run())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing the remaining connections");
    }
}
