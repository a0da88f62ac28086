//! The SDK client: one TLS stack (rustls with ring), credentials, timeouts
//! and retries derived from `store.timeout`, and how SDK errors read.

use std::fmt;
use std::time::Duration;

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::config::store::dynamodb::given;
use crate::config::{AwsConfig, DynamoConfig};
use crate::error::Error;

/// The region used when neither the configuration nor `AWS_REGION` /
/// `AWS_DEFAULT_REGION` names one.
const DEFAULT_REGION: &str = "eu-central-1";

/// SDK attempts per request (the first one included) for throttling and
/// transient errors.
const SDK_ATTEMPTS: u32 = 3;

/// The client configuration: the project's single TLS stack (rustls with
/// ring), the configured or default credentials, and timeouts and retries
/// derived from `store.timeout`.
pub async fn sdk_config(config: &DynamoConfig) -> SdkConfig {
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

pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.as_service_error().and_then(|e| e.code())
}

pub fn is_conditional_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error_code(error) == Some("ConditionalCheckFailedException")
}

/// Answers that mean the credentials are wrong, not that DynamoDB is down.
pub fn is_refusal<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
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

/// A failed SDK call as the gateway reports it: which operation, which
/// table, and the SDK's whole error chain.
pub fn store_error<E, R>(
    table: &str,
    operation: &str,
    error: SdkError<E, R>,
    timeout: Duration,
) -> Error
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    if matches!(error, SdkError::TimeoutError(_)) {
        return Error::store_timeout("dynamodb", operation, timeout);
    }
    Error::store_unavailable(
        "dynamodb",
        operation,
        format!("table `{table}`: {}", DisplayErrorContext(&error)),
    )
}
