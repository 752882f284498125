//! What reaches a stage while it stops: subscriptions that arrive during its
//! `terminate` hook are refused, never left unanswered.

use gen_stage::{
    BoxError, CancelMode, CancelReason, ExitReason, Producer, ProducerContext, SubscribeError,
    SubscribeOptions,
};
use gen_stage_test::{CollectingConsumer, Gate};

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

async fn stopping_producer() -> (gen_stage::ProducerRef<SlowToStop>, Gate) {
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

#[tokio::test]
async fn a_sync_subscription_arriving_while_the_producer_stops_fails() {
    let (producer, gate) = stopping_producer().await;
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer).start().await.expect("starts");
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
    let (producer, gate) = stopping_producer().await;
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer).start().await.expect("starts");
    consumer
        .async_subscribe_to(
            &producer,
            SubscribeOptions::new().cancel(CancelMode::Temporary),
        )
        .expect("valid options");
    record.wait_for_subscriptions(1).await;
    gate.open_for_good();
    let cancels = record.wait_for_cancels(1).await;
    assert_eq!(cancels[0].1, CancelReason::Down(ExitReason::Shutdown));
    assert!(
        consumer.is_alive(),
        "a temporary subscription keeps the consumer running"
    );
}

#[tokio::test]
async fn a_permanent_async_subscription_to_a_stopping_producer_stops_the_consumer() {
    let (producer, gate) = stopping_producer().await;
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer).start().await.expect("starts");
    consumer
        .async_subscribe_to(&producer, SubscribeOptions::new())
        .expect("valid options");
    record.wait_for_subscriptions(1).await;
    gate.open_for_good();
    assert_eq!(consumer.stopped().await, ExitReason::Shutdown);
}
