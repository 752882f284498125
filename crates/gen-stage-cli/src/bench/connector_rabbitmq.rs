//! `connector_rabbitmq`: drain N messages preloaded in a fresh queue (the preload is
//! not timed), through a pipeline with trivial work and acks, against the loop
//! lapin's documentation recommends, written by hand: one consumer with the same
//! prefetch (the broker keeps pushing while a batch is handled), deliveries taken in
//! batches of the processors' size, and each batch acked with one `basic.ack` on its
//! last tag with `multiple` set (the batched ack a hand-written in-order loop
//! sends). Both sides close their connection before the clock stops: the broker has
//! then applied every ack (AMQP acks have no confirmation of their own).
//!
//! Both sides connect with a 1 s heartbeat: lapin's heartbeat task outlives its
//! connection by up to half the interval (30 s with the broker's default), and the
//! suite requires each run to leave no task behind within a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gen_stage::BoxError;
use gen_stage_rabbitmq::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use gen_stage_rabbitmq::lapin::types::FieldTable;
use gen_stage_rabbitmq::lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use gen_stage_rabbitmq::{RabbitOptions, RabbitSource};
use tokio::time::Instant;

use super::connector_count::drain_through;
use crate::broker_servers;

/// Messages per batch on both sides: the processors ask for this many at once.
const BATCH: usize = 100;
/// Delivered and not acked, at most: the prefetch on both sides.
const IN_FLIGHT: usize = 1000;

/// The broker's URL, with a 1 s heartbeat (see the module).
fn amqp_url() -> String {
    let url = broker_servers::amqp_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}heartbeat=1")
}

/// Whether the broker answers.
pub(crate) async fn reachable() -> Result<(), BoxError> {
    let connection = connect().await?;
    connection.close(200, "checked".into()).await?;
    Ok(())
}

async fn connect() -> Result<Connection, BoxError> {
    let url = amqp_url();
    let connecting = Connection::connect(&url, ConnectionProperties::default());
    Ok(tokio::time::timeout(Duration::from_secs(5), connecting).await??)
}

/// A fresh durable queue of `messages` messages, and a channel on the broker.
async fn preloaded(messages: u64) -> Result<(Connection, Channel, String), BoxError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let connection = connect().await?;
    let channel = connection.create_channel().await?;
    let name = format!(
        "gsb_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.as_str().into(), durable, FieldTable::default())
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::with_capacity(1000);
    for n in 0..messages {
        let body = n.to_string();
        let properties = BasicProperties::default().with_message_id(body.as_str().into());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    name.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    properties,
                )
                .await?,
        );
        if confirms.len() == 1000 {
            for confirm in confirms.drain(..) {
                confirm.await?;
            }
        }
    }
    for confirm in confirms {
        confirm.await?;
    }
    Ok((connection, channel, name))
}

/// Nothing is left in the queue (every consumer's connection is closed, so anything
/// unacked would be back in it); the queue is deleted.
async fn all_acked(connection: Connection, channel: &Channel, name: &str) -> Result<(), BoxError> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await?;
    channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await?;
    connection.close(200, "done".into()).await?;
    if queue.message_count() > 0 {
        return Err(format!("not every message acked: {} left", queue.message_count()).into());
    }
    Ok(())
}

/// The pipeline: a `RabbitSource` producer, two processors asking `BATCH` at a time.
pub(crate) async fn gen_stage(messages: u64) -> Result<Duration, BoxError> {
    let (connection, channel, name) = preloaded(messages).await?;
    let start = Instant::now();
    let options = RabbitOptions::new(name.as_str())
        .max_in_flight(IN_FLIGHT)
        .dead_letter_queue(None::<String>);
    let source = RabbitSource::connect(&amqp_url(), options).await?;
    let producing = source.clone();
    let report = drain_through(messages, BATCH, move || producing.producer()).await?;
    source.close().await?;
    let elapsed = start.elapsed();
    if report.settled.acked != messages || report.ack_failures.total() > 0 {
        return Err(format!("the pipeline did not ack every message: {report:?}").into());
    }
    all_acked(connection, &channel, &name).await?;
    Ok(elapsed)
}

/// The hand-written loop of the client's documentation, acking a batch at a time.
pub(crate) async fn baseline(messages: u64) -> Result<Duration, BoxError> {
    let (connection, channel, name) = preloaded(messages).await?;
    let start = Instant::now();
    let consuming = connect().await?;
    let consumer_channel = consuming.create_channel().await?;
    consumer_channel
        .basic_qos(IN_FLIGHT as u16, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            name.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut handled = 0;
    while handled < messages {
        // A batch: the first delivery waited for, the rest as pushed already.
        let Some(first) = consumer.next().await else {
            return Err("the consumer ended".into());
        };
        let mut last = first?;
        std::hint::black_box(&last.data);
        let mut taken = 1;
        while taken < BATCH {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => {
                    last = delivery?;
                    std::hint::black_box(&last.data);
                    taken += 1;
                }
                _ => break,
            }
        }
        last.ack(BasicAckOptions { multiple: true }).await?;
        handled += taken as u64;
    }
    consuming.close(200, "done".into()).await?;
    let elapsed = start.elapsed();
    all_acked(connection, &channel, &name).await?;
    Ok(elapsed)
}
