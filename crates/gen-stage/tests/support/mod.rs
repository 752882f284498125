//! Helpers shared by the integration tests: small local stages (a relay, a probe, a
//! request server, a producer that refuses subscriptions), consumer set-up, barriers
//! that return once a stage has handled what was sent to it before, and a paused-clock
//! runtime for property tests. The submodules hold the harnesses of the supervision
//! tests: controllable tasks for `ConsumerSupervisor` (`tasks`) and logging workers
//! for `Supervisor` (`workers`).
//!
//! Each test file includes this module with `mod support;`.

// Every test file is its own crate and uses a different subset of these helpers; the
// rest would otherwise be reported as dead code.
#![allow(dead_code)]

pub(crate) mod fetch;
pub(crate) mod tasks;
pub(crate) mod workers;

use std::error::Error;
use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::dispatcher::Dispatcher;
use gen_stage::kind::{EmitsEvents, StageKind};
use gen_stage::{
    BoxError, CancelReason, Consumer, ConsumerContext, ConsumerRef, ExitReason, Init, Producer,
    ProducerConsumer, ProducerConsumerContext, ProducerConsumerRef, ProducerContext, ProducerRef,
    ReplyTo, StageRef, StartError, SubscribeError, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{
    CollectingConsumer, Counter, Gate, ProducerRecord, Record, Recorded, ScriptedProducer, Watch,
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

/// The batches a consumer received, without their subscription tags.
pub(crate) fn batches<T: Clone>(record: &Watch<Record<T>>) -> Vec<Vec<T>> {
    record.read(|r| r.batches.iter().map(|(_, b)| b.clone()).collect())
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

/// The reason a recording consumer's `terminate` hook saw, if it ran.
pub(crate) fn terminated<T>(record: &Watch<Record<T>>) -> Option<ExitReason> {
    record.read(|r| r.terminated.clone())
}

/// The `handle_cancel` calls a recording consumer saw.
pub(crate) fn cancels<T>(record: &Watch<Record<T>>) -> Vec<(SubscriptionTag, CancelReason)> {
    record.read(|r| r.cancels.clone())
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

/// Waits for a scripted producer's first `handle_cancel`, then returns all it saw.
pub(crate) async fn producer_cancels(
    record: &Watch<ProducerRecord>,
) -> Vec<(SubscriptionTag, CancelReason)> {
    record.wait_until(|r| !r.cancels.is_empty()).await;
    record.read(|r| r.cancels.clone())
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

/// A current-thread runtime with the clock paused, for property tests: a case that
/// stalls (nothing left to run) reaches `within`'s deadline at once.
pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Runs one property-test case on a fresh [`paused_runtime`], failing if it stalls.
pub(crate) fn run_paused<F: Future>(case: F) -> F::Output {
    paused_runtime().block_on(within("the case to finish", case))
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
        assert_eq!(batches(record), expected);
    }
}

// ---------------------------------------------------------------------------------------
// Relay: a producer-consumer
// ---------------------------------------------------------------------------------------

/// A producer-consumer that maps each input to any number of outputs (by default it
/// passes events on unchanged) and records the batches it handled; a message emits its
/// events at once, and the buffer's discards are recorded.
pub(crate) struct Relay<T> {
    pub(crate) handled: Recorded<Vec<T>>,
    pub(crate) discards: Recorded<usize>,
    map: fn(T) -> Vec<T>,
}

impl<T: Clone + Send + 'static> Relay<T> {
    pub(crate) fn new(map: fn(T) -> Vec<T>) -> Self {
        Relay {
            handled: Recorded::default(),
            discards: Recorded::default(),
            map,
        }
    }

    pub(crate) fn pass_through() -> Self {
        Self::new(|event| vec![event])
    }
}

impl<T: Clone + Send + 'static> ProducerConsumer for Relay<T> {
    type Input = T;
    type Output = T;
    /// Events to emit now (beyond demand they are buffered).
    type Message = Vec<T>;

    async fn handle_events(
        &mut self,
        events: Vec<T>,
        _from: SubscriptionTag,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<T>, BoxError> {
        let output = events.iter().cloned().flat_map(self.map).collect();
        self.handled.push(events);
        Ok(output)
    }

    async fn handle_message(
        &mut self,
        events: Vec<T>,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        ctx.emit(events);
        Ok(())
    }

    fn handle_discarded(&mut self, count: usize) -> bool {
        self.discards.push(count);
        false
    }
}

/// Starts a `Relay` with `map` subscribed to `producer`; returns its handled batches.
pub(crate) async fn relay<K, T>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    map: fn(T) -> Vec<T>,
) -> (ProducerConsumerRef<Relay<T>>, Recorded<Vec<T>>)
where
    K: EmitsEvents<Out = T>,
    T: Clone + Send + 'static,
{
    let stage = Relay::new(map);
    let handled = stage.handled.clone();
    let middle = gen_stage::producer_consumer(stage)
        .subscribe_to(producer, options)
        .start()
        .await
        .expect("the relay starts");
    (middle, handled)
}

pub(crate) fn identity(x: u64) -> Vec<u64> {
    vec![x]
}

// ---------------------------------------------------------------------------------------
// Refusing: a producer that turns every consumer away
// ---------------------------------------------------------------------------------------

/// A producer that emits nothing and refuses every subscription with `reason`.
pub(crate) struct Refusing<T> {
    reason: &'static str,
    events: PhantomData<fn() -> T>,
}

impl<T> Refusing<T> {
    pub(crate) fn new(reason: &'static str) -> Self {
        Refusing {
            reason,
            events: PhantomData,
        }
    }
}

impl<T: Send + 'static> Producer for Refusing<T> {
    type Event = T;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<T>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_consumer_subscribed(
        &mut self,
        _tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Err(self.reason.into())
    }
}

// ---------------------------------------------------------------------------------------
// Server: a producer that answers requests
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub(crate) enum Fault {
    Panic,
    Error,
    /// Only for `init`: return `Init::Ignore`.
    Ignore,
}

/// A producer that answers requests; it emits nothing on demand.
#[derive(Default)]
pub(crate) struct Server {
    value: u64,
    held: Vec<ReplyTo<u64>>,
    log: ServerLog,
    on_init: Option<Fault>,
    on_demand: Option<Fault>,
}

#[derive(Clone, Default)]
pub(crate) struct ServerLog {
    /// One entry per reply handle the server kept for later.
    pub(crate) held: Recorded<()>,
    pub(crate) terminated: Recorded<ExitReason>,
}

pub(crate) enum Req {
    Get(ReplyTo<u64>),
    Add(u64),
    /// Keep the reply handle; `Release` answers it.
    Later(ReplyTo<u64>),
    Release,
    /// Drop the reply handle without replying.
    Forget(ReplyTo<u64>),
    StopWith(ExitReason),
    Panic,
    Fail,
}

pub(crate) fn server() -> (Server, ServerLog) {
    let server = Server::default();
    let log = server.log.clone();
    (server, log)
}

impl Server {
    /// `init` fails with `fault`.
    pub(crate) fn on_init(self, fault: Fault) -> Self {
        let on_init = Some(fault);
        Server { on_init, ..self }
    }

    /// `handle_demand` fails with `fault`.
    pub(crate) fn on_demand(self, fault: Fault) -> Self {
        let on_demand = Some(fault);
        Server { on_demand, ..self }
    }
}

pub(crate) async fn start_server(server: Server) -> ProducerRef<Server> {
    let started = gen_stage::producer(server).start().await;
    started.expect("the server starts")
}

impl Producer for Server {
    type Event = u64;
    type Message = Req;

    async fn init(&mut self, _ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        match self.on_init {
            None => Ok(Init::Start),
            Some(Fault::Ignore) => Ok(Init::Ignore),
            Some(Fault::Error) => Err("no config".into()),
            Some(Fault::Panic) => panic!("init exploded"),
        }
    }

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        match self.on_demand {
            Some(Fault::Panic) => panic!("demand exploded"),
            Some(_) => Err("no more demand".into()),
            None => Ok(Vec::new()),
        }
    }

    async fn handle_message(
        &mut self,
        message: Req,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Req::Get(reply) => reply.send(self.value),
            Req::Add(amount) => self.value += amount,
            Req::Later(reply) => {
                self.held.push(reply);
                self.log.held.push(());
            }
            Req::Release => self.held.drain(..).for_each(|reply| reply.send(self.value)),
            Req::Forget(reply) => drop(reply),
            Req::StopWith(reason) => ctx.stop(reason),
            Req::Panic => panic!("message exploded"),
            Req::Fail => return Err("request failed".into()),
        }
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        self.log.terminated.push(reason.clone());
    }
}

// ---------------------------------------------------------------------------------------
// Probe: a consumer that records and answers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub(crate) enum OnEvent {
    Panic,
    Fail,
    Stop,
}

/// A consumer that records what it sees and answers `Seen` with the events so far; with
/// a trap, it panics, fails or stops on a batch that holds the given event.
pub(crate) struct Probe {
    record: Watch<Record<u64>>,
    trap: Option<(u64, OnEvent)>,
}

pub(crate) enum Query {
    Seen(ReplyTo<Vec<u64>>),
}

fn probe() -> (Probe, Watch<Record<u64>>) {
    let record = Watch::default();
    (
        Probe {
            record: record.clone(),
            trap: None,
        },
        record,
    )
}

/// A probe with no subscription yet.
pub(crate) async fn start_probe(
    trap: Option<(u64, OnEvent)>,
) -> (ConsumerRef<Probe>, Watch<Record<u64>>) {
    let (probe, record) = probe();
    let consumer = gen_stage::consumer(Probe { trap, ..probe }).start().await;
    (consumer.expect("the probe starts"), record)
}

/// Starts a probe through the builder, subscribed to `producer`.
pub(crate) async fn build_probe<P: EmitsEvents<Out = u64>>(
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> Result<ConsumerRef<Probe>, StartError> {
    let (probe, _) = probe();
    gen_stage::consumer(probe)
        .subscribe_to(producer, options)
        .start()
        .await
}

pub(crate) async fn subscribe<P: EmitsEvents<Out = u64>>(
    consumer: &ConsumerRef<Probe>,
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> SubscriptionTag {
    let subscribed = consumer.subscribe_to(producer, options).await;
    subscribed.expect("the producer accepts")
}

/// Whether the probe still answers calls (a call queued behind anything already in its
/// mailbox).
pub(crate) async fn answers(probe: &ConsumerRef<Probe>) -> bool {
    probe.call(Query::Seen).await.is_ok()
}

impl Consumer for Probe {
    type Event = u64;
    type Message = Query;

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        from: SubscriptionTag,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match self.trap {
            Some((at, OnEvent::Panic)) if events.contains(&at) => panic!("bad event {at}"),
            Some((at, OnEvent::Fail)) if events.contains(&at) => {
                return Err(format!("cannot handle {at}").into());
            }
            Some((at, OnEvent::Stop)) if events.contains(&at) => {
                ctx.stop(ExitReason::custom_shutdown("stop event"));
            }
            _ => {}
        }
        self.record.update(|r| r.batches.push((from, events)));
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let reason = reason.clone();
        self.record.update(|r| r.cancels.push((tag, reason)));
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: Query,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let Query::Seen(reply) = message;
        reply.send(self.record.events());
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        let reason = reason.clone();
        self.record.update(|r| r.terminated = Some(reason));
    }
}
