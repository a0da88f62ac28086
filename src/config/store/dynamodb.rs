//! `store: {type: dynamodb}`: one DynamoDB table.

use std::fmt;

use serde::Deserialize;

use crate::config::ConfigDuration;
use crate::error::Error;

/// Attribute names the item layout uses itself; the configured keys must
/// differ (see `store::dynamodb::item`).
pub const RESERVED_ATTRIBUTES: [&str; 3] = ["data", "version", "expires_ms"];

/// `store: {type: dynamodb}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoConfig {
    /// The table name.
    pub table: String,
    /// Put in front of every session id in the key.
    pub prefix: String,
    /// The table's hash key attribute.
    pub hash_key: String,
    /// The table's sort key attribute, if it has one (it gets the same value).
    pub sort_key: Option<String>,
    /// The attribute native TTL reads (epoch seconds).
    pub ttl_attribute: String,
    /// Create the table at start-up when it is missing.
    pub create_table: bool,
    /// Region, endpoint and credentials.
    pub aws: AwsConfig,
    /// Bound on each operation, SDK retries included.
    pub timeout: ConfigDuration,
    /// Whose item layout: the gateway's, or a Node session store's
    /// (`session.compat: express-session`).
    pub layout: DynamoLayout,
}

/// `store.layout`: whose items the table holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DynamoLayout {
    /// The gateway's own: `data`, `version`, `expires_ms` (see the README).
    #[default]
    Native,
    /// connect-dynamodb's: `sess` a JSON string, `expires` epoch seconds,
    /// `type` `connect-session`, under `hash_key` = `prefix` + id.
    ConnectDynamodb,
    /// @cyclic.sh/session-store's: `pk` = `sk` = `session-store#` + id,
    /// `sess` a native map, `expires` whole epoch seconds.
    Cyclic,
}

/// Where and as whom to reach DynamoDB. Empty strings (an unset `${VAR:-}`)
/// count as absent.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// The AWS region; `AWS_REGION` otherwise.
    pub region: Option<String>,
    /// Another endpoint (DynamoDB Local, moto).
    pub endpoint: Option<String>,
    /// Static credentials; the default chain otherwise.
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`; never logged.
    pub secret_access_key: Option<String>,
}

/// The secret key must never reach a log line, even through `{:?}`.
impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &given(&self.secret_access_key).map(|_| "<redacted>"),
            )
            .finish()
    }
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
            layout: DynamoLayout::Native,
        }
    }
}

/// A configured string that is present and not empty.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

impl DynamoConfig {
    /// Checks what can be checked without reaching DynamoDB.
    ///
    /// # Errors
    ///
    /// A [`Error`] naming the offending `store.*` key.
    pub fn validate(&self) -> Result<(), Error> {
        validate_table_name(&self.table)?;
        self.validate_attributes()?;
        self.aws.validate()?;
        if self.timeout.get().is_zero() {
            return Err(Error::config("store.timeout", "must be longer than 0s"));
        }
        if self.layout == DynamoLayout::ConnectDynamodb && self.sort_key.is_some() {
            return Err(Error::config(
                "store.sort_key",
                "connect-dynamodb's tables have a hash key only: remove store.sort_key with layout: connect-dynamodb",
            ));
        }
        Ok(())
    }

    /// Key and TTL attribute names: present, distinct, and not one the item
    /// layout uses for itself.
    fn validate_attributes(&self) -> Result<(), Error> {
        let mut seen: Vec<&str> = RESERVED_ATTRIBUTES.to_vec();
        let named = [
            ("store.hash_key", Some(self.hash_key.as_str())),
            ("store.sort_key", self.sort_key.as_deref()),
            ("store.ttl_attribute", Some(self.ttl_attribute.as_str())),
        ];
        for (key, name) in named {
            let Some(name) = name else { continue };
            if name.is_empty() {
                return Err(Error::config(key, "must not be empty"));
            }
            if seen.contains(&name) {
                return Err(Error::config(
                    key,
                    format!(
                        "`{name}` is already used by the item layout (data, version, expires_ms or another key)"
                    ),
                ));
            }
            seen.push(name);
        }
        Ok(())
    }
}

/// DynamoDB's table name rules: 3 to 255 of `a-z A-Z 0-9 _ - .`.
fn validate_table_name(table: &str) -> Result<(), Error> {
    let valid_chars = table
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if (3..=255).contains(&table.len()) && valid_chars {
        Ok(())
    } else {
        Err(Error::config(
            "store.table",
            format!("`{table}` is not a DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ - .)"),
        ))
    }
}

impl AwsConfig {
    fn validate(&self) -> Result<(), Error> {
        match (given(&self.access_key_id), given(&self.secret_access_key)) {
            (Some(_), None) => {
                return Err(Error::config(
                    "store.aws.secret_access_key",
                    "is required when store.aws.access_key_id is set",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "store.aws.access_key_id",
                    "is required when store.aws.secret_access_key is set",
                ));
            }
            _ => {}
        }
        match given(&self.endpoint) {
            Some(endpoint) if !is_http_url(endpoint) => Err(Error::config(
                "store.aws.endpoint",
                format!("`{endpoint}` must be an http:// or https:// URL with a host"),
            )),
            _ => Ok(()),
        }
    }
}

fn is_http_url(text: &str) -> bool {
    text.parse::<http::Uri>()
        .is_ok_and(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DynamoConfig {
        DynamoConfig::default()
    }

    fn error_of(config: &DynamoConfig) -> String {
        match config.validate() {
            Ok(()) => panic!("{config:?} should be refused"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn refuses_empty_names_and_says_which_key() {
        let mut config = valid();
        config.table = String::new();
        assert!(error_of(&config).starts_with("store.table:"));
        let mut config = valid();
        config.hash_key = String::new();
        assert!(error_of(&config).starts_with("store.hash_key:"));
        let mut config = valid();
        config.ttl_attribute = String::new();
        assert!(error_of(&config).starts_with("store.ttl_attribute:"));
        let mut config = valid();
        config.sort_key = Some(String::new());
        assert!(error_of(&config).starts_with("store.sort_key:"));
    }

    #[test]
    fn refuses_attribute_names_the_layout_uses() {
        let mut config = valid();
        config.ttl_attribute = "data".into();
        assert!(error_of(&config).starts_with("store.ttl_attribute:"));
        let mut config = valid();
        config.sort_key = Some("id".into());
        assert!(error_of(&config).starts_with("store.sort_key:"));
    }

    #[test]
    fn credentials_come_in_pairs() {
        let mut config = valid();
        config.aws.access_key_id = Some("AKIA".into());
        assert!(error_of(&config).starts_with("store.aws.secret_access_key:"));
        let mut config = valid();
        config.aws.secret_access_key = Some("s3cret".into());
        assert!(error_of(&config).starts_with("store.aws.access_key_id:"));
        config.aws.access_key_id = Some("AKIA".into());
        config.validate().unwrap();
        config.aws.access_key_id = Some(String::new());
        assert!(error_of(&config).starts_with("store.aws.access_key_id:"));
    }

    #[test]
    fn endpoint_must_be_an_http_url() {
        let mut config = valid();
        for bad in ["127.0.0.1:8000", "ftp://host", "http://", "not a url"] {
            config.aws.endpoint = Some(bad.into());
            assert!(
                error_of(&config).starts_with("store.aws.endpoint:"),
                "{bad}"
            );
        }
        for good in [
            "http://127.0.0.1:8000",
            "https://dynamodb.eu-west-1.amazonaws.com",
        ] {
            config.aws.endpoint = Some(good.into());
            config.validate().unwrap();
        }
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let mut config = valid();
        config.aws.access_key_id = Some("AKIA".into());
        config.aws.secret_access_key = Some("very-secret".into());
        assert!(!format!("{config:?}").contains("very-secret"));
    }
}
