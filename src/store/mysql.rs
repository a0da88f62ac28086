//! MySQL / MariaDB store. Being built: see issue 5.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis};
use crate::config::{ConfigDuration, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    pub url: String,
    pub table: String,
    pub create_table: bool,
    pub cleanup_interval: ConfigDuration,
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
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

pub struct MysqlStore;

impl MysqlStore {
    pub async fn connect(_config: &MysqlConfig, _keep_expired: bool) -> Result<Self, ConfigError> {
        Err(ConfigError::at("store.type", "mysql is not built yet"))
    }
}

#[async_trait]
impl SessionStore for MysqlStore {
    fn kind(&self) -> &'static str {
        "mysql"
    }
    async fn load(&self, _id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Err(StoreError::unavailable("not built"))
    }
    async fn update(&self, _id: &SessionId, _change: &Change) -> Result<SessionRecord, StoreError> {
        Err(StoreError::unavailable("not built"))
    }
    async fn insert(&self, _id: &SessionId, _record: &SessionRecord) -> Result<(), StoreError> {
        Err(StoreError::unavailable("not built"))
    }
    async fn touch(&self, _id: &SessionId, _expires_at: UnixMillis) -> Result<(), StoreError> {
        Err(StoreError::unavailable("not built"))
    }
    async fn delete(&self, _id: &SessionId) -> Result<(), StoreError> {
        Err(StoreError::unavailable("not built"))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::unavailable("not built"))
    }
}
