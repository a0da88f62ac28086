//! The connection pool, the table's creation at start-up, and the task that
//! deletes expired rows.

use std::sync::Weak;
use std::time::Duration;

use sqlx::MySqlConnection;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};

use super::sql::{CLEANUP_BATCH, expired_up_to, query};
use super::{Shared, failed};
use crate::error::{Error, Result};
use crate::store::record::now_millis;

/// Connections per gateway: enough for a burst of concurrent requests while
/// keeping a fleet of gateways well under a server's `max_connections`.
const POOL_SIZE: u32 = 10;

/// The pause between cleanup batches, which lets request traffic through.
const CLEANUP_PAUSE: Duration = Duration::from_millis(50);

/// Without `ssl-mode`, sqlx tries TLS and silently falls back to plaintext
/// (`PREFERRED`): fine on one host, not across a network, where session
/// data and the password would travel in clear.
pub(super) fn warn_if_plaintext(options: &MySqlConnectOptions) {
    let loopback = options.get_socket().is_some()
        || matches!(
            options.get_host(),
            "localhost" | "127.0.0.1" | "::1" | "[::1]"
        );
    if !loopback
        && matches!(
            options.get_ssl_mode(),
            MySqlSslMode::Preferred | MySqlSslMode::Disabled
        )
    {
        tracing::warn!(
            store = "mysql",
            host = options.get_host(),
            "store.url reaches a database over the network without requiring TLS: add ?ssl-mode=required (or verify_identity)"
        );
    }
}

/// A pool that connects lazily, gives up on a connection after `timeout`,
/// and tests idle connections before use, so it heals after an outage.
pub(super) fn pool(options: MySqlConnectOptions, timeout: Duration) -> MySqlPool {
    let lock_wait_secs = timeout.as_secs().max(1);
    MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(timeout)
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .after_connect(move |conn, _| Box::pin(limit_lock_wait(conn, lock_wait_secs)))
        .connect_lazy_with(options)
}

/// Lock waits end with an error well before MySQL's default of 50 seconds.
async fn limit_lock_wait(conn: &mut MySqlConnection, seconds: u64) -> Result<(), sqlx::Error> {
    sqlx::query("SET SESSION innodb_lock_wait_timeout = ?")
        .bind(seconds)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Runs `CREATE TABLE IF NOT EXISTS`, telling "cannot connect" (the URL)
/// apart from "cannot create" (the table).
pub(super) async fn create_table(shared: &Shared, table: &str, timeout: Duration) -> Result<()> {
    let mut conn = shared.pool.acquire().await.map_err(|e| {
        Error::config(
            "store.url",
            format!("cannot connect to the database to create the table: {e}"),
        )
    })?;
    let created = tokio::time::timeout(timeout, query(&shared.sql.create).execute(&mut *conn))
        .await
        .map_err(|_| Error::config("store.table", "CREATE TABLE did not finish in time"))?;
    created
        .map(|_| ())
        .map_err(|e| Error::config("store.table", format!("cannot create the table: {e}")))?;
    if shared.sql.indexed && !has_identity_column(shared, table, timeout).await? {
        let altered = tokio::time::timeout(
            timeout,
            query(&shared.sql.add_identity_column).execute(&mut *conn),
        )
        .await
        .map_err(|_| Error::config("store.table", "ALTER TABLE did not finish in time"))?;
        altered.map(|_| ()).map_err(|e| {
            Error::config(
                "store.table",
                format!("cannot add the identity column for session.identity_key: {e}"),
            )
        })?;
        tracing::info!(
            store = "mysql",
            table,
            "added the identity column for session.identity_key"
        );
    }
    Ok(())
}

/// Whether the table has the identity index's column. Not reachable now:
/// `Ok(true)`, so that the gateway still starts (a write then fails with
/// 503 and says why).
pub(super) async fn has_identity_column(
    shared: &Shared,
    table: &str,
    timeout: Duration,
) -> Result<bool> {
    let asked = tokio::time::timeout(
        timeout,
        query(&shared.sql.has_identity_column)
            .bind(table)
            .fetch_one(&shared.pool),
    )
    .await;
    match asked {
        Ok(Ok(row)) => {
            let count: i64 = sqlx::Row::try_get(&row, 0).unwrap_or(0);
            Ok(count > 0)
        }
        Ok(Err(error)) => {
            tracing::warn!(store = "mysql", %error, "could not check for the identity column");
            Ok(true)
        }
        Err(_) => {
            tracing::warn!(
                store = "mysql",
                "could not check for the identity column in time"
            );
            Ok(true)
        }
    }
}

pub(super) fn spawn_cleanup(shared: Weak<Shared>, every: Duration) {
    tokio::spawn(async move {
        // The first run waits one interval, so that a fleet restarting at
        // once does not clean all at once.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(store) = shared.upgrade() else {
                return;
            };
            if let Err(error) = store.delete_expired().await {
                tracing::warn!(store = "mysql", %error, "cleanup of expired sessions failed");
            }
        }
    });
}

impl Shared {
    /// Deletes expired rows one bounded batch at a time until none is left.
    pub(super) async fn delete_expired(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let now = expired_up_to(now_millis());
            let batch = query(&self.sql.cleanup)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(|e| failed("cleanup", e))?
                .rows_affected();
            total += batch;
            if batch < CLEANUP_BATCH {
                return Ok(total);
            }
            tokio::time::sleep(CLEANUP_PAUSE).await;
        }
    }
}
