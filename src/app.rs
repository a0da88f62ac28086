//! Start-up: everything is checked before anything listens, then the public
//! and admin listeners run until SIGTERM/SIGINT and a bounded drain;
//! `SIGHUP` reloads the configuration ([`reload`]).

pub mod reload;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, Admin};
use crate::config::{Config, Secrets};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::server::{self, Live};

/// Where a reload reads from, and the SHA-256 of the file the running
/// configuration came from.
#[derive(Debug)]
pub struct Reload {
    /// The configuration file.
    pub source: reload::Source,
    /// Its SHA-256 at start.
    pub hash: String,
}

/// Runs the gateway until `stop` completes and requests in flight drain;
/// with `reload`, `SIGHUP` reloads the configuration.
pub async fn run(
    config: Config,
    secrets: Secrets,
    reload: Option<Reload>,
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
    // The token is read once: `admin` needs a restart (the API reaches the
    // store and identity index of the gateway in force).
    let admin_token = config.admin_token(&|name| std::env::var(name).ok())?;
    let sessions_api = admin_token.map(|token| admin::sessions::SessionsApi::new(&token));
    let live = Arc::new(Live::new(Gateway::new(&config, &secrets, sessions)?, tls));

    let public = bind("listen", config.listen).await?;
    let admin_listener = bind("admin.listen", config.admin.listen).await?;
    tracing::info!(
        listen = %config.listen,
        admin = %config.admin.listen,
        upstream = %config.upstream.url,
        store = config.store.kind(),
        tls = config.tls.is_some(),
        "sessiongate is serving"
    );
    // Before anything answers: SIGHUP is taken over from its default
    // action (ending the process) before a probe can see the gateway up.
    let reloader = reload
        .map(|Reload { source, hash }| reload::Reloader::new(source, live.clone(), &config, hash));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(Admin {
            live: live.clone(),
            metrics,
            sessions: sessions_api,
        }),
        config.limits.header_read_timeout.get(),
    ));
    let reload_task = reloader.map(|reloader| tokio::spawn(reloader.run()));
    server::serve(public, live, &config.limits, stop).await;
    admin_task.abort();
    if let Some(task) = reload_task {
        task.abort();
    }
    crate::gateway::flush_access_log();
    tracing::info!("stopped");
    Ok(())
}

async fn bind(key: &str, address: std::net::SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|e| Error::config(key, format!("cannot listen on {address}: {e}")))
}
