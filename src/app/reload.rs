//! `SIGHUP`: the configuration file and the secret files are read again,
//! checked whole exactly as at start, and new requests switch to them at
//! once (see [`Live`]); requests in flight finish on the configuration they
//! began with. Anything wrong (an invalid key, a secret file that cannot be
//! read, a certificate that does not load, a store that cannot open) is
//! logged, counted, and the running configuration kept.
//!
//! | takes effect on reload | needs a restart |
//! |---|---|
//! | `upstream`, `routes`, `csrf`, `assertion`, `trusted_proxies`, `session` and the secrets (the JWKS follows), `headers`, `store`, `log.access`, the files `tls.cert` and `tls.key` name | `listen`, `admin.listen`, TLS on or off (refused), `limits`, `log.level`, `log.format`, `admin.token` (kept as at start, with a warning) |
//!
//! A `store` section (with `session.keep_expired`, `session.identity_key`
//! and, under `session.compat: express-session`, the cookie settings and
//! TTL its records carry) that did not change
//! keeps the open store; a changed one is opened before the switch, and the
//! old one closes when the last request using it is done.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::{Config, LimitsConfig, LogConfig, StoreConfig};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::server::{self, Live};

/// Where the configuration comes from: its file, and the process
/// environment for `${VAR}` and the secret variables.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
}

impl Source {
    /// The configuration file at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// Reads and checks the file; returns the configuration and the
    /// SHA-256 of the file's bytes (hex, as `sha256sum` prints it).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or a key is invalid (the error names it).
    pub fn read(&self) -> Result<(Config, String), Error> {
        let text = Config::read_text(&self.path)?;
        let config = Config::parse(&text, &process_env)?;
        Ok((config, sha256_hex(text.as_bytes())))
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What a reload compares against.
#[derive(Debug)]
struct Running {
    /// Bound to the listeners and the process at start; never reloaded.
    listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
    tls: bool,
    limits: LimitsConfig,
    log: LogConfig,
    /// What the open store was opened with (see [`store_of`]).
    store: StoreKey,
    /// `admin.token` as at start (the admin session API reads it once).
    admin_token: Option<String>,
    /// The loaded file's SHA-256.
    hash: String,
}

/// Reloads on `SIGHUP`, one reload at a time: hang-ups that arrive during
/// a reload are folded into one more.
#[derive(Debug)]
pub struct Reloader {
    source: Source,
    live: Arc<Live>,
    running: Running,
    /// Registered when the reloader is made, before anything listens: a
    /// hang-up that arrives early must not meet the default action (which
    /// ends the process).
    hangups: Option<Signal>,
}

impl Reloader {
    /// A reloader for the gateway `live` serves, started from `config`
    /// (read from `source`, its file's SHA-256 `hash`). Takes over
    /// `SIGHUP` at once; must be called inside the runtime.
    pub fn new(source: Source, live: Arc<Live>, config: &Config, hash: String) -> Self {
        let hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP: reloading is off");
                None
            }
        };
        let running = Running {
            listen: config.listen,
            admin_listen: config.admin.listen,
            tls: config.tls.is_some(),
            limits: config.limits.clone(),
            log: config.log.clone(),
            store: store_of(config),
            admin_token: config.admin.token.clone(),
            hash,
        };
        for result in ["ok", "error"] {
            metrics::counter!("sessiongate_config_reloads_total", "result" => result).absolute(0);
        }
        loaded(None, &running.hash);
        Self {
            source,
            live,
            running,
            hangups,
        }
    }

    /// Waits for `SIGHUP` and reloads, until the process ends.
    pub async fn run(mut self) {
        let Some(mut hangups) = self.hangups.take() else {
            return;
        };
        while hangups.recv().await.is_some() {
            self.reload().await;
        }
    }

    /// One reload, logged and counted.
    pub async fn reload(&mut self) {
        match self.try_reload().await {
            Ok(()) => {
                metrics::counter!("sessiongate_config_reloads_total", "result" => "ok")
                    .increment(1);
                tracing::info!(
                    sha256 = %self.running.hash,
                    "configuration reloaded: new requests use it"
                );
            }
            Err(error) => {
                metrics::counter!("sessiongate_config_reloads_total", "result" => "error")
                    .increment(1);
                tracing::error!(
                    %error,
                    "configuration reload refused: the running configuration is kept"
                );
            }
        }
    }

    async fn try_reload(&mut self) -> Result<(), Error> {
        let (config, hash) = self.source.read()?;
        let secrets = config.secrets(&process_env)?;
        self.refuse_listener_changes(&config)?;
        self.warn_about_restart_keys(&config);
        let tls = config.tls.as_ref().map(server::tls::acceptor).transpose()?;
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let store = store_of(&config);
        let sessions = if store == self.running.store {
            self.live.gateway().sessions().clone()
        } else {
            tracing::info!(
                store = config.store.kind(),
                "the store section changed: opening the new store"
            );
            crate::store::open(
                &config.store,
                config.session.keep_expired,
                config.session.identity_key.as_deref(),
                crate::store::codec_for(&config),
            )
            .await?
        };
        let gateway = Gateway::new(&config, &secrets, sessions)?;
        self.live.replace(gateway, tls);
        loaded(Some(&self.running.hash), &hash);
        self.running.store = store;
        self.running.hash = hash;
        Ok(())
    }

    /// The listeners were bound at start: moving them is a restart.
    fn refuse_listener_changes(&self, config: &Config) -> Result<(), Error> {
        let running = &self.running;
        if config.listen != running.listen {
            return Err(Error::config(
                "listen",
                format!(
                    "changed from {} to {}: a new listen address needs a restart",
                    running.listen, config.listen
                ),
            ));
        }
        if config.admin.listen != running.admin_listen {
            return Err(Error::config(
                "admin.listen",
                format!(
                    "changed from {} to {}: a new admin address needs a restart",
                    running.admin_listen, config.admin.listen
                ),
            ));
        }
        if config.tls.is_some() != running.tls {
            return Err(Error::config(
                "tls",
                "turning TLS on or off needs a restart (new certificate files reload)",
            ));
        }
        Ok(())
    }

    /// Keys the reload accepts but cannot apply.
    fn warn_about_restart_keys(&self, config: &Config) {
        if config.limits != self.running.limits {
            tracing::warn!(
                "limits changed: they apply to the listener and take effect after a restart; the start values stay in force"
            );
        }
        if config.admin.token != self.running.admin_token {
            tracing::warn!("admin.token changed: it takes effect after a restart");
        }
        if config.log.level != self.running.log.level
            || config.log.format != self.running.log.format
        {
            tracing::warn!("log.level or log.format changed: they take effect after a restart");
        }
    }
}

/// What a store is opened with: its section, `session.keep_expired`,
/// `session.identity_key`, and the record codec `session.compat` picks
/// (with express-session, the codec writes the cookie settings and the
/// TTL into each record: its `Debug` form holds them all, and no secret).
type StoreKey = (StoreConfig, bool, Option<String>, String);

/// An unchanged [`StoreKey`] keeps the open store on reload.
fn store_of(config: &Config) -> StoreKey {
    (
        config.store.clone(),
        config.session.keep_expired,
        config.session.identity_key.clone(),
        format!("{:?}", crate::store::codec::express::for_config(config)),
    )
}

/// `sessiongate_config_info{sha256}` is 1 for the loaded file (0 for the
/// one it replaced), and `sessiongate_config_loaded_timestamp_seconds` says
/// when it was loaded.
fn loaded(previous: Option<&str>, hash: &str) {
    if let Some(previous) = previous.filter(|previous| *previous != hash) {
        metrics::gauge!("sessiongate_config_info", "sha256" => previous.to_owned()).set(0.0);
    }
    metrics::gauge!("sessiongate_config_info", "sha256" => hash.to_owned()).set(1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    metrics::gauge!("sessiongate_config_loaded_timestamp_seconds").set(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_what_sha256sum_prints() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
