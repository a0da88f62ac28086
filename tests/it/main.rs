//! The integration tests, in one test binary (`cargo test --test it`): one
//! link of the AWS SDK, sqlx and redis instead of one per file. Each former
//! `tests/*.rs` file is a module here, so its tests are named `MODULE::TEST`
//! and run alone with a filter, e.g. `cargo test --test it store_redis::`.
//!
//! One binary is one process: whatever is process-wide (free ports handed
//! out, environment variables, a rustls default provider) is shared by every
//! test here, so the support code never relies on being alone.

mod conformance;
mod dynamodb_support;
mod support;

mod admin;
mod assertion;
mod cli;
mod cookie_store;
mod gateway_stores;
mod hardening;
mod hardening_limits;
mod identity;
mod node_compat;
mod operations;
mod packaging;
mod properties;
mod protocol;
mod proxy;
mod routes;
mod server_session;
mod store_dynamodb;
mod store_dynamodb_pk_sk;
mod store_memory;
mod store_mysql;
mod store_redis;
mod store_redis_cluster;
mod store_redis_sentinel;
mod upstream_pool;
