//! The shared servers, as the kit's scenarios find them: their URLs from the
//! environment (loopback defaults), and a client, or a skip with a notice when the
//! server is unreachable (a failure under `GEN_STAGE_REQUIRE_BROKERS=1`).

use gen_stage_nats::async_nats;
use gen_stage_postgres::tokio_postgres::{self, NoTls};
use gen_stage_rabbitmq::lapin;
use gen_stage_redis::redis::{self, aio::MultiplexedConnection};

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

/// Redis: `GEN_STAGE_REDIS_URL`, or the loopback default.
pub fn redis_url() -> String {
    std::env::var("GEN_STAGE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
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

/// A Redis connection, or `None` when the server is unreachable (see the module).
pub async fn redis() -> Option<MultiplexedConnection> {
    let connected = async {
        redis::Client::open(redis_url())?
            .get_multiplexed_async_connection()
            .await
    }
    .await;
    match connected {
        Ok(connection) => Some(connection),
        Err(error) => unreachable_server("Redis", &redis_url(), &error),
    }
}

/// Adds one entry per id to `stream`, with the id `<id>-1` (so the entry id names
/// the message: the worker records the part before the dash) and the field `n`.
///
/// # Panics
///
/// If the server does not take them (an id not above the stream's last).
pub async fn redis_add(
    connection: &mut MultiplexedConnection,
    stream: &str,
    ids: std::ops::Range<u64>,
) {
    for chunk in ids.collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("XADD")
                .arg(stream)
                .arg(format!("{id}-1"))
                .arg("n")
                .arg(id);
        }
        let _: Vec<String> = pipe.query_async(connection).await.expect("added");
    }
}

/// The entries of `stream` the group `workers` has not settled, as the server
/// counts them: pending (read, not acked), not yet read (the group's lag), and
/// retries waiting in `<stream>:delayed`.
///
/// # Panics
///
/// If the server cannot say (the group's lag unknown: entries were deleted).
pub async fn redis_left(connection: &mut MultiplexedConnection, stream: &str) -> u64 {
    let (pending, groups, delayed): (redis::Value, redis::streams::StreamInfoGroupsReply, u64) =
        redis::pipe()
            .cmd("XPENDING")
            .arg(stream)
            .arg("workers")
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .cmd("ZCARD")
            .arg(format!("{stream}:delayed"))
            .query_async(connection)
            .await
            .expect("the group's view");
    let pending = match pending {
        redis::Value::Array(summary) => summary
            .into_iter()
            .next()
            .and_then(|count| redis::from_redis_value::<u64>(count).ok())
            .unwrap_or(0),
        _ => 0,
    };
    let lag = groups
        .groups
        .iter()
        .find(|group| group.name == "workers")
        .and_then(|group| group.lag)
        .expect("the group's lag");
    pending + lag as u64 + delayed
}

/// The keys of a scenario's Redis stream (`<stream>*`: the stream, its delayed set,
/// dead letters and owner keys): deleted when this goes, even when the scenario
/// fails.
#[derive(Debug)]
pub struct RedisKeys(pub String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(mut connection) =
            redis::Client::open(redis_url()).and_then(|client| client.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut connection)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut connection);
        }
    }
}

fn unreachable_server<T>(server: &str, url: &str, error: &dyn std::fmt::Display) -> Option<T> {
    if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") {
        panic!("{server} at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}");
    }
    eprintln!("skipped: {server} at {url} is unreachable ({error})");
    None
}
