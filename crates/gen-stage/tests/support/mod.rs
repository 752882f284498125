//! Helpers shared by the integration tests: small values, consumer set-up (through the
//! kit's `CollectingConsumer`), barriers that return once a stage has handled what was
//! sent to it before, and the limits of property-test cases.
//!
//! Each test file includes this module with `mod support;`, and each test directory
//! with `#[path = "../support/mod.rs"] mod support;` in its `main.rs`.

// Every test file is its own crate and uses a different subset of these helpers; the
// rest would otherwise be reported as dead code.
#![allow(dead_code)]

use std::error::Error;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::dispatcher::Dispatcher;
use gen_stage::error::{StartError, SubscribeError};
use gen_stage::kind::{EmitsEvents, StageKind};
use gen_stage::{
    Consumer, ConsumerRef, Producer, ProducerRef, StageRef, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{
    CollectingConsumer, Counter, Gate, ProducerRecord, Record, Recorded, Request, ScriptedProducer,
    Watch,
};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};

// ---------------------------------------------------------------------------------------
// Small values
// ---------------------------------------------------------------------------------------

/// A `CollectingConsumer`'s handle.
pub(crate) type Collector<T> = ConsumerRef<CollectingConsumer<T>>;

/// A `CollectingConsumer`'s record.
pub(crate) type Events<T> = Watch<Record<T>>;

pub(crate) fn n(count: usize) -> NonZeroUsize {
    NonZeroUsize::new(count).expect("a positive demand")
}

pub(crate) fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

pub(crate) fn opts(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// Checks that consumers sharing out a stream of events each received theirs in
/// increasing order, and that together they received each of `expected` exactly once;
/// returns what each received.
pub(crate) fn shared_exactly_once(records: &[&Events<u64>], expected: Vec<u64>) -> Vec<Vec<u64>> {
    let each: Vec<Vec<u64>> = records.iter().map(|record| record.events()).collect();
    for events in &each {
        let in_order = events.windows(2).all(|w| w[0] < w[1]);
        assert!(in_order, "in order: {events:?}");
    }
    let mut all = each.concat();
    all.sort_unstable();
    assert_eq!(all, expected);
    each
}

/// Why the producer refused a subscription; panics if it was accepted or failed otherwise.
pub(crate) fn rejection(
    subscribed: Result<SubscriptionTag, SubscribeError>,
) -> Arc<dyn Error + Send + Sync> {
    match subscribed {
        Err(SubscribeError::Rejected(error)) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

/// Guards against a hang: a broken library fails the test instead of blocking forever.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(20), future).await {
        Ok(output) => output,
        Err(_) => panic!("never happened: {what}"),
    }
}

pub(crate) async fn stops_normally<K: StageKind>(stage: &StageRef<K>) {
    let reason = within("the stage stops", stage.stopped()).await;
    assert!(reason.is_normal(), "stopped with {reason:?}");
}

/// Waits for a `CollectingConsumer` to stop normally, then checks that it received
/// exactly `expected`, in order.
pub(crate) async fn stops_having_received<T>(
    consumer: &Collector<T>,
    record: &Events<T>,
    expected: Vec<T>,
) where
    T: Clone + PartialEq + std::fmt::Debug + Send + 'static,
{
    stops_normally(consumer).await;
    assert_eq!(record.events(), expected);
}

/// Returns once `stage` has dealt with everything sent to it before.
pub(crate) async fn barrier<K: StageKind>(stage: &StageRef<K>) {
    stage.barrier().await.expect("alive");
}

/// Returns once a `CollectingConsumer` has handled every message sent to it before.
pub(crate) async fn consumer_barrier<T: Send + 'static>(consumer: &Collector<T>) {
    barrier(consumer).await;
}

/// Returns once what was sent before has gone through: each consumer forwarded its asks
/// and cancels, the producer handled them (and emitted), and each consumer handled the
/// events it was sent.
pub(crate) async fn settle<K: EmitsEvents, T: Send + 'static>(
    producer: &StageRef<K>,
    consumers: &[&Collector<T>],
) {
    for consumer in consumers {
        consumer_barrier(consumer).await;
    }
    barrier(producer).await;
    for consumer in consumers {
        consumer_barrier(consumer).await;
    }
}

/// The most one property-test case may run on a real clock: a passing case stays far
/// below it even on a loaded machine, so reaching it means the case stalled.
pub(crate) const CASE_LIMIT: Duration = Duration::from_secs(60);

/// Runs one property-test case on `runtime`, failing it with a message (instead of
/// hanging the test run) if it has not finished within [`CASE_LIMIT`].
pub(crate) fn run_case<F>(runtime: tokio::runtime::Runtime, case: F) -> Result<(), TestCaseError>
where
    F: Future<Output = Result<(), TestCaseError>>,
{
    runtime.block_on(async {
        match tokio::time::timeout(CASE_LIMIT, case).await {
            Ok(outcome) => outcome,
            Err(_) => Err(TestCaseError::fail(format!(
                "the case stalled: not finished within {CASE_LIMIT:?}"
            ))),
        }
    })
}

/// Property-test settings: `cases` cases, and shrinking bounded in time, so that a
/// failure found by stalling (each shrinking step may wait [`CASE_LIMIT`]) still ends.
pub(crate) fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Starting stages
// ---------------------------------------------------------------------------------------

/// A started `ScriptedProducer` with nothing queued, and its record.
pub(crate) async fn scripted<T: Send + 'static>()
-> (ProducerRef<ScriptedProducer<T>>, Watch<ProducerRecord>) {
    scripted_with(Vec::new()).await
}

/// A started `ScriptedProducer` with `events` queued, and its record.
pub(crate) async fn scripted_with<T: Send + 'static>(
    events: Vec<T>,
) -> (ProducerRef<ScriptedProducer<T>>, Watch<ProducerRecord>) {
    let (script, record) = ScriptedProducer::with_queue(events);
    let producer = gen_stage::producer(script).start().await;
    (producer.expect("the producer starts"), record)
}

/// Starts the producer `stage` dispatching through `dispatcher`.
pub(crate) async fn dispatching<S: Producer>(
    stage: S,
    dispatcher: impl Dispatcher<S::Event>,
) -> ProducerRef<S> {
    let builder = gen_stage::producer(stage).dispatcher(dispatcher);
    builder.start().await.expect("the producer starts")
}

/// A started `ScriptedProducer` with nothing queued that dispatches through
/// `dispatcher`, and its record.
pub(crate) async fn scripted_by<T: Send + 'static>(
    dispatcher: impl Dispatcher<T>,
) -> (ProducerRef<ScriptedProducer<T>>, Watch<ProducerRecord>) {
    let (script, record) = ScriptedProducer::new();
    (dispatching(script, dispatcher).await, record)
}

/// A started `Counter` that records the demands it was asked.
pub(crate) async fn recorded_counter(counter: Counter) -> (ProducerRef<Counter>, Recorded<usize>) {
    let (counter, demands) = counter.recorded();
    let producer = gen_stage::producer(counter).start().await;
    (producer.expect("the counter starts"), demands)
}

/// A started `CollectingConsumer` with no subscription yet.
pub(crate) async fn collector<T: Send + 'static>() -> (Collector<T>, Watch<Record<T>>) {
    let (collector, record) = CollectingConsumer::new();
    let consumer = gen_stage::consumer(collector).start().await;
    (consumer.expect("the consumer starts"), record)
}

/// Starts `stage` through the builder, subscribed to `producer`.
pub(crate) async fn start_consumer<S, K>(
    stage: S,
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> ConsumerRef<S>
where
    S: Consumer,
    K: EmitsEvents<Out = S::Event>,
{
    let builder = gen_stage::consumer(stage).subscribe_to(producer, options);
    builder.start().await.expect("the consumer starts")
}

/// Starts a `CollectingConsumer` subscribed to `producer`.
pub(crate) async fn collect<K, T>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> (Collector<T>, Watch<Record<T>>)
where
    K: EmitsEvents<Out = T>,
    T: Send + 'static,
{
    let (collector, record) = CollectingConsumer::new();
    (start_consumer(collector, producer, options).await, record)
}

/// Starts a `CollectingConsumer` subscribed to `producer` that passes `gate` once per
/// batch before recording it.
pub(crate) async fn collect_gated<K, T>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    gate: &Gate,
) -> (Collector<T>, Watch<Record<T>>)
where
    K: EmitsEvents<Out = T>,
    T: Send + 'static,
{
    let (collector, record) = CollectingConsumer::new();
    let collector = collector.gated(gate.clone());
    (start_consumer(collector, producer, options).await, record)
}

/// Whether a `CollectingConsumer` started through the builder, subscribed to `producer`,
/// fails to start because the producer refused the subscription.
pub(crate) async fn start_is_rejected<K, T>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> bool
where
    K: EmitsEvents<Out = T>,
    T: Send + 'static,
{
    let (collector, _) = CollectingConsumer::new();
    let builder = gen_stage::consumer(collector).subscribe_to(producer, options);
    let started = builder.start().await;
    matches!(
        started,
        Err(StartError::Subscribe(SubscribeError::Rejected(_)))
    )
}

/// A `CollectingConsumer` with manual demand, subscribed to `producer` once started:
/// nothing is asked until the test asks on the returned tag.
pub(crate) async fn manual_consumer<K, T>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> (Collector<T>, Watch<Record<T>>, SubscriptionTag)
where
    K: EmitsEvents<Out = T>,
    T: Send + 'static,
{
    let (collector, record) = CollectingConsumer::new();
    let consumer = gen_stage::consumer(collector.manual()).start().await;
    let consumer = consumer.expect("the consumer starts");
    let tag = consumer.subscribe_to(producer, options).await;
    (consumer, record, tag.expect("the producer accepts"))
}

/// Subscribes a started `CollectingConsumer` to `producer`; the producer must accept.
pub(crate) async fn subscribe<K, T>(
    consumer: &Collector<T>,
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> SubscriptionTag
where
    K: EmitsEvents<Out = T>,
    T: Send + 'static,
{
    let subscribed = consumer.subscribe_to(producer, options).await;
    subscribed.expect("the producer accepts")
}

/// Whether a `CollectingConsumer` still answers calls (a call queued behind anything
/// already in its mailbox).
pub(crate) async fn answers<T: Send + 'static>(consumer: &Collector<T>) -> bool {
    consumer.call(Request::Ping).await.is_ok()
}

/// Each `(consumer, tag, amount)` asks `amount`; once the scripted `producer` has that
/// demand, `events` are queued on it; returns when the consumers handled what it sent.
pub(crate) async fn ask_then_queue<T: Send + 'static>(
    producer: &ProducerRef<ScriptedProducer<T>>,
    asks: &[(&Collector<T>, SubscriptionTag, usize)],
    events: Vec<T>,
) {
    for &(consumer, tag, amount) in asks {
        consumer.ask(tag, n(amount)).expect("alive");
    }
    let consumers: Vec<&Collector<T>> = asks.iter().map(|&(consumer, _, _)| consumer).collect();
    settle(producer, &consumers).await;
    let queued = producer.cast(gen_stage_test::Script::Queue(events));
    queued.expect("the producer is alive");
    settle(producer, &consumers).await;
}

/// Manual asks in steps: for each `(ask, total, buffered)`, asks `ask` on `tag`, waits
/// for `total` events in all, and checks that `stage` then buffers `buffered` and that
/// every ask so far arrived as one batch of the next events in order.
pub(crate) async fn ask_in_steps<K: EmitsEvents>(
    stage: &StageRef<K>,
    (consumer, record, tag): (&Collector<u64>, &Watch<Record<u64>>, SubscriptionTag),
    steps: &[(usize, usize, usize)],
) {
    let mut expected = Vec::new();
    for &(ask, total, buffered) in steps {
        consumer.ask(tag, n(ask)).expect("alive");
        within("asked events", record.wait_for_events(total)).await;
        let buffer = stage.estimate_buffered_count().await.expect("alive");
        assert_eq!(buffer, buffered);
        consumer_barrier(consumer).await;
        expected.push(range((total - ask) as u64, total as u64));
        assert_eq!(record.batches(), expected);
    }
}
