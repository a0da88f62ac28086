//! The item layout: which attribute holds what, the primary key, and the
//! condition expressions the compare-and-set writes use.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType};

use crate::config::DynamoConfig;
use crate::store::identity::Identity;
use crate::store::record::{SessionId, UnixMillis, expiry_seconds};

/// Attribute holding the codec's blob.
pub const DATA: &str = "data";
/// Attribute holding the compare-and-set version.
pub const VERSION: &str = "version";
/// Attribute holding the expiry in milliseconds (the TTL attribute only has
/// seconds).
pub const EXPIRES_MS: &str = "expires_ms";
/// The identity index's attribute: the SHA-256 of the identity (see
/// `store::identity`), only on sessions that have one.
pub const IDENTITY: &str = "identity";
/// The global secondary index on [`IDENTITY`].
pub const IDENTITY_INDEX: &str = "identity-index";

/// One DynamoDB item, as the SDK represents it.
pub type Item = HashMap<String, AttributeValue>;

/// A numeric attribute as an unsigned integer (how this store writes them).
fn number(item: &Item, attribute: &str) -> Option<u64> {
    item.get(attribute)?.as_n().ok()?.parse().ok()
}

pub fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Where a session lives in the table: which attributes hold what.
#[derive(Debug, Clone)]
pub struct Layout {
    pub prefix: String,
    pub hash_key: String,
    pub sort_key: Option<String>,
    pub ttl_attribute: String,
}

impl Layout {
    pub fn from_config(config: &DynamoConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
            hash_key: config.hash_key.clone(),
            sort_key: config.sort_key.clone(),
            ttl_attribute: config.ttl_attribute.clone(),
        }
    }

    /// The session id an item's hash key holds, if it is one of ours.
    pub fn id_of(&self, item: &Item) -> Option<SessionId> {
        match item.get(&self.hash_key) {
            Some(AttributeValue::S(value)) => value
                .strip_prefix(self.prefix.as_str())
                .map(SessionId::from_trusted),
            _ => None,
        }
    }

    /// The table's key attributes, for `CreateTable`.
    pub fn key_attributes(&self) -> Vec<(&str, KeyType)> {
        let mut keys = vec![(self.hash_key.as_str(), KeyType::Hash)];
        if let Some(sort_key) = &self.sort_key {
            keys.push((sort_key.as_str(), KeyType::Range));
        }
        keys
    }

    /// The primary key of a session's item: `prefix + id`, in the sort key
    /// too when the table has one.
    pub fn key(&self, id: &SessionId) -> Item {
        let value = AttributeValue::S(format!("{}{}", self.prefix, id.as_str()));
        let mut key = Item::new();
        if let Some(sort_key) = &self.sort_key {
            key.insert(sort_key.clone(), value.clone());
        }
        key.insert(self.hash_key.clone(), value);
        key
    }

    /// The whole item for the codec's `text` at `version`.
    pub fn item(
        &self,
        key: &Item,
        text: String,
        expires_at: UnixMillis,
        version: u64,
        identity: Option<&Identity>,
    ) -> Item {
        let mut item = key.clone();
        if let Some(identity) = identity {
            item.insert(
                IDENTITY.into(),
                AttributeValue::S(identity.as_str().to_owned()),
            );
        }
        item.insert(DATA.into(), AttributeValue::S(text));
        item.insert(VERSION.into(), n(version));
        item.insert(self.ttl_attribute.clone(), n(expiry_seconds(expires_at)));
        item.insert(EXPIRES_MS.into(), n(expires_at));
        item
    }

    /// Splits a read item into the stored text and what is left (the key,
    /// version and expiry attributes that the compare-and-set checks).
    /// The expiry comes from `expires_ms`, or from the TTL attribute for
    /// items written without it.
    pub fn split(&self, mut item: Item) -> (Vec<u8>, Option<UnixMillis>, Item) {
        let text = match item.remove(DATA) {
            Some(AttributeValue::S(text)) => text.into_bytes(),
            _ => Vec::new(),
        };
        let expires_at = number(&item, EXPIRES_MS)
            .or_else(|| number(&item, &self.ttl_attribute).map(|s| s.saturating_mul(1000)));
        (text, expires_at, item)
    }

    /// The version a write after `item` gets.
    pub fn next_version(item: Option<&Item>) -> u64 {
        item.and_then(|item| number(item, VERSION)).unwrap_or(0) + 1
    }

    /// A condition that holds while the item is as it was read: same
    /// version and expiry. Used by the compare-and-set write and by the
    /// clean-up of expired items.
    pub fn unchanged(&self, item: &Item, placeholders: &mut Placeholders) -> String {
        let checks: Vec<String> = [VERSION, self.ttl_attribute.as_str(), EXPIRES_MS]
            .into_iter()
            .filter_map(|attribute| {
                let value = item.get(attribute)?.clone();
                Some(format!(
                    "{} = {}",
                    placeholders.name(attribute),
                    placeholders.value(value)
                ))
            })
            .collect();
        if checks.is_empty() {
            format!("attribute_exists({})", placeholders.name(&self.hash_key))
        } else {
            checks.join(" AND ")
        }
    }

    /// A condition that holds while there is no item under the key.
    pub fn absent(&self, placeholders: &mut Placeholders) -> String {
        format!(
            "attribute_not_exists({})",
            placeholders.name(&self.hash_key)
        )
    }
}

/// Expression attribute names and values for one request. Every attribute
/// goes through a placeholder: `data` is a DynamoDB reserved word, and the
/// operator chooses the other names.
#[derive(Default)]
pub struct Placeholders {
    names: Names,
    values: Values,
}

/// Expression attribute names: placeholder to attribute name.
type Names = HashMap<String, String>;
/// Expression attribute values: placeholder to value.
type Values = HashMap<String, AttributeValue>;

impl Placeholders {
    pub fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The maps for the request; DynamoDB refuses empty ones, hence `None`.
    pub fn into_parts(self) -> (Option<Names>, Option<Values>) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DynamoConfig {
        DynamoConfig::default()
    }

    #[test]
    fn items_round_trip_through_the_layout() {
        let mut config = valid();
        config.sort_key = Some("sk".into());
        let layout = Layout::from_config(&config);
        let id = SessionId::from_trusted("abc");
        let text = r#"{"v":1,"created":5,"data":{"k":[1,{}]}}"#;
        let item = layout.item(&layout.key(&id), text.into(), 1_234_567, 7, None);
        assert_eq!(item["id"], AttributeValue::S("sess:abc".into()));
        assert_eq!(item["sk"], AttributeValue::S("sess:abc".into()));
        assert_eq!(item["expires"], n(1_235));
        assert_eq!(item["version"], n(7));
        assert_eq!(Layout::next_version(Some(&item)), 8);
        let (read, expires_at, rest) = layout.split(item);
        assert_eq!(read, text.as_bytes());
        assert_eq!(expires_at, Some(1_234_567));
        assert!(!rest.contains_key(DATA));
    }

    #[test]
    fn placeholders_are_reused_per_attribute() {
        let mut p = Placeholders::default();
        assert_eq!(p.name("data"), p.name("data"));
        assert_ne!(p.name("data"), p.name("version"));
        assert_eq!(Placeholders::default().into_parts(), (None, None));
    }
}
