//! Node session stores' item layouts (`store.layout`), for
//! `session.compat: express-session`: the gateway reads and writes the very
//! items connect-dynamodb or @cyclic.sh/session-store do.
//!
//! | layout | key | `sess` | `expires` | other |
//! |---|---|---|---|---|
//! | `connect-dynamodb` | `hash_key` (`id`) = `prefix` (`sess:`) + id | S: the JSON | N: epoch seconds (fractional read) | `type` = `connect-session` |
//! | `cyclic` | `pk` = `sk` = `session-store#` + id | M: the JSON as a native map | N: whole epoch seconds | |
//!
//! Neither layout has a version attribute, so the compare-and-set is on
//! what was read: `sess` and `expires` must still be equal (for a map,
//! DynamoDB compares the whole map). A Node app's own saves stay
//! last-writer-wins, as they always were; the gateway's never lose a
//! concurrent update. The expiry is kept in whole seconds, as both
//! libraries write it. A map has no key order, so with `cyclic` the
//! session's keys come back sorted.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

use super::client::{is_conditional_failure, sdk_config};
use super::item::{IDENTITY, Item, Layout, Placeholders};
use super::table::StartupError;
use super::{DynamoBackend, StoreSettings};
use crate::config::{DynamoConfig, DynamoLayout};
use crate::error::{Error, Result};
use crate::store::core::{Backend, Entry, StoreCore, Stored};
use crate::store::identity::Identity;
use crate::store::record::{SessionId, UnixMillis, expiry_seconds, now_millis};

/// The session attribute of both layouts.
const SESS: &str = "sess";
/// The expiry attribute of both layouts (epoch seconds).
const EXPIRES: &str = "expires";
/// connect-dynamodb's marker attribute and its value.
const TYPE: (&str, &str) = ("type", "connect-session");
/// @cyclic.sh/session-store's fixed key attributes and prefix.
const CYCLIC_KEYS: (&str, &str, &str) = ("pk", "sk", "session-store#");
/// @cyclic.sh/session-store's write time inside `sess`.
const UPDATED: &str = "updated";

/// A Node store's layout in front of the shared DynamoDB client.
pub type NodeDynamoStore = StoreCore<NodeBackend>;

/// Which Node store wrote the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    ConnectDynamodb,
    Cyclic,
}

/// Reads and writes a Node store's items; see the module docs.
#[derive(Debug)]
pub struct NodeBackend {
    inner: DynamoBackend,
    format: Format,
}

/// Builds the client and checks (or creates) the table, as the native
/// layout does (see [`super::DynamoStore::connect`]).
///
/// # Errors
///
/// A configuration error naming the key at fault.
pub async fn connect(config: &DynamoConfig, settings: &StoreSettings) -> Result<NodeDynamoStore> {
    config.validate()?;
    let format = match config.layout {
        DynamoLayout::Cyclic => Format::Cyclic,
        _ => Format::ConnectDynamodb,
    };
    let mut layout = Layout::from_config(config);
    layout.ttl_attribute = EXPIRES.into();
    if format == Format::Cyclic {
        let (pk, sk, prefix) = CYCLIC_KEYS;
        layout.hash_key = pk.into();
        layout.sort_key = Some(sk.into());
        layout.prefix = prefix.into();
    }
    let sdk = sdk_config(config).await;
    let inner = DynamoBackend {
        client: Client::new(&sdk),
        table: config.table.clone(),
        region: sdk.region().map_or_else(String::new, |r| r.to_string()),
        layout,
        timeout: config.timeout.get(),
        indexed: settings.identity_key.is_some(),
    };
    match inner.check_table(config.create_table).await {
        Ok(()) => {}
        Err(StartupError::Config(error)) => return Err(error),
        Err(StartupError::Unreachable(error)) => inner.unreachable_at_start(config, error)?,
    }
    Ok(StoreCore::new(NodeBackend { inner, format }, settings))
}

impl NodeBackend {
    /// The whole item for an entry. With `session.identity_key` the
    /// gateway adds the identity index's attribute, which the Node
    /// libraries ignore (and drop when they save the session themselves).
    fn item(&self, id: &SessionId, entry: Entry<'_>) -> Result<Item> {
        let Entry {
            text,
            expires_at,
            identity,
        } = entry;
        let mut item = self.inner.layout.key(id);
        item.insert(EXPIRES.into(), seconds(expires_at));
        if let Some(identity) = identity {
            item.insert(
                IDENTITY.into(),
                AttributeValue::S(identity.as_str().to_owned()),
            );
        }
        let sess = match self.format {
            Format::ConnectDynamodb => {
                item.insert(TYPE.0.into(), AttributeValue::S(TYPE.1.into()));
                AttributeValue::S(
                    String::from_utf8(text)
                        .map_err(|e| Error::store_unavailable("dynamodb", "encode", e))?,
                )
            }
            Format::Cyclic => {
                let value: Value = serde_json::from_slice(&text)
                    .map_err(|e| Error::store_unavailable("dynamodb", "encode", e))?;
                to_attribute(value)
            }
        };
        item.insert(SESS.into(), sess);
        Ok(item)
    }

    /// A condition that holds while the item is as read: same `sess` and
    /// `expires` (absent ones must still be absent).
    fn unchanged(&self, read: &Item, p: &mut Placeholders) -> String {
        [SESS, EXPIRES]
            .into_iter()
            .map(|attribute| match read.get(attribute) {
                Some(value) => format!("{} = {}", p.name(attribute), p.value(value.clone())),
                None => format!("attribute_not_exists({})", p.name(attribute)),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn absent(&self, p: &mut Placeholders) -> String {
        self.inner.layout.absent(p)
    }

    /// A `PutItem` of `item` on `condition`; `Ok(false)` when it failed.
    async fn put_if(&self, item: Item, condition: String, p: Placeholders) -> Result<bool> {
        let (names, values) = p.into_parts();
        let written = self
            .inner
            .client
            .put_item()
            .table_name(&self.inner.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(error) if is_conditional_failure(&error) => Ok(false),
            Err(error) => Err(self.inner.failed("PutItem", error)),
        }
    }
}

#[async_trait]
impl Backend for NodeBackend {
    /// The item as read.
    type Version = Item;

    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn expiry_precision_ms(&self) -> u64 {
        1_000
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Stored<Item>>> {
        let Some(item) = self.inner.get(self.inner.layout.key(id)).await? else {
            return Ok(None);
        };
        let text = match item.get(SESS) {
            Some(AttributeValue::S(text)) => text.clone().into_bytes(),
            Some(AttributeValue::M(_)) if self.format == Format::Cyclic => item
                .get(SESS)
                .map(|sess| from_attribute(sess).to_string().into_bytes())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let expires_at = item
            .get(EXPIRES)
            .and_then(|value| value.as_n().ok())
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(|secs| (secs * 1_000.0).round() as UnixMillis);
        Ok(Some(Stored {
            text,
            expires_at,
            version: item,
        }))
    }

    async fn write_if(
        &self,
        id: &SessionId,
        expected: Option<&Stored<Item>>,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let item = self.item(id, entry)?;
        let mut p = Placeholders::default();
        let condition = match expected {
            Some(stored) => self.unchanged(&stored.version, &mut p),
            None => self.absent(&mut p),
        };
        self.put_if(item, condition, p).await
    }

    async fn put(&self, id: &SessionId, entry: Entry<'_>) -> Result<()> {
        let item = self.item(id, entry)?;
        self.inner
            .client
            .put_item()
            .table_name(&self.inner.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.inner.failed("PutItem", e))
    }

    /// Moves `expires` only (and, for Cyclic, `sess.updated`, as its own
    /// touch does); never revives a missing or expired item.
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        now: UnixMillis,
        _identity: Option<&Identity>,
    ) -> Result<()> {
        let mut p = Placeholders::default();
        let mut expression = format!("SET {} = {}", p.name(EXPIRES), p.value(seconds(expires_at)));
        if self.format == Format::Cyclic {
            expression.push_str(&format!(
                ", {}.{} = {}",
                p.name(SESS),
                p.name(UPDATED),
                p.value(AttributeValue::N(now_millis().to_string()))
            ));
        }
        let condition = format!(
            "attribute_exists({}) AND {} > {}",
            p.name(&self.inner.layout.hash_key),
            p.name(EXPIRES),
            p.value(AttributeValue::N((now / 1_000).to_string())),
        );
        let (names, values) = p.into_parts();
        let touched = self
            .inner
            .client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(self.inner.layout.key(id)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match touched {
            Ok(_) => Ok(()),
            Err(error) if is_conditional_failure(&error) => Ok(()),
            Err(error) => Err(self.inner.failed("UpdateItem", error)),
        }
    }

    /// The same global secondary index as the native layout: it lists the
    /// sessions the gateway wrote last (a Node app's own saves drop the
    /// attribute); the core checks each before acting on it.
    async fn indexed(&self, identity: &Identity) -> Result<Vec<SessionId>> {
        self.inner.indexed(identity).await
    }

    async fn delete(&self, id: &SessionId) -> Result<()> {
        self.inner.delete(id).await
    }

    async fn delete_if(&self, id: &SessionId, expected: &Stored<Item>) -> Result<()> {
        let mut p = Placeholders::default();
        let condition = self.unchanged(&expected.version, &mut p);
        let (names, values) = p.into_parts();
        let deleted = self
            .inner
            .client
            .delete_item()
            .table_name(&self.inner.table)
            .set_key(Some(self.inner.layout.key(id)))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error) if is_conditional_failure(&error) => Ok(()),
            Err(error) => Err(self.inner.failed("DeleteItem", error)),
        }
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    /// `TransactWriteItems`: the old item deleted if unchanged, the new one
    /// put if absent; both or neither.
    async fn move_if(
        &self,
        old: &SessionId,
        expected: &Stored<Item>,
        new: &SessionId,
        entry: Entry<'_>,
    ) -> Result<bool> {
        let mut unchanged = Placeholders::default();
        let unchanged = (self.unchanged(&expected.version, &mut unchanged), unchanged);
        let mut absent = Placeholders::default();
        let absent = (self.absent(&mut absent), absent);
        let item = self.item(new, entry)?;
        self.inner
            .move_item(self.inner.layout.key(old), unchanged, item, absent)
            .await
    }
}

/// Whole epoch seconds, rounded up, as a number attribute.
fn seconds(expires_at: UnixMillis) -> AttributeValue {
    AttributeValue::N(expiry_seconds(expires_at).to_string())
}

/// JSON as DynamoDB's native types (what `@aws-sdk/util-dynamodb`'s
/// `marshall` makes of it).
fn to_attribute(value: Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(flag) => AttributeValue::Bool(flag),
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text),
        Value::Array(items) => AttributeValue::L(items.into_iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .map(|(key, value)| (key, to_attribute(value)))
                .collect(),
        ),
    }
}

/// A native attribute as JSON; map keys sorted, so the text is stable.
/// Sets become arrays and binaries base64 strings (neither is written by
/// express-session).
fn from_attribute(value: &AttributeValue) -> Value {
    use base64::Engine as _;
    let number = |n: &str| {
        serde_json::from_str::<Number>(n)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(n.to_owned()))
    };
    match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(flag) => Value::Bool(*flag),
        AttributeValue::N(n) => number(n),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::M(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|key| (key.clone(), from_attribute(&map[key])))
                    .collect::<Map<String, Value>>(),
            )
        }
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        AttributeValue::B(blob) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_native_maps_convert_both_ways() {
        let value: Value = serde_json::from_str(
            r#"{"cookie":{"expires":{},"httpOnly":true,"originalMaxAge":86400000},"n":[1,2.5,null,"x"],"user":"ada"}"#,
        )
        .unwrap();
        let attribute = to_attribute(value.clone());
        assert_eq!(from_attribute(&attribute), value);
        let AttributeValue::M(map) = &attribute else {
            panic!("an object is a map")
        };
        assert_eq!(map["user"], AttributeValue::S("ada".into()));
        assert_eq!(
            from_attribute(&AttributeValue::N("12345678901234567890123".into())).to_string(),
            "12345678901234567890123"
        );
    }
}
