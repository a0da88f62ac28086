//! MySQL / MariaDB store, in the table layout of express-mysql-session.
//!
//! # The table
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS `sessions` (
//!   `session_id` VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,
//!   `expires` INT UNSIGNED NOT NULL,
//!   `data` MEDIUMTEXT COLLATE utf8mb4_bin,
//!   PRIMARY KEY (`session_id`),
//!   KEY `expires` (`expires`)
//! ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
//! ```
//!
//! * `session_id` is the session id itself, without a prefix. The binary
//!   collation matters: ids are base64url, so `a` and `A` are different ids.
//! * `expires` is epoch **seconds** (the column express-mysql-session uses).
//!   Expiry is rounded *up* to the next second, so a session never dies early
//!   (the core does the rounding, see [`Backend::expiry_precision_ms`]).
//! * `data` is the codec's blob (`{"v":1,"created":..,"data":{..}}`);
//!   `utf8mb4` lets any JSON text in. The expiry is not in the blob, so a touch
//!   rewrites `expires` only.
//! * The index on `expires` is not part of express-mysql-session's layout; it
//!   keeps the cleanup's `DELETE ... WHERE expires < ?` from scanning the
//!   whole table. A table created by express-mysql-session works without it.
//!
//! `store.table` is interpolated into the SQL (identifiers cannot be bound),
//! which is why it must match `[A-Za-z0-9_]{1,64}`.
//!
//! # Atomic updates
//!
//! The core reads the row, applies the change in Rust, and commits by
//! compare-and-set ([`Backend::write_if`]): an `UPDATE ... WHERE data = ?`
//! that matches only while the row still holds the text that was read, or
//! an `INSERT` that a duplicate key refuses when another writer created the
//! row first. No row lock is held across a round trip, and the same check
//! settles races with an express-mysql-session app writing the same table.
//!
//! # Expired rows
//!
//! A row whose `expires` has passed is never returned (the core checks).
//! With `keep_expired: false` it is deleted when found on read. Either way a background task
//! deletes expired rows every `cleanup_interval`, in batches of
//! [`CLEANUP_BATCH`] rows with a pause between batches so that a large
//! backlog never holds locks for long. Its first run is one interval after
//! start-up, and it stops when the store is dropped. Every gateway of a
//! fleet runs it; the batches are idempotent, so that costs only queries.
//!
//! # Outages
//!
//! Connections come from a pool whose acquire (and therefore connect) timeout
//! is `store.timeout`, and every connection is checked before it is handed
//! out, so a database that went away costs one failed call per request
//! (503, within the timeout) and a database that came back is used again
//! without a restart. Each connection also sets `innodb_lock_wait_timeout`
//! to the store timeout, so that a request given up on does not leave a
//! statement waiting on a lock (the clean-up's) for MySQL's default 50
//! seconds.
//!
//! # Start-up
//!
//! A malformed `store.url` is a configuration error. Beyond that:
//!
//! * `create_table: true` (the default): the gateway connects and creates the
//!   table before it listens. A database that cannot be reached, or refuses
//!   the `CREATE TABLE`, stops the start with an error naming `store.url` or
//!   `store.table`: serving with a table that may not exist would only turn
//!   every request into a 503, and the operator learns more from a failed
//!   start (the orchestrator's restart loop retries it).
//! * `create_table: false`: the gateway starts without touching the
//!   database, and `/readyz` answers 503 until the database answers.
//!
//! # Configuration
//!
//! ```yaml
//! store:
//!   type: mysql
//!   url: mysql://${SESSION_USER}:${SESSION_PASSWORD}@${SESSION_HOST}:${SESSION_PORT}/${SESSION_DATABASE}
//!   table: sessions
//!   create_table: true
//!   cleanup_interval: 15m
//!   timeout: 2s
//! ```
//!
//! `${VAR}` is substituted from the environment by the configuration loader,
//! so credentials stay out of the file. A password with URL-reserved
//! characters (`@`, `:`, `/`, `%`, `#`, `?`) must be percent-encoded in the
//! variable. `mariadb://` is accepted as a synonym of `mysql://`; TLS is set
//! with `?ssl-mode=required` (or `verify_ca` / `verify_identity`, with
//! `&ssl-ca=/path/ca.pem`).

mod pool;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::mysql::{MySqlDatabaseError, MySqlPool};

use self::pool::{create_table, has_identity_column, pool, spawn_cleanup, warn_if_plaintext};
use self::sql::{Statements, add_identity_column, expired_up_to, expires_column, query};
use super::StoreSettings;
use super::core::{Backend, Entry, StoreCore, Stored};
use super::identity::Identity;
use super::record::{SessionId, UnixMillis, now_millis};
use crate::config::MysqlConfig;
use crate::error::{Error, Result};

pub use self::sql::CLEANUP_BATCH;

/// MySQL's "duplicate entry": another writer created the row first.
const ER_DUP_ENTRY: u16 = 1062;

/// The MySQL store: the core in front of [`MysqlBackend`].
pub type MysqlStore = StoreCore<MysqlBackend>;

impl MysqlStore {
    /// Builds the pool, creates the table when asked to, and starts the
    /// cleanup task. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A configuration error naming `store.url` when the URL is malformed
    /// or, with `create_table`, the database cannot be reached; naming
    /// `store.table` when the table cannot be created.
    pub async fn connect(config: &MysqlConfig, settings: &StoreSettings) -> Result<Self> {
        config.validate()?;
        let timeout = config.timeout.get();
        let options = config.connect_options()?;
        warn_if_plaintext(&options);
        let shared = Arc::new(Shared {
            pool: pool(options, timeout),
            sql: Statements::new(&config.table, settings.identity_key.is_some()),
        });
        if config.create_table {
            create_table(&shared, &config.table, timeout).await?;
        } else if shared.sql.indexed
            && !has_identity_column(&shared, &config.table, timeout).await?
        {
            return Err(Error::config(
                "store.table",
                format!(
                    "session.identity_key needs an identity column in the table: run `{}` (or set store.create_table: true)",
                    add_identity_column(&config.table)
                ),
            ));
        }
        spawn_cleanup(Arc::downgrade(&shared), config.cleanup_interval.get());
        Ok(StoreCore::new(MysqlBackend { shared }, settings))
    }
}

/// What the pool, the cleanup task and the store share. The cleanup task
/// holds it weakly, so dropping the store stops the task.
struct Shared {
    pool: MySqlPool,
    sql: Statements,
}

/// Sessions as rows of one table; see the module docs.
pub struct MysqlBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlBackend").finish_non_exhaustive()
    }
}

impl MysqlBackend {
    /// What the statements bind for the identity column: nothing when the
    /// index is off, else the identity or `NULL`.
    fn identity_column(&self, identity: Option<&Identity>) -> Option<Option<String>> {
        self.shared
            .sql
            .indexed
            .then(|| identity.map(|identity| identity.as_str().to_owned()))
    }

    /// Deletes expired rows now, as the cleanup task does.
    ///
    /// # Errors
    ///
    /// A store error when a batch fails.
    pub async fn delete_expired(&self) -> Result<u64> {
        self.shared.delete_expired().await
    }
}

/// A database error as a store error, saying which operation failed.
fn failed(operation: &str, error: sqlx::Error) -> Error {
    Error::store_unavailable("mysql", operation, error)
}

/// The codec writes JSON, which is UTF-8; anything else is refused rather
/// than stored mangled.
fn utf8(text: Vec<u8>) -> Result<String> {
    String::from_utf8(text).map_err(|e| Error::store_unavailable("mysql", "encode", e))
}

/// Text read from the table, to compare against it.
fn text_of(text: &[u8]) -> Result<&str> {
    std::str::from_utf8(text).map_err(|e| Error::store_unavailable("mysql", "compare", e))
}

fn is_duplicate_key(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|e| e.number() == ER_DUP_ENTRY)
}

#[async_trait]
impl Backend for MysqlBackend {
    type Version = ();

    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn expiry_precision_ms(&self) -> u64 {
        1_000
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Stored<()>>> {
        let store = &self.shared;
        let row = query(&store.sql.load)
            .bind(id.as_str())
            .fetch_optional(&store.pool)
            .await
            .map_err(|e| failed("load", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let data: Option<String> = row.try_get("data").map_err(|e| failed("load", e))?;
        let expires: u32 = row.try_get("expires").map_err(|e| failed("load", e))?;
        Ok(Some(Stored {
            text: data.unwrap_or_default().into_bytes(),
            expires_at: Some(u64::from(expires) * 1_000),
            version: (),
        }))
    }

    async fn write_if(
        &self,
        id: &SessionId,
        expected: Option<&Stored<()>>,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let store = &self.shared;
        let (text, expires) = (utf8(entry.text)?, expires_column(entry.expires_at));
        let identity = self.identity_column(entry.identity);
        let Some(expected) = expected else {
            let mut insert = query(&store.sql.insert)
                .bind(id.as_str())
                .bind(expires)
                .bind(text);
            if let Some(identity) = identity {
                insert = insert.bind(identity);
            }
            let inserted = insert.execute(&store.pool).await;
            return match inserted {
                Ok(_) => Ok(true),
                Err(error) if is_duplicate_key(&error) => Ok(false),
                Err(error) => Err(failed("update", error)),
            };
        };
        // The pool's connections report matched rows (CLIENT_FOUND_ROWS), so
        // a write that changes nothing still counts as done.
        let mut swap = query(&store.sql.swap).bind(expires).bind(text);
        if let Some(identity) = identity {
            swap = swap.bind(identity);
        }
        let swapped = swap
            .bind(id.as_str())
            .bind(text_of(&expected.text)?)
            .execute(&store.pool)
            .await
            .map_err(|e| failed("update", e))?;
        Ok(swapped.rows_affected() == 1)
    }

    async fn put(&self, id: &SessionId, entry: Entry<'_>) -> Result<()> {
        let store = &self.shared;
        let (text, expires) = (utf8(entry.text)?, expires_column(entry.expires_at));
        let identity = self.identity_column(entry.identity);
        let mut upsert = query(&store.sql.upsert)
            .bind(id.as_str())
            .bind(expires)
            .bind(text.clone());
        if let Some(identity) = &identity {
            upsert = upsert.bind(identity.clone());
        }
        upsert = upsert.bind(expires).bind(text);
        if let Some(identity) = identity {
            upsert = upsert.bind(identity);
        }
        upsert
            .execute(&store.pool)
            .await
            .map(|_| ())
            .map_err(|e| failed("insert", e))
    }

    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        now: UnixMillis,
        _identity: Option<&Identity>,
    ) -> Result<()> {
        let store = &self.shared;
        query(&store.sql.touch)
            .bind(expires_column(expires_at))
            .bind(id.as_str())
            .bind(expired_up_to(now))
            .execute(&store.pool)
            .await
            .map(|_| ())
            .map_err(|e| failed("touch", e))
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        let store = &self.shared;
        query(&store.sql.delete)
            .bind(id.as_str())
            .execute(&store.pool)
            .await
            .map(|_| ())
            .map_err(|e| failed("delete", e))
    }

    /// Deletes the row if it still holds what was read, and is still
    /// expired: a concurrent update that revived it wins.
    async fn delete_if(&self, id: &SessionId, expected: &Stored<()>) -> Result<()> {
        let store = &self.shared;
        query(&store.sql.delete_if_expired)
            .bind(id.as_str())
            .bind(text_of(&expected.text)?)
            .bind(expired_up_to(now_millis()))
            .execute(&store.pool)
            .await
            .map(|_| ())
            .map_err(|e| failed("delete", e))
    }

    /// The indexed column: one query, the rows themselves.
    async fn indexed(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        let store = &self.shared;
        let rows = query(&store.sql.sessions_of)
            .bind(identity.as_str())
            .fetch_all(&store.pool)
            .await
            .map_err(|e| failed("sessions_of", e))?;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>(0)
                    .map(SessionId::from_trusted)
                    .map_err(|e| failed("sessions_of", e))
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.shared.pool)
            .await
            .map(|_| ())
            .map_err(|e| failed("ping", e))
    }

    /// The swap compares the text alone.
    fn text_is_version(&self) -> Option<()> {
        Some(())
    }

    /// One transaction: delete the old row if it is unchanged, insert the
    /// new one; either both happen or neither.
    async fn move_if(
        &self,
        old: &SessionId,
        expected: &Stored<()>,
        new: &SessionId,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let store = &self.shared;
        let text = utf8(entry.text)?;
        let identity = self.identity_column(entry.identity);
        let failed = |e| failed("regenerate", e);
        let mut tx = store.pool.begin().await.map_err(failed)?;
        let deleted = query(&store.sql.delete_if_unchanged)
            .bind(old.as_str())
            .bind(text_of(&expected.text)?)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        if deleted.rows_affected() != 1 {
            // Dropping the transaction rolls it back.
            return Ok(false);
        }
        let mut insert = query(&store.sql.insert)
            .bind(new.as_str())
            .bind(expires_column(entry.expires_at))
            .bind(text);
        if let Some(identity) = identity {
            insert = insert.bind(identity);
        }
        let inserted = insert.execute(&mut *tx).await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_duplicate_key(&error) => return Ok(false),
            Err(error) => return Err(failed(error)),
        }
        tx.commit().await.map_err(failed)?;
        Ok(true)
    }
}
