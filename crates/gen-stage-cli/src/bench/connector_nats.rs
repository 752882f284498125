//! `connector_nats`: drain N messages preloaded in a fresh JetStream stream (the
//! preload is not timed), through a pipeline with trivial work and acks, against the
//! loop async-nats's documentation recommends, written by hand for the same durable
//! pull consumer: `Consumer::stream` pulling batches of the same size with the next
//! pull in flight while a batch is handled, a plain ack (not a double ack) per
//! message, and the client flushed before the run ends, as the pipeline's side
//! flushes its source after its drain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use gen_stage::BoxError;
use gen_stage_nats::async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use gen_stage_nats::async_nats::jetstream::stream::{self, RetentionPolicy};
use gen_stage_nats::async_nats::{self, Client, jetstream};
use gen_stage_nats::{JetStreamOptions, JetStreamSource};
use tokio::time::Instant;

use super::connector_count::drain_through;
use crate::broker_servers::nats_url;

/// Messages per pull on both sides: the processors ask for this many at once.
const BATCH: usize = 100;
/// Delivered and not acked, at most: the source's budget and the consumer's
/// `max_ack_pending` on both sides.
const IN_FLIGHT: usize = 1000;
const CONSUMER: &str = "bench";

/// Whether the server answers.
pub(crate) async fn reachable() -> Result<(), BoxError> {
    connect().await.map(drop)
}

async fn connect() -> Result<Client, BoxError> {
    Ok(async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(nats_url().as_str())
        .await?)
}

/// A fresh work-queue stream of `messages` messages, and a client of the server.
async fn preloaded(messages: u64) -> Result<(Client, String), BoxError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let client = connect().await?;
    let name = format!(
        "gsb_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        retention: RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await?;
    let subject = format!("{name}.jobs");
    let mut stored = Vec::with_capacity(1000);
    for n in 0..messages {
        stored.push(js.publish(subject.clone(), n.to_string().into()).await?);
        if stored.len() == 1000 {
            for ack in stored.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in stored {
        ack.await?;
    }
    Ok((client, name))
}

/// Nothing is left delivered, unacked or stored (the server applies acks on its own
/// time: it has up to 10 s to show them); the stream is deleted.
async fn all_acked(client: &Client, name: &str) -> Result<(), BoxError> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(name).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = loop {
        let consumer = stream.consumer_info(CONSUMER).await?;
        let stored = stream.get_info().await?.state.messages;
        let left = (consumer.num_ack_pending, consumer.num_pending, stored);
        if left == (0, 0, 0) || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    js.delete_stream(name).await?;
    if left != (0, 0, 0) {
        return Err(format!(
            "not every message acked: {} delivered and unacked, {} not delivered, {} stored",
            left.0, left.1, left.2
        )
        .into());
    }
    Ok(())
}

/// The pipeline: a `JetStreamSource` producer, two processors asking `BATCH` at a
/// time.
pub(crate) async fn gen_stage(messages: u64) -> Result<Duration, BoxError> {
    let (client, name) = preloaded(messages).await?;
    let start = Instant::now();
    let options = JetStreamOptions::new(name.as_str(), CONSUMER).max_in_flight(IN_FLIGHT);
    let source = JetStreamSource::connect_url(&nats_url(), options).await?;
    let producing = source.clone();
    let report = drain_through(messages, BATCH, move || producing.producer()).await?;
    source.flush(Duration::from_secs(10)).await?;
    let elapsed = start.elapsed();
    if report.settled.acked != messages || report.ack_failures.total() > 0 {
        return Err(format!("the pipeline did not ack every message: {report:?}").into());
    }
    all_acked(&client, &name).await?;
    Ok(elapsed)
}

/// The hand-written loop of the client's documentation.
pub(crate) async fn baseline(messages: u64) -> Result<Duration, BoxError> {
    let (client, name) = preloaded(messages).await?;
    let start = Instant::now();
    let consumer = connect().await?;
    let consumer_client = consumer.clone();
    let stream = jetstream::new(consumer).get_stream(&name).await?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: IN_FLIGHT as i64,
                ..Default::default()
            },
        )
        .await?;
    let mut delivered = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await?;
    let mut handled = 0;
    while handled < messages {
        let Some(message) = delivered.next().await else {
            return Err("the consumer's stream ended".into());
        };
        let message = message?;
        std::hint::black_box(&message.payload);
        message.ack().await?;
        handled += 1;
    }
    drop(delivered);
    consumer_client.flush().await?;
    let elapsed = start.elapsed();
    all_acked(&client, &name).await?;
    Ok(elapsed)
}
