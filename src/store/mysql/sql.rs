//! The MySQL store's SQL, written once for the configured table, and the
//! conversions of expiry to and from the `expires` column.

use std::sync::Arc;

use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySql, MySqlArguments};

use crate::store::record::{UnixMillis, expiry_seconds};

/// Rows deleted per cleanup statement: small enough that one batch holds its
/// locks only briefly.
pub const CLEANUP_BATCH: u64 = 1_000;

/// The statements, with the table name pasted in (identifiers cannot be
/// bound; the configuration allows only `[A-Za-z0-9_]{1,64}`).
pub(super) struct Statements {
    pub indexed: bool,
    pub create: Arc<str>,
    pub has_identity_column: Arc<str>,
    pub add_identity_column: Arc<str>,
    pub sessions_of: Arc<str>,
    pub load: Arc<str>,
    pub insert: Arc<str>,
    pub swap: Arc<str>,
    pub upsert: Arc<str>,
    pub touch: Arc<str>,
    pub delete: Arc<str>,
    pub delete_if_expired: Arc<str>,
    pub delete_if_unchanged: Arc<str>,
    pub cleanup: Arc<str>,
}

impl Statements {
    /// `indexed`: the writes also set the `identity` column (only then
    /// must the table have it, so express-mysql-session's own table works
    /// unchanged without `session.identity_key`).
    pub fn new(table: &str, indexed: bool) -> Self {
        let t = format!("`{table}`");
        // Every write binds the identity last when indexed.
        // express-mysql-session's table, plus the index's column only when
        // the index is on.
        let (identity_column, identity_key) = if indexed {
            (format!("{IDENTITY_COLUMN}, "), format!(", {IDENTITY_KEY}"))
        } else {
            (String::new(), String::new())
        };
        let (column, value, set) = if indexed {
            (", `identity`", ", ?", ", `identity` = ?")
        } else {
            ("", "", "")
        };
        Self {
            indexed,
            create: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 `session_id` VARCHAR(128) COLLATE utf8mb4_bin NOT NULL, \
                 `expires` INT UNSIGNED NOT NULL, \
                 `data` MEDIUMTEXT COLLATE utf8mb4_bin, \
                 {identity_column}\
                 PRIMARY KEY (`session_id`), \
                 KEY `expires` (`expires`)\
                 {identity_key}\
                 ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            )
            .into(),
            has_identity_column: "SELECT COUNT(*) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'identity'"
                .into(),
            add_identity_column: add_identity_column(table).into(),
            sessions_of: format!("SELECT `session_id` FROM {t} WHERE `identity` = ?").into(),
            load: format!("SELECT `data`, `expires` FROM {t} WHERE `session_id` = ?").into(),
            insert: format!(
                "INSERT INTO {t} (`session_id`, `expires`, `data`{column}) VALUES (?, ?, ?{value})"
            )
            .into(),
            swap: format!(
                "UPDATE {t} SET `expires` = ?, `data` = ?{set} \
                 WHERE `session_id` = ? AND COALESCE(`data`, '') = ?"
            )
            .into(),
            // Parameters are bound twice instead of using VALUES(), which
            // MySQL 8.0.20 deprecates in favour of an alias syntax that
            // MariaDB does not have.
            upsert: format!(
                "INSERT INTO {t} (`session_id`, `expires`, `data`{column}) VALUES (?, ?, ?{value}) \
                 ON DUPLICATE KEY UPDATE `expires` = ?, `data` = ?{set}"
            )
            .into(),
            touch: format!("UPDATE {t} SET `expires` = ? WHERE `session_id` = ? AND `expires` > ?")
                .into(),
            delete: format!("DELETE FROM {t} WHERE `session_id` = ?").into(),
            delete_if_expired: format!(
                "DELETE FROM {t} WHERE `session_id` = ? \
                 AND COALESCE(`data`, '') = ? \
                 AND `expires` <= ?"
            )
            .into(),
            delete_if_unchanged: format!(
                "DELETE FROM {t} WHERE `session_id` = ? AND COALESCE(`data`, '') = ?"
            )
            .into(),
            cleanup: format!("DELETE FROM {t} WHERE `expires` <= ? LIMIT {CLEANUP_BATCH}").into(),
        }
    }
}

/// The identity index's column: the SHA-256 of the identity (base64url,
/// 43 characters), never the value itself.
const IDENTITY_COLUMN: &str = "`identity` CHAR(43) COLLATE ascii_bin NULL";
const IDENTITY_KEY: &str = "KEY `identity` (`identity`)";

/// The statement that gives an existing table (express-mysql-session's, or
/// one created before the index existed) the identity column; the README
/// prints it for operators who create tables themselves.
pub fn add_identity_column(table: &str) -> String {
    format!("ALTER TABLE `{table}` ADD COLUMN {IDENTITY_COLUMN}, ADD {IDENTITY_KEY}")
}

/// A query on one of the statements.
pub(super) fn query(statement: &Arc<str>) -> sqlx::query::Query<'static, MySql, MySqlArguments> {
    sqlx::query(AssertSqlSafe(statement.clone()))
}

/// Epoch seconds for the `expires` column, rounded up so a session never dies
/// early, and capped at what `INT UNSIGNED` holds (the year 2106).
pub(super) fn expires_column(expires_at: UnixMillis) -> u32 {
    u32::try_from(expiry_seconds(expires_at)).unwrap_or(u32::MAX)
}

/// The latest `expires` value that has passed at `now`: a row is expired when
/// `expires * 1000 <= now`.
pub(super) fn expired_up_to(now: UnixMillis) -> u32 {
    u32::try_from(now / 1_000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        assert_eq!(expires_column(1_000), 1);
        assert_eq!(expires_column(1_001), 2);
        assert_eq!(expires_column(u64::MAX), u32::MAX);
        assert_eq!(expired_up_to(1_999), 1);
    }
}
