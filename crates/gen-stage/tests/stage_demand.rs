//! Demand through running stages: automatic batching and re-asks, manual asks, several
//! producers or consumers, producer-consumer back-pressure, accumulate mode, pipelines.

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use gen_stage::kind::{EmitsEvents, StageKind};
use gen_stage::{
    BoxError, CancelMode, Consumer, ConsumerContext, ConsumerRef, DemandMode, ExitReason, Producer,
    ProducerConsumer, ProducerConsumerContext, ProducerConsumerRef, ProducerRef, StageRef,
    SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{
    CollectingConsumer, Counter, Gate, Record, Recorded, Script, ScriptedProducer, Watch,
};

// ---------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------

type Collector = ConsumerRef<CollectingConsumer<u64>>;
type Rec = Watch<Record<u64>>;

/// Guards against a hang: a broken library fails the test instead of blocking forever.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(20), future).await {
        Ok(output) => output,
        Err(_) => panic!("never happened: {what}"),
    }
}

async fn stops_normally<K: StageKind>(stage: &StageRef<K>) {
    let reason = within("the stage stops", stage.stopped()).await;
    assert!(reason.is_normal(), "stopped with {reason:?}");
}

fn n(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).expect("a positive demand")
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

fn opts(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

fn batches(record: &Rec) -> Vec<Vec<u64>> {
    record.read(|r| r.batches.iter().map(|(_, b)| b.clone()).collect())
}

/// Starts a `CollectingConsumer` subscribed to `producer` (gated if a gate is given).
async fn collect<K>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    gate: Option<Gate>,
) -> (Collector, Rec)
where
    K: EmitsEvents<Out = u64>,
{
    let (collector, record) = CollectingConsumer::new();
    let collector = match gate {
        Some(gate) => collector.gated(gate),
        None => collector,
    };
    let consumer = gen_stage::consumer(collector)
        .subscribe_to(producer, options)
        .start()
        .await
        .expect("starts");
    (consumer, record)
}

/// Starts a manual `CollectingConsumer` subscribed to `producer`.
async fn manual<K>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> (Collector, SubscriptionTag, Rec)
where
    K: EmitsEvents<Out = u64>,
{
    let (collector, record) = CollectingConsumer::new();
    let consumer = gen_stage::consumer(collector.manual())
        .start()
        .await
        .expect("starts");
    let tag = consumer
        .subscribe_to(producer, options)
        .await
        .expect("subscribed");
    (consumer, tag, record)
}

/// Returns once the stage has handled every message sent to it before.
async fn barrier<K: EmitsEvents>(stage: &StageRef<K>) {
    stage.estimate_buffered_count().await.expect("alive");
}

/// Returns once a `CollectingConsumer` has handled every message sent to it before.
async fn consumer_barrier(consumer: &Collector) {
    consumer.call(gen_stage_test::Ping).await.expect("alive");
}

/// Returns once a consumer and its producer have handled what each sent the other.
async fn settle<K: EmitsEvents>(consumer: &Collector, producer: &StageRef<K>) {
    consumer_barrier(consumer).await;
    barrier(producer).await;
    consumer_barrier(consumer).await;
}

/// Starts a producer in accumulate mode.
async fn accumulating<S: Producer>(stage: S) -> ProducerRef<S> {
    let builder = gen_stage::producer(stage).demand_mode(DemandMode::Accumulate);
    builder.start().await.expect("starts")
}

/// Lets messages go back and forth a few times between two stages.
async fn rounds<A: EmitsEvents, B: EmitsEvents>(upstream: &StageRef<A>, middle: &StageRef<B>) {
    for _ in 0..4 {
        barrier(upstream).await;
        barrier(middle).await;
    }
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

/// A producer-consumer that maps each input to any number of outputs and records the
/// batches it handled.
struct Relay {
    handled: Recorded<Vec<u64>>,
    map: fn(u64) -> Vec<u64>,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        let output = events.iter().flat_map(|&event| (self.map)(event)).collect();
        self.handled.push(events);
        Ok(output)
    }
}

/// Starts a `Relay` subscribed to `producer`.
async fn relay<K>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    map: fn(u64) -> Vec<u64>,
) -> (ProducerConsumerRef<Relay>, Recorded<Vec<u64>>)
where
    K: EmitsEvents<Out = u64>,
{
    let handled = Recorded::default();
    let stage = Relay {
        handled: handled.clone(),
        map,
    };
    let middle = gen_stage::producer_consumer(stage)
        .subscribe_to(producer, options)
        .start()
        .await
        .expect("starts");
    (middle, handled)
}

fn identity(x: u64) -> Vec<u64> {
    vec![x]
}

// ---------------------------------------------------------------------------------------
// 1. Automatic demand
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn automatic_demand_asks_max_first_and_defaults_split_in_halves() {
    let (counter, demands) = Counter::new(0).limit(2000).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (consumer, record) = collect(&producer, SubscribeOptions::new(), None).await;

    stops_normally(&consumer).await;
    assert_eq!(record.events(), range(0, 2000));
    // Default min_demand is max/2 = 500: batches of 500, and a re-ask of 500 each time.
    assert_eq!(record.batch_sizes(), vec![500; 4]);
    assert_eq!(demands.snapshot()[..3], [1000, 500, 500]);
}

#[tokio::test]
async fn automatic_demand_with_min_close_to_max_asks_after_every_small_batch() {
    let (counter, demands) = Counter::new(0).limit(200).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (consumer, record) = collect(&producer, opts(100, 80), None).await;

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
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (entered, gate) = (Recorded::default(), Gate::closed());
    let stepper = Stepper {
        entered: entered.clone(),
        gate: gate.clone(),
    };
    gen_stage::consumer(stepper)
        .subscribe_to(&producer, opts(100, 20))
        .start()
        .await
        .unwrap();

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
    let (counter, demands) = Counter::new(0).limit(5).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    // min_demand defaults to 0 when max_demand is 1.
    let options = SubscribeOptions::new().max_demand(1);
    let (consumer, record) = collect(&producer, options, None).await;

    stops_normally(&consumer).await;
    assert_eq!(
        batches(&record),
        vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
    );
    assert_eq!(demands.snapshot()[..5], [1, 1, 1, 1, 1]);
}

#[tokio::test]
async fn automatic_demand_with_small_deliveries_asks_once_min_is_crossed() {
    let (scripted, producer_record) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let (consumer, record) = collect(&producer, opts(1000, 750), None).await;

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
    let (scripted, producer_record) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let gate = Gate::closed();
    let (consumer, record) = collect(&producer, opts(10, 5), Some(gate.clone())).await;
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
    let (scripted, producer_record) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let (consumer, tag, record) = manual(&producer, opts(4, 2)).await;

    producer.cast(Script::Emit(range(0, 20))).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 20);

    let mut expected = Vec::new();
    for (ask, total, buffered) in [(3, 3, 17), (8, 11, 9)] {
        consumer.ask(tag, n(ask)).unwrap();
        within("asked events", record.wait_for_events(total)).await;
        assert_eq!(producer.estimate_buffered_count().await.unwrap(), buffered);
        consumer_barrier(&consumer).await;
        // One delivery, one batch: 8 events at once although max - min is 2.
        expected.push(range((total - ask) as u64, total as u64));
        assert_eq!(batches(&record), expected);
    }
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
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (consumer, tag, record) = manual(&producer, opts(4, 2)).await;

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
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (consumer, tag, record) = manual(&producer, opts(10, 5)).await;

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
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (consumer, tag, record) = manual(&producer, opts(10, 5)).await;

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
    let (counter_a, demands_a) = Counter::new(0).limit(50).recorded();
    let (counter_b, demands_b) = Counter::new(1000).limit(1040).recorded();
    let producer_a = gen_stage::producer(counter_a).start().await.unwrap();
    let producer_b = gen_stage::producer(counter_b).start().await.unwrap();
    let (collector, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(collector).start().await.unwrap();
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
    let (scripted, silent_record) = ScriptedProducer::<u64>::new();
    let silent = gen_stage::producer(scripted).start().await.unwrap();
    let busy = gen_stage::producer(Counter::new(0).limit(50))
        .start()
        .await
        .unwrap();
    let (collector, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(collector).start().await.unwrap();
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
        consumers.push(collect(&producer, opts(10, 5), None).await);
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
    let (busy, busy_record) = collect(&producer, opts(10, 5), Some(gate.clone())).await;
    let (free, free_record) = collect(&producer, opts(10, 5), None).await;
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
// 6. Producer-consumer back-pressure
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn producer_consumer_without_downstream_demand_neither_handles_nor_reasks() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (middle, handled) = relay(&producer, opts(10, 5), identity).await;

    within("first ask", demands.wait_for_len(1)).await;
    rounds(&producer, &middle).await;
    assert!(handled.is_empty());
    assert_eq!(demands.snapshot(), vec![10]);

    // A consumer that subscribes but does not ask changes nothing.
    let (consumer, tag, record) = manual(&middle, opts(10, 5)).await;
    rounds(&producer, &middle).await;
    assert!(handled.is_empty());
    assert_eq!(demands.snapshot(), vec![10]);

    // Asking 3 lets the queued delivery through (two batches of max - min = 5, each
    // followed by its re-ask); the output beyond 3 is buffered, nothing more is handled.
    consumer.ask(tag, n(3)).unwrap();
    within("3 events", record.wait_for_events(3)).await;
    within("re-asks", demands.wait_for_len(3)).await;
    rounds(&producer, &middle).await;
    assert_eq!(handled.snapshot(), vec![range(0, 5), range(5, 10)]);
    assert_eq!(demands.snapshot(), vec![10, 5, 5]);
    assert_eq!(middle.estimate_buffered_count().await.unwrap(), 7);
    consumer_barrier(&consumer).await;
    assert_eq!(record.events(), range(0, 3));
}

#[tokio::test]
async fn producer_consumer_stops_pulling_while_its_consumer_is_busy() {
    let (counter, demands) = Counter::new(0).limit(200).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let (middle, handled) = relay(&producer, opts(10, 5), identity).await;
    let gate = Gate::closed();
    let (consumer, record) = collect(&middle, opts(4, 2), Some(gate.clone())).await;

    within("first delivery handled", handled.wait_for_len(2)).await;
    within("re-asks", demands.wait_for_len(3)).await;
    rounds(&producer, &middle).await;
    // The consumer asked 4 and is stuck on its first batch: one delivery handled.
    assert_eq!(handled.snapshot().concat(), range(0, 10));
    assert_eq!(demands.snapshot(), vec![10, 5, 5]);
    assert_eq!(middle.estimate_buffered_count().await.unwrap(), 6);
    assert_eq!(record.event_count(), 0);

    gate.open_for_good();
    stops_normally(&consumer).await;
    assert_eq!(record.events(), range(0, 200));
}

#[tokio::test]
async fn filtering_producer_consumer_keeps_asking_upstream() {
    let (counter, demands) = Counter::new(0).limit(60).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let keep_from_50 = |x| if x >= 50 { vec![x] } else { Vec::new() };
    let (middle, handled) = relay(&producer, opts(10, 5), keep_from_50).await;
    let (consumer, record) = collect(&middle, opts(10, 5), None).await;

    stops_normally(&consumer).await;
    stops_normally(&middle).await;
    assert_eq!(record.events(), range(50, 60));
    assert_eq!(handled.snapshot().concat(), range(0, 60));
    assert!(demands.snapshot().iter().sum::<usize>() >= 60);
}

#[tokio::test]
async fn producer_consumer_output_beyond_demand_is_buffered_and_delivered_in_order() {
    let (scripted, upstream_record) = ScriptedProducer::with_queue(vec![0u64, 1, 2]);
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let (middle, handled) = relay(&producer, opts(10, 5), |x| range(x * 10, x * 10 + 10)).await;
    let (consumer, tag, record) = manual(&middle, opts(100, 50)).await;

    let mut expected = Vec::new();
    for (ask, total, buffered) in [(5, 5, 25), (7, 12, 18), (18, 30, 0)] {
        consumer.ask(tag, n(ask)).unwrap();
        within("asked events", record.wait_for_events(total)).await;
        assert_eq!(middle.estimate_buffered_count().await.unwrap(), buffered);
        consumer_barrier(&consumer).await;
        expected.push(range((total - ask) as u64, total as u64));
        assert_eq!(batches(&record), expected);
    }
    // The three inputs were handled once; 3 of the 10 asked upstream arrived, so the
    // producer-consumer did not ask again.
    assert_eq!(handled.snapshot(), vec![vec![0, 1, 2]]);
    assert_eq!(upstream_record.snapshot().demands, vec![10]);
    assert_eq!(producer.call(Script::Owed).await.unwrap(), 7);
}

// ---------------------------------------------------------------------------------------
// 7. Accumulate mode
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
    let (consumer, record) = collect(&producer, opts(5, 2), None).await;
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
    // Events emitted while accumulating come first, in order.
    assert_eq!(
        record.events(),
        [vec![100, 101, 102], range(0, 10)].concat()
    );
    assert!(producer_record.snapshot().demands[0] <= 5);
}

#[tokio::test]
async fn forward_serves_each_accumulated_demand_separately_in_order() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = accumulating(counter).await;
    let (consumer, tag, record) = manual(&producer, opts(10, 5)).await;
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
        batches(&record),
        vec![range(0, 3), range(3, 7), range(7, 12)]
    );
}

// ---------------------------------------------------------------------------------------
// 8. Pipelines
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn three_stage_pipeline_delivers_everything_once_in_order_and_stops_normally() {
    let producer = gen_stage::producer(Counter::new(0).limit(1000))
        .start()
        .await
        .unwrap();
    let (middle, _) = relay(&producer, opts(50, 25), |x| vec![x * 2]).await;
    let (consumer, record) = collect(&middle, opts(20, 5), None).await;

    stops_normally(&consumer).await;
    stops_normally(&middle).await;
    stops_normally(&producer).await;
    let expected: Vec<u64> = (0..1000).map(|x| x * 2).collect();
    assert_eq!(record.events(), expected);
    assert_eq!(
        record.read(|r| r.terminated.clone()),
        Some(ExitReason::Normal)
    );
}

#[tokio::test]
async fn pipeline_from_an_iterator_with_a_filter_completes() {
    let producer = gen_stage::from_iter(0..300u64).start().await.unwrap();
    let multiples_of_3 = |x| if x % 3 == 0 { vec![x] } else { Vec::new() };
    let (middle, handled) = relay(&producer, opts(7, 3), multiples_of_3).await;
    let (consumer, record) = collect(&middle, SubscribeOptions::new().max_demand(1), None).await;

    stops_normally(&consumer).await;
    stops_normally(&middle).await;
    stops_normally(&producer).await;
    let expected: Vec<u64> = (0..300).filter(|x| x % 3 == 0).collect();
    assert_eq!(record.events(), expected);
    assert!(record.batch_sizes().iter().all(|&size| size == 1));
    assert_eq!(handled.snapshot().concat(), range(0, 300));
    assert!(handled.snapshot().iter().all(|batch| batch.len() <= 4));
}

#[tokio::test]
async fn producer_consumer_delivers_its_buffered_output_before_winding_down() {
    let (scripted, _) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let (middle, handled) = relay(&producer, opts(10, 5), identity).await;
    let (consumer, record) = collect(&middle, opts(2, 1), None).await;

    // The last five events reach the producer-consumer while its consumer wants 2: three
    // are buffered. Then the producer finishes normally.
    producer.cast(Script::Queue(range(0, 5))).unwrap();
    producer.cast(Script::Stop(ExitReason::Normal)).unwrap();

    stops_normally(&producer).await;
    stops_normally(&consumer).await;
    assert_eq!(handled.snapshot().concat(), range(0, 5));
    // The buffered three must not be lost when the permanent subscription ends.
    assert_eq!(record.events(), range(0, 5));
}
