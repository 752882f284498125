//! The shared servers, as the kit's scenarios find them: their URLs from the
//! environment (loopback defaults), and a client, or a skip with a notice when the
//! server is unreachable (a failure under `GEN_STAGE_REQUIRE_BROKERS=1`).

use gen_stage_nats::async_nats;
use gen_stage_postgres::tokio_postgres::{self, NoTls};
use gen_stage_rabbitmq::lapin;

/// PostgreSQL: `GEN_STAGE_POSTGRES_URL`, or the loopback default.
pub fn postgres_url() -> String {
    std::env::var("GEN_STAGE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// NATS: `GEN_STAGE_NATS_URL`, or the loopback default.
pub fn nats_url() -> String {
    std::env::var("GEN_STAGE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// RabbitMQ: `GEN_STAGE_AMQP_URL`, or the loopback default (the broker's guest
/// user).
pub fn amqp_url() -> String {
    std::env::var("GEN_STAGE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A PostgreSQL client, or `None` when the server is unreachable (see the module).
pub async fn postgres() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&postgres_url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(error) => unreachable_server("PostgreSQL", &postgres_url(), &error),
    }
}

/// A NATS client, or `None` when the server is unreachable (see the module).
pub async fn nats() -> Option<async_nats::Client> {
    match async_nats::connect(nats_url().as_str()).await {
        Ok(client) => Some(client),
        Err(error) => unreachable_server("NATS", &nats_url(), &error),
    }
}

/// A RabbitMQ connection, or `None` when the broker is unreachable (see the module).
pub async fn rabbitmq() -> Option<lapin::Connection> {
    match lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await {
        Ok(connection) => Some(connection),
        Err(error) => unreachable_server("RabbitMQ", &amqp_url(), &error),
    }
}

/// Publishes one message per id to `queue` (through the default exchange; body and
/// `message_id` the id in decimal) on a channel of `connection` in confirm mode,
/// and waits for the broker to confirm them all.
///
/// # Panics
///
/// If the broker does not take them.
pub async fn rabbitmq_publish(
    connection: &lapin::Connection,
    queue: &str,
    ids: std::ops::Range<u64>,
) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut confirms = Vec::new();
    for id in ids {
        let id = id.to_string();
        let properties = lapin::BasicProperties::default().with_message_id(id.as_str().into());
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                id.as_bytes(),
                properties,
            )
            .await
            .expect("published");
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert!(confirm.await.expect("confirmed").is_ack(), "stored");
    }
    let _ = channel.close(200, "published".into()).await;
}

/// The messages of `queue` ready and delivered-but-unacked, as the broker counts
/// them (`rabbitmqctl list_queues`, on the broker's machine), or `None` if there is
/// no such queue.
///
/// # Panics
///
/// If `rabbitmqctl` cannot be run: the broker's own view is the scenarios' witness.
pub async fn rabbitmq_counts(queue: &str) -> Option<(u64, u64)> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .await
        .ok()
        .filter(|output| output.status.success())
        .expect("rabbitmqctl lists the broker's queues (the broker's view is the witness)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            if fields.next()? != queue {
                return None;
            }
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
}

/// RabbitMQ queues a scenario made: deleted when this goes, even when the scenario
/// fails (on a thread and runtime of its own: the scenario's may be gone).
#[derive(Debug)]
pub struct RabbitQueues(pub Vec<String>);

impl RabbitQueues {
    /// `queue` and its dead-letter queue, `<queue>.dead`.
    pub fn with_dead_letters(queue: &str) -> Self {
        RabbitQueues(vec![queue.to_owned(), format!("{queue}.dead")])
    }
}

impl Drop for RabbitQueues {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.0);
        let deleted = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Some(connection) = rabbitmq().await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in queues {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), Default::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "cleaned up".into()).await;
            });
        });
        let _ = deleted.join();
    }
}

fn unreachable_server<T>(server: &str, url: &str, error: &dyn std::fmt::Display) -> Option<T> {
    if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") {
        panic!("{server} at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}");
    }
    eprintln!("skipped: {server} at {url} is unreachable ({error})");
    None
}
