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

fn unreachable_server<T>(server: &str, url: &str, error: &dyn std::fmt::Display) -> Option<T> {
    if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") {
        panic!("{server} at {url} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}");
    }
    eprintln!("skipped: {server} at {url} is unreachable ({error})");
    None
}
