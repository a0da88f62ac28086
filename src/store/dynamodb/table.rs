//! Start-up: the table is checked (or created) once, and what an answer
//! means is decided here: a wrong configuration stops the gateway, an
//! unreachable endpoint does not (see the module docs of [`super`]).

use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};

use super::DynamoBackend;
use super::client::{error_code, is_refusal};
use super::item::{IDENTITY, IDENTITY_INDEX};
use crate::config::{DynamoConfig, store::dynamodb::given};
use crate::error::Error;

/// How long `create_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(60);

/// Why the start-up table check did not pass.
pub(super) enum StartupError {
    /// DynamoDB answered, and the answer means the configuration is wrong.
    Config(Error),
    /// DynamoDB did not answer.
    Unreachable(Error),
}

impl DynamoBackend {
    /// Decides what an unreachable DynamoDB at start-up means (module docs).
    pub(super) fn unreachable_at_start(
        &self,
        config: &DynamoConfig,
        error: Error,
    ) -> Result<(), Error> {
        let key = if given(&config.aws.endpoint).is_some() {
            "store.aws.endpoint"
        } else {
            "store.aws.region"
        };
        if config.create_table {
            return Err(Error::config(
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
        Ok(())
    }

    /// The start-up check: the table exists (or is created) and has the
    /// configured keys.
    pub(super) async fn check_table(&self, create_table: bool) -> Result<(), StartupError> {
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
                self.check_identity_index(output.table())
                    .map_err(StartupError::Config)?;
                self.warn_without_native_ttl().await;
                Ok(())
            }
            Err(error) if error_code(&error) == Some("ResourceNotFoundException") => {
                self.create_missing_table(create_table).await
            }
            Err(error) if is_refusal(&error) => Err(StartupError::Config(Error::config(
                "store.aws",
                format!(
                    "DynamoDB refused the credentials for table `{}`: {}",
                    self.table,
                    DisplayErrorContext(&error)
                ),
            ))),
            Err(error) => Err(StartupError::Unreachable(
                self.failed("DescribeTable", error),
            )),
        }
    }

    /// An existing table must have the keys the configuration names, or
    /// every write would fail later with a less helpful message.
    fn check_key_schema(&self, table: Option<&TableDescription>) -> Result<(), Error> {
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
            return Err(Error::config(
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
            return Err(Error::config(
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

    /// With `session.identity_key`, revoking needs `identity-index`: a
    /// table without it is refused at start with the command that adds it.
    fn check_identity_index(&self, table: Option<&TableDescription>) -> Result<(), Error> {
        let Some(table) = table.filter(|_| self.indexed) else {
            return Ok(());
        };
        let has_index = table
            .global_secondary_indexes()
            .iter()
            .any(|index| index.index_name() == Some(IDENTITY_INDEX));
        if has_index {
            return Ok(());
        }
        Err(Error::config(
            "store.table",
            format!(
                "session.identity_key needs the global secondary index `{IDENTITY_INDEX}` on table `{}`: aws dynamodb update-table --table-name {} --attribute-definitions AttributeName={IDENTITY},AttributeType=S --global-secondary-index-updates '[{{\"Create\":{{\"IndexName\":\"{IDENTITY_INDEX}\",\"KeySchema\":[{{\"AttributeName\":\"{IDENTITY}\",\"KeyType\":\"HASH\"}}],\"Projection\":{{\"ProjectionType\":\"KEYS_ONLY\"}}}}}}]' (add --provisioned-throughput to the index for a provisioned table)",
                self.table, self.table
            ),
        ))
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
    async fn create_missing_table(&self, create_table: bool) -> Result<(), StartupError> {
        if !create_table {
            return Err(StartupError::Config(Error::config(
                "store.table",
                format!(
                    "DynamoDB table `{}` does not exist in region {}; create it or set store.create_table: true",
                    self.table, self.region
                ),
            )));
        }
        self.create_table()
            .await
            .map_err(|e| StartupError::Config(Error::config("store.table", e)))
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
        if self.indexed {
            let index = GlobalSecondaryIndex::builder()
                .index_name(IDENTITY_INDEX)
                .key_schema(key_element(IDENTITY, KeyType::Hash)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())?;
            request = request
                .attribute_definitions(string_attribute(IDENTITY)?)
                .global_secondary_indexes(index);
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
