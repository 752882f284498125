//! The shared Redis server, as the tests find it, and streams of their own.

// Each test file uses part of the support.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gen_stage_redis::redis::aio::MultiplexedConnection;
use gen_stage_redis::redis::{self, AsyncCommands};
use gen_stage_redis::{RedisOptions, RedisSource};

/// The server's URL: `GEN_STAGE_REDIS_URL`, or the loopback default.
pub(crate) fn url() -> String {
    std::env::var("GEN_STAGE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection to the server, or `None` (with a notice) when it cannot be reached
/// and `GEN_STAGE_REQUIRE_BROKERS` is not `1`, in which case the test passes without
/// running. Under `GEN_STAGE_REQUIRE_BROKERS=1` an unreachable server fails the test.
pub(crate) async fn connection() -> Option<MultiplexedConnection> {
    let url = url();
    let connected = async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }
    .await;
    match connected {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("Redis at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}")
        }
        Err(error) => {
            eprintln!("skipped: Redis at {url} is unreachable ({error}); set GEN_STAGE_REDIS_URL");
            None
        }
    }
}

/// A stream of the test's own, unique to this run; its keys (the stream, its
/// delayed set, its dead-letter stream, the consumer names' owner keys) are deleted
/// when the guard goes, even when the test fails.
pub(crate) struct OwnStream {
    pub(crate) name: String,
}

impl OwnStream {
    pub(crate) fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gsr_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        OwnStream { name }
    }

    /// Options for this stream, group `workers`, consumer `consumer`, with short
    /// waits for tests.
    pub(crate) fn options(&self, consumer: &str) -> RedisOptions {
        RedisOptions::new(self.name.as_str(), "workers", consumer)
            .lease(Duration::from_secs(2))
            .block(Duration::from_millis(200))
    }

    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.name)
    }

    /// Adds `count` entries, field `n` from `0..count`.
    pub(crate) async fn add(&self, connection: &mut MultiplexedConnection, count: u64) {
        let mut pipe = redis::pipe();
        for n in 0..count {
            pipe.xadd(&self.name, "*", &[("n", n.to_string())]);
        }
        let _: Vec<String> = pipe.query_async(connection).await.expect("added");
    }

    /// Adds one entry with field `n` set to `value`; answers its id.
    pub(crate) async fn add_one(
        &self,
        connection: &mut MultiplexedConnection,
        value: &str,
    ) -> String {
        connection
            .xadd(&self.name, "*", &[("n", value)])
            .await
            .expect("added")
    }

    /// Creates the group `workers`, reading from `start` (`0` or `$`), with the
    /// stream, as a user provisioning it would.
    pub(crate) async fn create_group(&self, connection: &mut MultiplexedConnection, start: &str) {
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.name)
            .arg("workers")
            .arg(start)
            .arg("MKSTREAM")
            .query_async::<()>(connection)
            .await
            .expect("the group");
    }

    /// Reads up to `count` new entries as `consumer`, and never acks them: what a
    /// crashed instance leaves pending.
    pub(crate) async fn read_as(
        &self,
        connection: &mut MultiplexedConnection,
        consumer: &str,
        count: usize,
    ) {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.name)
            .arg(">")
            .query_async(connection)
            .await
            .expect("XREADGROUP");
    }

    /// Entries pending in the group, per consumer, as the server counts them.
    pub(crate) async fn pending(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> Vec<(String, u64)> {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&self.name)
            .arg("workers")
            .query_async(connection)
            .await
            .expect("XPENDING");
        let redis::Value::Array(parts) = reply else {
            return Vec::new();
        };
        let Some(consumers) = parts.into_iter().nth(3) else {
            return Vec::new();
        };
        redis::from_redis_value::<Option<Vec<(String, u64)>>>(consumers)
            .expect("consumers")
            .unwrap_or_default()
    }

    /// Entries pending in the group, all consumers together.
    pub(crate) async fn pending_total(&self, connection: &mut MultiplexedConnection) -> u64 {
        self.pending(connection)
            .await
            .iter()
            .map(|(_, count)| count)
            .sum()
    }

    /// Whether the group has read every entry of the stream.
    pub(crate) async fn all_read(&self, connection: &mut MultiplexedConnection) -> bool {
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.name)
            .query_async(connection)
            .await
            .expect("XINFO GROUPS");
        let stream: redis::streams::StreamInfoStreamReply = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.name)
            .query_async(connection)
            .await
            .expect("XINFO STREAM");
        groups.groups.iter().any(|group| {
            group.name == "workers" && group.last_delivered_id == stream.last_generated_id
        })
    }

    /// Waits until the server shows nothing pending and nothing unread.
    pub(crate) async fn settled(&self, connection: &MultiplexedConnection) {
        eventually("nothing pending or unread", || {
            let mut connection = connection.clone();
            async move {
                self.pending_total(&mut connection).await == 0
                    && self.all_read(&mut connection).await
            }
        })
        .await;
    }
}

impl Drop for OwnStream {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.name);
        let Ok(client) = redis::Client::open(url()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut connection)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut connection);
        }
    }
}

/// A source on the test's stream.
pub(crate) async fn source(options: RedisOptions) -> RedisSource {
    RedisSource::connect(url().as_str(), options)
        .await
        .expect("the source connects")
}

/// Waits until `done` says so, looking every 20 ms, for at most a minute (a guard
/// against a hang: the conditions read the server's view).
pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached in a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
