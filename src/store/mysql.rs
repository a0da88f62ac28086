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
//!   Expiry is rounded *up* to the next second, so a session never dies early;
//!   [`SessionStore::load`] turns it back into milliseconds.
//! * `data` is the [`NativeCodec`] blob (`{"v":1,"created":..,"data":{..}}`);
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
//! [`SessionStore::update`] runs one transaction: `SELECT ... FOR UPDATE`
//! locks the row, [`Change::apply`] computes the new record in Rust, and
//! `INSERT ... ON DUPLICATE KEY UPDATE` writes it. Writers of one session
//! queue on the row lock, so none of their patches is lost. When the row is
//! missing, InnoDB takes gap locks instead, and two first writers of one id
//! can deadlock; InnoDB rolls one back, and that loser retries through
//! [`retry_update`], as do lock-wait timeouts.
//!
//! # Expired rows
//!
//! A row whose `expires` has passed is never returned. With `keep_expired:
//! false` it is deleted when found on read. Either way a background task
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
//! statement waiting on a lock for MySQL's default 50 seconds.
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

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlConnection, Row};

use super::record::NativeCodec;
use super::{
    Change, RecordCodec, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis,
    now_millis, retry_update,
};
use crate::config::{ConfigDuration, ConfigError};

/// Connections per gateway: enough for a burst of concurrent requests while
/// keeping a fleet of gateways well under a server's `max_connections`.
const POOL_SIZE: u32 = 10;

/// How often an update that lost a deadlock is tried again.
const UPDATE_ATTEMPTS: u32 = 10;

/// Rows deleted per cleanup statement: small enough that one batch holds its
/// locks only briefly.
pub const CLEANUP_BATCH: u64 = 1_000;

/// The pause between cleanup batches, which lets request traffic through.
const CLEANUP_PAUSE: Duration = Duration::from_millis(50);

/// MySQL error numbers of a transaction that lost a lock race: worth retrying.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    /// `mysql://user:pass@host:3306/db` (or `mariadb://`).
    pub url: String,
    /// The table name: `[A-Za-z0-9_]{1,64}`.
    pub table: String,
    /// Create the table at start-up when it is missing.
    pub create_table: bool,
    /// How often expired rows are deleted.
    pub cleanup_interval: ConfigDuration,
    /// Bound on each operation, and on getting a connection.
    pub timeout: ConfigDuration,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            table: "sessions".into(),
            create_table: true,
            cleanup_interval: ConfigDuration::secs(15 * 60),
            timeout: ConfigDuration::secs(2),
        }
    }
}

impl MysqlConfig {
    /// Checks the section without connecting.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `store.url`, `store.table`,
    /// `store.cleanup_interval` or `store.timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connect_options()?;
        if !is_safe_identifier(&self.table) {
            return Err(ConfigError::at(
                "store.table",
                format!(
                    "`{}` is not a plain table name: use 1 to 64 letters, digits or _",
                    self.table
                ),
            ));
        }
        if self.cleanup_interval.get().is_zero() {
            return Err(ConfigError::at(
                "store.cleanup_interval",
                "must be longer than 0s",
            ));
        }
        if self.timeout.get().is_zero() {
            return Err(ConfigError::at("store.timeout", "must be longer than 0s"));
        }
        Ok(())
    }

    /// Parses `url`. Messages never repeat the URL: it may hold a password.
    fn connect_options(&self) -> Result<MySqlConnectOptions, ConfigError> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(ConfigError::at(
                "store.url",
                "is required, e.g. mysql://user:pass@host:3306/db",
            ));
        }
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(ConfigError::at(
                "store.url",
                "must start with mysql:// or mariadb://",
            ));
        }
        let options: MySqlConnectOptions = url
            .parse()
            .map_err(|e| ConfigError::at("store.url", format!("is not a valid URL: {e}")))?;
        if options.get_database().is_none() {
            return Err(ConfigError::at(
                "store.url",
                "must name a database, e.g. mysql://user:pass@host:3306/db",
            ));
        }
        Ok(options)
    }
}

/// `[A-Za-z0-9_]{1,64}`: what may be pasted into SQL as an identifier.
fn is_safe_identifier(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The store's SQL, written once for the configured table.
struct Statements {
    create: Arc<str>,
    load: Arc<str>,
    lock: Arc<str>,
    upsert: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
    delete_if_expired: Arc<str>,
    cleanup: Arc<str>,
}

impl Statements {
    /// `table` has passed [`is_safe_identifier`].
    fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        Self {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 `session_id` VARCHAR(128) COLLATE utf8mb4_bin NOT NULL, \
                 `expires` INT UNSIGNED NOT NULL, \
                 `data` MEDIUMTEXT COLLATE utf8mb4_bin, \
                 PRIMARY KEY (`session_id`), \
                 KEY `expires` (`expires`)\
                 ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            )
            .into(),
            load: format!("SELECT `data`, `expires` FROM {t} WHERE `session_id` = ?").into(),
            lock: format!("SELECT `data`, `expires` FROM {t} WHERE `session_id` = ? FOR UPDATE")
                .into(),
            // Parameters are bound twice instead of using VALUES(), which
            // MySQL 8.0.20 deprecates in favour of an alias syntax that
            // MariaDB does not have.
            upsert: format!(
                "INSERT INTO {t} (`session_id`, `expires`, `data`) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE `expires` = ?, `data` = ?"
            )
            .into(),
            touch: format!("UPDATE {t} SET `expires` = ? WHERE `session_id` = ?").into(),
            delete: format!("DELETE FROM {t} WHERE `session_id` = ?").into(),
            delete_if_expired: format!("DELETE FROM {t} WHERE `session_id` = ? AND `expires` <= ?")
                .into(),
            cleanup: format!("DELETE FROM {t} WHERE `expires` <= ? LIMIT {CLEANUP_BATCH}").into(),
        }
    }
}

/// A query on one of the prepared statements.
fn sql(
    statement: &Arc<str>,
) -> sqlx::query::Query<'static, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    sqlx::query(AssertSqlSafe(statement.clone()))
}

/// Epoch seconds for the `expires` column, rounded up so a session never dies
/// early, and capped at what `INT UNSIGNED` holds (the year 2106).
fn expires_column(expires_at: UnixMillis) -> u32 {
    u32::try_from(expires_at.div_ceil(1_000)).unwrap_or(u32::MAX)
}

/// The latest `expires` value that has passed at `now`: a row is expired when
/// `expires * 1000 <= now`.
fn expired_up_to(now: UnixMillis) -> u32 {
    u32::try_from(now / 1_000).unwrap_or(u32::MAX)
}

/// What the pool, the cleanup task and the store share. The cleanup task
/// holds it weakly, so dropping the store stops the task.
struct Shared {
    pool: MySqlPool,
    sql: Statements,
    codec: Box<dyn RecordCodec>,
    keep_expired: bool,
    timeout: Duration,
}

/// Sessions in a MySQL or MariaDB table; see the module docs.
pub struct MysqlStore {
    shared: Arc<Shared>,
}

impl MysqlStore {
    /// Builds the pool, creates the table when asked to, and starts the
    /// cleanup task. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `store.url` when the URL is malformed or, with
    /// `create_table`, the database cannot be reached; naming `store.table`
    /// when the table cannot be created.
    pub async fn connect(config: &MysqlConfig, keep_expired: bool) -> Result<Self, ConfigError> {
        config.validate()?;
        let timeout = config.timeout.get();
        let shared = Arc::new(Shared {
            pool: pool(config.connect_options()?, timeout),
            sql: Statements::new(&config.table),
            codec: Box::new(NativeCodec),
            keep_expired,
            timeout,
        });
        if config.create_table {
            create_table(&shared).await?;
        }
        spawn_cleanup(Arc::downgrade(&shared), config.cleanup_interval.get());
        Ok(Self { shared })
    }
}

/// A pool that connects lazily, gives up on a connection after `timeout`,
/// and tests idle connections before use, so it heals after an outage.
fn pool(options: MySqlConnectOptions, timeout: Duration) -> MySqlPool {
    let lock_wait_secs = timeout.as_secs().max(1);
    MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(timeout)
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .after_connect(move |conn, _| Box::pin(limit_lock_wait(conn, lock_wait_secs)))
        .connect_lazy_with(options)
}

/// Lock waits end with an error (which the update retries) well before
/// MySQL's default of 50 seconds.
async fn limit_lock_wait(conn: &mut MySqlConnection, seconds: u64) -> Result<(), sqlx::Error> {
    sqlx::query("SET SESSION innodb_lock_wait_timeout = ?")
        .bind(seconds)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Runs `CREATE TABLE IF NOT EXISTS`, telling "cannot connect" (the URL)
/// apart from "cannot create" (the table).
async fn create_table(shared: &Shared) -> Result<(), ConfigError> {
    let mut conn = shared.pool.acquire().await.map_err(|e| {
        ConfigError::at(
            "store.url",
            format!("cannot connect to the database to create the table: {e}"),
        )
    })?;
    let created = tokio::time::timeout(shared.timeout, sql(&shared.sql.create).execute(&mut *conn))
        .await
        .map_err(|_| ConfigError::at("store.table", "CREATE TABLE did not finish in time"))?;
    created
        .map(|_| ())
        .map_err(|e| ConfigError::at("store.table", format!("cannot create the table: {e}")))
}

fn spawn_cleanup(shared: Weak<Shared>, every: Duration) {
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
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let now = expired_up_to(now_millis());
            let batch = self
                .bounded(sql(&self.sql.cleanup).bind(now).execute(&self.pool))
                .await?
                .rows_affected();
            total += batch;
            if batch < CLEANUP_BATCH {
                return Ok(total);
            }
            tokio::time::sleep(CLEANUP_PAUSE).await;
        }
    }

    /// Bounds a database call by the store timeout and maps its error.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| self.store_error(e)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    fn store_error(&self, error: sqlx::Error) -> StoreError {
        match error {
            sqlx::Error::PoolTimedOut => StoreError::Timeout(self.timeout),
            other => StoreError::unavailable(format_args!("mysql: {other}")),
        }
    }

    /// Turns a `(data, expires)` row into a record; a row that is not in our
    /// format is treated as absent (and logged), so that a stray row starts
    /// a new session instead of failing every request that carries its id.
    fn decode(&self, data: Option<String>, expires: u32) -> Option<SessionRecord> {
        let expires_at = u64::from(expires) * 1_000;
        match self.codec.decode(data.as_deref().unwrap_or(""), expires_at) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(store = "mysql", %error, "ignoring an unreadable session row");
                None
            }
        }
    }

    /// One attempt at an atomic update: `Ok(None)` when it lost a lock race
    /// and InnoDB rolled it back, so [`retry_update`] tries again.
    async fn update_once(
        &self,
        id: &SessionId,
        change: &Change,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match tokio::time::timeout(self.timeout, self.locked_update(id, change)).await {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            Ok(Ok(record)) => Ok(Some(record)),
            Ok(Err(error)) if lost_lock_race(&error) => Ok(None),
            Ok(Err(error)) => Err(self.store_error(error)),
        }
    }

    /// Lock the row, apply the change in Rust, write, commit. Dropping the
    /// transaction on any error rolls it back.
    async fn locked_update(
        &self,
        id: &SessionId,
        change: &Change,
    ) -> Result<SessionRecord, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let current = sql(&self.sql.lock)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row_fields(&row))
            .transpose()?
            .and_then(|(data, expires)| self.decode(data, expires));
        let mut record = change.apply(current);
        record.expires_at = u64::from(expires_column(record.expires_at)) * 1_000;
        self.upsert(id, &record).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The `INSERT ... ON DUPLICATE KEY UPDATE` that writes `record`.
    fn upsert(
        &self,
        id: &SessionId,
        record: &SessionRecord,
    ) -> sqlx::query::Query<'static, sqlx::MySql, sqlx::mysql::MySqlArguments> {
        let expires = expires_column(record.expires_at);
        let data = self.codec.encode(record);
        sql(&self.sql.upsert)
            .bind(id.as_str().to_owned())
            .bind(expires)
            .bind(data.clone())
            .bind(expires)
            .bind(data)
    }

    /// Deletes `id` if it is still expired: a concurrent update that revived
    /// it in the meantime wins.
    async fn delete_if_expired(&self, id: &SessionId, now: UnixMillis) -> Result<(), StoreError> {
        self.bounded(
            sql(&self.sql.delete_if_expired)
                .bind(id.as_str())
                .bind(expired_up_to(now))
                .execute(&self.pool),
        )
        .await
        .map(|_| ())
    }
}

/// `(data, expires)` out of a row of the `load` or `lock` query.
fn row_fields(row: &sqlx::mysql::MySqlRow) -> Result<(Option<String>, u32), sqlx::Error> {
    Ok((row.try_get("data")?, row.try_get("expires")?))
}

/// A deadlock or lock-wait timeout: InnoDB rolled the transaction back and
/// trying again is the documented cure.
fn lost_lock_race(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|e| matches!(e.number(), ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT))
}

#[async_trait]
impl SessionStore for MysqlStore {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let store = &self.shared;
        let row = store
            .bounded(
                sql(&store.sql.load)
                    .bind(id.as_str())
                    .fetch_optional(&store.pool),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (data, expires) = row_fields(&row).map_err(|e| store.store_error(e))?;
        let now = now_millis();
        if u64::from(expires) * 1_000 > now {
            return Ok(store.decode(data, expires));
        }
        if !store.keep_expired {
            store.delete_if_expired(id, now).await?;
        }
        Ok(None)
    }

    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, StoreError> {
        retry_update(UPDATE_ATTEMPTS, || self.shared.update_once(id, change)).await
    }

    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let store = &self.shared;
        store
            .bounded(store.upsert(id, record).execute(&store.pool))
            .await
            .map(|_| ())
    }

    async fn touch(&self, id: &SessionId, expires_at: UnixMillis) -> Result<(), StoreError> {
        let store = &self.shared;
        let touch = sql(&store.sql.touch)
            .bind(expires_column(expires_at))
            .bind(id.as_str());
        store.bounded(touch.execute(&store.pool)).await.map(|_| ())
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let store = &self.shared;
        let delete = sql(&store.sql.delete).bind(id.as_str());
        store.bounded(delete.execute(&store.pool)).await.map(|_| ())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let store = &self.shared;
        store
            .bounded(sqlx::query("SELECT 1").execute(&store.pool))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, table: &str) -> MysqlConfig {
        MysqlConfig {
            url: url.into(),
            table: table.into(),
            ..MysqlConfig::default()
        }
    }

    fn error_of(config: &MysqlConfig) -> String {
        match config.validate() {
            Ok(()) => String::from("valid"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn urls_are_checked_without_echoing_them() {
        assert_eq!(
            error_of(&config("mysql://u:p@h:3306/db", "sessions")),
            "valid"
        );
        assert_eq!(error_of(&config("mariadb://u@h/db", "sessions")), "valid");
        assert!(error_of(&config("", "sessions")).starts_with("store.url: is required"));
        let wrong_scheme = error_of(&config("postgres://u:secret@h/db", "sessions"));
        assert!(wrong_scheme.starts_with("store.url:"), "{wrong_scheme}");
        assert!(!wrong_scheme.contains("secret"), "{wrong_scheme}");
        let bad_port = error_of(&config("mysql://u:secret@h:99999/db", "sessions"));
        assert!(bad_port.starts_with("store.url:"), "{bad_port}");
        assert!(!bad_port.contains("secret"), "{bad_port}");
        let no_db = error_of(&config("mysql://u@h:3306", "sessions"));
        assert!(no_db.contains("must name a database"), "{no_db}");
    }

    #[test]
    fn table_names_must_be_plain_identifiers() {
        for bad in ["", "a-b", "x`; DROP TABLE y", "s p", "é", &"a".repeat(65)] {
            let message = error_of(&config("mysql://h/db", bad));
            assert!(message.starts_with("store.table:"), "{bad:?}: {message}");
        }
        assert_eq!(error_of(&config("mysql://h/db", "Sessions_2")), "valid");
    }

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        assert_eq!(expires_column(1_000), 1);
        assert_eq!(expires_column(1_001), 2);
        assert_eq!(expires_column(u64::MAX), u32::MAX);
        assert_eq!(expired_up_to(1_999), 1);
    }
}
