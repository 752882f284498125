//! Broker fault, NATS JetStream: the kit's proxy cuts the connection mid-stream and
//! refuses five reconnections; the client comes back through it after its backoff,
//! and no message is lost.

use std::collections::HashSet;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_conformance::{Proxy, brokers};
use gen_stage_nats::async_nats::{self, jetstream};
use gen_stage_nats::{Backoff, JetStreamOptions, JetStreamSource};
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions,
};
use tokio::sync::mpsc;

const MESSAGES: u64 = 300;

struct Record(mpsc::UnboundedSender<u64>);

impl Handler for Record {
    type Data = async_nats::Message;

    async fn handle_message(
        &self,
        message: &mut Message<async_nats::Message>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if let Some(MessageId::Number(sequence)) = message.metadata().id {
            let _ = self.0.send(sequence);
        }
        Ok(())
    }
}

/// The kit's proxy in front of the shared server.
async fn proxy_to_nats() -> Proxy {
    let url = brokers::nats_url();
    let address = url.trim_start_matches("nats://");
    let address = address.rsplit('@').next().unwrap_or(address);
    let upstream = tokio::net::lookup_host(address)
        .await
        .expect("the server's address")
        .next()
        .expect("an address");
    Proxy::start(upstream).await.expect("a proxy")
}

/// The next message handled, within a minute: a guard against a hang (a message
/// lost would otherwise be waited for for ever).
async fn next(handled: &mut mpsc::UnboundedReceiver<u64>) -> u64 {
    tokio::time::timeout(Duration::from_secs(60), handled.recv())
        .await
        .expect("no message is lost")
        .expect("the pipeline runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_stream_loses_no_message_and_the_source_reconnects() {
    let Some(client) = brokers::nats().await else {
        return;
    };
    let proxy = proxy_to_nats().await;
    let name = format!("gsc_fault_{}", std::process::id());
    let options = JetStreamOptions::new(name.as_str(), "workers")
        .ack_wait(Duration::from_secs(2))
        .idle_wait(Duration::from_millis(200))
        .max_in_flight(50)
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ));
    let source = JetStreamSource::connect(
        async_nats::ConnectOptions::new(),
        format!("nats://127.0.0.1:{}", proxy.port()).as_str(),
        options,
    )
    .await
    .expect("connects through the proxy");
    let js = jetstream::new(client.clone());
    let mut ids = HashSet::new();
    for n in 0..MESSAGES {
        let stored = js
            .publish(format!("{name}.jobs"), n.to_string().into())
            .await
            .expect("published")
            .await
            .expect("stored");
        ids.insert(stored.sequence);
    }
    let (seen, mut handled) = mpsc::unbounded_channel();
    let pipeline = PipelineBuilder::new(Record(seen))
        .producer({
            let source = source.clone();
            move || source.producer()
        })
        .processors(
            ProcessorOptions::new()
                .concurrency(2)
                .max_demand(10)
                .min_demand(5),
        )
        .source_health(source.clone())
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
    while distinct.len() < ids.len() {
        distinct.insert(next(&mut handled).await);
    }
    assert_eq!(distinct, ids, "every message handled");
    // Outcomes lost with the connection leave their messages to the ack wait: the
    // stream empties once every message is acked, whatever the outage interrupted.
    let stream = js.get_stream(&name).await.expect("the stream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stream.get_info().await.expect("info").state.messages > 0 {
        assert!(tokio::time::Instant::now() < deadline, "messages left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(proxy.refused(), 5, "the refused connections were tried");
    let state = source.state();
    assert!(state.connected && state.reconnect_attempt == 0, "{state:?}");
    assert!(state.last_error.is_some(), "the outage is reported");
    js.delete_stream(&name).await.expect("deleted");
}

/// Sends each message's attempt to the test when it starts, then waits for a permit.
struct Gated {
    seen: mpsc::UnboundedSender<u32>,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Handler for Gated {
    type Data = async_nats::Message;

    async fn handle_message(
        &self,
        message: &mut Message<async_nats::Message>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let _ = self.seen.send(message.metadata().attempt);
        self.gate.acquire().await?.forget();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_whose_ack_wait_ran_out_during_an_outage_is_voided_not_sent() {
    let Some(client) = brokers::nats().await else {
        return;
    };
    let proxy = proxy_to_nats().await;
    let name = format!("gsc_lapse_{}", std::process::id());
    let options = || {
        JetStreamOptions::new(name.as_str(), "workers")
            .ack_wait(Duration::from_secs(1))
            .idle_wait(Duration::from_millis(200))
            .backoff(Backoff::new(
                Duration::from_millis(100),
                Duration::from_millis(200),
            ))
    };
    let through_proxy = JetStreamSource::connect(
        async_nats::ConnectOptions::new(),
        format!("nats://127.0.0.1:{}", proxy.port()).as_str(),
        options(),
    )
    .await
    .expect("connects through the proxy");
    let direct = JetStreamSource::connect_url(&brokers::nats_url(), options())
        .await
        .expect("connects");
    let js = jetstream::new(client.clone());
    js.publish(format!("{name}.jobs"), "only".into())
        .await
        .expect("published")
        .await
        .expect("stored");
    let start = |source: &JetStreamSource, seen, gate| {
        let producing = source.clone();
        PipelineBuilder::new(Gated { seen, gate })
            .producer(move || producing.producer())
            .start()
    };
    let first_gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (first_seen, mut first) = mpsc::unbounded_channel();
    let first_pipeline = start(&through_proxy, first_seen, first_gate.clone())
        .await
        .expect("starts");
    assert_eq!(first.recv().await, Some(1), "the first instance has it");
    // Cut off for several ack waits: its renewals cannot reach the server.
    proxy.cut(25);
    let second_gate = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    let (second_seen, mut second) = mpsc::unbounded_channel();
    let second_pipeline = start(&direct, second_seen, second_gate)
        .await
        .expect("starts");
    let attempt = tokio::time::timeout(Duration::from_secs(60), second.recv())
        .await
        .expect("delivered again after the ack wait");
    assert_eq!(attempt, Some(2), "the server counted the second delivery");
    // The first handler finishes now: its ack could settle the second delivery, so
    // it is voided, not sent.
    first_gate.add_permits(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while through_proxy.state().voided == 0 {
        assert!(tokio::time::Instant::now() < deadline, "not voided");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stream = js.get_stream(&name).await.expect("the stream");
    while stream.get_info().await.expect("info").state.messages > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not acked by the second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_report = first_pipeline.drain(Duration::from_secs(30)).await;
    let second_report = second_pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(first_report.settled.acked, 1, "{first_report:?}");
    assert_eq!(second_report.settled.acked, 1, "{second_report:?}");
    assert_eq!(through_proxy.state().voided, 1);
    assert_eq!(direct.state().voided, 0);
    js.delete_stream(&name).await.expect("deleted");
}
