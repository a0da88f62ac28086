//! The public listener: accepts connections (plain or TLS), bounds them,
//! serves HTTP/1.1 and HTTP/2 on each, and drains on shutdown.

pub mod shutdown;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::LimitsConfig;
use crate::gateway::{Connection, Gateway};

/// Serves `listener` until `stop` completes, then waits up to
/// `limits.drain_timeout` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    limits: &LimitsConfig,
    stop: impl Future<Output = ()>,
) {
    let builder = Arc::new(http_builder(limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
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
        let gateway = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let connection = Connection { peer, tls: false };
                    serve_connection(&builder, watcher, TokioIo::new(stream), gateway, connection)
                        .await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection = Connection { peer, tls: true };
                            serve_connection(
                                &builder,
                                watcher,
                                TokioIo::new(stream),
                                gateway,
                                connection,
                            )
                            .await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let drain = limits.drain_timeout.get();
    tracing::info!(?drain, "no longer accepting; draining requests in flight");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing the remaining connections");
    }
}

/// HTTP/1.1 and HTTP/2 on one port, with the request head bounded in size
/// (hyper answers 431 past it) and in time.
fn http_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.get())
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: TokioIo<I>,
    gateway: Arc<Gateway>,
    connection: Connection,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
        async move { Ok::<_, std::convert::Infallible>(gateway.handle(request, connection).await) }
    });
    let served = builder.serve_connection_with_upgrades(io, service);
    if let Err(error) = watcher.watch(served.into_owned()).await {
        tracing::debug!(peer = %connection.peer, %error, "connection ended with an error");
    }
}
