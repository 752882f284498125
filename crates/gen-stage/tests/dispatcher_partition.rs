//! The partition dispatcher through running stages: routing by number, key or hash,
//! discards, refused subscriptions, events held for partitions without a consumer (and
//! their limit), cancellation, shared partitions, finite producers, and a partitioning
//! producer-consumer (semantics §6.3 and §10 item 16, with this library's documented
//! differences).

mod support;

use gen_stage::builder::BufferKeep;
use gen_stage::dispatcher::{Partition, PartitionDispatcher, PartitionError};
use gen_stage::error::SubscribeError;
use gen_stage::kind::EmitsEvents;
use gen_stage::{ExitReason, ProducerRef, ReplyTo, StageRef, SubscribeOptions, SubscriptionTag};
use gen_stage_test::Relay;
use gen_stage_test::{
    CollectingConsumer, Counter, ProducerRecord, Script, ScriptedProducer, Watch,
};
use support::{
    Collector, Events, ask_then_queue, collector, dispatching, manual_consumer, n, opts, range,
    recorded_counter, rejection, scripted_by, settle, shared_exactly_once, start_is_rejected,
    stops_having_received, stops_normally,
};

type Scripted = ProducerRef<ScriptedProducer<u64>>;

/// The numbers below `to` that are `rest` modulo `count`.
fn residues(to: u64, count: u64, rest: u64) -> Vec<u64> {
    (0..to).filter(|x| x % count == rest).collect()
}

/// Partitions `0..count` by the remainder of the event.
fn modulo(count: usize) -> PartitionDispatcher<u64, usize> {
    PartitionDispatcher::by_count(count, move |x: &u64| (*x % count as u64) as usize)
}

async fn scripted(
    dispatcher: PartitionDispatcher<u64, usize>,
) -> (Scripted, Watch<ProducerRecord>) {
    scripted_by(dispatcher).await
}

/// An automatic collecting consumer of `partition`.
async fn collect<P, K>(
    producer: &StageRef<P>,
    partition: K,
    options: SubscribeOptions,
) -> (Collector<u64>, Events<u64>)
where
    P: EmitsEvents<Out = u64>,
    K: Send + Sync + 'static,
{
    support::collect(producer, options.with(Partition(partition))).await
}

/// A manual collecting consumer of `partition`, with its subscription.
async fn manual<P, K>(
    producer: &StageRef<P>,
    partition: K,
) -> (Collector<u64>, Events<u64>, SubscriptionTag)
where
    P: EmitsEvents<Out = u64>,
    K: Send + Sync + 'static,
{
    manual_consumer(producer, self::partition(partition)).await
}

/// Subscribes to `partition` with default options.
fn partition<K: Send + Sync + 'static>(partition: K) -> SubscribeOptions {
    SubscribeOptions::new().with(Partition(partition))
}

/// The partition error a refused subscription carries.
fn partition_error(subscribed: Result<SubscriptionTag, SubscribeError>) -> PartitionError {
    let error = rejection(subscribed);
    let partition_error = error.downcast_ref::<PartitionError>().cloned();
    partition_error.unwrap_or_else(|| panic!("not a partition error: {error}"))
}

// ---------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn each_event_goes_to_exactly_one_consumer_of_its_partition_in_order() {
    let producer = dispatching(Counter::new(0).limit(300), modulo(3)).await;
    // Partition numbers may be given as any integer type.
    let (c0, r0) = collect(&producer, 0usize, opts(10, 5)).await;
    let (c1, r1) = collect(&producer, 1i32, opts(7, 2)).await;
    let (c2, r2) = collect(&producer, 2u8, opts(50, 0)).await;

    for (consumer, record, rest) in [(&c0, &r0, 0), (&c1, &r1, 1), (&c2, &r2, 2)] {
        stops_having_received(consumer, record, residues(300, 3, rest)).await;
    }
    stops_normally(&producer).await;
    assert!(r1.batch_sizes().iter().all(|&size| size <= 5));
}

#[tokio::test]
async fn named_partitions_route_by_key() {
    let dispatcher = PartitionDispatcher::new(["even", "odd"], |x: &u64| {
        Some(if x % 2 == 0 { "even" } else { "odd" })
    });
    let producer = dispatching(Counter::new(0).limit(100), dispatcher).await;
    let (odd, ro) = collect(&producer, "odd", opts(10, 5)).await;
    let (even, re) = collect(&producer, "even", opts(10, 5)).await;

    stops_having_received(&odd, &ro, residues(100, 2, 1)).await;
    stops_having_received(&even, &re, residues(100, 2, 0)).await;
}

#[tokio::test]
async fn hashed_partitions_deliver_every_event_once() {
    let hashed = PartitionDispatcher::hashed(3);
    let producer = dispatching(Counter::new(0).limit(300), hashed).await;
    let mut consumers = Vec::new();
    for partition in 0..3usize {
        consumers.push(collect(&producer, partition, opts(20, 10)).await);
    }
    for (consumer, _) in &consumers {
        stops_normally(consumer).await;
    }
    let records: Vec<_> = consumers.iter().map(|(_, record)| record).collect();
    shared_exactly_once(&records, range(0, 300));
}

#[tokio::test]
async fn hash_returning_none_discards_the_event_without_consuming_demand() {
    let dispatcher = PartitionDispatcher::new(["a"], |x: &u64| (x % 3 != 0).then_some("a"));
    let (producer, _) = scripted_by(dispatcher).await;
    let (consumer, record, tag) = manual(&producer, "a").await;

    consumer.ask(tag, n(4)).unwrap();
    settle(&producer, &[&consumer]).await;
    producer.cast(Script::Emit(range(0, 8))).unwrap();
    settle(&producer, &[&consumer]).await;
    // 0 and 3 are discarded and leave the demand to 4 and 5; 6 and 7 find no demand.
    assert_eq!(record.events(), vec![1, 2, 4, 5]);
    assert_eq!(producer.stats().events_discarded, 2);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);

    consumer.ask(tag, n(2)).unwrap();
    settle(&producer, &[&consumer]).await;
    // 6 is discarded: only 7 goes out, and one event is still owed.
    assert_eq!(record.events(), vec![1, 2, 4, 5, 7]);
    assert_eq!(producer.stats().events_discarded, 3);
}

#[tokio::test]
async fn partition_out_of_range_discards_the_event_and_counts_it() {
    let dispatcher = PartitionDispatcher::by_count(2, |x: &u64| (*x % 3) as usize);
    let (producer, _) = scripted(dispatcher).await;
    let (c0, r0, t0) = manual(&producer, 0).await;
    let (c1, r1, t1) = manual(&producer, 1).await;
    ask_then_queue(&producer, &[(&c0, t0, 10), (&c1, t1, 10)], range(0, 9)).await;
    assert_eq!(r0.events(), vec![0, 3, 6]);
    assert_eq!(r1.events(), vec![1, 4, 7]);
    assert_eq!(producer.stats().events_discarded, 3);
    assert!(producer.is_alive());
}

// ---------------------------------------------------------------------------------------
// Refused subscriptions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_unknown_and_taken_partitions_are_rejected_and_the_producer_keeps_running() {
    let (producer, _) = scripted(modulo(2)).await;
    let (taker, r0, t0) = manual(&producer, 0).await;
    let (other, _) = CollectingConsumer::<u64>::new();
    let other = gen_stage::consumer(other.manual()).start().await.unwrap();

    // No partition named.
    let missing = other.subscribe_to(&producer, SubscribeOptions::new()).await;
    let missing = partition_error(missing);
    assert!(
        matches!(missing, PartitionError::Missing { .. }),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("requires a"), "{missing}");

    let unknown = partition_error(other.subscribe_to(&producer, partition(7)).await);
    assert_eq!(unknown, PartitionError::Unknown("7".into()));
    assert!(
        unknown.to_string().contains("unknown partition 7"),
        "{unknown}"
    );

    let taken = partition_error(other.subscribe_to(&producer, partition(0)).await);
    assert!(
        taken.to_string().contains("partition 0 is already taken"),
        "{taken}"
    );

    // Through the builder too.
    assert!(start_is_rejected(&producer, partition(0)).await);

    // Nobody stopped, the first consumer keeps its partition, partition 1 is free.
    assert!(producer.is_alive() && other.is_alive());
    let t1 = other.subscribe_to(&producer, partition(1)).await;
    let t1 = t1.expect("partition 1 is free");
    ask_then_queue(&producer, &[(&taker, t0, 2), (&other, t1, 2)], range(0, 4)).await;
    assert_eq!(r0.events(), vec![0, 2]);
    assert_eq!(producer.stats().consumers, 2);
}

#[tokio::test]
async fn named_partition_of_the_wrong_type_is_missing() {
    let dispatcher = PartitionDispatcher::new(["a", "b"], |_: &u64| Some("a"));
    let producer = dispatching(Counter::new(0), dispatcher).await;
    let (consumer, _) = collector::<u64>().await;

    // Partitions are named by &str.
    let error = partition_error(consumer.subscribe_to(&producer, partition(0)).await);
    assert!(
        matches!(&error, PartitionError::Missing { expected } if expected.contains("Partition<&str>")),
        "{error:?}"
    );
    let error = partition_error(consumer.subscribe_to(&producer, partition("c")).await);
    assert_eq!(error, PartitionError::Unknown("\"c\"".into()));
    assert!(producer.is_alive() && consumer.is_alive());
}

// ---------------------------------------------------------------------------------------
// Events held for partitions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn events_for_a_partition_without_consumer_are_held_and_delivered_in_order() {
    let (producer, _) = scripted(modulo(2)).await;
    let (c0, r0, t0) = manual(&producer, 0).await;
    ask_then_queue(&producer, &[(&c0, t0, 10)], range(0, 20)).await;
    assert_eq!(r0.events(), vec![0, 2, 4, 6, 8]);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 5);

    let (c1, r1, t1) = manual(&producer, 1).await;
    c1.ask(t1, n(8)).unwrap();
    settle(&producer, &[&c0, &c1]).await;
    // The held events first, in one delivery, then new ones.
    assert_eq!(r1.read(|r| r.batches[0].1.clone()), vec![1, 3, 5, 7, 9]);
    // The 8 asked upstream: 10..18, half of them for each partition.
    assert_eq!(r1.events(), vec![1, 3, 5, 7, 9, 11, 13, 15]);
    assert_eq!(r0.events(), residues(18, 2, 0));
    // Partition 1's consumer has no demand left: 17 is held for it.
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 1);
    assert_eq!(producer.stats().events_discarded, 0);
}

#[tokio::test]
async fn stats_count_the_events_held_for_partitions() {
    let (producer, _) = scripted(modulo(2)).await;
    let (c0, _, t0) = manual(&producer, 0).await;
    ask_then_queue(&producer, &[(&c0, t0, 10)], range(0, 10)).await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 5);
    assert_eq!(producer.stats().buffered, 5, "held for partition 1");

    let (c1, _, t1) = manual(&producer, 1).await;
    c1.ask(t1, n(3)).unwrap();
    settle(&producer, &[&c0, &c1]).await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);
    assert_eq!(producer.stats().buffered, 2, "3 of the 5 went out");
}

#[tokio::test]
async fn events_beyond_the_hold_limit_are_discarded_and_counted() {
    for (keep, kept) in [
        (BufferKeep::Last, vec![15, 17, 19]),
        (BufferKeep::First, vec![1, 3, 5]),
    ] {
        let (producer, record) = scripted(modulo(2).hold_limit(3, keep)).await;
        let (c0, r0, t0) = manual(&producer, 0).await;
        ask_then_queue(&producer, &[(&c0, t0, 20)], range(0, 20)).await;
        assert_eq!(r0.events(), residues(20, 2, 0));
        assert_eq!(
            producer.estimate_buffered_count().await.unwrap(),
            3,
            "{keep:?}"
        );
        assert_eq!(producer.stats().events_discarded, 7, "{keep:?}");
        assert_eq!(
            record.read(|r| r.discards.clone()),
            vec![7],
            "reported to the hook"
        );

        let (c1, r1, t1) = manual(&producer, 1).await;
        c1.ask(t1, n(10)).unwrap();
        settle(&producer, &[&c0, &c1]).await;
        assert_eq!(r1.events(), kept, "{keep:?}");
    }
}

#[tokio::test]
async fn held_events_stay_for_the_next_consumer_after_a_cancel() {
    let (producer, _) = scripted(modulo(2)).await;
    let (c0, r0, t0) = manual(&producer, 0).await;
    let (c1, r1, t1) = manual(&producer, 1).await;
    ask_then_queue(&producer, &[(&c0, t0, 8), (&c1, t1, 2)], range(0, 10)).await;
    assert_eq!(r0.events(), vec![0, 2, 4, 6, 8]);
    assert_eq!(r1.events(), vec![1, 3]);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 3);

    c1.cancel(t1, ExitReason::Normal).unwrap();
    settle(&producer, &[&c0, &c1]).await;
    assert_eq!(
        producer.estimate_buffered_count().await.unwrap(),
        3,
        "kept for partition 1"
    );
    assert!(c1.is_alive());

    let (next, rn, tn) = manual(&producer, 1).await;
    next.ask(tn, n(10)).unwrap();
    settle(&producer, &[&c0, &next]).await;
    assert_eq!(rn.read(|r| r.batches[0].1.clone()), vec![5, 7, 9]);
    assert_eq!(
        r1.events(),
        vec![1, 3],
        "the cancelled consumer got nothing more"
    );
}

#[tokio::test]
async fn demand_of_a_cancelled_partition_consumer_is_not_asked_twice() {
    let (producer, record) = scripted(modulo(2)).await;
    let (c1, r1, t1) = manual(&producer, 1).await;
    c1.ask(t1, n(5)).unwrap();
    settle(&producer, &[&c1]).await;
    assert_eq!(record.read(|r| r.demands.clone()), vec![5]);
    c1.cancel(t1, ExitReason::Normal).unwrap();
    settle(&producer, &[&c1]).await;

    let (next, rn, tn) = manual(&producer, 1).await;
    next.ask(tn, n(7)).unwrap();
    settle(&producer, &[&next]).await;
    // 5 of the 7 were asked for already.
    assert_eq!(record.read(|r| r.demands.clone()), vec![5, 2]);
    producer
        .cast(Script::Queue(vec![1, 3, 5, 7, 9, 11, 13, 15]))
        .unwrap();
    settle(&producer, &[&next]).await;
    assert_eq!(rn.events(), vec![1, 3, 5, 7, 9, 11, 13]);
    assert_eq!(r1.event_count(), 0);
}

#[tokio::test]
async fn demand_owed_by_a_cancelled_consumer_is_forgotten_once_its_events_arrive() {
    let (producer, record) = scripted(modulo(2)).await;
    let (c0, _, t0) = manual(&producer, 0).await;
    let (c1, r1, t1) = manual(&producer, 1).await;
    c0.ask(t0, n(5)).unwrap();
    c1.ask(t1, n(5)).unwrap();
    settle(&producer, &[&c0, &c1]).await;
    c0.cancel(t0, ExitReason::Normal).unwrap();
    settle(&producer, &[&c0, &c1]).await;
    // The 10 asked for arrive: the odds go out, the evens are held for partition 0.
    producer.cast(Script::Queue(range(0, 10))).unwrap();
    settle(&producer, &[&c1]).await;
    assert_eq!(r1.events(), vec![1, 3, 5, 7, 9]);
    // Nothing is owed any more: partition 1's next ask reaches the producer.
    c1.ask(t1, n(5)).unwrap();
    settle(&producer, &[&c1]).await;
    assert_eq!(record.read(|r| r.demands.clone()), vec![5, 5, 5]);
}

#[tokio::test]
async fn events_dropped_at_the_hold_limit_keep_a_producer_consumer_within_its_demand() {
    let producer = gen_stage::producer(Counter::new(0)).start().await.unwrap();
    let relay = gen_stage::producer_consumer(Relay::pass_through())
        .dispatcher(modulo(2).hold_limit(1, BufferKeep::Last))
        .subscribe_to(&producer, opts(4, 2))
        .start()
        .await
        .unwrap();
    let (consumer, events, tag) = manual(&relay, 0).await;
    consumer.ask(tag, n(4)).unwrap();
    settle(&relay, &[&consumer]).await;
    settle(&relay, &[&consumer]).await;
    let received = relay.stats().events_received;
    // The odd events, held for partition 1 (no consumer), are dropped beyond 1: they
    // used the demand they took, so the relay does not pull more input to make up for
    // them; it stays put.
    settle(&relay, &[&consumer]).await;
    settle(&relay, &[&consumer]).await;
    assert_eq!(relay.stats().events_received, received);
    assert!(
        received <= 8,
        "the relay pulled {received} events for 4 asked"
    );
    assert_eq!(events.events(), vec![0, 2]);
}

#[tokio::test]
async fn an_info_waits_for_the_events_held_before_it_not_for_those_held_after() {
    let (producer, _) = scripted(modulo(2)).await;
    let (c0, _, t0) = manual(&producer, 0).await;
    let (c1, r1, t1) = manual(&producer, 1).await;
    // 1 and 3 are held for partition 1, which has not asked.
    ask_then_queue(&producer, &[(&c0, t0, 4)], range(0, 4)).await;
    let (reply, mut answered) = ReplyTo::pair();
    producer.async_info(Script::Owed(reply)).unwrap();
    // Then 5 and 7 are held too, after the info.
    ask_then_queue(&producer, &[(&c0, t0, 4)], range(4, 8)).await;
    assert!(answered.try_recv().is_err(), "the info waits for 1 and 3");
    c1.ask(t1, n(2)).unwrap();
    settle(&producer, &[&c0, &c1]).await;
    assert_eq!(r1.events(), vec![1, 3]);
    // Everything emitted before the info has gone out: it is handled, though 5 and 7
    // are still held.
    assert!(answered.try_recv().is_ok(), "the info waited for 5 and 7");
}

// ---------------------------------------------------------------------------------------
// Shared partitions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn shared_partition_splits_its_events_by_demand() {
    let (producer, _) = scripted(modulo(2).shared()).await;
    let (a, ra, ta) = manual(&producer, 0).await;
    let (b, rb, tb) = manual(&producer, 0).await;
    ask_then_queue(&producer, &[(&a, ta, 2), (&b, tb, 3)], residues(20, 2, 0)).await;
    // Most demand first.
    assert_eq!(rb.events(), vec![0, 2, 4]);
    assert_eq!(ra.events(), vec![6, 8]);

    a.ask(ta, n(4)).unwrap();
    settle(&producer, &[&a, &b]).await;
    assert_eq!(ra.events(), vec![6, 8, 10, 12, 14, 16]);
    assert_eq!(rb.events(), vec![0, 2, 4]);
}

#[tokio::test]
async fn shared_partition_consumers_together_get_each_event_exactly_once() {
    let producer = dispatching(Counter::new(0).limit(400), modulo(2).shared()).await;
    let (a, ra) = collect(&producer, 0usize, opts(10, 5)).await;
    let (b, rb) = collect(&producer, 0usize, opts(4, 1)).await;
    let (odd, ro) = collect(&producer, 1usize, opts(10, 5)).await;

    for consumer in [&a, &b, &odd] {
        stops_normally(consumer).await;
    }
    assert_eq!(ro.events(), residues(400, 2, 1));
    let each = shared_exactly_once(&[&ra, &rb], residues(400, 2, 0));
    assert!(
        each.iter().all(|events| !events.is_empty()),
        "both take part"
    );
}

// ---------------------------------------------------------------------------------------
// Finite producers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn finite_producer_stops_only_after_every_partition_got_its_events() {
    let producer = dispatching(Counter::new(0).limit(20), modulo(2)).await;
    // One ask of 100 makes the counter emit all 20 numbers at once.
    let (c0, r0) = collect(&producer, 0usize, opts(100, 50)).await;
    r0.wait_for_events(10).await;
    settle(&producer, &[&c0]).await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 10);
    assert!(producer.is_alive(), "partition 1's events are still held");
    assert!(r0.read(|r| r.terminated().is_none()));

    let (c1, r1) = collect(&producer, 1usize, opts(10, 5)).await;
    stops_normally(&producer).await;
    stops_having_received(&c0, &r0, residues(20, 2, 0)).await;
    stops_having_received(&c1, &r1, residues(20, 2, 1)).await;
}

// ---------------------------------------------------------------------------------------
// A partitioning producer-consumer
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn partitioning_producer_consumer_takes_only_what_its_consumers_asked_for() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let relay = gen_stage::producer_consumer(Relay::pass_through())
        .dispatcher(modulo(2))
        .subscribe_to(&producer, opts(4, 2))
        .start()
        .await
        .unwrap();
    let (c0, r0, t0) = manual(&relay, 0).await;
    c0.ask(t0, n(10)).unwrap();
    for _ in 0..10 {
        settle(&relay, &[&c0]).await;
        producer.estimate_buffered_count().await.unwrap();
    }
    // The 10 asked are dispatched: 5 to partition 0, 5 held for partition 1.
    assert_eq!(r0.events(), vec![0, 2, 4, 6, 8]);
    assert_eq!(relay.estimate_buffered_count().await.unwrap(), 5);
    // Its first ask of 4, then 2 after each batch of 2 it handled.
    assert_eq!(demands.snapshot().iter().sum::<usize>(), 14);
}

/// Counts up, an event per unit of demand; a message holds the stage until its gate
/// opens.
struct GatedCounter(u64);

impl gen_stage::Producer for GatedCounter {
    type Event = u64;
    type Message = gen_stage_test::Gate;

    async fn handle_demand(
        &mut self,
        demand: usize,
        _: &mut gen_stage::ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, gen_stage::BoxError> {
        let events = (self.0..self.0 + demand as u64).collect();
        self.0 += demand as u64;
        Ok(events)
    }

    async fn handle_message(
        &mut self,
        gate: gen_stage_test::Gate,
        _: &mut gen_stage::ProducerContext<'_, Self>,
    ) -> Result<(), gen_stage::BoxError> {
        gate.pass().await;
        Ok(())
    }
}

#[tokio::test]
async fn shares_of_asks_served_while_more_mail_waits_go_out_together() {
    // Both consumers ask 4 while the producer accumulates: two demands of 4 are
    // stashed. Switching to forward replays them in one message, each producing 4
    // events, 2 for each partition. The producer is held (a gated message) until the
    // switch and a message behind it are queued, so more mail waits while it replays:
    // each partition's two shares of 2 go out as one batch of 4 (its consumer's ask),
    // where without holding back they would go out as two batches of 2.
    let producer = gen_stage::producer(GatedCounter(0))
        .dispatcher(modulo(2))
        .demand_mode(gen_stage::DemandMode::Accumulate)
        .start()
        .await
        .expect("the producer starts");
    let (even, evens) = collect(&producer, 0usize, opts(4, 0)).await;
    let (odd, odds) = collect(&producer, 1usize, opts(4, 0)).await;
    settle(&producer, &[&even, &odd]).await;
    let gate = gen_stage_test::Gate::closed();
    producer.cast(gate.clone()).expect("the producer runs");
    producer
        .set_demand_mode(gen_stage::DemandMode::Forward)
        .expect("the producer runs");
    producer
        .cast(gen_stage_test::Gate::opened())
        .expect("the producer runs");
    gate.open(1);
    evens.wait_for_events(4).await;
    odds.wait_for_events(4).await;
    // (More follows: each consumer asks again once it has its 4.)
    assert_eq!(evens.batches()[0], vec![0, 2, 4, 6]);
    assert_eq!(odds.batches()[0], vec![1, 3, 5, 7]);
}
