//! Private store servers for tests that stop and start them: a
//! `redis-server` or `mariadbd` of the test's own, on a free port, killed on
//! drop. Shared services are never stopped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;

use super::free_port;

/// A `redis-server` of the test's own on a fixed free port, killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `--port`, or `--tls-port` for a TLS-only server.
    pub port_flag: &'static str,
    /// Arguments beyond the defaults (TLS settings).
    pub extra: Vec<String>,
    pub child: Option<Child>,
}

impl PrivateRedis {
    pub fn on_free_port() -> Self {
        let port = free_port();
        Self {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            port_flag: "--port",
            extra: Vec::new(),
            child: None,
        }
    }

    pub fn started() -> Self {
        let mut redis = Self::on_free_port();
        redis.start();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([self.port_flag, &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (the project's test script installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            #[allow(
                clippy::disallowed_methods,
                reason = "a start-up wait in synchronous test set-up, before any request"
            )]
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private Redis Sentinel (`redis-server sentinel.conf --sentinel`) that
/// monitors one master under `name`, with short timeouts so that a
/// failover takes seconds; killed on drop.
pub struct PrivateSentinel {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateSentinel {
    pub fn monitoring(name: &str, master_port: u16) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 2000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis sentinel did not start");
            #[allow(
                clippy::disallowed_methods,
                reason = "a start-up wait in synchronous test set-up, before any request"
            )]
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            _dir: dir,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private `mariadbd` in a temporary directory, killed when dropped.
pub struct PrivateMariadb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
}

impl PrivateMariadb {
    pub fn install() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db (install mariadb-server)");
        assert!(status.success(), "mariadb-install-db failed");
        Self {
            dir,
            port: free_port(),
            child: None,
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it answers.
    pub async fn start(&mut self) {
        let path = self.dir.path();
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
            .args(["--skip-name-resolve", "--innodb-buffer-pool-size=32M"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", path.join("data").display()))
            .arg(format!("--socket={}", path.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", path.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", path.join("error.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
        self.wait_until_up(path).await;
    }

    pub async fn wait_until_up(&self, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while MySqlConnection::connect(&self.url("")).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start; see {}",
                path.join("error.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the server vanishes the way a crashed host does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        self.kill();
    }
}
