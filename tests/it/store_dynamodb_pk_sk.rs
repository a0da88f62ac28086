//! The store conformance suite against DynamoDB, on a table with a hash and
//! a sort key (`pk`/`sk`, both holding `prefix + id`). Needs
//! `SESSIONGATE_TEST_DYNAMODB_ENDPOINT` (the project's test script starts
//! moto and sets it).

use std::sync::Arc;

use sessiongate::store::SessionStore;

use crate::conformance;
use crate::dynamodb_support;

async fn make_store() -> Arc<dyn SessionStore> {
    dynamodb_support::instrumented(&dynamodb_support::config(Some("sk")), false).await
}

conformance::suite!();
