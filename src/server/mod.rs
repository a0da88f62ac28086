//! The public listener: accepts connections (plain or TLS), bounds them,
//! serves HTTP/1.1 (and HTTP/2 when TLS negotiates it by ALPN), and drains
//! on shutdown.

mod drain;
pub mod shutdown;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use self::drain::{Drain, Watcher};
use crate::config::LimitsConfig;
use crate::gateway::Gateway;
use crate::proxy::Connection;

/// Serves `listener` until `stop` completes, then waits up to
/// `limits.drain_timeout` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    limits: &LimitsConfig,
    stop: impl Future<Output = ()>,
) {
    let protocols = Arc::new(Protocols::new(limits));
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
        let gateway = gateway.clone();
        let protocols = protocols.clone();
        let watcher = drain.watcher();
        match tls.clone() {
            None => {
                let connection = Connection::new(peer, false);
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_http1(&protocols, watcher, stream, gateway, connection).await;
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
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
                        // Boxed: an HTTP/2 connection's state is large, and
                        // most connections are HTTP/1.1.
                        Box::pin(serve_http2(
                            &protocols, watcher, stream, gateway, connection,
                        ))
                        .await;
                    } else {
                        serve_http1(&protocols, watcher, stream, gateway, connection).await;
                    }
                });
            }
        }
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

/// How connections are served: the request head bounded in size (hyper
/// answers 431 past it) and in time.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &LimitsConfig) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout.get())
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes)
            // One contiguous write per response head (and small body)
            // instead of a gather write: measurably cheaper in the kernel
            // for the small messages a gateway mostly relays.
            .writev(false);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Self { http1, http2 }
    }
}

async fn serve_http1<I>(
    protocols: &Protocols,
    watcher: Watcher,
    io: I,
    gateway: Arc<Gateway>,
    connection: Connection,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = connection.peer;
    let served = protocols
        .http1
        .serve_connection(TokioIo::new(io), service(gateway, connection))
        .with_upgrades();
    let shutdown = |served: Pin<&mut _>| http1::UpgradeableConnection::graceful_shutdown(served);
    if let Err(error) = watcher.watch(served, shutdown).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn serve_http2<I>(
    protocols: &Protocols,
    watcher: Watcher,
    io: I,
    gateway: Arc<Gateway>,
    connection: Connection,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = connection.peer;
    let served = protocols
        .http2
        .serve_connection(TokioIo::new(io), service(gateway, connection));
    let shutdown = |served: Pin<&mut _>| http2::Connection::graceful_shutdown(served);
    if let Err(error) = watcher.watch(served, shutdown).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Each request on the connection goes through the gateway.
fn service(
    gateway: Arc<Gateway>,
    connection: Connection,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::proxy::ProxyBody>,
    Error = std::convert::Infallible,
    Future = impl Future<
        Output = Result<http::Response<crate::proxy::ProxyBody>, std::convert::Infallible>,
    > + Send,
> + Clone {
    service_fn(move |request| {
        let gateway = gateway.clone();
        let connection = connection.clone();
        async move { Ok(gateway.handle(request, &connection).await) }
    })
}
