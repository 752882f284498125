//! The broadcast dispatcher through running stages: every event to every consumer in
//! order, at the pace of the slowest, selectors, late subscribers, accumulate-then-forward,
//! duplicate subscriptions, cancellation releasing demand, finite producers, demand
//! served from the producer's buffer, and a broadcasting producer-consumer (semantics
//! §6.2 and §10 item 15).

mod support;

use gen_stage::dispatcher::{BroadcastDispatcher, BroadcastError, Selector};
use gen_stage::kind::EmitsEvents;
use gen_stage::{
    CancelReason, DemandMode, ExitReason, ProducerRef, StageRef, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::Relay;
use gen_stage_test::{Counter, Gate, ProducerRecord, Recorded, Script, ScriptedProducer, Watch};
use support::{
    Collector, barrier, collect, collect_gated, consumer_barrier, manual_consumer, n, opts, range,
    rejection, scripted_by, settle, stops_having_received, stops_normally, within,
};

type Events = support::Events<u64>;

/// A broadcast producer driven by [`Script`] messages.
async fn scripted_broadcast() -> (ProducerRef<ScriptedProducer<u64>>, Watch<ProducerRecord>) {
    scripted_by(BroadcastDispatcher::new()).await
}

/// A broadcast [`Counter`] and the demands it is asked for.
async fn counter_broadcast(
    counter: Counter,
    mode: DemandMode,
) -> (ProducerRef<Counter>, Recorded<usize>) {
    let (counter, demands) = counter.recorded();
    let producer = gen_stage::producer(counter)
        .dispatcher(BroadcastDispatcher::new())
        .demand_mode(mode)
        .start()
        .await
        .expect("producer starts");
    (producer, demands)
}

/// A manual collecting consumer subscribed to `producer`, with its subscription.
async fn manual<P>(producer: &StageRef<P>) -> (Collector<u64>, Events, SubscriptionTag)
where
    P: EmitsEvents<Out = u64>,
{
    manual_consumer(producer, SubscribeOptions::new()).await
}

fn total(demands: &Recorded<usize>) -> usize {
    demands.snapshot().iter().sum()
}

// ---------------------------------------------------------------------------------------
// Every event to every consumer, at the pace of the slowest
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_consumer_receives_every_event_in_order() {
    let (producer, _) = scripted_broadcast().await;
    let (a, ra) = collect(&producer, opts(5, 2)).await;
    let (b, rb) = collect(&producer, opts(10, 5)).await;
    let (c, rc) = collect(&producer, opts(50, 0)).await;

    for chunk in range(0, 200).chunks(17) {
        producer.cast(Script::Queue(chunk.to_vec())).expect("alive");
    }
    for record in [&ra, &rb, &rc] {
        record.wait_for_events(200).await;
    }
    settle(&producer, &[&a, &b, &c]).await;

    for (record, step) in [(&ra, 3), (&rb, 5), (&rc, 50)] {
        assert_eq!(record.events(), range(0, 200));
        assert!(
            record.batch_sizes().iter().all(|&size| size <= step),
            "{:?}",
            record.batch_sizes()
        );
    }
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
}

#[tokio::test]
async fn upstream_demand_is_the_minimum_across_consumers_and_never_asked_twice() {
    let (producer, demands) = counter_broadcast(Counter::new(0), DemandMode::Forward).await;
    let (fast, rf, tf) = manual(&producer).await;
    let (slow, rs, ts) = manual(&producer).await;

    fast.ask(tf, n(10)).unwrap();
    settle(&producer, &[&fast, &slow]).await;
    assert_eq!(
        total(&demands),
        0,
        "the slow consumer has asked nothing yet"
    );
    assert_eq!(rf.event_count(), 0);

    slow.ask(ts, n(3)).unwrap();
    settle(&producer, &[&fast, &slow]).await;
    assert_eq!(demands.snapshot(), vec![3]);
    assert_eq!(rf.events(), range(0, 3));
    assert_eq!(rs.events(), range(0, 3));

    // The fast consumer's extra demand was already counted: asking again does not
    // ask upstream for the same events twice.
    fast.ask(tf, n(5)).unwrap();
    settle(&producer, &[&fast, &slow]).await;
    assert_eq!(demands.snapshot(), vec![3]);

    slow.ask(ts, n(20)).unwrap();
    settle(&producer, &[&fast, &slow]).await;
    // Fast asked 15 in all, slow 23: the producer is asked 15, no more.
    assert_eq!(total(&demands), 15);
    assert_eq!(rf.events(), range(0, 15));
    assert_eq!(rs.events(), range(0, 15));
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
}

#[tokio::test]
async fn gated_slow_consumer_paces_the_producer() {
    let (producer, demands) = counter_broadcast(Counter::new(0), DemandMode::Forward).await;
    let gate = Gate::closed();
    // Subscribed first, so that both consumers see the same events from the fast
    // one's first ask on. Batches of 2; each handled batch asks 2 more.
    let (_slow, rs) = collect_gated(&producer, opts(4, 2), &gate).await;
    let (fast, rf) = collect(&producer, opts(10, 5)).await;

    for step in 1..=10 {
        gate.open(1);
        rs.wait_until(|record| record.batches.len() == step).await;
        // The slow consumer asked after its batch, before waiting at the gate again.
        barrier(&producer).await;
        consumer_barrier(&fast).await;
        barrier(&producer).await;
        let slow_asked = 4 + 2 * step;
        assert_eq!(
            total(&demands),
            slow_asked,
            "step {step}: {:?}",
            demands.snapshot()
        );
        // The fast consumer got every event produced since it subscribed, no more.
        assert_eq!(rf.events(), range(4, slow_asked as u64));
    }
    assert_eq!(rs.events(), range(0, 20));

    gate.open_for_good();
    rs.wait_for_events(200).await;
    rf.wait_for_events(196).await;
    assert_eq!(rs.events()[..200], range(0, 200));
    assert_eq!(rf.events()[..196], range(4, 200));
}

// ---------------------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn selector_delivers_only_accepted_events_in_order() {
    let (producer, _) = scripted_broadcast().await;
    let evens = SubscribeOptions::new()
        .max_demand(10)
        .with(Selector::new(|x: &u64| x % 2 == 0));
    let (even, re) = collect(&producer, evens).await;
    let (all, ra) = collect(&producer, opts(10, 5)).await;

    producer.cast(Script::Queue(range(0, 100))).unwrap();
    ra.wait_for_events(100).await;
    re.wait_for_events(50).await;
    settle(&producer, &[&even, &all]).await;

    assert_eq!(ra.events(), range(0, 100));
    assert_eq!(
        re.events(),
        (0..100).filter(|x| x % 2 == 0).collect::<Vec<_>>()
    );
    // Rejected events are never delivered, not even as empty batches.
    assert!(re.read(|r| r.batches.iter().all(|(_, b)| !b.is_empty())));
}

#[tokio::test]
async fn selector_rejecting_everything_does_not_stall_the_others() {
    let (producer, _) = counter_broadcast(Counter::new(0).limit(200), DemandMode::Accumulate).await;
    let none = SubscribeOptions::new()
        .max_demand(1)
        .min_demand(0)
        .with(Selector::new(|_: &u64| false));
    let (nothing, rn) = collect(&producer, none).await;
    let (everything, re) = collect(&producer, opts(10, 5)).await;
    producer.set_demand_mode(DemandMode::Forward).unwrap();

    stops_normally(&everything).await;
    stops_normally(&producer).await;
    stops_normally(&nothing).await;
    assert_eq!(re.events(), range(0, 200));
    assert_eq!(rn.event_count(), 0);
}

#[tokio::test]
async fn a_selector_over_buffered_events_gets_its_demand_from_the_buffer_in_order() {
    let (producer, _) = scripted_broadcast().await;
    // No consumer yet: all ten are buffered.
    producer.cast(Script::Emit(range(1, 11))).unwrap();
    barrier(&producer).await;
    let evens = SubscribeOptions::new().with(Selector::new(|x: &u64| x % 2 == 0));
    let (consumer, record, tag) = manual_consumer(&producer, evens).await;
    consumer.ask(tag, n(5)).unwrap();
    settle(&producer, &[&consumer]).await;
    // The odd ones are rejected and asked again on the consumer's behalf, from the
    // buffer first: all five evens arrive, none waits for new events.
    assert_eq!(record.events(), vec![2, 4, 6, 8, 10]);

    producer.cast(Script::Emit(vec![11, 12, 13, 14])).unwrap();
    consumer.ask(tag, n(2)).unwrap();
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.events(), vec![2, 4, 6, 8, 10, 12, 14]);
}

// ---------------------------------------------------------------------------------------
// Late subscribers and accumulate mode
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn late_subscriber_receives_only_events_dispatched_after_it_subscribed() {
    let (producer, _) = scripted_broadcast().await;
    let (early, re) = collect(&producer, opts(10, 5)).await;
    producer.cast(Script::Queue(range(0, 30))).unwrap();
    re.wait_for_events(30).await;

    let (late, rl) = collect(&producer, opts(10, 5)).await;
    producer.cast(Script::Queue(range(30, 60))).unwrap();
    rl.wait_for_events(30).await;
    re.wait_for_events(60).await;
    settle(&producer, &[&early, &late]).await;

    assert_eq!(re.events(), range(0, 60));
    assert_eq!(rl.events(), range(30, 60));
}

#[tokio::test]
async fn late_subscriber_holds_the_others_until_it_asks() {
    let (producer, _) = scripted_broadcast().await;
    let (early, re) = collect(&producer, opts(10, 5)).await;
    producer.cast(Script::Queue(range(0, 10))).unwrap();
    re.wait_for_events(10).await;
    // The early consumer's re-asks (10 in all) reach the producer first.
    settle(&producer, &[&early]).await;

    let (late, rl, tag) = manual(&producer).await;
    producer.cast(Script::Queue(range(10, 20))).unwrap();
    settle(&producer, &[&early, &late]).await;
    assert_eq!(
        re.event_count(),
        10,
        "nothing goes out before the newcomer asks"
    );
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 10);

    late.ask(tag, n(4)).unwrap();
    settle(&producer, &[&early, &late]).await;
    assert_eq!(rl.events(), range(10, 14));
    assert_eq!(re.events(), range(0, 14));
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 6);
}

#[tokio::test]
async fn accumulate_then_forward_gives_every_consumer_the_same_events_from_the_first() {
    let (producer, demands) =
        counter_broadcast(Counter::new(0).limit(100), DemandMode::Accumulate).await;
    let mut consumers = Vec::new();
    for (max, min) in [(10, 5), (3, 1), (40, 0)] {
        consumers.push(collect(&producer, opts(max, min)).await);
    }
    let all: Vec<&Collector<u64>> = consumers.iter().map(|(c, _)| c).collect();
    settle(&producer, &all).await;
    assert!(demands.is_empty(), "nothing is produced while accumulating");
    assert_eq!(
        producer.demand_mode().await.unwrap(),
        DemandMode::Accumulate
    );

    producer.set_demand_mode(DemandMode::Forward).unwrap();
    for (consumer, record) in &consumers {
        stops_having_received(consumer, record, range(0, 100)).await;
    }
    stops_normally(&producer).await;
}

// ---------------------------------------------------------------------------------------
// Duplicate subscriptions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn same_consumer_subscribing_twice_is_rejected_and_keeps_its_first_subscription() {
    let (producer, producer_record) = scripted_broadcast().await;
    let (consumer, record) = collect(&producer, opts(10, 5)).await;

    for attempt in 2..=3 {
        // A second subscription of the same consumer is refused.
        let error = rejection(consumer.subscribe_to(&producer, opts(10, 5)).await);
        assert!(
            error.to_string().contains("is already subscribed"),
            "attempt {attempt}: {error}"
        );
        assert_eq!(
            error.downcast_ref::<BroadcastError>(),
            Some(&BroadcastError::AlreadySubscribed(consumer.id()))
        );
    }
    assert_eq!(producer.stats().consumers, 1);
    // The producer's hooks saw each refused subscription come (it had accepted it in
    // `handle_consumer_subscribed`) and go, with the reason the consumer was given.
    let (subscriptions, cancels) =
        producer_record.read(|r| (r.subscriptions.clone(), r.cancels.clone()));
    assert_eq!(subscriptions.len(), 3);
    assert_eq!(
        cancels.iter().map(|(tag, _)| *tag).collect::<Vec<_>>(),
        subscriptions[1..].to_vec()
    );
    assert!(cancels.iter().all(|(_, reason)| matches!(
        reason,
        CancelReason::Rejected(error) if error.to_string().contains("is already subscribed")
    )));

    producer.cast(Script::Queue(range(0, 50))).unwrap();
    record.wait_for_events(50).await;
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.events(), range(0, 50), "events are not duplicated");
    assert!(consumer.is_alive() && producer.is_alive());
    // Every batch came through the first subscription.
    let first = record.read(|r| r.subscriptions[0]);
    assert!(record.read(|r| r.batches.iter().all(|(tag, _)| *tag == first)));
}

// ---------------------------------------------------------------------------------------
// Cancellation and stopping
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cancelling_the_slowest_consumer_releases_demand_for_the_others() {
    let (producer, demands) = counter_broadcast(Counter::new(0), DemandMode::Forward).await;
    let (fast, rf, tf) = manual(&producer).await;
    let (other, ro, to) = manual(&producer).await;
    let (slow, rs, ts) = manual(&producer).await;
    fast.ask(tf, n(10)).unwrap();
    other.ask(to, n(6)).unwrap();
    slow.ask(ts, n(2)).unwrap();
    settle(&producer, &[&fast, &other, &slow]).await;
    assert_eq!(total(&demands), 2);

    slow.cancel(ts, ExitReason::Normal).unwrap();
    settle(&producer, &[&fast, &other, &slow]).await;
    // The next slowest now sets the pace.
    assert_eq!(total(&demands), 6);
    assert_eq!(rf.events(), range(0, 6));
    assert_eq!(ro.events(), range(0, 6));
    assert_eq!(rs.events(), range(0, 2));
    assert!(
        slow.is_alive(),
        "a consumer cancelling its own subscription keeps running"
    );

    other.stop(ExitReason::Shutdown).await.unwrap();
    settle(&producer, &[&fast]).await;
    assert_eq!(total(&demands), 10);
    assert_eq!(rf.events(), range(0, 10));
}

#[tokio::test]
async fn finite_producer_stops_normally_after_every_consumer_got_everything() {
    let (producer, _) = counter_broadcast(Counter::new(0).limit(50), DemandMode::Accumulate).await;
    let gate = Gate::closed();
    let (gated, rg) = collect_gated(&producer, opts(60, 50), &gate).await;
    let (a, ra) = collect(&producer, opts(7, 3)).await;
    let (b, rb) = collect(&producer, opts(100, 0)).await;
    producer.set_demand_mode(DemandMode::Forward).unwrap();

    stops_normally(&producer).await;
    stops_having_received(&a, &ra, range(0, 50)).await;
    stops_having_received(&b, &rb, range(0, 50)).await;
    // The gated consumer still has its events queued: the producer's stop reaches it
    // after them.
    assert!(rg.read(|r| r.terminated().is_none()));
    gate.open_for_good();
    stops_having_received(&gated, &rg, range(0, 50)).await;
}

// ---------------------------------------------------------------------------------------
// Demand released or served from the producer's buffer (known bugs)
// ---------------------------------------------------------------------------------------

/// A newcomer that never asks holds the next events in the producer's buffer; returns
/// the producer, the early consumer, its record, and the newcomer with its subscription.
async fn held_by_a_newcomer() -> (
    ProducerRef<ScriptedProducer<u64>>,
    Collector<u64>,
    Events,
    Collector<u64>,
    SubscriptionTag,
) {
    let (producer, _) = scripted_broadcast().await;
    let (early, re) = collect(&producer, opts(10, 5)).await;
    producer
        .cast(Script::Queue(range(0, 10)))
        .expect("producer alive");
    re.wait_for_events(10).await;
    settle(&producer, &[&early]).await;
    let (late, _, tag) = manual(&producer).await;
    producer
        .cast(Script::Queue(range(10, 20)))
        .expect("producer alive");
    settle(&producer, &[&early, &late]).await;
    assert_eq!(
        producer
            .estimate_buffered_count()
            .await
            .expect("producer alive"),
        10
    );
    (producer, early, re, late, tag)
}

#[tokio::test]
async fn cancelling_a_holding_subscriber_releases_buffered_events_to_the_others() {
    let (producer, early, re, late, tag) = held_by_a_newcomer().await;
    late.cancel(tag, ExitReason::Normal).unwrap();
    settle(&producer, &[&early, &late]).await;
    assert_eq!(
        re.events(),
        range(0, 20),
        "the early consumer's demand is released"
    );
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn events_emitted_after_a_cancel_do_not_overtake_buffered_events() {
    let (producer, early, re, late, tag) = held_by_a_newcomer().await;
    late.cancel(tag, ExitReason::Normal).unwrap();
    settle(&producer, &[&early, &late]).await;
    producer.cast(Script::Emit(range(20, 25))).unwrap();
    within("25 events", re.wait_for_events(25)).await;
    assert_eq!(re.events(), range(0, 25));
}

#[tokio::test]
async fn draining_the_buffer_does_not_shrink_the_upstream_demand_twice() {
    let (producer, record) = scripted_broadcast().await;
    let (a, ra, ta) = manual(&producer).await;
    a.ask(ta, n(4)).unwrap();
    settle(&producer, &[&a]).await;
    // A newcomer resets what everyone could take: of the 4 asked upstream, only the
    // 2 it asks for go out; 2 wait in the producer's buffer.
    let (b, rb, tb) = manual(&producer).await;
    b.ask(tb, n(2)).unwrap();
    settle(&producer, &[&a, &b]).await;
    producer.cast(Script::Queue(range(0, 4))).unwrap();
    settle(&producer, &[&a, &b]).await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);

    // A has asked 14 in all, B 7: the 3 events beyond the 4 produced must be asked
    // upstream, whatever part of them the buffer already holds.
    a.ask(ta, n(10)).unwrap();
    b.ask(tb, n(5)).unwrap();
    settle(&producer, &[&a, &b]).await;
    producer.cast(Script::Queue(range(4, 20))).unwrap();
    settle(&producer, &[&a, &b]).await;
    assert_eq!(rb.events(), range(0, 7), "B asked for 7");
    assert_eq!(ra.events(), range(0, 7));
    let demands = record.read(|r| r.demands.clone());
    assert_eq!(demands.iter().sum::<usize>(), 7, "{demands:?}");
}

#[tokio::test(start_paused = true)]
async fn broadcasting_producer_consumer_serves_all_its_consumers_demand() {
    let (producer, _) = scripted_broadcast().await;
    let relay = gen_stage::producer_consumer(Relay::pass_through())
        .dispatcher(BroadcastDispatcher::new())
        .demand_mode(DemandMode::Accumulate)
        .subscribe_to(&producer, opts(4, 2))
        .start()
        .await
        .unwrap();
    // min_demand 0: each consumer asks again only once it has all 10 it asked for.
    let (a, ra) = collect(&relay, opts(10, 0)).await;
    let (b, rb) = collect(&relay, opts(10, 0)).await;
    relay.set_demand_mode(DemandMode::Forward).unwrap();
    producer.cast(Script::Queue(range(0, 100))).unwrap();

    within("100 events", ra.wait_for_events(100)).await;
    within("100 events", rb.wait_for_events(100)).await;
    settle(&relay, &[&a, &b]).await;
    assert_eq!(ra.events(), range(0, 100));
    assert_eq!(rb.events(), range(0, 100));
}
