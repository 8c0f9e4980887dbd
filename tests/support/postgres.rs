//! A throwaway PostgreSQL for the tests, started with `scripts/pg.sh` (the
//! same script `scripts/cluster.sh` uses) in a temporary directory on
//! 127.0.0.1. One server per test process, shared by its tests, each test
//! in a database of its own. The script's watchdog stops the server when
//! the test process is gone, however it ended.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Postgres {
    dir: PathBuf,
    /// The URL of the server's first database (for administration).
    pub url: String,
}

/// The server of this test process, started on first use. A missing
/// PostgreSQL fails the test: `scripts/test.sh` installs it.
pub fn server() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(Postgres::start)
}

impl Postgres {
    /// A server of the caller's own (for a test that restarts it), stopped
    /// when dropped.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("hookyard-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let url = script(&[
            "start",
            dir.to_str().unwrap(),
            &std::process::id().to_string(),
        ]);
        Postgres { dir, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(super::repo_root().join("scripts/pg.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(super::repo_root().join("scripts/pg.sh"))
        .args(args)
        .output()
        .expect("run scripts/pg.sh");
    assert!(
        out.status.success(),
        "scripts/pg.sh {args:?} failed (PostgreSQL is needed: `apt-get install postgresql`, or run scripts/test.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Postgres {
    /// A new, empty database on this server; its URL.
    pub fn database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let admin = self.url.clone();
        let create = format!("CREATE DATABASE {name}");
        // On a thread of its own: callers may be inside a runtime.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                        .await
                        .expect("connect to the test PostgreSQL");
                    tokio::spawn(conn);
                    client
                        .batch_execute(&create)
                        .await
                        .expect("create database");
                })
        })
        .join()
        .unwrap();
        let base = self.url.rsplit_once('/').unwrap().0;
        format!("{base}/{name}")
    }

    /// Stops the server (a database outage); `restart` brings it back.
    pub fn stop(&self) {
        script(&["stop", self.dir.to_str().unwrap()]);
    }

    /// Stops the server and starts it again on the same port (a database
    /// restart under load).
    pub fn restart(&self) {
        script(&["restart", self.dir.to_str().unwrap()]);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
