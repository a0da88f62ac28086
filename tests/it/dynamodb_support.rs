//! What the DynamoDB test files share: the endpoint, a store on a fresh
//! table, and a raw client for looking at items directly.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use sessiongate::config::ConfigDuration;
use sessiongate::config::{AwsConfig, DynamoConfig, DynamoLayout};
use sessiongate::store::SessionStore;
use sessiongate::store::StoreSettings;
use sessiongate::store::codec::express::Flavor;
use sessiongate::store::dynamodb::DynamoStore;

/// The variable the project's test script sets after starting moto.
pub const ENDPOINT_VAR: &str = "SESSIONGATE_TEST_DYNAMODB_ENDPOINT";

/// The store timeout of the tests' DynamoDB stores. moto is one Python
/// process serving every DynamoDB test of the run at once; on a loaded
/// two-core machine a single call can take seconds. No test here measures
/// this timeout (outages are the other stores' tests).
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: run the DynamoDB tests through the project's test script \
             (it starts moto via scripts/services/moto.sh), or start a local DynamoDB yourself and \
             set {ENDPOINT_VAR}=http://127.0.0.1:PORT"
        )
    })
}

/// A table name no other test uses.
pub fn unique_table() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("OS CSPRNG");
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sessiongate-test-{suffix}")
}

/// A configuration for a fresh table on the test endpoint, created on
/// connect, with dummy static credentials.
pub fn config(sort_key: Option<&str>) -> DynamoConfig {
    DynamoConfig {
        table: unique_table(),
        hash_key: if sort_key.is_some() { "pk" } else { "id" }.into(),
        sort_key: sort_key.map(str::to_owned),
        create_table: true,
        aws: AwsConfig {
            region: Some("eu-central-1".into()),
            endpoint: Some(endpoint()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
        },
        timeout: ConfigDuration(TIMEOUT),
        ..DynamoConfig::default()
    }
}

/// The store wrapped as the gateway wraps it.
pub async fn instrumented(config: &DynamoConfig, keep_expired: bool) -> Arc<dyn SessionStore> {
    let store = DynamoStore::connect(
        config,
        &StoreSettings::new((config).timeout.get(), keep_expired)
            .indexed_by(Some(crate::conformance::IDENTITY_KEY)),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to DynamoDB at {}: {e}", endpoint()));
    Arc::new(store)
}

/// A Node store's layout on a fresh table, with the express-session codec.
pub async fn node_layout(layout: DynamoLayout, sort_key: Option<&str>) -> Arc<dyn SessionStore> {
    let config = DynamoConfig {
        layout,
        ..config(sort_key)
    };
    let flavor = match layout {
        DynamoLayout::Cyclic => Flavor::Cyclic,
        _ => Flavor::Plain,
    };
    let settings = crate::conformance::express_settings(config.timeout.get(), flavor);
    let store = sessiongate::store::dynamodb::node::connect(&config, &settings)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DynamoDB at {}: {e}", endpoint()));
    Arc::new(store)
}

/// A plain SDK client on the test endpoint, to inspect items.
pub fn raw_client() -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-central-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    Client::from_conf(config)
}
