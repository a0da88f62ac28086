//! The store conformance suite and MySQL-specific checks against a live
//! MySQL or MariaDB.
//!
//! The server is `SESSIONGATE_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`; `scripts/services/mysql.sh` provides
//! one). It may be shared: every test works in its own randomly named table
//! and drops it afterwards. The outage test starts its own private
//! `mariadbd` instead, because it kills it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use sessiongate::Error;
use sessiongate::config::ConfigDuration;
use sessiongate::config::MysqlConfig;
use sessiongate::store::StoreSettings;
use sessiongate::store::mysql::MysqlStore;
use sessiongate::store::{
    Change, Identity, Revoked, SessionId, SessionRecord, SessionStore, UnixMillis, now_millis,
};
use sqlx::mysql::{MySqlConnection, MySqlPool};
use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row};

use crate::conformance;
use crate::support::free_port;
use crate::support::servers::PrivateMariadb;

const TIMEOUT: Duration = Duration::from_secs(2);

fn test_url() -> String {
    std::env::var("SESSIONGATE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("OS CSPRNG");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn config_for(url: &str, table: &str) -> MysqlConfig {
    MysqlConfig {
        url: url.into(),
        table: table.into(),
        create_table: true,
        cleanup_interval: ConfigDuration::secs(3600),
        timeout: ConfigDuration(TIMEOUT),
    }
}

/// A uniquely named table, dropped when this value is dropped.
struct ScratchTable {
    url: String,
    name: String,
}

impl ScratchTable {
    fn new() -> Self {
        Self {
            url: test_url(),
            name: format!("sessiongate_test_{}", random_hex()),
        }
    }

    fn config(&self) -> MysqlConfig {
        config_for(&self.url, &self.name)
    }

    /// A direct connection for checking and planting rows.
    async fn raw(&self) -> MySqlPool {
        MySqlPool::connect(&self.url)
            .await
            .expect("test database reachable")
    }

    /// `(data, expires)` as stored, or `None` when the row is gone.
    async fn row(&self, id: &str) -> Option<(Option<String>, u32)> {
        let sql = format!(
            "SELECT `data`, `expires` FROM `{}` WHERE session_id = ?",
            self.name
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.raw().await)
            .await
            .expect("select")
            .map(|row| (row.get("data"), row.get("expires")))
    }

    async fn plant(&self, id: &str, expires: u32, data: &str) {
        let sql = format!(
            "INSERT INTO `{}` (session_id, expires, data) VALUES (?, ?, ?)",
            self.name
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(expires)
            .bind(data)
            .execute(&self.raw().await)
            .await
            .expect("insert");
    }
}

impl Drop for ScratchTable {
    /// Drops the table from a thread of its own: `Drop` cannot await, and
    /// this may run inside the test's runtime.
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP TABLE IF EXISTS `{}`", self.name);
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = MySqlConnection::connect(&url).await?;
                sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        if let Ok(Err(error)) = dropper.join() {
            eprintln!("could not drop scratch table {}: {error}", self.name);
        }
    }
}

/// A store over a scratch table that drops the table when the store goes.
struct Scratch {
    store: Arc<dyn SessionStore>,
    _table: ScratchTable,
}

#[async_trait]
impl SessionStore for Scratch {
    fn kind(&self) -> &'static str {
        self.store.kind()
    }
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, Error> {
        self.store.load(id).await
    }
    async fn update(&self, id: &SessionId, change: &Change) -> Result<SessionRecord, Error> {
        self.store.update(id, change).await
    }
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<(), Error> {
        self.store.insert(id, record).await
    }
    async fn regenerate(
        &self,
        old: &SessionId,
        new: &SessionId,
        change: &Change,
    ) -> Result<SessionRecord, Error> {
        self.store.regenerate(old, new, change).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: UnixMillis,
        identity: Option<&Identity>,
    ) -> Result<(), Error> {
        self.store.touch(id, expires_at, identity).await
    }
    async fn sessions_of(&self, identity: &Identity) -> Result<Vec<SessionId>, Error> {
        self.store.sessions_of(identity).await
    }
    async fn revoke(&self, identity: &Identity) -> Revoked {
        self.store.revoke(identity).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), Error> {
        self.store.delete(id).await
    }
    async fn ping(&self) -> Result<(), Error> {
        self.store.ping().await
    }
}

async fn open(config: &MysqlConfig, keep_expired: bool) -> Arc<dyn SessionStore> {
    let store = MysqlStore::connect(
        config,
        &StoreSettings::new((config).timeout.get(), keep_expired)
            .indexed_by(Some(conformance::IDENTITY_KEY)),
    )
    .await
    .expect("MySQL store (is SESSIONGATE_TEST_MYSQL_URL reachable?)");
    Arc::new(store)
}

async fn make_express_store() -> Arc<dyn SessionStore> {
    let table = ScratchTable::new();
    let config = table.config();
    let settings = conformance::express_settings(
        config.timeout.get(),
        sessiongate::store::codec::express::Flavor::Plain,
    );
    let store = MysqlStore::connect(&config, &settings)
        .await
        .expect("MySQL store (is SESSIONGATE_TEST_MYSQL_URL reachable?)");
    Arc::new(Scratch {
        store: Arc::new(store),
        _table: table,
    })
}

conformance::express_suite!();

async fn make_store() -> Arc<dyn SessionStore> {
    let table = ScratchTable::new();
    let store = open(&table.config(), false).await;
    Arc::new(Scratch {
        store,
        _table: table,
    })
}

conformance::suite!();

fn new_id() -> SessionId {
    SessionId::generate().expect("OS CSPRNG")
}

fn now_secs() -> u32 {
    u32::try_from(now_millis() / 1_000).expect("before 2106")
}

fn blob(data: serde_json::Value) -> String {
    json!({"v": 1, "created": now_millis(), "data": data}).to_string()
}

#[tokio::test]
async fn the_table_has_the_express_mysql_session_columns() {
    let table = ScratchTable::new();
    // Without session.identity_key: exactly express-mysql-session's table.
    let config = table.config();
    let _store = MysqlStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect("MySQL store");
    // MySQL 8 writes `int unsigned` where MariaDB writes `int(10) unsigned`.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(CONCAT_WS(' ', COLUMN_NAME, REPLACE(COLUMN_TYPE, 'int(10)', 'int'), \
         IS_NULLABLE, NULLIF(COLUMN_KEY, '')) AS CHAR) \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    )
    .bind(&table.name)
    .fetch_all(&table.raw().await)
    .await
    .expect("information_schema");
    assert_eq!(
        columns,
        [
            "session_id varchar(128) NO PRI",
            "expires int unsigned NO MUL",
            "data mediumtext YES",
        ]
    );
}

#[tokio::test]
async fn the_cleanup_task_removes_expired_rows_in_batches() {
    let table = ScratchTable::new();
    let mut config = table.config();
    config.cleanup_interval = ConfigDuration::millis(300);
    let _store = open(&config, true).await;
    let mut planting = QueryBuilder::new(format!(
        "INSERT INTO `{}` (session_id, expires, data) ",
        table.name
    ));
    let expired = now_secs() - 10;
    planting.push_values(0..2_500, |mut row, n| {
        row.push_bind(format!("old{n}"))
            .push_bind(expired)
            .push_bind("{}");
    });
    planting
        .build()
        .execute(&table.raw().await)
        .await
        .expect("plant expired rows");
    table
        .plant("alive", now_secs() + 3600, &blob(json!({})))
        .await;

    let count = format!("SELECT COUNT(*) FROM `{}`", table.name);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left: i64 = sqlx::query_scalar(AssertSqlSafe(count.clone()))
            .fetch_one(&table.raw().await)
            .await
            .expect("count");
        if left == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} rows left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(table.row("alive").await.is_some(), "a live row was deleted");
}

#[tokio::test]
async fn keep_expired_leaves_the_row_but_never_returns_it() {
    let table = ScratchTable::new();
    let keeping = open(&table.config(), true).await;
    let id = new_id();
    table
        .plant(id.as_str(), now_secs() - 1, &blob(json!({"k": 1})))
        .await;
    assert_eq!(keeping.load(&id).await.unwrap(), None);
    assert!(table.row(id.as_str()).await.is_some(), "kept row is gone");

    let deleting = open(&table.config(), false).await;
    assert_eq!(deleting.load(&id).await.unwrap(), None);
    assert_eq!(table.row(id.as_str()).await, None, "expired row was kept");
}

#[tokio::test]
async fn touch_moves_expires_and_leaves_data_byte_identical() {
    let table = ScratchTable::new();
    let store = open(&table.config(), false).await;
    let id = new_id();
    store
        .update(&id, &conformance::patch(json!({"b": [1, {}], "a": "é🦀"})))
        .await
        .unwrap();
    let (data_before, expires_before) = table.row(id.as_str()).await.expect("row");
    let later = now_millis() + 5 * 3_600_000 + 1;
    store.touch(&id, later, None).await.unwrap();
    let (data_after, expires_after) = table.row(id.as_str()).await.expect("row");
    assert_eq!(data_after, data_before);
    assert_ne!(expires_after, expires_before);
    assert_eq!(u64::from(expires_after), later.div_ceil(1_000));
}

/// First writes of a missing row take gap locks and can deadlock; the loser
/// is retried, so nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_writes_of_a_new_session_lose_nothing() {
    let store = make_store().await;
    let id = new_id();
    let writers: Vec<_> = (0..20)
        .map(|n| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let change = conformance::patch(json!({ format!("k{n}"): n }));
                store.update(&id, &change).await
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("task").expect("update");
    }
    let loaded = store.load(&id).await.unwrap().expect("session");
    assert_eq!(loaded.data.len(), 20, "{:?}", loaded.data);
}

#[tokio::test]
async fn an_unreachable_database_at_start_names_store_url() {
    let port = free_port();
    let mut config = config_for(&format!("mysql://root@127.0.0.1:{port}/test"), "sessions");
    config.timeout = ConfigDuration::millis(500);
    let started = Instant::now();
    let error = MysqlStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect_err("start-up must fail when the table cannot be created");
    assert!(error.to_string().starts_with("store.url:"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));

    config.create_table = false;
    let store = MysqlStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect("without create_table the start does not connect");
    assert!(store.ping().await.is_err());
}

#[tokio::test]
async fn a_malformed_url_names_store_url() {
    let config = MysqlConfig {
        url: "mysql://root@127.0.0.1:notaport/test".into(),
        ..MysqlConfig::default()
    };
    let error = MysqlStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect_err("malformed URL");
    assert!(error.to_string().starts_with("store.url:"), "{error}");
}

/// Waits for `load` to serve the session again, or panics after `within`.
async fn wait_for_session(store: &dyn SessionStore, id: &SessionId, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(_)) = store.load(id).await {
            return;
        }
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_the_database_is_down_and_recover_without_a_restart() {
    let mut server = PrivateMariadb::install();
    server.start().await;
    let mut admin = MySqlConnection::connect(&server.url("")).await.unwrap();
    sqlx::query("CREATE DATABASE test")
        .execute(&mut admin)
        .await
        .unwrap();
    drop(admin);
    let mut config = config_for(&server.url("test"), "sessions");
    config.timeout = ConfigDuration::secs(1);
    let store = open(&config, false).await;
    let id = new_id();
    let written = store
        .update(&id, &conformance::patch(json!({"user": "ada"})))
        .await
        .unwrap();

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        assert!(store.load(&id).await.is_err(), "load with the server down");
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "a call hung for {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert!(
        store
            .update(&id, &conformance::patch(json!({"x": 1})))
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_millis(2_500));

    server.start().await;
    wait_for_session(store.as_ref(), &id, Duration::from_secs(20)).await;
    let loaded = store
        .load(&id)
        .await
        .unwrap()
        .expect("session after restart");
    assert_eq!(loaded.data, written.data);
    store
        .update(&id, &conformance::patch(json!({"back": true})))
        .await
        .expect("updates work again");
}

#[tokio::test]
async fn conformance_an_expired_record_read_is_deleted() {
    let table = ScratchTable::new();
    let config = table.config();
    let store = MysqlStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect("MySQL store");
    conformance::an_expired_record_read_is_deleted(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_two_stores_lose_no_concurrent_update() {
    let table = ScratchTable::new();
    let first = open(&table.config(), false).await;
    let second = open(&table.config(), false).await;
    conformance::two_stores_lose_no_concurrent_update(first, second).await;
}

/// An express-mysql-session table has no identity column: with
/// `session.identity_key` the gateway refuses to start and prints the
/// `ALTER TABLE`, or, with `create_table: true`, adds the column itself.
#[tokio::test]
async fn the_identity_column_is_added_or_asked_for() {
    let table = ScratchTable::new();
    let raw = table.raw().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE `{}` (`session_id` VARCHAR(128) COLLATE utf8mb4_bin NOT NULL, \
         `expires` INT(11) UNSIGNED NOT NULL, `data` MEDIUMTEXT COLLATE utf8mb4_bin, \
         PRIMARY KEY (`session_id`)) ENGINE=InnoDB",
        table.name
    )))
    .execute(&raw)
    .await
    .unwrap();
    let indexed = |config: &MysqlConfig| {
        StoreSettings::new(config.timeout.get(), false).indexed_by(Some(conformance::IDENTITY_KEY))
    };
    let mut config = table.config();
    config.create_table = false;
    let error = MysqlStore::connect(&config, &indexed(&config))
        .await
        .expect_err("no identity column");
    let message = error.to_string();
    assert!(
        message.starts_with("store.table:") && message.contains("ALTER TABLE"),
        "{message}"
    );
    MysqlStore::connect(&config, &StoreSettings::new(config.timeout.get(), false))
        .await
        .expect("without identity_key the table works as it is");

    config.create_table = true;
    let store = MysqlStore::connect(&config, &indexed(&config))
        .await
        .expect("create_table adds the column");
    let id = SessionId::generate().unwrap();
    store
        .update(&id, &conformance::patch(json!({"user": "ada"})))
        .await
        .unwrap();
    let listed = store
        .sessions_of(&sessiongate::store::Identity::of_text("ada"))
        .await
        .unwrap();
    assert_eq!(listed, vec![id]);
}
