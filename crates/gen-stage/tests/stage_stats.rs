//! Live statistics read from stage handles: counts, demand, buffer and state.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gen_stage::stats::StageState;
use gen_stage::{BoxError, ExitReason, Producer, ProducerContext, SubscribeOptions};
use gen_stage_test::{CollectingConsumer, Gate, Request, Script, ScriptedProducer};

#[tokio::test]
async fn counts_demand_and_buffer_follow_the_traffic() {
    let (producer, _) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(producer)
        .buffer_size(3)
        .start()
        .await
        .expect("starts");
    assert_eq!(producer.stats().state, StageState::Running);
    let gate = Gate::closed();
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer.gated(gate.clone()))
        .subscribe_to(
            &producer,
            SubscribeOptions::new().max_demand(4).min_demand(2),
        )
        .start()
        .await
        .expect("starts");
    producer.estimate_buffered_count().await.expect("alive"); // the ask has arrived
    let stats = producer.stats();
    assert_eq!((stats.consumers, stats.demand_out), (1, 4));
    assert_eq!(consumer.stats().demand_in, 4);
    assert_eq!(consumer.stats().producers, 1);

    // 10 events against a demand of 4: 4 sent, 3 buffered (its size), 3 discarded.
    producer
        .cast(Script::Emit((0..10).collect()))
        .expect("alive");
    producer.estimate_buffered_count().await.expect("alive");
    let stats = producer.stats();
    assert_eq!(stats.events_emitted, 4);
    assert_eq!(stats.buffered, 3);
    assert_eq!(stats.events_discarded, 3);
    assert_eq!(stats.demand_out, 0);

    // The consumer holds its first batch: it has received 4, asked nothing more.
    gate.open(1);
    record.wait_for_events(2).await;
    gate.open_for_good();
    record.wait_for_events(7).await;
    consumer.call(Request::Ping).await.expect("alive");
    producer.estimate_buffered_count().await.expect("alive");
    let stats = consumer.stats();
    assert_eq!(stats.events_received, 7);
    // Three deliveries (4 sent at once, then 2 and 1 from the buffer, one for each ask
    // that reached it), and an ask at the start and after each 2 events handled.
    assert_eq!(stats.deliveries_received, 3);
    assert_eq!(stats.asks_sent, 4);
    assert_eq!(producer.stats().buffered, 0);
    assert_eq!(
        stats.demand_in,
        producer.stats().demand_out,
        "both sides agree on demand"
    );

    producer.stop(ExitReason::Shutdown).await.expect("alive");
    assert_eq!(producer.stats().state, StageState::Stopped);
    consumer.stopped().await;
    assert_eq!(consumer.stats().state, StageState::Stopped);
}

#[tokio::test]
async fn the_demand_snapshot_lists_each_subscription_on_both_sides() {
    use gen_stage::stats::{Side, SubscriptionDemand};
    let (producer, _) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(producer).start().await.expect("starts");
    let middle = gen_stage::producer_consumer(gen_stage_test::Relay::<u64>::pass_through())
        .subscribe_to(&producer, SubscribeOptions::new().max_demand(8))
        .start()
        .await
        .expect("starts");
    let (consumer, _record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer)
        .subscribe_to(&middle, SubscribeOptions::new().max_demand(3))
        .start()
        .await
        .expect("starts");
    consumer.call(Request::Ping).await.expect("alive");
    middle.estimate_buffered_count().await.expect("alive");
    let upstream_tag = producer.demand_snapshot().await.expect("alive")[0].tag;
    let downstream_tag = consumer.demand_snapshot().await.expect("alive")[0].tag;
    let sides: Vec<(Side, usize)> = middle
        .demand_snapshot()
        .await
        .expect("alive")
        .iter()
        .map(|demand: &SubscriptionDemand| (demand.side, demand.pending))
        .collect();
    assert!(sides.contains(&(Side::ToProducer, 8)), "{sides:?}");
    assert!(sides.contains(&(Side::FromConsumer, 3)), "{sides:?}");
    let producer_view = producer.demand_snapshot().await.expect("alive");
    assert_eq!(
        (producer_view[0].side, producer_view[0].pending),
        (Side::FromConsumer, 8)
    );
    assert_ne!(upstream_tag, downstream_tag);
}

/// A producer that emits what it is told, and can be held in `handle_message`.
struct Held;

enum HeldCommand {
    WaitFor(Gate),
    Emit(Vec<u64>),
}

impl Producer for Held {
    type Event = u64;
    type Message = HeldCommand;

    async fn handle_demand(
        &mut self,
        _: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_message(
        &mut self,
        command: HeldCommand,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match command {
            HeldCommand::WaitFor(gate) => gate.pass().await,
            HeldCommand::Emit(events) => ctx.emit(events),
        }
        Ok(())
    }
}

#[tokio::test]
async fn events_sent_to_a_consumer_that_is_gone_count_as_discarded_not_emitted() {
    let producer = gen_stage::producer(Held).start().await.unwrap();
    let (consumer, _, tag) = support::manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, support::n(5)).unwrap();
    support::settle(&producer, &[&consumer]).await;
    // The producer is held while the consumer dies; its cancellation waits behind the
    // emit, which the producer sends to the consumer's closed mailbox.
    let gate = Gate::closed();
    producer.cast(HeldCommand::WaitFor(gate.clone())).unwrap();
    producer
        .cast(HeldCommand::Emit(support::range(0, 5)))
        .unwrap();
    consumer.kill();
    consumer.stopped().await;
    gate.open_for_good();
    support::barrier(&producer).await;
    let stats = producer.stats();
    assert_eq!((stats.events_emitted, stats.events_discarded), (0, 5));
}

/// Counts the error events logged on the thread that installed it (`#[tokio::test]`
/// runs every stage on that one thread).
struct CountErrors(Arc<AtomicUsize>);

impl tracing::Subscriber for CountErrors {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn events_beyond_automatic_demand_are_counted_in_excess() {
    let errors = Arc::new(AtomicUsize::new(0));
    let _logging = tracing::subscriber::set_default(CountErrors(errors.clone()));
    let (producer, demands) = support::scripted::<u64>().await;
    let (consumer, record) = support::collect(&producer, support::opts(10, 0)).await;
    let tag = record.wait_for_subscriptions(1).await[0];
    producer.cast(Script::Queue(support::range(0, 6))).unwrap();
    record.wait_for_events(6).await;
    consumer.call(Request::Ping).await.unwrap();
    assert_eq!(consumer.stats().events_in_excess, 0, "within demand");
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "nothing in excess, no error"
    );

    // An ask by hand on the automatic subscription: its automatic demand (4 left) does
    // not know of it, so 3 of the next 7 events arrive beyond it.
    consumer.ask(tag, support::n(3)).unwrap();
    demands.wait_until(|r| r.demands == vec![10, 3]).await;
    producer.cast(Script::Queue(support::range(6, 13))).unwrap();
    record.wait_for_events(13).await;
    consumer.call(Request::Ping).await.unwrap();
    let stats = consumer.stats();
    assert_eq!((stats.events_received, stats.events_in_excess), (13, 3));
    assert_eq!(
        errors.load(Ordering::Relaxed),
        1,
        "the excess is logged once"
    );
    assert_eq!(record.batch_sizes(), vec![6, 7]);
}
