//! `store: {type: mysql}`: a MySQL or MariaDB table in
//! express-mysql-session's layout.

use serde::Deserialize;
use sqlx::mysql::MySqlConnectOptions;

use crate::config::ConfigDuration;
use crate::error::Error;

/// `store: {type: mysql}`.
#[derive(Clone, Deserialize, PartialEq)]
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

/// The URL's password never reaches a log line, even through `{:?}`.
impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("url", &crate::config::redact_url(&self.url))
            .field("table", &self.table)
            .field("create_table", &self.create_table)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
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
    /// A [`Error`] naming `store.url`, `store.table`,
    /// `store.cleanup_interval` or `store.timeout`.
    pub fn validate(&self) -> Result<(), Error> {
        self.connect_options()?;
        if !is_safe_identifier(&self.table) {
            return Err(Error::config(
                "store.table",
                format!(
                    "`{}` is not a plain table name: use 1 to 64 letters, digits or _",
                    self.table
                ),
            ));
        }
        if self.cleanup_interval.get().is_zero() {
            return Err(Error::config(
                "store.cleanup_interval",
                "must be longer than 0s",
            ));
        }
        if self.timeout.get().is_zero() {
            return Err(Error::config("store.timeout", "must be longer than 0s"));
        }
        Ok(())
    }

    /// Parses `url`. Messages never repeat the URL: it may hold a password.
    pub fn connect_options(&self) -> Result<MySqlConnectOptions, Error> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(Error::config(
                "store.url",
                "is required, e.g. mysql://user:pass@host:3306/db",
            ));
        }
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(Error::config(
                "store.url",
                "must start with mysql:// or mariadb://",
            ));
        }
        let options: MySqlConnectOptions = url
            .parse()
            .map_err(|e| Error::config("store.url", format!("is not a valid URL: {e}")))?;
        if options.get_database().is_none() {
            return Err(Error::config(
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
}
