//! Broker fault, RabbitMQ: the kit's proxy cuts the connection mid-stream and
//! refuses five reconnections; the source connects again after its backoff and no
//! message is lost. An outcome for a delivery of the lost connection is voided, never
//! sent on the new one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_conformance::{Proxy, brokers, wait_until};
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions,
};
use gen_stage_rabbitmq::lapin::Connection;
use gen_stage_rabbitmq::{Backoff, RabbitMessage, RabbitOptions, RabbitSource};
use tokio::sync::{Semaphore, mpsc};

const MINUTE: Duration = Duration::from_secs(60);

/// Sends each message's id and attempt to the test when it starts, then waits for a
/// permit if gated.
struct Record {
    seen: mpsc::UnboundedSender<(u64, u32)>,
    gate: Option<Arc<Semaphore>>,
}

impl Handler for Record {
    type Data = RabbitMessage;

    async fn handle_message(
        &self,
        message: &mut Message<RabbitMessage>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let Some(MessageId::Text(id)) = &message.metadata().id else {
            return Err("a message without its id".into());
        };
        let _ = self.seen.send((id.parse()?, message.metadata().attempt));
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        Ok(())
    }
}

/// The kit's proxy in front of the shared broker.
async fn proxy_to_rabbitmq() -> Proxy {
    let url = brokers::amqp_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let address = rest.split('/').next().unwrap_or(rest);
    let upstream = tokio::net::lookup_host(address)
        .await
        .expect("the broker's address")
        .next()
        .expect("an address");
    Proxy::start(upstream).await.expect("a proxy")
}

/// The broker's URL with the proxy's port.
fn through(proxy: &Proxy) -> String {
    let url = brokers::amqp_url();
    let (scheme, rest) = url.split_once("://").expect("an AMQP URL");
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    format!("{scheme}://{credentials}127.0.0.1:{}/{path}", proxy.port())
}

/// A connection to the broker, and a queue name of the test's own (deleted with its
/// dead-letter queue when the guard goes).
async fn connection_and_queue(test: &str) -> Option<(Connection, String, brokers::RabbitQueues)> {
    let connection = brokers::rabbitmq().await?;
    let queue = format!("gsc_{test}_{}", std::process::id());
    let guard = brokers::RabbitQueues::with_dead_letters(&queue);
    Some((connection, queue, guard))
}

/// The next message handled, within a minute: a guard against a hang (a message
/// lost would otherwise be waited for for ever).
async fn next(handled: &mut mpsc::UnboundedReceiver<(u64, u32)>) -> u64 {
    tokio::time::timeout(Duration::from_secs(60), handled.recv())
        .await
        .expect("no message is lost")
        .expect("the pipeline runs")
        .0
}

fn fed_by(source: &RabbitSource, handler: Record) -> PipelineBuilder<Record> {
    let producing = source.clone();
    PipelineBuilder::new(handler)
        .producer(move || producing.producer())
        .processors(
            ProcessorOptions::new()
                .concurrency(2)
                .max_demand(10)
                .min_demand(5),
        )
        .source_health(source.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_stream_loses_no_message_and_the_source_reconnects() {
    const MESSAGES: u64 = 300;
    let Some((connection, queue, _guard)) = connection_and_queue("fault").await else {
        return;
    };
    let proxy = proxy_to_rabbitmq().await;
    let options = RabbitOptions::new(queue.as_str())
        .max_in_flight(50)
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ));
    let source = RabbitSource::connect(&through(&proxy), options)
        .await
        .expect("connects through the proxy");
    brokers::rabbitmq_publish(&connection, &queue, 0..MESSAGES).await;
    let (seen, mut handled) = mpsc::unbounded_channel();
    let pipeline = fed_by(&source, Record { seen, gate: None })
        .start()
        .await
        .expect("the pipeline starts");
    let mut distinct = HashSet::new();
    while distinct.len() < 100 {
        distinct.insert(next(&mut handled).await);
    }
    assert!(pipeline.snapshot().sources[0].connected);
    // Mid-stream: the connection cut, the next five refused.
    proxy.cut(5);
    while distinct.len() < MESSAGES as usize {
        distinct.insert(next(&mut handled).await);
    }
    assert_eq!(
        distinct,
        (0..MESSAGES).collect::<HashSet<u64>>(),
        "every message handled"
    );
    // The queue empties once every message is acked, whatever the outage interrupted.
    wait_until("the broker's view", MINUTE, || async {
        brokers::rabbitmq_counts(&queue).await == Some((0, 0))
    })
    .await;
    pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(proxy.refused(), 5, "the refused connections were tried");
    let state = source.state();
    assert!(state.connected && state.reconnect_attempt == 0, "{state:?}");
    assert!(state.last_error.is_some(), "the outage is reported");
    source.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_for_a_delivery_of_a_lost_connection_is_voided_not_sent() {
    let Some((connection, queue, _guard)) = connection_and_queue("voided").await else {
        return;
    };
    let proxy = proxy_to_rabbitmq().await;
    let options = RabbitOptions::new(queue.as_str()).backoff(Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(100),
    ));
    let source = RabbitSource::connect(&through(&proxy), options)
        .await
        .expect("connects through the proxy");
    brokers::rabbitmq_publish(&connection, &queue, 0..1).await;
    let gate = Arc::new(Semaphore::new(0));
    let (seen, mut handled) = mpsc::unbounded_channel();
    let pipeline = fed_by(
        &source,
        Record {
            seen,
            gate: Some(gate.clone()),
        },
    )
    .start()
    .await
    .expect("the pipeline starts");
    assert_eq!(
        handled.recv().await,
        Some((0, 1)),
        "delivered on the first connection"
    );
    // The connection goes while the handler works: the broker takes the message back
    // and delivers it again on the next connection, to this same instance.
    proxy.cut(0);
    let again = tokio::time::timeout(Duration::from_secs(60), handled.recv())
        .await
        .expect("delivered again after the reconnection");
    assert_eq!(again, Some((0, 2)), "marked redelivered");
    // Both handlers finish. The first delivery's tag died with its connection: its
    // ack is voided; the second's is sent.
    gate.add_permits(2);
    wait_until("voided", MINUTE, || async { source.state().voided == 1 }).await;
    wait_until("the broker's view", MINUTE, || async {
        brokers::rabbitmq_counts(&queue).await == Some((0, 0))
    })
    .await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 2, "{report:?}");
    let state = source.state();
    assert_eq!((state.voided, state.failed_outcomes), (1, 0), "{state:?}");
    source.close().await.expect("closed");
}
