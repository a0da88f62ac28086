//! DynamoDB store. Being built: see issue 4.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis};
use crate::config::{ConfigDuration, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoConfig {
    pub table: String,
    pub prefix: String,
    pub hash_key: String,
    pub sort_key: Option<String>,
    pub ttl_attribute: String,
    pub create_table: bool,
    pub aws: AwsConfig,
    pub timeout: ConfigDuration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self {
            table: "sessions".into(),
            prefix: "sess:".into(),
            hash_key: "id".into(),
            sort_key: None,
            ttl_attribute: "expires".into(),
            create_table: false,
            aws: AwsConfig::default(),
            timeout: ConfigDuration::secs(2),
        }
    }
}

impl DynamoConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

pub struct DynamoStore;

impl DynamoStore {
    pub async fn connect(_config: &DynamoConfig, _keep_expired: bool) -> Result<Self, ConfigError> {
        Err(ConfigError::at("store.type", "dynamodb is not built yet"))
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
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
