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

/// @cyclic.sh/session-store's items (`store.layout: cyclic`): a native
/// map keeps no key order.
async fn make_express_store() -> Arc<dyn SessionStore> {
    dynamodb_support::node_layout(sessiongate::config::DynamoLayout::Cyclic, Some("sk")).await
}

conformance::express_suite!(unordered);
