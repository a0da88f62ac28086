//! Start-up: everything is checked before anything listens, then the public
//! and admin listeners run until SIGTERM/SIGINT and a bounded drain.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, Admin};
use crate::config::{Config, Secrets};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::server;

/// Runs the gateway until `stop` completes and requests in flight drain.
pub async fn run(
    config: Config,
    secrets: Secrets,
    stop: impl Future<Output = ()>,
) -> Result<(), Error> {
    let metrics = match admin::metrics::install() {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "metrics recorder not installed");
            None
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let tls = config.tls.as_ref().map(server::tls::acceptor).transpose()?;
    let codec = crate::store::codec_for(&config);
    let sessions = crate::store::open(
        &config.store,
        config.session.keep_expired,
        config.session.identity_key.as_deref(),
        codec,
    )
    .await?;
    let store = sessions.server().cloned();
    let admin_token = config.admin_token(&|name| std::env::var(name).ok())?;
    let sessions_api = admin_token.map(|token| {
        admin::sessions::SessionsApi::new(
            &token,
            store.clone(),
            config.session.identity_key.is_some(),
        )
    });
    let gateway = Arc::new(Gateway::new(&config, &secrets, sessions)?);
    let jwks = crate::session::assertion::jwks(&crate::session::keys::Keyring::new(&secrets))?;

    let public = bind("listen", config.listen).await?;
    let admin_listener = bind("admin.listen", config.admin.listen).await?;
    tracing::info!(
        listen = %config.listen,
        admin = %config.admin.listen,
        upstream = %config.upstream.url,
        store = config.store.kind(),
        tls = tls.is_some(),
        "sessiongate is serving"
    );
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(Admin {
            store,
            metrics,
            sessions: sessions_api,
            jwks: jwks.into(),
        }),
        config.limits.header_read_timeout.get(),
    ));
    server::serve(public, tls, gateway, &config.limits, stop).await;
    admin_task.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn bind(key: &str, address: std::net::SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|e| Error::config(key, format!("cannot listen on {address}: {e}")))
}
