//! What reaches a stage while it stops: subscriptions that arrive during its
//! `terminate` hook are refused, never left unanswered, also when the stage is killed
//! there.

mod support;

use futures::{FutureExt, StreamExt};
use gen_stage::error::SubscribeError;
use gen_stage::{
    BoxError, CancelMode, CancelReason, ExitReason, Producer, ProducerContext, ProducerRef,
    SubscribeOptions,
};
use gen_stage_test::Relay;
use gen_stage_test::{Counter, Gate, Record, Watch};
use support::{Collector, collect, collector, opts, within};

/// A producer whose `terminate` hook waits for a gate, so that the test can send it
/// messages while it stops.
struct SlowToStop {
    gate: Gate,
    terminating: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Producer for SlowToStop {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(Vec::new())
    }

    async fn terminate(&mut self, _reason: &ExitReason) {
        let _ = self.terminating.send(());
        self.gate.pass().await;
    }
}

async fn stopping_producer() -> (ProducerRef<SlowToStop>, Gate) {
    let gate = Gate::closed();
    let (terminating, mut started) = tokio::sync::mpsc::unbounded_channel();
    let producer = gen_stage::producer(SlowToStop {
        gate: gate.clone(),
        terminating,
    })
    .start()
    .await
    .expect("starts");
    let stopping = producer.clone();
    tokio::spawn(async move { stopping.stop(ExitReason::Shutdown).await });
    started.recv().await.expect("terminate started");
    (producer, gate)
}

/// Subscribes a fresh recording consumer asynchronously with `options` to a producer that
/// is stopping, and lets the producer finish stopping once the consumer has registered
/// the subscription. Returns the producer too, so that its handle lives on.
async fn async_subscribe_while_stopping(
    options: SubscribeOptions,
) -> (ProducerRef<SlowToStop>, Collector<u64>, Watch<Record<u64>>) {
    let (producer, gate) = stopping_producer().await;
    let (consumer, record) = collector::<u64>().await;
    consumer
        .async_subscribe_to(&producer, options)
        .expect("valid options");
    record.wait_for_subscriptions(1).await;
    gate.open_for_good();
    (producer, consumer, record)
}

#[tokio::test]
async fn a_sync_subscription_arriving_while_the_producer_stops_fails() {
    let (producer, gate) = stopping_producer().await;
    let (consumer, record) = collector::<u64>().await;
    let subscribing = {
        let consumer = consumer.clone();
        let producer = producer.clone();
        tokio::spawn(async move {
            consumer
                .subscribe_to(&producer, SubscribeOptions::new())
                .await
        })
    };
    // The subscription is registered on the consumer side before the producer answers.
    record.wait_for_subscriptions(1).await;
    gate.open_for_good();
    let result = subscribing.await.expect("the task ran");
    assert!(
        matches!(result, Err(SubscribeError::ProducerNotAlive)),
        "{result:?}"
    );
    assert_eq!(producer.stopped().await, ExitReason::Shutdown);
    assert!(
        consumer.is_alive(),
        "a failed sync subscription never stops the consumer"
    );
}

#[tokio::test]
async fn an_async_subscription_arriving_while_the_producer_stops_reaches_handle_cancel() {
    let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
    let (_producer, consumer, record) = async_subscribe_while_stopping(temporary).await;
    let cancels = record.wait_for_cancels(1).await;
    assert_eq!(cancels[0].1, CancelReason::Down(ExitReason::Shutdown));
    assert!(
        consumer.is_alive(),
        "a temporary subscription keeps the consumer running"
    );
}

#[tokio::test]
async fn a_permanent_async_subscription_to_a_stopping_producer_stops_the_consumer() {
    let (_producer, consumer, _) = async_subscribe_while_stopping(SubscribeOptions::new()).await;
    assert_eq!(consumer.stopped().await, ExitReason::Shutdown);
}

#[tokio::test]
async fn subscriptions_queued_at_a_killed_producer_are_told_it_is_gone() {
    let (producer, _gate) = stopping_producer().await;
    let (consumer, record) = collector::<u64>().await;
    consumer
        .async_subscribe_to(&producer, SubscribeOptions::new())
        .expect("valid options");
    record.wait_for_subscriptions(1).await;
    let mut stream =
        gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).expect("valid options");
    // The first poll sends the stream's subscription: it waits in the producer's mailbox
    // while the producer is in its `terminate` hook.
    assert_eq!(stream.next().now_or_never(), None);
    producer.kill();
    assert_eq!(producer.stopped().await, ExitReason::Killed);
    // Killed rather than stopped, the producer still tells both: the permanent consumer
    // stops and the stream ends, with a reason.
    within("the consumer stops", consumer.stopped()).await;
    assert_eq!(within("the stream ends", stream.next()).await, None);
    assert!(stream.end_reason().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finite_pipeline_winds_down_without_losing_buffered_output() {
    let producer = gen_stage::producer(Counter::new(0).limit(2000))
        .start()
        .await
        .expect("starts");
    // Both consumers subscribe before the relay does: otherwise the first one could
    // drain the whole finite pipeline, which then stops, before the second subscribes.
    let middle = gen_stage::producer_consumer(Relay::pass_through())
        .start()
        .await
        .expect("the relay starts");
    let mut records = Vec::new();
    let mut consumers = Vec::new();
    for max in [15, 8] {
        let (consumer, record) = collect(&middle, SubscribeOptions::new().max_demand(max)).await;
        records.push(record);
        consumers.push(consumer);
    }
    middle
        .subscribe_to(&producer, opts(40, 10))
        .await
        .expect("the relay subscribes");
    for consumer in &consumers {
        assert_eq!(consumer.stopped().await, ExitReason::Normal);
    }
    assert_eq!(middle.stopped().await, ExitReason::Normal);
    let mut all: Vec<u64> = records.iter().flat_map(|record| record.events()).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..2000).collect::<Vec<_>>(),
        "every event exactly once"
    );
}
