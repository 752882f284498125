//! Calls, casts and the lifecycle of stages: replies (now, later, never), init
//! outcomes, stopping, failures in hooks, how peers react to each other's exit and
//! cancellation, and subscription errors (semantics §2, §3, §5.4, §10 items 11, 13).

use std::time::Duration;

use gen_stage::kind::EmitsEvents;
use gen_stage::{
    BoxError, CallError, CancelMode, CancelReason, Consumer, ConsumerContext, ConsumerRef,
    DEFAULT_CALL_TIMEOUT, ExitReason, Init, NotAlive, OptionsError, Producer, ProducerContext,
    ProducerRef, ReplyTo, SendError, StageRef, StartError, SubscribeError, SubscribeOptions,
    SubscriptionTag,
};
use gen_stage_test::{
    CollectingConsumer, Counter, ProducerRecord, Record, Recorded, Script, ScriptedProducer, Watch,
};

// --- Local stages and helpers ---------------------------------------------------------

#[derive(Clone, Copy)]
enum Fault {
    Panic,
    Error,
    /// Only for `init`: return `Init::Ignore`.
    Ignore,
}

/// A producer that answers requests; it emits nothing on demand.
#[derive(Default)]
struct Server {
    value: u64,
    held: Vec<ReplyTo<u64>>,
    log: ServerLog,
    on_init: Option<Fault>,
    on_demand: Option<Fault>,
    reject: bool,
}

#[derive(Clone, Default)]
struct ServerLog {
    /// One entry per reply handle the server kept for later.
    held: Recorded<()>,
    terminated: Recorded<ExitReason>,
}

enum Req {
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

fn server() -> (Server, ServerLog) {
    let server = Server::default();
    let log = server.log.clone();
    (server, log)
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

    async fn handle_consumer_subscribed(
        &mut self,
        _tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        if self.reject {
            Err("no room".into())
        } else {
            Ok(())
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

#[derive(Clone, Copy, Debug)]
enum OnEvent {
    Panic,
    Fail,
    Stop,
}

/// A consumer that records what it sees and answers `Seen` with the events so far.
struct Probe {
    record: Watch<Record<u64>>,
    trap: Option<(u64, OnEvent)>,
}

enum Query {
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

type Scripted = ProducerRef<ScriptedProducer<u64>>;

async fn scripted() -> (Scripted, Watch<ProducerRecord>) {
    let (script, record) = ScriptedProducer::new();
    let producer = gen_stage::producer(script).start().await;
    (producer.expect("the producer starts"), record)
}

/// A producer that has already stopped normally.
async fn dead_producer() -> Scripted {
    let (producer, _) = scripted().await;
    let stopped = producer.stop(ExitReason::Normal).await;
    stopped.expect("it was alive");
    producer
}

async fn start_server(server: Server) -> ProducerRef<Server> {
    let started = gen_stage::producer(server).start().await;
    started.expect("the server starts")
}

/// A probe with no subscription yet.
async fn start_probe(trap: Option<(u64, OnEvent)>) -> (ConsumerRef<Probe>, Watch<Record<u64>>) {
    let (probe, record) = probe();
    let consumer = gen_stage::consumer(Probe { trap, ..probe }).start().await;
    (consumer.expect("the probe starts"), record)
}

/// Starts a probe through the builder, subscribed to `producer`.
async fn build_probe<P: EmitsEvents<Out = u64>>(
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> Result<ConsumerRef<Probe>, StartError> {
    let (probe, _) = probe();
    gen_stage::consumer(probe)
        .subscribe_to(producer, options)
        .start()
        .await
}

async fn subscribe<P: EmitsEvents<Out = u64>>(
    consumer: &ConsumerRef<Probe>,
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> SubscriptionTag {
    let subscribed = consumer.subscribe_to(producer, options).await;
    subscribed.expect("the producer accepts")
}

fn opts() -> SubscribeOptions {
    SubscribeOptions::new()
}

/// Whether the probe still answers calls (a call queued behind anything already in its
/// mailbox).
async fn answers(probe: &ConsumerRef<Probe>) -> bool {
    probe.call(Query::Seen).await.is_ok()
}

fn cancels<T>(record: &Watch<Record<T>>) -> Vec<(SubscriptionTag, CancelReason)> {
    record.read(|r| r.cancels.clone())
}

async fn producer_cancels(record: &Watch<ProducerRecord>) -> Vec<(SubscriptionTag, CancelReason)> {
    record.wait_until(|r| !r.cancels.is_empty()).await;
    record.read(|r| r.cancels.clone())
}

fn invalid<T>(outcome: Result<T, SubscribeError>) -> Option<OptionsError> {
    match outcome {
        Err(SubscribeError::InvalidOptions(error)) => Some(error),
        _ => None,
    }
}

fn reasons() -> Vec<ExitReason> {
    vec![
        ExitReason::Normal,
        ExitReason::Shutdown,
        ExitReason::custom_shutdown("maintenance"),
        ExitReason::error("disk full"),
        ExitReason::Panic("lost it".into()),
    ]
}

// --- Calls and casts -----------------------------------------------------------------

#[tokio::test]
async fn call_returns_the_typed_reply_and_casts_are_handled_in_order() {
    let stage = start_server(Server::default()).await;
    assert_eq!(stage.call(Req::Get).await, Ok(0));
    stage.cast(Req::Add(2)).unwrap();
    stage.cast(Req::Add(3)).unwrap();
    assert_eq!(stage.call(Req::Get).await, Ok(5));
}

#[tokio::test]
async fn a_kept_reply_handle_can_answer_on_a_later_message() {
    let (stage, log) = server();
    let stage = start_server(stage).await;
    let caller = tokio::spawn({
        let stage = stage.clone();
        async move { stage.call(Req::Later).await }
    });
    log.held.wait_for_len(1).await;
    stage.cast(Req::Add(7)).unwrap();
    stage.cast(Req::Release).unwrap();
    assert_eq!(caller.await.unwrap(), Ok(7));
}

#[tokio::test]
async fn dropping_the_reply_handle_fails_the_call_with_not_alive() {
    let stage = start_server(Server::default()).await;
    assert_eq!(stage.call(Req::Forget).await, Err(CallError::NotAlive));
    assert!(stage.is_alive());
    assert_eq!(stage.call(Req::Get).await, Ok(0));
}

#[tokio::test(start_paused = true)]
async fn calls_time_out_and_the_stage_keeps_running() {
    let (stage, log) = server();
    let stage = start_server(stage).await;
    let outcome = stage.call_timeout(Req::Later, Duration::from_millis(100));
    assert_eq!(outcome.await, Err(CallError::Timeout));
    assert_eq!(log.held.len(), 1, "the stage did get the request");

    let started = tokio::time::Instant::now();
    assert_eq!(stage.call(Req::Later).await, Err(CallError::Timeout));
    assert!(
        started.elapsed() >= DEFAULT_CALL_TIMEOUT,
        "call waits the default timeout"
    );

    // Late replies to callers that gave up are ignored.
    stage.cast(Req::Release).unwrap();
    assert_eq!(stage.call(Req::Get).await, Ok(0));
}

#[tokio::test]
async fn pending_calls_fail_with_not_alive_when_the_stage_stops() {
    let (stage, log) = server();
    let stage = start_server(stage).await;
    let caller = tokio::spawn({
        let stage = stage.clone();
        async move { stage.call(Req::Later).await }
    });
    log.held.wait_for_len(1).await;
    stage.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(caller.await.unwrap(), Err(CallError::NotAlive));
}

#[tokio::test]
async fn messages_to_a_stopped_stage_fail_and_come_back() {
    let stage = start_server(Server::default()).await;
    stage.stop(ExitReason::Normal).await.unwrap();
    assert_eq!(stage.call(Req::Get).await, Err(CallError::NotAlive));
    assert!(matches!(
        stage.cast(Req::Add(3)),
        Err(SendError(Req::Add(3)))
    ));
    let info = stage.async_info(Req::Add(4));
    assert!(matches!(info, Err(SendError(Req::Add(4)))));
    let back = stage.sync_info(Req::Add(5)).await.unwrap_err().into_inner();
    assert!(matches!(back, Req::Add(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_before_a_reply_reach_the_consumer_first() {
    let (producer, record) = scripted().await;
    let (consumer, _) = start_probe(None).await;
    subscribe(&consumer, &producer, opts().max_demand(100)).await;
    // The consumer's demand has reached the producer: emitted events go straight out.
    record.wait_until(|r| r.demands == vec![100]).await;

    for round in 0..10u64 {
        let batch = vec![round * 3, round * 3 + 1, round * 3 + 2];
        let call = producer.call(|reply| Script::EmitThenReply(batch, reply));
        call.await.unwrap();
        // The events were in the consumer's mailbox before the reply was sent, so a
        // call made after the reply is handled after them.
        let seen = consumer.call(Query::Seen).await.unwrap();
        assert_eq!(seen, (0..round * 3 + 3).collect::<Vec<_>>());
    }
}

// --- init ----------------------------------------------------------------------------

async fn start_failing(fault: Fault) -> (Option<StartError>, ServerLog) {
    let (stage, log) = server();
    let stage = Server {
        on_init: Some(fault),
        ..stage
    };
    (gen_stage::producer(stage).start().await.err(), log)
}

#[tokio::test]
async fn init_error_fails_start_with_the_error() {
    let (error, _) = start_failing(Fault::Error).await;
    let expected = ExitReason::error("no config");
    assert!(matches!(error, Some(StartError::Init(reason)) if reason == expected));
}

#[tokio::test]
async fn init_ignore_fails_start_with_ignored_without_terminate() {
    let (error, log) = start_failing(Fault::Ignore).await;
    assert!(matches!(error, Some(StartError::Ignored)));
    assert!(log.terminated.is_empty());
}

#[tokio::test]
async fn init_panic_fails_start_with_the_panic_message() {
    let (error, _) = start_failing(Fault::Panic).await;
    let expected = ExitReason::Panic("init exploded".into());
    assert!(matches!(error, Some(StartError::Init(reason)) if reason == expected));
}

// --- Stopping and failing ------------------------------------------------------------

#[tokio::test]
async fn stop_waits_for_terminate_and_reports_the_reason() {
    let (stage, log) = server();
    let stage = start_server(stage).await;
    assert!(stage.is_alive());
    assert_eq!(stage.exit_reason(), None);

    stage.stop(ExitReason::Shutdown).await.unwrap();
    assert!(!stage.is_alive());
    assert_eq!(log.terminated.snapshot(), vec![ExitReason::Shutdown]);
    assert_eq!(stage.exit_reason(), Some(ExitReason::Shutdown));
    assert_eq!(stage.stopped().await, ExitReason::Shutdown);
    assert_eq!(stage.stop(ExitReason::Normal).await, Err(NotAlive));
}

#[tokio::test]
async fn a_hook_that_stops_errs_or_panics_ends_the_stage_with_that_reason() {
    let cases = [
        (
            Req::StopWith(ExitReason::custom_shutdown("done")),
            ExitReason::custom_shutdown("done"),
        ),
        (Req::Fail, ExitReason::error("request failed")),
        (Req::Panic, ExitReason::Panic("message exploded".into())),
    ];
    for (request, expected) in cases {
        let (stage, log) = server();
        let stage = start_server(stage).await;
        stage.cast(request).unwrap();
        let reason = stage.stopped().await;
        assert_eq!(reason, expected);
        assert_eq!(log.terminated.snapshot(), vec![expected]);
        assert!(!stage.is_alive());
    }
}

#[tokio::test]
async fn a_panic_in_handle_demand_stops_only_the_producer() {
    let (stage, log) = server();
    let producer = start_server(Server {
        on_demand: Some(Fault::Panic),
        ..stage
    })
    .await;
    let (consumer, record) = start_probe(None).await;
    let tag = subscribe(&consumer, &producer, opts().cancel(CancelMode::Temporary)).await;

    let reason = ExitReason::Panic("demand exploded".into());
    assert_eq!(producer.stopped().await, reason);
    assert_eq!(log.terminated.snapshot(), vec![reason.clone()]);
    assert!(answers(&consumer).await);
    assert_eq!(cancels(&record), vec![(tag, CancelReason::Down(reason))]);

    // Other stages, and the runtime, carry on.
    let counter = gen_stage::producer(Counter::new(0).limit(5))
        .start()
        .await
        .unwrap();
    let (collector, events) = CollectingConsumer::<u64>::new();
    let collector = gen_stage::consumer(collector).subscribe_to(&counter, opts());
    collector.start().await.unwrap();
    events.wait_for_events(5).await;
    assert_eq!(events.events(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn an_error_in_handle_demand_stops_the_producer_and_its_permanent_consumer() {
    let producer = start_server(Server {
        on_demand: Some(Fault::Error),
        ..Server::default()
    })
    .await;
    let (consumer, _) = start_probe(None).await;
    subscribe(&consumer, &producer, opts()).await;
    let reason = ExitReason::error("no more demand");
    assert_eq!(producer.stopped().await, reason);
    assert_eq!(consumer.stopped().await, reason);
}

#[tokio::test]
async fn a_failure_in_handle_events_stops_only_the_consumer() {
    let cases = [
        (OnEvent::Panic, ExitReason::Panic("bad event 13".into())),
        (OnEvent::Fail, ExitReason::error("cannot handle 13")),
        (OnEvent::Stop, ExitReason::custom_shutdown("stop event")),
    ];
    for (action, expected) in cases {
        let (producer, producer_record) = scripted().await;
        let (fragile, fragile_record) = start_probe(Some((13, action))).await;
        let tag = subscribe(&fragile, &producer, opts()).await;
        producer.cast(Script::Emit(vec![13])).unwrap();
        assert_eq!(fragile.stopped().await, expected, "{action:?}");
        let terminated = fragile_record.read(|r| r.terminated.clone());
        assert_eq!(terminated, Some(expected.clone()));
        assert_eq!(
            producer_cancels(&producer_record).await,
            vec![(tag, CancelReason::Down(expected))]
        );

        // The producer still serves others.
        let (healthy, events) = start_probe(None).await;
        subscribe(&healthy, &producer, opts()).await;
        producer.cast(Script::Emit(vec![1, 2])).unwrap();
        events.wait_for_events(2).await;
        assert_eq!(events.events(), vec![1, 2]);
        assert!(producer.is_alive());
    }
}

// --- Peers watch each other ----------------------------------------------------------

/// For each of [`reasons`], stops a fresh producer with it while a probe with `mode` is
/// subscribed, and checks whether the probe stopped too. Once `stop` returns, the
/// producer's cancellation is in the probe's mailbox, so a call to it orders after.
async fn check_cancel_mode(mode: CancelMode, stops: [bool; 5]) {
    for (reason, stops) in reasons().into_iter().zip(stops) {
        let (producer, _) = scripted().await;
        let (consumer, record) = start_probe(None).await;
        let tag = subscribe(&consumer, &producer, opts().cancel(mode)).await;
        let stopped = producer.stop(reason.clone()).await;
        stopped.expect("it was alive");
        if stops {
            assert_eq!(consumer.stopped().await, reason, "{mode:?}");
            assert_eq!(record.read(|r| r.terminated.clone()), Some(reason.clone()));
        } else {
            assert!(answers(&consumer).await, "{mode:?} {reason:?}");
        }
        let down = vec![(tag, CancelReason::Down(reason))];
        assert_eq!(cancels(&record), down, "{mode:?}");
    }
}

#[tokio::test]
async fn a_permanent_consumer_stops_with_its_producers_reason() {
    check_cancel_mode(CancelMode::Permanent, [true; 5]).await;
}

#[tokio::test]
async fn a_transient_consumer_stops_only_on_abnormal_reasons() {
    check_cancel_mode(CancelMode::Transient, [false, false, false, true, true]).await;
}

#[tokio::test]
async fn a_temporary_consumer_keeps_running_whatever_the_reason() {
    check_cancel_mode(CancelMode::Temporary, [false; 5]).await;
}

#[tokio::test]
async fn a_stopped_consumer_is_seen_by_the_producer_which_serves_the_others() {
    let (producer, record) = scripted().await;
    let (leaving, _) = start_probe(None).await;
    let leaving_tag = subscribe(&leaving, &producer, opts()).await;
    let (staying, events) = start_probe(None).await;
    subscribe(&staying, &producer, opts()).await;

    leaving.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(
        producer_cancels(&record).await,
        vec![(leaving_tag, CancelReason::Down(ExitReason::Shutdown))]
    );
    assert!(producer.is_alive());

    producer.cast(Script::Emit(vec![1, 2, 3, 4])).unwrap();
    events.wait_for_events(4).await;
    assert_eq!(events.events(), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_consumer_cancelling_its_own_subscription_keeps_running() {
    let (producer, producer_record) = scripted().await;
    let (consumer, record) = start_probe(None).await;
    let tag = subscribe(&consumer, &producer, opts()).await;

    let reason = ExitReason::error("changed my mind");
    consumer.cancel(tag, reason.clone()).unwrap();
    assert!(answers(&consumer).await, "a permanent consumer survives");
    let cancelled = vec![(tag, CancelReason::Cancelled(reason))];
    assert_eq!(cancels(&record), cancelled);
    assert_eq!(producer_cancels(&producer_record).await, cancelled);
    // The producer no longer sends anything there.
    producer.cast(Script::Emit(vec![1, 2])).unwrap();
    assert_eq!(producer.estimate_buffered_count().await, Ok(2));
    assert_eq!(consumer.call(Query::Seen).await, Ok(Vec::new()));
}

// --- Subscriptions -------------------------------------------------------------------

#[tokio::test]
async fn subscribe_to_rejects_invalid_options_and_the_consumer_keeps_running() {
    let (producer, _) = scripted().await;
    let (consumer, _) = start_probe(None).await;

    let zero = consumer.subscribe_to(&producer, opts().max_demand(0)).await;
    assert_eq!(invalid(zero), Some(OptionsError::MaxDemandZero));
    let equal = opts().max_demand(5).min_demand(5);
    let equal = consumer.subscribe_to(&producer, equal).await;
    let expected = OptionsError::MinDemandNotBelowMax {
        min_demand: 5,
        max_demand: 5,
    };
    assert_eq!(invalid(equal), Some(expected));
    let zero = consumer.async_subscribe_to(&producer, opts().max_demand(0));
    assert_eq!(invalid(zero), Some(OptionsError::MaxDemandZero));
    assert!(answers(&consumer).await);
}

#[tokio::test]
async fn the_builder_rejects_invalid_subscription_options() {
    let (producer, _) = scripted().await;
    for (options, expected) in [
        (opts().max_demand(0), OptionsError::MaxDemandZero),
        (
            opts().max_demand(4).min_demand(9),
            OptionsError::MinDemandNotBelowMax {
                min_demand: 9,
                max_demand: 4,
            },
        ),
    ] {
        let outcome = build_probe(&producer, options).await;
        assert!(matches!(outcome, Err(StartError::InvalidOptions(e)) if e == expected));
    }
}

#[tokio::test]
async fn subscribing_to_a_stopped_producer_fails_and_the_consumer_keeps_running() {
    let producer = dead_producer().await;
    let (consumer, _) = start_probe(None).await;
    let outcome = consumer.subscribe_to(&producer, opts()).await;
    assert!(matches!(outcome, Err(SubscribeError::ProducerNotAlive)));
    assert!(answers(&consumer).await);

    let outcome = build_probe(&producer, opts()).await;
    let not_alive = matches!(
        outcome,
        Err(StartError::Subscribe(SubscribeError::ProducerNotAlive))
    );
    assert!(not_alive, "the builder reports the dead producer");
}

#[tokio::test]
async fn async_subscribe_to_a_dead_producer_stops_the_consumer_unless_temporary() {
    let producer = dead_producer().await;
    let not_alive = CancelReason::Down(ExitReason::NotAlive);
    for mode in [CancelMode::Permanent, CancelMode::Transient] {
        let (consumer, record) = start_probe(None).await;
        consumer
            .async_subscribe_to(&producer, opts().cancel(mode))
            .unwrap();
        assert_eq!(consumer.stopped().await, ExitReason::NotAlive, "{mode:?}");
        assert!(matches!(&cancels(&record)[..], [(_, reason)] if *reason == not_alive));
    }

    let (consumer, record) = start_probe(None).await;
    consumer
        .async_subscribe_to(&producer, opts().cancel(CancelMode::Temporary))
        .unwrap();
    assert!(answers(&consumer).await);
    assert!(matches!(&cancels(&record)[..], [(_, reason)] if *reason == not_alive));
}

#[tokio::test]
async fn a_rejected_subscription_reports_the_error_and_the_consumer_survives() {
    let producer = start_server(Server {
        reject: true,
        ..Server::default()
    })
    .await;
    let (consumer, record) = start_probe(None).await;
    let outcome = consumer.subscribe_to(&producer, opts()).await;
    assert!(matches!(&outcome, Err(SubscribeError::Rejected(e)) if e.to_string() == "no room"));
    let cancels = record.wait_for_cancels(1).await;
    assert!(matches!(&cancels[..], [(_, CancelReason::Rejected(_))]));
    assert!(answers(&consumer).await);
    assert!(producer.is_alive());

    let outcome = build_probe(&producer, opts()).await;
    assert!(
        matches!(outcome, Err(StartError::Subscribe(SubscribeError::Rejected(e))) if e.to_string() == "no room")
    );
}

#[tokio::test]
async fn resubscribe_moves_a_consumer_to_another_producer() {
    let (first, first_record) = scripted().await;
    let (second, _) = scripted().await;
    let (consumer, record) = start_probe(None).await;
    let old = subscribe(&consumer, &first, opts()).await;

    let new = consumer
        .resubscribe(old, ExitReason::Normal, &second, opts())
        .await
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(
        producer_cancels(&first_record).await,
        vec![(old, CancelReason::Cancelled(ExitReason::Normal))]
    );
    assert_eq!(
        cancels(&record),
        vec![(old, CancelReason::Cancelled(ExitReason::Normal))]
    );

    first.cast(Script::Emit(vec![1, 2])).unwrap();
    assert_eq!(first.estimate_buffered_count().await, Ok(2));
    second.cast(Script::Emit(vec![10, 20])).unwrap();
    record.wait_for_events(2).await;
    assert_eq!(record.events(), vec![10, 20]);
    assert_eq!(record.read(|r| r.batches[0].0), new);
    assert!(answers(&consumer).await);
}
