//! Demand through running stages: automatic batching and re-asks, never more than asked,
//! manual asks, several producers or consumers, and accumulate mode (semantics §4, §7.3).

mod support;

use gen_stage::kind::EmitsEvents;
use gen_stage::{
    BoxError, CancelMode, Consumer, ConsumerContext, DemandMode, ExitReason, Producer, ProducerRef,
    StageRef, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{Counter, Gate, Recorded, Script, ScriptedProducer};
use support::{
    Collector, ask_in_steps, barrier, collect, collect_gated, collector, consumer_barrier,
    manual_consumer, n, opts, range, recorded_counter, scripted, start_consumer, stops_normally,
    within,
};

/// Returns once a consumer and its producer have handled what each sent the other.
async fn settle<T: Send + 'static, K: EmitsEvents>(
    consumer: &Collector<T>,
    producer: &StageRef<K>,
) {
    consumer_barrier(consumer).await;
    barrier(producer).await;
    consumer_barrier(consumer).await;
}

/// Starts a producer in accumulate mode.
async fn accumulating<S: Producer>(stage: S) -> ProducerRef<S> {
    let builder = gen_stage::producer(stage).demand_mode(DemandMode::Accumulate);
    builder.start().await.expect("starts")
}

/// A consumer that records each batch as it *enters* `handle_events`, then waits for a
/// pass of its gate: the test knows exactly which batch the consumer is busy with.
struct Stepper {
    entered: Recorded<Vec<u64>>,
    gate: Gate,
}

impl Consumer for Stepper {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.entered.push(events);
        self.gate.pass().await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// 1. Automatic demand
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn automatic_demand_asks_max_first_and_defaults_split_in_halves() {
    let (producer, demands) = recorded_counter(Counter::new(0).limit(2000)).await;
    let (consumer, record) = collect(&producer, SubscribeOptions::new()).await;

    stops_normally(&consumer).await;
    assert_eq!(record.events(), range(0, 2000));
    // Default min_demand is max/2 = 500: batches of 500, and a re-ask of 500 each time.
    assert_eq!(record.batch_sizes(), vec![500; 4]);
    assert_eq!(demands.snapshot()[..3], [1000, 500, 500]);
}

#[tokio::test]
async fn demand_beyond_what_can_be_counted_saturates_and_the_producer_keeps_serving() {
    let (producer, _) = scripted::<u64>().await;
    // Together the two subscriptions ask for more than a usize holds.
    let huge = || SubscribeOptions::new().max_demand(usize::MAX / 2 + 1);
    let (_first, first) = collect(&producer, huge()).await;
    let (_second, second) = collect(&producer, huge()).await;
    barrier(&producer).await;
    producer.cast(Script::Queue(range(1, 5))).unwrap();
    // The demand dispatcher sends all four to the consumer with the most demand.
    within("four events delivered", async {
        tokio::select! {
            _ = first.wait_for_events(4) => {}
            _ = second.wait_for_events(4) => {}
        }
    })
    .await;
    assert!(producer.is_alive());
}

#[tokio::test]
async fn manual_asks_beyond_what_can_be_counted_saturate() {
    let (producer, _) = scripted::<u64>().await;
    let (consumer, record, tag) = manual_consumer(&producer, opts(10, 5)).await;
    consumer.ask(tag, std::num::NonZeroUsize::MAX).unwrap();
    consumer.ask(tag, std::num::NonZeroUsize::MAX).unwrap();
    producer.cast(Script::Queue(range(0, 3))).unwrap();
    within("three events", record.wait_for_events(3)).await;
    consumer_barrier(&consumer).await;
    assert!(consumer.is_alive(), "{:?}", consumer.exit_reason());
}

#[tokio::test]
async fn automatic_demand_with_min_close_to_max_asks_after_every_small_batch() {
    let (producer, demands) = recorded_counter(Counter::new(0).limit(200)).await;
    let (consumer, record) = collect(&producer, opts(100, 80)).await;

    stops_normally(&consumer).await;
    assert_eq!(record.events(), range(0, 200));
    assert_eq!(record.batch_sizes(), vec![20; 10]);
    let demands = demands.snapshot();
    assert_eq!(demands[0], 100);
    assert!(demands.len() > 5, "one re-ask per batch: {demands:?}");
    assert!(demands[1..].iter().all(|&d| d == 20), "{demands:?}");
}

#[tokio::test]
async fn automatic_re_ask_follows_the_batch_that_brings_demand_to_min() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let (entered, gate) = (Recorded::default(), Gate::closed());
    let stepper = Stepper {
        entered: entered.clone(),
        gate: gate.clone(),
    };
    start_consumer(stepper, &producer, opts(100, 20)).await;

    // (batch the consumer is busy with, demands seen by the producer meanwhile)
    let steps = [
        // Nothing asked since the subscription's 100 while the first batch is handled.
        (range(0, 80), vec![100]),
        // The first batch left 20 pending (<= min): 80 was asked before the second.
        (range(80, 100), vec![100, 80]),
        // The second batch (20 events) asked nothing.
        (range(100, 180), vec![100, 80]),
        // 100..180 left 20 pending: topped up with 100.
        (range(180, 260), vec![100, 80, 100]),
        (range(260, 280), vec![100, 80, 100, 80]),
    ];
    for (index, (batch, expected)) in steps.into_iter().enumerate() {
        if index > 0 {
            gate.open(1);
        }
        within("next batch", entered.wait_for_len(index + 1)).await;
        barrier(&producer).await;
        assert_eq!(entered.snapshot()[index], batch, "batch {index}");
        assert_eq!(
            demands.snapshot(),
            expected,
            "while busy with batch {index}"
        );
    }
}

#[tokio::test]
async fn automatic_demand_max_one_handles_one_event_per_batch() {
    let (producer, demands) = recorded_counter(Counter::new(0).limit(5)).await;
    // min_demand defaults to 0 when max_demand is 1.
    let options = SubscribeOptions::new().max_demand(1);
    let (consumer, record) = collect(&producer, options).await;

    stops_normally(&consumer).await;
    assert_eq!(
        record.batches(),
        vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
    );
    assert_eq!(demands.snapshot()[..5], [1, 1, 1, 1, 1]);
}

#[tokio::test]
async fn automatic_demand_with_small_deliveries_asks_once_min_is_crossed() {
    let (producer, producer_record) = scripted::<u64>().await;
    let (consumer, record) = collect(&producer, opts(1000, 750)).await;

    // Deliveries of 100: pending demand 900, 800, then 700 <= 750: ask 300 after it.
    for (delivery, owed, demands) in [
        (1, 900, vec![1000]),
        (2, 800, vec![1000]),
        (3, 1000, vec![1000, 300]),
    ] {
        producer
            .cast(Script::Queue(range(delivery * 100 - 100, delivery * 100)))
            .unwrap();
        within("delivery", record.wait_for_events(delivery as usize * 100)).await;
        consumer_barrier(&consumer).await;
        assert_eq!(producer.call(Script::Owed).await.unwrap(), owed);
        assert_eq!(producer_record.snapshot().demands, demands);
    }
    assert_eq!(record.batch_sizes(), vec![100, 100, 100]);
}

// ---------------------------------------------------------------------------------------
// 2. Never more than asked
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn consumer_never_receives_more_than_it_asked_and_the_rest_stays_buffered() {
    let (producer, producer_record) = scripted::<u64>().await;
    let gate = Gate::closed();
    let (consumer, record) = collect_gated(&producer, opts(10, 5), &gate).await;
    within(
        "first ask",
        producer_record.wait_until(|r| r.demands == [10]),
    )
    .await;

    producer.cast(Script::Emit(range(0, 100))).unwrap();
    // Only the 10 asked for went out; the busy consumer cannot have asked more.
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 90);

    gate.open_for_good();
    within("all events", record.wait_for_events(100)).await;
    consumer_barrier(&consumer).await;
    assert_eq!(record.events(), range(0, 100));
    assert!(record.batch_sizes().iter().all(|&size| size <= 5));
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
    // The buffer served 90 events of demand; handle_demand only saw the rest.
    assert_eq!(producer_record.snapshot().demands, vec![10, 5, 5]);
}

#[tokio::test]
async fn manual_asks_get_exactly_their_count_from_the_buffer() {
    let (producer, producer_record) = scripted::<u64>().await;
    let (consumer, record, tag) = manual_consumer(&producer, opts(4, 2)).await;

    producer.cast(Script::Emit(range(0, 20))).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 20);

    // One delivery, one batch: 8 events at once although max - min is 2.
    let steps = [(3, 3, 17), (8, 11, 9)];
    ask_in_steps(&producer, (&consumer, &record, tag), &steps).await;
    assert!(producer_record.snapshot().demands.is_empty());

    // 9 left in the buffer: the other 11 of this ask reach handle_demand.
    consumer.ask(tag, n(20)).unwrap();
    within("rest of the buffer", record.wait_for_events(20)).await;
    assert_eq!(producer.call(Script::Owed).await.unwrap(), 11);
    assert_eq!(producer_record.snapshot().demands, vec![11]);
    assert_eq!(record.events(), range(0, 20));
}

// ---------------------------------------------------------------------------------------
// 3. Manual demand
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn manual_consumer_receives_nothing_until_it_asks() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let (consumer, record, tag) = manual_consumer(&producer, opts(4, 2)).await;

    settle(&consumer, &producer).await;
    assert!(demands.is_empty());
    assert_eq!(record.event_count(), 0);

    consumer.ask(tag, n(3)).unwrap();
    within("3 events", record.wait_for_events(3)).await;
    consumer.ask(tag, n(7)).unwrap();
    within("10 events", record.wait_for_events(10)).await;
    barrier(&producer).await;
    consumer_barrier(&consumer).await;
    let batches = record.read(|r| r.batches.clone());
    assert_eq!(batches, vec![(tag, range(0, 3)), (tag, range(3, 10))]);
    assert_eq!(demands.snapshot(), vec![3, 7]);
}

#[tokio::test]
async fn manual_ask_from_another_task_still_delivers_to_the_consumer() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let (consumer, record, tag) = manual_consumer(&producer, opts(10, 5)).await;

    let handle = consumer.clone();
    let asked = tokio::spawn(async move { handle.ask(tag, n(5)) })
        .await
        .unwrap();
    asked.unwrap();

    within("events", record.wait_for_events(5)).await;
    assert_eq!(record.read(|r| r.batches.clone()), vec![(tag, range(0, 5))]);
    assert_eq!(demands.snapshot(), vec![5]);
}

#[tokio::test]
async fn manual_ask_on_an_unknown_or_cancelled_tag_does_nothing() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let (consumer, record, tag) = manual_consumer(&producer, opts(10, 5)).await;

    consumer
        .ask(SubscriptionTag::from_raw(u64::MAX), n(5))
        .unwrap();
    settle(&consumer, &producer).await;
    assert!(demands.is_empty());
    assert_eq!(record.event_count(), 0);
    assert!(consumer.is_alive() && producer.is_alive());

    // The real tag still works.
    consumer.ask(tag, n(2)).unwrap();
    within("events", record.wait_for_events(2)).await;

    // Once cancelled, the tag is unknown too.
    consumer.cancel(tag, ExitReason::Normal).unwrap();
    consumer.ask(tag, n(4)).unwrap();
    settle(&consumer, &producer).await;
    assert_eq!(demands.snapshot(), vec![2]);
    assert_eq!(record.event_count(), 2);
    assert!(consumer.is_alive() && producer.is_alive());
}

// ---------------------------------------------------------------------------------------
// 4. Several producers into one consumer
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn each_producer_subscription_has_its_own_demand_and_order() {
    let (producer_a, demands_a) = recorded_counter(Counter::new(0).limit(50)).await;
    let (producer_b, demands_b) = recorded_counter(Counter::new(1000).limit(1040)).await;
    let (consumer, record) = collector::<u64>().await;
    // Transient: the first producer to finish (normally) does not stop the consumer.
    let transient = |max, min| opts(max, min).cancel(CancelMode::Transient);
    let tag_a = consumer
        .subscribe_to(&producer_a, transient(10, 5))
        .await
        .unwrap();
    let tag_b = consumer
        .subscribe_to(&producer_b, transient(4, 2))
        .await
        .unwrap();

    within("all events", record.wait_for_events(90)).await;
    let all = record.read(|r| r.batches.clone());
    let from = |tag| {
        all.iter()
            .filter(move |(t, _)| *t == tag)
            .map(|(_, b)| b.clone())
    };
    let (from_a, from_b): (Vec<_>, Vec<_>) = (from(tag_a).collect(), from(tag_b).collect());
    assert_eq!(from_a.len() + from_b.len(), all.len());
    assert_eq!(from_a.concat(), range(0, 50));
    assert_eq!(from_b.concat(), range(1000, 1040));
    assert!(from_a.iter().all(|b| b.len() <= 5));
    assert!(from_b.iter().all(|b| b.len() <= 2));
    let (demands_a, demands_b) = (demands_a.snapshot(), demands_b.snapshot());
    assert_eq!(demands_a[0], 10);
    assert!(demands_a[1..].iter().all(|&d| d == 5), "{demands_a:?}");
    assert_eq!(demands_b[0], 4);
    assert!(demands_b[1..].iter().all(|&d| d == 2), "{demands_b:?}");
    assert!(consumer.is_alive());
}

#[tokio::test]
async fn a_silent_producer_does_not_hold_back_another() {
    let (silent, silent_record) = scripted::<u64>().await;
    let busy = gen_stage::producer(Counter::new(0).limit(50))
        .start()
        .await
        .unwrap();
    let (consumer, record) = collector::<u64>().await;
    let temporary = opts(10, 5).cancel(CancelMode::Temporary);
    let silent_tag = consumer
        .subscribe_to(&silent, temporary.clone())
        .await
        .unwrap();
    let busy_tag = consumer.subscribe_to(&busy, temporary).await.unwrap();

    within("busy producer's events", record.wait_for_events(50)).await;
    assert_eq!(record.events(), range(0, 50));
    // The silent producer was asked once, for its own max_demand.
    assert_eq!(silent.call(Script::Owed).await.unwrap(), 10);
    assert_eq!(silent_record.snapshot().demands, vec![10]);

    silent.cast(Script::Queue(vec![500, 501])).unwrap();
    within("silent producer's events", record.wait_for_events(52)).await;
    let all = record.read(|r| r.batches.clone());
    assert_eq!(all.last().unwrap(), &(silent_tag, vec![500, 501]));
    assert!(all[..all.len() - 1].iter().all(|(t, _)| *t == busy_tag));
}

// ---------------------------------------------------------------------------------------
// 5. Several consumers on one producer
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_dispatcher_delivers_every_event_exactly_once_across_consumers() {
    let producer = accumulating(Counter::new(0).limit(1000)).await;
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(collect(&producer, opts(10, 5)).await);
    }
    producer.set_demand_mode(DemandMode::Forward).unwrap();

    let mut all = Vec::new();
    for (consumer, record) in &consumers {
        stops_normally(consumer).await;
        let events = record.events();
        assert!(events.windows(2).all(|w| w[0] < w[1]), "in order");
        // Each asked 10 before the producer started forwarding.
        assert!(events.len() >= 10, "{}", events.len());
        all.extend(events);
    }
    all.sort_unstable();
    assert_eq!(all, range(0, 1000));
}

#[tokio::test]
async fn a_busy_consumer_gets_no_more_than_its_max_demand() {
    let producer = accumulating(Counter::new(0).limit(100)).await;
    let gate = Gate::closed();
    let (busy, busy_record) = collect_gated(&producer, opts(10, 5), &gate).await;
    let (free, free_record) = collect(&producer, opts(10, 5)).await;
    producer.set_demand_mode(DemandMode::Forward).unwrap();

    stops_normally(&free).await;
    assert_eq!(free_record.event_count(), 90);
    assert_eq!(busy_record.event_count(), 0);

    gate.open_for_good();
    stops_normally(&busy).await;
    assert_eq!(busy_record.event_count(), 10);
    let mut all = [busy_record.events(), free_record.events()].concat();
    all.sort_unstable();
    assert_eq!(all, range(0, 100));
}

// ---------------------------------------------------------------------------------------
// 6. Accumulate mode
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn accumulating_producer_holds_demand_and_events_until_forward() {
    let (scripted, producer_record) = ScriptedProducer::<u64>::new();
    let producer = accumulating(scripted).await;
    assert_eq!(
        producer.demand_mode().await.unwrap(),
        DemandMode::Accumulate
    );
    producer.cast(Script::Emit(vec![100, 101])).unwrap();
    let (consumer, record) = collect(&producer, opts(5, 2)).await;
    producer.cast(Script::Queue(range(0, 10))).unwrap();
    producer.cast(Script::Emit(vec![102])).unwrap();

    barrier(&producer).await;
    consumer_barrier(&consumer).await;
    assert!(producer_record.snapshot().demands.is_empty());
    assert_eq!(record.event_count(), 0);
    assert_eq!(
        producer.demand_mode().await.unwrap(),
        DemandMode::Accumulate
    );

    producer.set_demand_mode(DemandMode::Forward).unwrap();
    assert_eq!(producer.demand_mode().await.unwrap(), DemandMode::Forward);
    within("all events", record.wait_for_events(13)).await;
    // The stash replays in order, as in GenStage: 100 and 101 (emitted before the
    // consumer asked), then what its demand of 5 produced, then 102 (emitted after the
    // ask), then the rest.
    assert_eq!(
        record.events(),
        [vec![100, 101], range(0, 5), vec![102], range(5, 10)].concat()
    );
    assert!(producer_record.snapshot().demands[0] <= 5);
}

#[tokio::test]
async fn forward_serves_each_accumulated_demand_separately_in_order() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = accumulating(counter).await;
    let (consumer, record, tag) = manual_consumer(&producer, opts(10, 5)).await;
    for ask in [3, 4] {
        consumer.ask(tag, n(ask)).unwrap();
    }
    consumer_barrier(&consumer).await;
    // Accumulating again keeps what was accumulated so far.
    producer.set_demand_mode(DemandMode::Accumulate).unwrap();
    consumer.ask(tag, n(5)).unwrap();
    settle(&consumer, &producer).await;
    assert!(demands.is_empty());
    assert_eq!(record.event_count(), 0);
    assert_eq!(
        producer.demand_mode().await.unwrap(),
        DemandMode::Accumulate
    );

    producer.set_demand_mode(DemandMode::Forward).unwrap();
    within("all events", record.wait_for_events(12)).await;
    // One handle_demand per accumulated demand, not one call of 12.
    assert_eq!(demands.snapshot(), vec![3, 4, 5]);
    assert_eq!(
        record.batches(),
        vec![range(0, 3), range(3, 7), range(7, 12)]
    );
}

/// Takes its subscriptions in manual mode and asks for `first` events right away, from
/// the subscription hook, as GenStage consumers do in `handle_subscribe`.
struct AsksWhenSubscribed {
    first: usize,
    received: Recorded<u64>,
}

impl Consumer for AsksWhenSubscribed {
    type Event = u64;
    type Message = ();

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _: &SubscribeOptions,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<gen_stage::AskMode, BoxError> {
        ctx.ask(tag, n(self.first))?;
        Ok(gen_stage::AskMode::Manual)
    }

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        for event in events {
            self.received.push(event);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_manual_consumer_can_ask_from_its_subscription_hook() {
    let producer = gen_stage::producer(Counter::new(0)).start().await.unwrap();
    let received = Recorded::default();
    let consumer = AsksWhenSubscribed {
        first: 3,
        received: received.clone(),
    };
    let consumer = gen_stage::consumer(consumer)
        .subscribe_to(&producer, opts(10, 5))
        .start()
        .await
        .unwrap();
    received.wait_for_len(3).await;
    barrier(&producer).await;
    let pending = consumer.demand_snapshot().await.expect("alive");
    // Exactly what the hook asked for, and no more.
    assert_eq!(received.snapshot(), vec![0, 1, 2]);
    assert_eq!(pending.iter().map(|d| d.pending).sum::<usize>(), 0);
}
