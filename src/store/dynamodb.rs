//! DynamoDB store: one item per session.
//!
//! # Item layout
//!
//! | attribute | type | holds |
//! |---|---|---|
//! | `hash_key` (default `id`) | S | `prefix + session id` |
//! | `sort_key` (when set) | S | the same value as the hash key |
//! | `data` | S | the [`NativeCodec`] blob: `{"v":1,"created":<ms>,"data":{...}}` |
//! | `version` | N | incremented by every write of the data; the compare-and-set guard |
//! | `ttl_attribute` (default `expires`) | N | expiry in epoch **seconds**, rounded up: usable as the table's native TTL |
//! | `expires_ms` | N | the same expiry in epoch milliseconds, so `load` returns it exactly |
//!
//! # Behaviour
//!
//! * **Expiry on read.** DynamoDB's native TTL deletes up to two days late
//!   (and local DynamoDB or moto never do), so every read checks the expiry
//!   itself. With `keep_expired: false` an expired item found on read is
//!   deleted, conditionally on it being unchanged since the read, so a
//!   concurrently refreshed session survives.
//! * **Reads are strongly consistent**, so the request after a write sees it.
//! * **Atomic updates.** `update` reads the item, applies the change in Rust,
//!   and writes it back with `PutItem` conditioned on the item being as read
//!   (`version`, expiry) or still absent; a lost race is retried by
//!   [`retry_update`].
//! * **Transient errors** (throttling, 5xx, dropped connections) are retried
//!   by the SDK with backoff inside `store.timeout`; past it the call fails
//!   with a [`StoreError`] and the gateway answers 503.
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

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use serde::Deserialize;

use super::record::{NativeCodec, RecordCodec};
use super::turns::{Applied, Lead, Ticket, UpdateTurns};
use super::{
    Change, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis, now_millis,
    retry_update,
};
use crate::config::{ConfigDuration, ConfigError};

/// The region used when neither the configuration nor `AWS_REGION` /
/// `AWS_DEFAULT_REGION` names one.
const DEFAULT_REGION: &str = "eu-central-1";

/// Attribute holding the codec's blob.
const DATA: &str = "data";
/// Attribute holding the compare-and-set version.
const VERSION: &str = "version";
/// Attribute holding the expiry in milliseconds (the TTL attribute only has
/// seconds).
const EXPIRES_MS: &str = "expires_ms";
/// Attribute names the layout uses itself; the configured keys must differ.
const RESERVED: [&str; 3] = [DATA, VERSION, EXPIRES_MS];

/// Rounds of read-compute-write before an update gives up as contended. High
/// enough that 40 writers racing on one session all get through; the store
/// timeout bounds the whole loop anyway.
const UPDATE_ATTEMPTS: u32 = 100;
/// SDK attempts per request (the first one included) for throttling and
/// transient errors.
const SDK_ATTEMPTS: u32 = 3;
/// How long `create_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(60);

/// One DynamoDB item, as the SDK represents it.
type Item = HashMap<String, AttributeValue>;

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

/// Where and as whom to reach DynamoDB. Empty strings (an unset `${VAR:-}`)
/// count as absent.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
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
        }
    }
}

/// A configured string that is present and not empty.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

impl DynamoConfig {
    /// Checks what can be checked without reaching DynamoDB.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the offending `store.*` key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_table_name(&self.table)?;
        self.validate_attributes()?;
        self.aws.validate()?;
        if self.timeout.get().is_zero() {
            return Err(ConfigError::at("store.timeout", "must be longer than 0s"));
        }
        Ok(())
    }

    /// Key and TTL attribute names: present, distinct, and not one the item
    /// layout uses for itself.
    fn validate_attributes(&self) -> Result<(), ConfigError> {
        let mut seen: Vec<&str> = RESERVED.to_vec();
        let named = [
            ("store.hash_key", Some(self.hash_key.as_str())),
            ("store.sort_key", self.sort_key.as_deref()),
            ("store.ttl_attribute", Some(self.ttl_attribute.as_str())),
        ];
        for (key, name) in named {
            let Some(name) = name else { continue };
            if name.is_empty() {
                return Err(ConfigError::at(key, "must not be empty"));
            }
            if seen.contains(&name) {
                return Err(ConfigError::at(
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
fn validate_table_name(table: &str) -> Result<(), ConfigError> {
    let valid_chars = table
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if (3..=255).contains(&table.len()) && valid_chars {
        Ok(())
    } else {
        Err(ConfigError::at(
            "store.table",
            format!("`{table}` is not a DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ - .)"),
        ))
    }
}

impl AwsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match (given(&self.access_key_id), given(&self.secret_access_key)) {
            (Some(_), None) => {
                return Err(ConfigError::at(
                    "store.aws.secret_access_key",
                    "is required when store.aws.access_key_id is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::at(
                    "store.aws.access_key_id",
                    "is required when store.aws.secret_access_key is set",
                ));
            }
            _ => {}
        }
        match given(&self.endpoint) {
            Some(endpoint) if !is_http_url(endpoint) => Err(ConfigError::at(
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

/// The session store backed by one DynamoDB table. See the module docs.
pub struct DynamoStore {
    client: Client,
    table: String,
    /// For messages: the region the client resolved.
    region: String,
    layout: Layout,
    keep_expired: bool,
    create_table: bool,
    timeout: Duration,
    codec: NativeCodec,
    turns: UpdateTurns,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why the start-up table check did not pass.
enum StartupError {
    /// DynamoDB answered, and the answer means the configuration is wrong.
    Config(ConfigError),
    /// DynamoDB did not answer.
    Unreachable(StoreError),
}

impl DynamoStore {
    /// Builds the client and checks (or creates) the table.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key at fault: an invalid option, a
    /// missing table without `create_table`, a key schema that does not
    /// match, refused credentials, or, with `create_table`, an unreachable
    /// endpoint. An unreachable endpoint otherwise only logs a warning (see
    /// the module docs).
    pub async fn connect(config: &DynamoConfig, keep_expired: bool) -> Result<Self, ConfigError> {
        config.validate()?;
        let sdk = sdk_config(config).await;
        let store = Self {
            client: Client::new(&sdk),
            table: config.table.clone(),
            region: sdk.region().map_or_else(String::new, |r| r.to_string()),
            layout: Layout::from_config(config),
            keep_expired,
            create_table: config.create_table,
            timeout: config.timeout.get(),
            codec: NativeCodec,
            turns: UpdateTurns::new(),
        };
        match store.check_table().await {
            Ok(()) => Ok(store),
            Err(StartupError::Config(error)) => Err(error),
            Err(StartupError::Unreachable(error)) => store.unreachable_at_start(config, error),
        }
    }

    /// Decides what an unreachable DynamoDB at start-up means (module docs).
    fn unreachable_at_start(
        self,
        config: &DynamoConfig,
        error: StoreError,
    ) -> Result<Self, ConfigError> {
        let key = if given(&config.aws.endpoint).is_some() {
            "store.aws.endpoint"
        } else {
            "store.aws.region"
        };
        if self.create_table {
            return Err(ConfigError::at(
                key,
                format!("cannot create table `{}`: {error}", self.table),
            ));
        }
        tracing::warn!(
            store = "dynamodb",
            table = %self.table,
            region = %self.region,
            %error,
            "DynamoDB could not be used at start-up (unreachable, or no credentials found); starting anyway, /readyz reports 503 until it answers"
        );
        Ok(self)
    }

    /// The start-up check: the table exists (or is created) and has the
    /// configured keys.
    async fn check_table(&self) -> Result<(), StartupError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(output) => {
                self.check_key_schema(output.table())
                    .map_err(StartupError::Config)?;
                self.warn_without_native_ttl().await;
                Ok(())
            }
            Err(error) if error_code(&error) == Some("ResourceNotFoundException") => {
                self.create_missing_table().await
            }
            Err(error) if is_refusal(&error) => Err(StartupError::Config(ConfigError::at(
                "store.aws",
                format!(
                    "DynamoDB refused the credentials for table `{}`: {}",
                    self.table,
                    DisplayErrorContext(&error)
                ),
            ))),
            Err(error) => Err(StartupError::Unreachable(
                self.store_error("DescribeTable", error),
            )),
        }
    }

    /// An existing table must have the keys the configuration names, or
    /// every write would fail later with a less helpful message.
    fn check_key_schema(&self, table: Option<&TableDescription>) -> Result<(), ConfigError> {
        let Some(table) = table else { return Ok(()) };
        let key_named = |kind: KeyType| {
            table
                .key_schema()
                .iter()
                .find(|k| *k.key_type() == kind)
                .map(|k| k.attribute_name())
        };
        let hash = key_named(KeyType::Hash);
        if hash != Some(self.layout.hash_key.as_str()) {
            return Err(ConfigError::at(
                "store.hash_key",
                format!(
                    "table `{}` has hash key {}, not `{}`",
                    self.table,
                    hash.unwrap_or("(none)"),
                    self.layout.hash_key
                ),
            ));
        }
        let range = key_named(KeyType::Range);
        if range != self.layout.sort_key.as_deref() {
            return Err(ConfigError::at(
                "store.sort_key",
                format!(
                    "table `{}` has sort key {}, the configuration says {}",
                    self.table,
                    range.unwrap_or("(none)"),
                    self.layout.sort_key.as_deref().unwrap_or("(none)")
                ),
            ));
        }
        Ok(())
    }

    /// Native TTL is only housekeeping (reads check expiry themselves), so a
    /// table without it works but grows: say so once, with the fix.
    async fn warn_without_native_ttl(&self) {
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await;
        let Ok(output) = described else { return };
        let ttl = output.time_to_live_description();
        let enabled = ttl.and_then(|t| t.time_to_live_status()) == Some(&TimeToLiveStatus::Enabled)
            && ttl.and_then(|t| t.attribute_name()) == Some(self.layout.ttl_attribute.as_str());
        if !enabled {
            tracing::warn!(
                store = "dynamodb",
                table = %self.table,
                "native TTL is not enabled on attribute `{attr}`: expired sessions are never removed unless read. Enable it: aws dynamodb update-time-to-live --table-name {table} --time-to-live-specification Enabled=true,AttributeName={attr}",
                attr = self.layout.ttl_attribute,
                table = self.table,
            );
        }
    }

    /// The table is missing: create it when allowed, otherwise say which key
    /// to fix.
    async fn create_missing_table(&self) -> Result<(), StartupError> {
        if !self.create_table {
            return Err(StartupError::Config(ConfigError::at(
                "store.table",
                format!(
                    "DynamoDB table `{}` does not exist in region {}; create it or set store.create_table: true",
                    self.table, self.region
                ),
            )));
        }
        self.create_table()
            .await
            .map_err(|e| StartupError::Config(ConfigError::at("store.table", e)))
    }

    /// Creates the table (PAY_PER_REQUEST), waits until it is ACTIVE, and
    /// enables native TTL on the TTL attribute.
    async fn create_table(&self) -> Result<(), String> {
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest);
        for (name, kind) in self.layout.key_attributes() {
            request = request
                .attribute_definitions(string_attribute(name)?)
                .key_schema(key_element(name, kind)?);
        }
        match request.send().await {
            Ok(_) => {}
            // Another gateway is creating it at the same time.
            Err(error) if error_code(&error) == Some("ResourceInUseException") => {}
            Err(error) => {
                return Err(format!(
                    "cannot create table `{}`: {}",
                    self.table,
                    DisplayErrorContext(&error)
                ));
            }
        }
        self.wait_until_active().await?;
        tracing::info!(store = "dynamodb", table = %self.table, "created the DynamoDB table");
        self.enable_native_ttl().await;
        Ok(())
    }

    async fn wait_until_active(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
        loop {
            let output = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "cannot describe table `{}`: {}",
                        self.table,
                        DisplayErrorContext(&e)
                    )
                })?;
            if output.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "table `{}` was not ACTIVE within {TABLE_ACTIVE_WAIT:?}",
                    self.table
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Failing to enable TTL does not stop the gateway: reads enforce expiry
    /// anyway. It is logged so the operator can enable it by hand.
    async fn enable_native_ttl(&self) {
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(&self.layout.ttl_attribute)
            .build();
        let result = match specification {
            Ok(specification) => self
                .client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(specification)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            tracing::warn!(store = "dynamodb", table = %self.table, %error, "could not enable native TTL");
        }
    }

    /// A failed SDK call as the gateway reports it: which operation, which
    /// table, and the SDK's whole error chain.
    fn store_error<E, R>(&self, operation: &str, error: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug,
    {
        if matches!(error, SdkError::TimeoutError(_)) {
            return StoreError::Timeout(self.timeout);
        }
        StoreError::Unavailable(format!(
            "dynamodb {operation} on table `{}`: {}",
            self.table,
            DisplayErrorContext(&error)
        ))
    }

    /// The item under `key`, read strongly consistent so that the request
    /// after a write sees it.
    async fn get(&self, key: &Item) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map(|output| output.item)
            .map_err(|e| self.store_error("GetItem", e))
    }

    /// The record an item holds, or `None` (logged) when it cannot be read:
    /// an unreadable item is treated like a missing one rather than failing
    /// every request of that user with a 503.
    fn readable(&self, item: &Item) -> Option<SessionRecord> {
        match self.layout.decode(item, &self.codec) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(store = "dynamodb", table = %self.table, %error, "ignoring an unreadable session item");
                None
            }
        }
    }

    /// One round of `update`: `Ok(None)` when another writer got there
    /// first.
    async fn update_once(
        &self,
        key: &Item,
        lead: &Lead<'_>,
    ) -> Result<Option<Applied>, StoreError> {
        let current = self.get(key).await?;
        let applied = lead.apply(current.as_ref().and_then(|item| self.readable(item)));
        let record = applied.last();
        let version = current
            .as_ref()
            .and_then(|item| number(item, VERSION))
            .unwrap_or(0)
            + 1;
        let mut placeholders = Placeholders::default();
        let condition = match &current {
            Some(item) => self.layout.unchanged(item, &mut placeholders),
            None => self.layout.absent(&mut placeholders),
        };
        let (names, values) = placeholders.into_parts();
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.layout.item(key, record, version, &self.codec)))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match written {
            Ok(_) => Ok(Some(applied)),
            Err(error) if is_conditional_failure(&error) => Ok(None),
            Err(error) => Err(self.store_error("PutItem", error)),
        }
    }

    /// Deletes an expired item unless it changed since it was read. A failed
    /// clean-up is only logged: the read itself succeeded.
    async fn delete_expired(&self, key: &Item, item: &Item) {
        let mut placeholders = Placeholders::default();
        let condition = self.layout.unchanged(item, &mut placeholders);
        let (names, values) = placeholders.into_parts();
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.clone()))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match deleted {
            Ok(_) => {}
            Err(error) if is_conditional_failure(&error) => {}
            Err(error) => {
                let error = self.store_error("DeleteItem", error);
                tracing::warn!(store = "dynamodb", %error, "could not delete an expired session");
            }
        }
    }
}

/// The client configuration: the project's single TLS stack (rustls with
/// ring), the configured or default credentials, and timeouts and retries
/// derived from `store.timeout`.
async fn sdk_config(config: &DynamoConfig) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeout = config.timeout.get();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(region_provider(&config.aws))
        .timeout_config(timeouts(timeout))
        .retry_config(retries(timeout));
    if let Some(endpoint) = given(&config.aws.endpoint) {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(id), Some(secret)) = (
        given(&config.aws.access_key_id),
        given(&config.aws.secret_access_key),
    ) {
        loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "store.aws"));
    }
    loader.load().await
}

/// `store.aws.region`, else `AWS_REGION`/`AWS_DEFAULT_REGION`, else
/// eu-central-1. The instance metadata service is not asked: on a machine
/// outside EC2 it would stall every start-up.
fn region_provider(aws: &AwsConfig) -> RegionProviderChain {
    RegionProviderChain::first_try(given(&aws.region).map(|r| Region::new(r.to_owned())))
        .or_else(EnvironmentVariableRegionProvider::new())
        .or_else(Region::new(DEFAULT_REGION))
}

/// Every request ends within `store.timeout`; one attempt gets half of it,
/// so a hung connection leaves time for one retry.
fn timeouts(timeout: Duration) -> TimeoutConfig {
    let attempt = timeout / 2;
    TimeoutConfig::builder()
        .operation_timeout(timeout)
        .operation_attempt_timeout(attempt)
        .connect_timeout(attempt.min(Duration::from_secs(1)))
        .build()
}

/// Throttling and transient errors are retried with jittered exponential
/// backoff, kept short so the retries fit inside the store timeout.
fn retries(timeout: Duration) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(timeout / 4)
}

fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.as_service_error().and_then(|e| e.code())
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error_code(error) == Some("ConditionalCheckFailedException")
}

/// Answers that mean the credentials are wrong, not that DynamoDB is down.
fn is_refusal<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(
        error_code(error),
        Some(
            "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "MissingAuthenticationTokenException"
        )
    )
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, String> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| e.to_string())
}

fn key_element(name: &str, kind: KeyType) -> Result<KeySchemaElement, String> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| e.to_string())
}

/// A numeric attribute as an unsigned integer (how this store writes them).
fn number(item: &Item, attribute: &str) -> Option<u64> {
    item.get(attribute)?.as_n().ok()?.parse().ok()
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The expiry as the TTL attribute holds it: epoch seconds, rounded up so
/// that native TTL never removes a session before it expires.
fn ttl_seconds(expires_at: UnixMillis) -> u64 {
    expires_at.div_ceil(1000)
}

/// Where a session lives in the table: which attributes hold what.
#[derive(Debug, Clone)]
struct Layout {
    prefix: String,
    hash_key: String,
    sort_key: Option<String>,
    ttl_attribute: String,
}

impl Layout {
    fn from_config(config: &DynamoConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
            hash_key: config.hash_key.clone(),
            sort_key: config.sort_key.clone(),
            ttl_attribute: config.ttl_attribute.clone(),
        }
    }

    /// The table's key attributes, for `CreateTable`.
    fn key_attributes(&self) -> Vec<(&str, KeyType)> {
        let mut keys = vec![(self.hash_key.as_str(), KeyType::Hash)];
        if let Some(sort_key) = &self.sort_key {
            keys.push((sort_key.as_str(), KeyType::Range));
        }
        keys
    }

    /// The primary key of a session's item: `prefix + id`, in the sort key
    /// too when the table has one.
    fn key(&self, id: &SessionId) -> Item {
        let value = AttributeValue::S(format!("{}{}", self.prefix, id.as_str()));
        let mut key = Item::new();
        if let Some(sort_key) = &self.sort_key {
            key.insert(sort_key.clone(), value.clone());
        }
        key.insert(self.hash_key.clone(), value);
        key
    }

    /// The whole item for `record` at `version`.
    fn item(
        &self,
        key: &Item,
        record: &SessionRecord,
        version: u64,
        codec: &dyn RecordCodec,
    ) -> Item {
        let mut item = key.clone();
        item.insert(DATA.into(), AttributeValue::S(codec.encode(record)));
        item.insert(VERSION.into(), n(version));
        item.insert(
            self.ttl_attribute.clone(),
            n(ttl_seconds(record.expires_at)),
        );
        item.insert(EXPIRES_MS.into(), n(record.expires_at));
        item
    }

    /// Rebuilds the record; the expiry comes from `expires_ms`, or from the
    /// TTL attribute for items written without it.
    fn decode(&self, item: &Item, codec: &dyn RecordCodec) -> Result<SessionRecord, String> {
        let expires_at = number(item, EXPIRES_MS)
            .or_else(|| number(item, &self.ttl_attribute).map(|s| s.saturating_mul(1000)))
            .ok_or_else(|| format!("item has no numeric `{}`", self.ttl_attribute))?;
        let text = item
            .get(DATA)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| format!("item has no string `{DATA}`"))?;
        codec.decode(text, expires_at)
    }

    /// A condition that holds while the item is as it was read: same
    /// version and expiry. Used by the compare-and-set write and by the
    /// clean-up of expired items.
    fn unchanged(&self, item: &Item, placeholders: &mut Placeholders) -> String {
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
    fn absent(&self, placeholders: &mut Placeholders) -> String {
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
struct Placeholders {
    names: Names,
    values: Values,
}

/// Expression attribute names: placeholder to attribute name.
type Names = HashMap<String, String>;
/// Expression attribute values: placeholder to value.
type Values = HashMap<String, AttributeValue>;

impl Placeholders {
    fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The maps for the request; DynamoDB refuses empty ones, hence `None`.
    fn into_parts(self) -> (Option<Names>, Option<Values>) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.layout.key(id);
        let Some(item) = self.get(&key).await? else {
            return Ok(None);
        };
        let Some(record) = self.readable(&item) else {
            return Ok(None);
        };
        if !record.is_expired(now_millis()) {
            return Ok(Some(record));
        }
        if !self.keep_expired {
            self.delete_expired(&key, &item).await;
        }
        Ok(None)
    }

    /// Waits for this session's turn, or for a group write to take this
    /// change along (see [`UpdateTurns`]); a leader writes its group with
    /// one conditional put.
    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, StoreError> {
        let key = self.layout.key(id);
        let lead = match self.turns.take(id, change).await {
            Ticket::Written(result) => return result,
            Ticket::Lead(lead) => lead,
        };
        let written = retry_update(UPDATE_ATTEMPTS, || self.update_once(&key, &lead)).await;
        lead.finish(written)
    }

    /// An `UpdateItem` rather than a `PutItem`: it replaces data and expiry
    /// but increments `version`, so a concurrent compare-and-set that read
    /// the old item cannot succeed against the new one.
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        if record.is_expired(now_millis()) {
            return self.delete(id).await;
        }
        let mut p = Placeholders::default();
        let expression = format!(
            "SET {} = {}, {} = {}, {} = {} ADD {} {}",
            p.name(DATA),
            p.value(AttributeValue::S(self.codec.encode(record))),
            p.name(&self.layout.ttl_attribute),
            p.value(n(ttl_seconds(record.expires_at))),
            p.name(EXPIRES_MS),
            p.value(n(record.expires_at)),
            p.name(VERSION),
            p.value(n(1)),
        );
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
            .map_err(|e| self.store_error("UpdateItem", e))
    }

    /// Moves only the expiry. The condition keeps a missing or already
    /// expired session from being brought back; failing it is success.
    async fn touch(&self, id: &SessionId, expires_at: UnixMillis) -> Result<(), StoreError> {
        let mut p = Placeholders::default();
        let expression = format!(
            "SET {} = {}, {} = {}",
            p.name(&self.layout.ttl_attribute),
            p.value(n(ttl_seconds(expires_at))),
            p.name(EXPIRES_MS),
            p.value(n(expires_at)),
        );
        let condition = format!(
            "attribute_exists({}) AND {} > {}",
            p.name(&self.layout.hash_key),
            p.name(EXPIRES_MS),
            p.value(n(now_millis())),
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
            Err(error) => Err(self.store_error("UpdateItem", error)),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.layout.key(id)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("DeleteItem", e))
    }

    /// Ready when the table answers and takes reads and writes.
    async fn ping(&self) -> Result<(), StoreError> {
        let output = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.store_error("DescribeTable", e))?;
        match output.table().and_then(|t| t.table_status()) {
            Some(TableStatus::Active | TableStatus::Updating) => Ok(()),
            status => Err(StoreError::Unavailable(format!(
                "dynamodb table `{}` is not active (status {status:?})",
                self.table
            ))),
        }
    }
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

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(1_000), 1);
        assert_eq!(ttl_seconds(1_001), 2);
        assert_eq!(ttl_seconds(0), 0);
    }

    #[test]
    fn items_round_trip_through_the_layout() {
        let mut config = valid();
        config.sort_key = Some("sk".into());
        let layout = Layout::from_config(&config);
        let id = SessionId::from_trusted("abc");
        let record = SessionRecord {
            data: serde_json::from_str(r#"{"k":[1,{}]}"#).unwrap(),
            created_at: 5,
            expires_at: 1_234_567,
        };
        let item = layout.item(&layout.key(&id), &record, 7, &NativeCodec);
        assert_eq!(item["id"], AttributeValue::S("sess:abc".into()));
        assert_eq!(item["sk"], AttributeValue::S("sess:abc".into()));
        assert_eq!(item["expires"], n(1_235));
        assert_eq!(item["version"], n(7));
        assert_eq!(layout.decode(&item, &NativeCodec).unwrap(), record);
    }

    #[test]
    fn placeholders_are_reused_per_attribute() {
        let mut p = Placeholders::default();
        assert_eq!(p.name("data"), p.name("data"));
        assert_ne!(p.name("data"), p.name("version"));
        assert_eq!(Placeholders::default().into_parts(), (None, None));
    }
}
