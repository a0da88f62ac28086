//! The `store` section: one variant per backend, each with its own keys and
//! its own checks, all made without reaching the backend.

pub mod dynamodb;
pub mod mysql;
pub mod redis;

use serde::Deserialize;
use serde_json::Value;

pub use dynamodb::{AwsConfig, DynamoConfig, DynamoLayout};
pub use mysql::MysqlConfig;
pub use redis::{RedisConfig, SentinelConfig};

use super::typed;
use crate::error::Error;

/// The `store` section: one variant per backend, each with its own keys.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// The session sealed in the cookie.
    Cookie(CookieStoreConfig),
    /// An in-process map, for development.
    Memory(MemoryStoreConfig),
    /// Redis or Redis Cluster.
    Redis(RedisConfig),
    /// One DynamoDB table.
    Dynamodb(DynamoConfig),
    /// A MySQL or MariaDB table.
    Mysql(MysqlConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Cookie(CookieStoreConfig::default())
    }
}

impl StoreConfig {
    /// The value of `store.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Cookie(_) => "cookie",
            StoreConfig::Memory(_) => "memory",
            StoreConfig::Redis(_) => "redis",
            StoreConfig::Dynamodb(_) => "dynamodb",
            StoreConfig::Mysql(_) => "mysql",
        }
    }

    /// Checks the section without reaching the backend.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            StoreConfig::Cookie(c) if !(1..=50).contains(&c.max_chunks) => Err(Error::config(
                "store.max_chunks",
                "must be between 1 and 50",
            )),
            StoreConfig::Memory(m) if m.max_sessions == 0 => {
                Err(Error::config("store.max_sessions", "must be at least 1"))
            }
            StoreConfig::Redis(c) => c.validate(),
            StoreConfig::Dynamodb(c) => c.validate(),
            StoreConfig::Mysql(c) => c.validate(),
            _ => Ok(()),
        }
    }

    /// Reads `store` by its `type`, so that a key of another store type is
    /// refused by name instead of being silently ignored.
    pub(crate) fn from_value(value: Value) -> Result<Self, Error> {
        let mut map = match value {
            Value::Object(map) => map,
            Value::Null => return Ok(Self::default()),
            _ => return Err(Error::config("store", "must be a mapping with a `type`")),
        };
        let kind = match map.remove("type") {
            None => "cookie".to_owned(),
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(Error::config("store.type", "must be a string")),
        };
        let rest = Value::Object(map);
        Ok(match kind.as_str() {
            "cookie" => StoreConfig::Cookie(typed("store", rest)?),
            "memory" => StoreConfig::Memory(typed("store", rest)?),
            "redis" => StoreConfig::Redis(typed("store", rest)?),
            "dynamodb" => StoreConfig::Dynamodb(typed("store", rest)?),
            "mysql" => StoreConfig::Mysql(typed("store", rest)?),
            other => {
                return Err(Error::config(
                    "store.type",
                    format!(
                        "unknown store `{other}`: use cookie, memory, redis, dynamodb or mysql"
                    ),
                ));
            }
        })
    }
}

/// `store: {type: cookie}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CookieStoreConfig {
    /// How many cookies one session may span (`sid`, `sid.1`, ...).
    pub max_chunks: usize,
}

impl Default for CookieStoreConfig {
    fn default() -> Self {
        Self { max_chunks: 5 }
    }
}

/// `store: {type: memory}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    /// Sessions held at most; new ones get 503 past it.
    pub max_sessions: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
        }
    }
}
