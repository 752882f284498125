//! The shared NATS server, as the tests find it, and streams of their own.

// Each test file uses part of the support.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gen_stage_nats::async_nats::jetstream::{self, consumer::PullConsumer};
use gen_stage_nats::async_nats::{self, Client};
use gen_stage_nats::{JetStreamOptions, JetStreamSource};

/// The server's URL: `GEN_STAGE_NATS_URL`, or the loopback default.
pub(crate) fn url() -> String {
    std::env::var("GEN_STAGE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A client of the server, or `None` (with a notice) when it cannot be reached and
/// `GEN_STAGE_REQUIRE_BROKERS` is not `1`, in which case the test passes without
/// running. Under `GEN_STAGE_REQUIRE_BROKERS=1` an unreachable server fails the test.
pub(crate) async fn client() -> Option<Client> {
    let url = url();
    let connected = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url.as_str())
        .await;
    match connected {
        Ok(client) => Some(client),
        Err(error) if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("NATS at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}")
        }
        Err(error) => {
            eprintln!("skipped: NATS at {url} is unreachable ({error}); set GEN_STAGE_NATS_URL");
            None
        }
    }
}

/// A stream of the test's own, unique to this run (subjects `<name>.>`, dead letters
/// on `<name>_dl`); deleted with its dead-letter stream when the guard goes, even
/// when the test fails.
pub(crate) struct OwnStream {
    pub(crate) name: String,
}

impl OwnStream {
    pub(crate) fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gsn_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        OwnStream { name }
    }

    /// Options for this stream, its consumer `worker`, short waits for tests.
    pub(crate) fn options(&self) -> JetStreamOptions {
        JetStreamOptions::new(self.name.as_str(), "worker")
            .dead_letter_subject(self.dead_letter_subject())
            .idle_wait(Duration::from_millis(200))
    }

    pub(crate) fn subject(&self) -> String {
        format!("{}.jobs", self.name)
    }

    pub(crate) fn dead_letter_subject(&self) -> String {
        format!("{}_dl", self.name)
    }

    /// Publishes `count` messages, `0..count` as text, each stored before the next.
    pub(crate) async fn publish(&self, client: &Client, count: u64) {
        let jetstream = jetstream::new(client.clone());
        let mut acks = Vec::new();
        for n in 0..count {
            acks.push(
                jetstream
                    .publish(self.subject(), n.to_string().into())
                    .await
                    .expect("published"),
            );
        }
        for ack in acks {
            ack.await.expect("stored");
        }
    }

    /// The consumer, for the server's view (`num_ack_pending`, `num_pending`).
    pub(crate) async fn consumer(&self, client: &Client) -> PullConsumer {
        jetstream::new(client.clone())
            .get_stream(&self.name)
            .await
            .expect("the stream")
            .get_consumer("worker")
            .await
            .expect("the consumer")
    }

    /// Messages in the stream (acked ones are gone: work-queue retention).
    pub(crate) async fn stored(&self, client: &Client, stream: &str) -> u64 {
        jetstream::new(client.clone())
            .get_stream(stream)
            .await
            .expect("the stream")
            .get_info()
            .await
            .expect("its info")
            .state
            .messages
    }
}

impl Drop for OwnStream {
    fn drop(&mut self) {
        let (url, name) = (url(), self.name.clone());
        // A runtime of its own, on a thread of its own: the test's may be gone.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let jetstream = jetstream::new(client);
                    let _ = jetstream.delete_stream(&name).await;
                    let _ = jetstream.delete_stream(format!("{name}_dead")).await;
                }
            });
        });
        let _ = deleted.join();
    }
}

/// A source on the test's stream.
pub(crate) async fn source(options: JetStreamOptions) -> JetStreamSource {
    JetStreamSource::connect_url(&url(), options)
        .await
        .expect("the source connects")
}

/// Waits until `done` says so, looking every 20 ms, for at most a minute (a guard against
/// a hang: the conditions read the server's view).
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
