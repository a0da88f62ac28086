//! Redis store (standalone or cluster). Being built: see issue 3.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis};
use crate::config::{ConfigDuration, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: Option<String>,
    pub urls: Vec<String>,
    pub prefix: String,
    pub cluster: bool,
    pub timeout: ConfigDuration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            urls: Vec::new(),
            prefix: "sess:".into(),
            cluster: false,
            timeout: ConfigDuration::secs(2),
        }
    }
}

impl RedisConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

pub struct RedisStore;

impl RedisStore {
    pub async fn connect(_config: &RedisConfig, _keep_expired: bool) -> Result<Self, ConfigError> {
        Err(ConfigError::at("store.type", "redis is not built yet"))
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
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
