//! DynamoDB store: one item per session.
//!
//! # Item layout
//!
//! | attribute | type | holds |
//! |---|---|---|
//! | `hash_key` (default `id`) | S | `prefix + session id` |
//! | `sort_key` (when set) | S | the same value as the hash key |
//! | `data` | S | the codec's blob: `{"v":1,"created":<ms>,"data":{...}}` |
//! | `version` | N | incremented by every write of the data; the compare-and-set guard |
//! | `ttl_attribute` (default `expires`) | N | expiry in epoch **seconds**, rounded up: usable as the table's native TTL |
//! | `expires_ms` | N | the same expiry in epoch milliseconds, so `load` returns it exactly |
//! | `identity` | S | with `session.identity_key`: the SHA-256 of the identity, on sessions that have one |
//!
//! # The identity index
//!
//! A global secondary index, `identity-index`, on `identity` (keys only).
//! It is written by the very `PutItem` or transaction that writes the
//! session, so it can never disagree with it; sessions without an identity
//! are not in it (a sparse index); and when native TTL deletes an expired
//! session its index entry goes with it, so the index never outgrows the
//! table. A per-identity item would need a second write in every
//! transaction and its own clean-up. The price: a GSI is eventually
//! consistent, so a session written in the last moment before a revoke can
//! be missed by it (repeat the revoke), and `create_table: true` creates
//! the index while an existing table needs it added (the start-up error
//! prints the command).
//!
//! # Behaviour
//!
//! * **Expiry on read.** DynamoDB's native TTL deletes up to two days late
//!   (and local DynamoDB or moto never do), so the core checks the expiry
//!   of every read itself, and with `keep_expired: false` deletes an expired
//!   item found on read, conditionally on it being unchanged since the
//!   read, so a concurrently refreshed session survives.
//! * **Reads are strongly consistent**, so the request after a write sees it.
//! * **Atomic updates.** The core reads the item, applies the change in
//!   Rust, and writes it back with `PutItem` conditioned on the item being as
//!   read (`version`, expiry) or still absent ([`Backend::write_if`]).
//! * **Transient errors** (throttling, 5xx, dropped connections) are retried
//!   by the SDK with backoff inside `store.timeout`; past it the call fails
//!   with a store error and the gateway answers 503.
//!
//! # Start-up
//!
//! `connect` describes the table once. Answers that mean the configuration
//! is wrong stop the gateway with an error naming the key: a missing table
//! (`store.table`, unless `create_table: true`), a key schema that does not
//! match `hash_key`/`sort_key`, or credentials DynamoDB refuses
//! (`store.aws`). An endpoint that does not answer at all is **not** fatal:
//! the gateway starts, logs a warning, and `/readyz` reports 503 until
//! DynamoDB answers, so a regional blip does not crash-loop a fleet. The
//! exception is `create_table: true`: the table cannot be created without
//! DynamoDB, so then an unreachable endpoint is a start-up error too.

mod client;
pub(crate) mod item;
pub mod node;
mod table;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TableStatus, TransactWriteItem};

use self::client::{error_code, is_conditional_failure, sdk_config, store_error};
use self::item::{
    DATA, EXPIRES_MS, IDENTITY, IDENTITY_INDEX, Item, Layout, Placeholders, VERSION, n,
};
use self::table::StartupError;
use super::StoreSettings;
use super::core::{Backend, Entry, StoreCore, Stored};
use super::identity::Identity;
use super::record::{SessionId, UnixMillis, expiry_seconds};
use crate::config::DynamoConfig;
use crate::error::{Error, Result};

/// The DynamoDB store: the core in front of [`DynamoBackend`].
pub type DynamoStore = StoreCore<DynamoBackend>;

impl DynamoStore {
    /// Builds the client and checks (or creates) the table.
    ///
    /// # Errors
    ///
    /// A configuration error naming the key at fault: an invalid option, a
    /// missing table without `create_table`, a key schema that does not
    /// match, refused credentials, or, with `create_table`, an unreachable
    /// endpoint. An unreachable endpoint otherwise only logs a warning (see
    /// the module docs).
    pub async fn connect(config: &DynamoConfig, settings: &StoreSettings) -> Result<Self> {
        config.validate()?;
        let sdk = sdk_config(config).await;
        let backend = DynamoBackend {
            client: Client::new(&sdk),
            table: config.table.clone(),
            region: sdk.region().map_or_else(String::new, |r| r.to_string()),
            layout: Layout::from_config(config),
            timeout: config.timeout.get(),
            indexed: settings.identity_key.is_some(),
        };
        match backend.check_table(config.create_table).await {
            Ok(()) => {}
            Err(StartupError::Config(error)) => return Err(error),
            Err(StartupError::Unreachable(error)) => {
                backend.unreachable_at_start(config, error)?;
            }
        }
        Ok(StoreCore::new(backend, settings))
    }
}

/// One item per session in one table; see the module docs.
pub struct DynamoBackend {
    client: Client,
    table: String,
    /// For messages: the region the client resolved.
    region: String,
    layout: Layout,
    /// For errors: the SDK's own timeouts derive from it.
    timeout: Duration,
    /// `session.identity_key` is set: the table needs `identity-index`.
    indexed: bool,
}

impl std::fmt::Debug for DynamoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoBackend")
            .field("table", &self.table)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl DynamoBackend {
    /// `TransactWriteItems`: deletes the item under `old` if its condition
    /// holds and puts `item` if its condition holds, both or neither (a
    /// session moving to a new id, in every item layout). `Ok(false)`: a
    /// condition failed.
    pub(crate) async fn move_item(
        &self,
        old: Item,
        (unchanged, unchanged_names): (String, Placeholders),
        item: Item,
        (absent, absent_names): (String, Placeholders),
    ) -> Result<bool> {
        let built = |e| Error::store_unavailable("dynamodb", "regenerate", e);
        let (names, values) = unchanged_names.into_parts();
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(old))
            .condition_expression(unchanged)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(built)?;
        let (names, values) = absent_names.into_parts();
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(absent)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(built)?;
        let moved = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match moved {
            Ok(_) => Ok(true),
            Err(error) if error_code(&error) == Some("TransactionCanceledException") => Ok(false),
            Err(error) => Err(self.failed("TransactWriteItems", error)),
        }
    }

    fn failed<E, R>(&self, operation: &str, error: aws_sdk_dynamodb::error::SdkError<E, R>) -> Error
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        store_error(&self.table, operation, error, self.timeout)
    }

    /// The item under `key`, read strongly consistent so that the request
    /// after a write sees it.
    async fn get(&self, key: Item) -> Result<Option<Item>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map(|output| output.item)
            .map_err(|e| self.failed("GetItem", e))
    }
}

#[async_trait]
impl Backend for DynamoBackend {
    /// The attributes of the item as read, besides its data.
    type Version = Item;

    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Stored<Item>>> {
        let Some(item) = self.get(self.layout.key(id)).await? else {
            return Ok(None);
        };
        let (text, expires_at, version) = self.layout.split(item);
        Ok(Some(Stored {
            text,
            expires_at,
            version,
        }))
    }

    /// A `PutItem` conditioned on the item being as read (same version and
    /// expiry) or still absent.
    async fn write_if(
        &self,
        id: &SessionId,
        expected: Option<&Stored<Item>>,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let text = String::from_utf8(entry.text)
            .map_err(|e| Error::store_unavailable("dynamodb", "encode", e))?;
        let read = expected.map(|stored| &stored.version);
        let key = self.layout.key(id);
        let mut placeholders = Placeholders::default();
        let condition = match read {
            Some(item) => self.layout.unchanged(item, &mut placeholders),
            None => self.layout.absent(&mut placeholders),
        };
        let (names, values) = placeholders.into_parts();
        let item = self.layout.item(
            &key,
            text,
            entry.expires_at,
            Layout::next_version(read),
            entry.identity,
        );
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(error) if is_conditional_failure(&error) => Ok(false),
            Err(error) => Err(self.failed("PutItem", error)),
        }
    }

    /// An `UpdateItem` rather than a `PutItem`: it replaces data and expiry
    /// but increments `version`, so a concurrent compare-and-set that read
    /// the old item cannot succeed against the new one.
    async fn put(&self, id: &SessionId, entry: Entry<'_>) -> Result<()> {
        let text = String::from_utf8(entry.text)
            .map_err(|e| Error::store_unavailable("dynamodb", "encode", e))?;
        let expires_at = entry.expires_at;
        let mut p = Placeholders::default();
        let mut expression = format!(
            "SET {} = {}, {} = {}, {} = {}",
            p.name(DATA),
            p.value(AttributeValue::S(text)),
            p.name(&self.layout.ttl_attribute),
            p.value(n(expiry_seconds(expires_at))),
            p.name(EXPIRES_MS),
            p.value(n(expires_at)),
        );
        if let Some(identity) = entry.identity {
            let name = p.name(IDENTITY);
            let value = p.value(AttributeValue::S(identity.as_str().to_owned()));
            expression.push_str(&format!(", {name} = {value}"));
        }
        expression.push_str(&format!(" ADD {} {}", p.name(VERSION), p.value(n(1))));
        if entry.identity.is_none() {
            expression.push_str(&format!(" REMOVE {}", p.name(IDENTITY)));
        }
        let (names, values) = p.into_parts();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.layout.key(id)))
            .update_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failed("UpdateItem", e))
    }

    /// Moves only the expiry. The condition keeps a missing or already
    /// expired session from being brought back; failing it is success.
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        now: UnixMillis,
        _identity: Option<&Identity>,
    ) -> Result<()> {
        let mut p = Placeholders::default();
        let expression = format!(
            "SET {} = {}, {} = {}",
            p.name(&self.layout.ttl_attribute),
            p.value(n(expiry_seconds(expires_at))),
            p.name(EXPIRES_MS),
            p.value(n(expires_at)),
        );
        let condition = format!(
            "attribute_exists({}) AND {} > {}",
            p.name(&self.layout.hash_key),
            p.name(EXPIRES_MS),
            p.value(n(now)),
        );
        let (names, values) = p.into_parts();
        let touched = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.layout.key(id)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match touched {
            Ok(_) => Ok(()),
            Err(error) if is_conditional_failure(&error) => Ok(()),
            Err(error) => Err(self.failed("UpdateItem", error)),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.layout.key(id)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failed("DeleteItem", e))
    }

    /// Deletes an expired item unless it changed since it was read.
    async fn delete_if(&self, id: &SessionId, expected: &Stored<Item>) -> Result<()> {
        let mut placeholders = Placeholders::default();
        let condition = self.layout.unchanged(&expected.version, &mut placeholders);
        let (names, values) = placeholders.into_parts();
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.layout.key(id)))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error) if is_conditional_failure(&error) => Ok(()),
            Err(error) => Err(self.failed("DeleteItem", error)),
        }
    }

    /// `TransactWriteItems`: the old item deleted on condition that it is
    /// unchanged, the new one put on condition that it is absent; both or
    /// neither.
    async fn move_if(
        &self,
        old: &SessionId,
        expected: &Stored<Item>,
        new: &SessionId,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let text = String::from_utf8(entry.text)
            .map_err(|e| Error::store_unavailable("dynamodb", "encode", e))?;
        let mut unchanged = Placeholders::default();
        let unchanged = (
            self.layout.unchanged(&expected.version, &mut unchanged),
            unchanged,
        );
        let mut absent = Placeholders::default();
        let absent = (self.layout.absent(&mut absent), absent);
        let key = self.layout.key(new);
        let item = self
            .layout
            .item(&key, text, entry.expires_at, 1, entry.identity);
        self.move_item(self.layout.key(old), unchanged, item, absent)
            .await
    }

    /// A `Query` of `identity-index`, every page.
    async fn indexed(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let mut p = Placeholders::default();
            let condition = format!(
                "{} = {}",
                p.name(IDENTITY),
                p.value(AttributeValue::S(identity.as_str().to_owned()))
            );
            let (names, values) = p.into_parts();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(IDENTITY_INDEX)
                .key_condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.failed("Query", e))?;
            ids.extend(
                page.items()
                    .iter()
                    .filter_map(|item| self.layout.id_of(item)),
            );
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(ids),
            }
        }
    }

    /// Ready when the table is ACTIVE (or UPDATING, which still serves) and
    /// answers a strongly consistent read with this gateway's credentials.
    /// Writes are not tried: a probe write would cost capacity on every
    /// readiness check, and a missing write permission shows on the first
    /// update as a 503 with DynamoDB's reason in the log.
    async fn ping(&self) -> Result<()> {
        let output = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.failed("DescribeTable", e))?;
        match output.table().and_then(|t| t.table_status()) {
            Some(TableStatus::Active | TableStatus::Updating) => {}
            status => {
                return Err(Error::store_unavailable(
                    "dynamodb",
                    "ping",
                    format!("table `{}` is not active (status {status:?})", self.table),
                ));
            }
        }
        let probe = SessionId::from_trusted("readyz-probe");
        self.get(self.layout.key(&probe)).await.map(|_| ())
    }
}
