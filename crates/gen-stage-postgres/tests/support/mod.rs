//! The shared PostgreSQL server, as the tests find it, and tables of their own.

// Each test file uses part of the support.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use gen_stage_postgres::QueueTable;
use gen_stage_postgres::tokio_postgres::{self, Client, NoTls};

/// The server's URL: `GEN_STAGE_POSTGRES_URL`, or the loopback default.
pub(crate) fn url() -> String {
    std::env::var("GEN_STAGE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A client of the server, or `None` (with a notice) when it cannot be reached and
/// `GEN_STAGE_REQUIRE_BROKERS` is not `1`, in which case the test passes without
/// running. Under `GEN_STAGE_REQUIRE_BROKERS=1` an unreachable server fails the test.
pub(crate) async fn client() -> Option<Client> {
    let url = url();
    match tokio_postgres::connect(&url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(error) if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("PostgreSQL at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}")
        }
        Err(error) => {
            eprintln!(
                "skipped: PostgreSQL at {url} is unreachable ({error}); set GEN_STAGE_POSTGRES_URL"
            );
            None
        }
    }
}

/// A queue table of the test's own, unique to this run; dropped with its dead-letter
/// table when the guard goes, even when the test fails.
pub(crate) struct OwnTable(pub(crate) QueueTable);

impl OwnTable {
    pub(crate) fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gst_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        OwnTable(QueueTable::new(name).expect("a valid table name"))
    }
}

impl Drop for OwnTable {
    fn drop(&mut self) {
        let (url, name) = (url(), self.0.name().to_owned());
        // A runtime of its own, on a thread of its own: the test's may be gone.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&url, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!(
                            "DROP TABLE IF EXISTS \"{name}\"; DROP TABLE IF EXISTS \"{name}_dead\";"
                        ))
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// Rows of a query that counts.
pub(crate) async fn count(client: &Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .expect("the count query runs")
        .get(0)
}

/// Waits until `done` says so, looking every 50 ms, for at most a minute (a guard
/// against a hang, not a timing: the condition is the broker's own view).
pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
