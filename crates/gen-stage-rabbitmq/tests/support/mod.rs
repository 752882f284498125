//! The shared RabbitMQ broker, as the tests find it, and queues of their own.

// Each test file uses part of the support.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gen_stage_rabbitmq::lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions,
};
use gen_stage_rabbitmq::lapin::{self, BasicProperties, Channel, Connection};
use gen_stage_rabbitmq::{RabbitOptions, RabbitSource};

/// The broker's URL: `GEN_STAGE_AMQP_URL`, or the loopback default.
pub(crate) fn url() -> String {
    std::env::var("GEN_STAGE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn required() -> bool {
    std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1")
}

/// A channel on the broker, in confirm mode, or `None` (with a notice) when it
/// cannot be reached and `GEN_STAGE_REQUIRE_BROKERS` is not `1`, in which case the
/// test passes without running. Under `GEN_STAGE_REQUIRE_BROKERS=1` an unreachable
/// broker fails the test.
pub(crate) async fn channel() -> Option<Channel> {
    let url = url();
    let connected = async {
        let connection = Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>(channel)
    };
    match tokio::time::timeout(Duration::from_secs(5), connected).await {
        Ok(Ok(channel)) => Some(channel),
        Ok(Err(error)) if required() => {
            panic!("RabbitMQ at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}")
        }
        Err(_) if required() => {
            panic!("RabbitMQ at {url} did not answer and GEN_STAGE_REQUIRE_BROKERS=1")
        }
        failed => {
            let error = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => "no answer in 5 s".to_owned(),
            };
            eprintln!(
                "skipped: RabbitMQ at {url} is unreachable ({error}); set GEN_STAGE_AMQP_URL"
            );
            None
        }
    }
}

/// A queue of the test's own, unique to this run; deleted with its dead-letter and
/// delay queues when the guard goes, even when the test fails.
pub(crate) struct OwnQueue {
    pub(crate) name: String,
}

impl OwnQueue {
    pub(crate) fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gsr_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        OwnQueue { name }
    }

    pub(crate) fn options(&self) -> RabbitOptions {
        RabbitOptions::new(self.name.as_str())
    }

    pub(crate) fn dead(&self) -> String {
        format!("{}.dead", self.name)
    }

    /// Publishes `count` messages, `0..count` as text and as their `message_id`,
    /// each confirmed by the broker.
    pub(crate) async fn publish(&self, channel: &Channel, count: u64) {
        let mut confirms = Vec::new();
        for n in 0..count {
            confirms.push(
                publish(
                    channel,
                    &self.name,
                    n.to_string().as_bytes(),
                    &n.to_string(),
                )
                .await,
            );
        }
        for confirm in confirms {
            assert!(confirm.await.expect("confirmed").is_ack(), "stored");
        }
    }
}

/// Publishes `body` with `id` to `queue` through the default exchange.
pub(crate) async fn publish(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    id: &str,
) -> lapin::PublisherConfirm {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_message_id(id.into())
                .with_delivery_mode(2),
        )
        .await
        .expect("published")
}

impl Drop for OwnQueue {
    fn drop(&mut self) {
        let mut queues = vec![self.name.clone(), self.dead()];
        if let Some(listed) = list_queues() {
            let delays = format!("{}.delay.", self.name);
            queues.extend(
                listed
                    .into_iter()
                    .map(|(name, _, _)| name)
                    .filter(|name| name.starts_with(&delays)),
            );
        }
        let url = url();
        // A runtime of its own, on a thread of its own: the test's may be gone.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let Ok(connection) =
                    Connection::connect(&url, lapin::ConnectionProperties::default()).await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in queues {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "done".into()).await;
            });
        });
        let _ = deleted.join();
    }
}

/// Every queue on the broker's default virtual host with its ready and unacked
/// counts, as `rabbitmqctl` reports them (the broker's own view), or `None` when
/// `rabbitmqctl` cannot be run here.
pub(crate) fn list_queues() -> Option<Vec<(String, u64, u64)>> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let text = String::from_utf8_lossy(&output.stdout);
    Some(
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let name = fields.next()?.to_owned();
                let ready = fields.next()?.parse().ok()?;
                let unacked = fields.next()?.parse().ok()?;
                Some((name, ready, unacked))
            })
            .collect(),
    )
}

/// The broker's count of `queue`'s messages ready and delivered-but-unacked; the
/// test fails if `rabbitmqctl` cannot be run (the broker's view is the witness).
pub(crate) async fn counts(queue: &str) -> (u64, u64) {
    let queues = tokio::task::spawn_blocking(list_queues)
        .await
        .expect("rabbitmqctl ran")
        .expect(
            "rabbitmqctl lists the broker's queues (the tests read the broker's own counts with it)",
        );
    queues
        .into_iter()
        .find(|(name, _, _)| name == queue)
        .map(|(_, ready, unacked)| (ready, unacked))
        .unwrap_or_else(|| panic!("no queue {queue} on the broker"))
}

/// A source on the test's queue.
pub(crate) async fn source(options: RabbitOptions) -> RabbitSource {
    RabbitSource::connect(&url(), options)
        .await
        .expect("the source connects")
}

/// Waits until `done` says so, looking every 20 ms, for at most a minute (a guard
/// against a hang: the conditions read the broker's view).
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
