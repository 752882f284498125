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
    let address = brokers::nats_url();
    let address = address.trim_start_matches("nats://");
    let address = address.rsplit('@').next().unwrap_or(address);
    let upstream = tokio::net::lookup_host(address)
        .await
        .expect("the server's address")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await.expect("a proxy");
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
