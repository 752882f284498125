//! Calls, casts and subscription requests: typed replies (now, later, never), timeouts,
//! messages to a stopped stage, events emitted before a reply, and the errors of
//! `subscribe_to` / `async_subscribe_to` / `resubscribe` (semantics §3, §4.1, §10 item 13).

use std::time::Duration;

use crate::server::{Req, Server, ServerLog, server, start_server};
use crate::support::{
    Collector, answers, collect_gated, collector, range, scripted, scripted_with, subscribe, within,
};
use futures::FutureExt;
use gen_stage::error::{
    CallError, OptionsError, SendError, StartError, SubscribeError, SyncInfoError,
};
use gen_stage::kind::EmitsEvents;
use gen_stage::{
    BoxError, CancelMode, CancelReason, DEFAULT_CALL_TIMEOUT, ExitReason, Producer,
    ProducerContext, ProducerRef, StageRef, SubscribeOptions,
};
use gen_stage_test::{CollectingConsumer, Gate, Record, Request, Script, ScriptedProducer, Watch};

fn opts() -> SubscribeOptions {
    SubscribeOptions::new()
}

/// Starts a `CollectingConsumer` through the builder, subscribed to `producer`.
async fn build_collector<K: EmitsEvents<Out = u64>>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
) -> Result<Collector<u64>, StartError> {
    let (consumer, _) = CollectingConsumer::new();
    let builder = gen_stage::consumer(consumer).subscribe_to(producer, options);
    builder.start().await
}

/// Calls the server with a request it keeps the reply handle of, from another task;
/// returns once the server holds the handle.
async fn held_call(
    stage: &ProducerRef<Server>,
    log: &ServerLog,
) -> tokio::task::JoinHandle<Result<u64, CallError>> {
    let caller = tokio::spawn({
        let stage = stage.clone();
        async move { stage.call(Req::Later).await }
    });
    log.held.wait_for_len(1).await;
    caller
}

/// A producer that has already stopped normally.
async fn dead_producer() -> ProducerRef<ScriptedProducer<u64>> {
    let (producer, _) = scripted().await;
    let stopped = producer.stop(ExitReason::Normal).await;
    stopped.expect("it was alive");
    producer
}

fn invalid<T>(outcome: Result<T, SubscribeError>) -> Option<OptionsError> {
    match outcome {
        Err(SubscribeError::InvalidOptions(error)) => Some(error),
        _ => None,
    }
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
    let caller = held_call(&stage, &log).await;
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

/// A producer that, once asked, never returns from `handle_demand` (as a source
/// whose stream is not ready): it tells `entered` when it gets there.
struct Stuck {
    entered: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Producer for Stuck {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        if let Some(entered) = self.entered.take() {
            let _ = entered.send(());
        }
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn queries_to_a_stage_busy_in_a_hook_time_out() {
    let (entered, inside) = tokio::sync::oneshot::channel();
    let entered = Some(entered);
    let producer = gen_stage::producer(Stuck { entered })
        .start()
        .await
        .unwrap();
    let (consumer, _) = collector().await;
    subscribe(&consumer, &producer, opts()).await;
    inside.await.unwrap();

    let started = tokio::time::Instant::now();
    assert_eq!(producer.demand_mode().await, Err(CallError::Timeout));
    assert_eq!(
        producer.estimate_buffered_count().await,
        Err(CallError::Timeout)
    );
    assert_eq!(producer.demand_snapshot().await, Err(CallError::Timeout));
    // The info is in the mailbox, but the stage does not take it in while stuck.
    assert!(matches!(
        producer.sync_info(()).await,
        Err(SyncInfoError::Timeout)
    ));
    assert!(started.elapsed() >= DEFAULT_CALL_TIMEOUT * 4);
    assert!(producer.is_alive());
}

#[tokio::test]
async fn pending_calls_fail_with_the_reason_when_the_stage_stops() {
    let (stage, log) = server();
    let stage = start_server(stage).await;
    let caller = held_call(&stage, &log).await;
    stage.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(
        caller.await.unwrap(),
        Err(CallError::Stopped(ExitReason::Shutdown))
    );
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
    assert!(matches!(back, Some(Req::Add(5))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_before_a_reply_reach_the_consumer_first() {
    let (producer, record) = scripted().await;
    let (consumer, seen) = collector().await;
    subscribe(&consumer, &producer, opts().max_demand(100)).await;
    // The consumer's demand has reached the producer: emitted events go straight out.
    record.wait_until(|r| r.demands == vec![100]).await;

    for round in 0..10u64 {
        let batch = vec![round * 3, round * 3 + 1, round * 3 + 2];
        let call = producer.call(|reply| Script::EmitThenReply(batch, reply));
        call.await.unwrap();
        // The events were in the consumer's mailbox before the reply was sent, so a
        // call made after the reply is handled after them.
        consumer.call(Request::Ping).await.unwrap();
        assert_eq!(seen.events(), (0..round * 3 + 3).collect::<Vec<_>>());
    }
}

// --- Subscriptions -------------------------------------------------------------------

#[tokio::test]
async fn subscribe_to_rejects_invalid_options_and_the_consumer_keeps_running() {
    let (producer, _) = scripted::<u64>().await;
    let (consumer, _) = collector().await;

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
    let (producer, _) = scripted::<u64>().await;
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
        let outcome = build_collector(&producer, options).await;
        assert!(matches!(outcome, Err(StartError::InvalidOptions(e)) if e == expected));
    }
}

#[tokio::test]
async fn subscribing_to_a_stopped_producer_fails_and_the_consumer_keeps_running() {
    let producer = dead_producer().await;
    let (consumer, record) = collector().await;
    let outcome = consumer.subscribe_to(&producer, opts()).await;
    assert!(matches!(outcome, Err(SubscribeError::ProducerNotAlive)));
    assert!(answers(&consumer).await);
    // The consumer's hooks saw the subscription come and go (a ConsumerSupervisor
    // frees what it set up for it).
    let not_alive = CancelReason::Down(ExitReason::NotAlive);
    assert!(matches!(&record.cancels()[..], [(_, reason)] if *reason == not_alive));

    let outcome = build_collector(&producer, opts()).await;
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
        let (consumer, record) = collector().await;
        consumer
            .async_subscribe_to(&producer, opts().cancel(mode))
            .unwrap();
        assert_eq!(consumer.stopped().await, ExitReason::NotAlive, "{mode:?}");
        assert!(matches!(&record.cancels()[..], [(_, reason)] if *reason == not_alive));
    }

    let (consumer, record) = collector().await;
    consumer
        .async_subscribe_to(&producer, opts().cancel(CancelMode::Temporary))
        .unwrap();
    assert!(answers(&consumer).await);
    assert!(matches!(&record.cancels()[..], [(_, reason)] if *reason == not_alive));
}

#[tokio::test]
async fn a_rejected_subscription_reports_the_error_and_the_consumer_survives() {
    let (refusing, _) = ScriptedProducer::<u64>::new();
    let producer = gen_stage::producer(refusing.refuses_subscriptions("no room"))
        .start()
        .await
        .unwrap();
    let (consumer, record) = collector().await;
    let outcome = consumer.subscribe_to(&producer, opts()).await;
    assert!(matches!(&outcome, Err(SubscribeError::Rejected(e)) if e.to_string() == "no room"));
    let cancels = record.wait_for_cancels(1).await;
    assert!(matches!(&cancels[..], [(_, CancelReason::Rejected(_))]));
    assert!(answers(&consumer).await);
    assert!(producer.is_alive());

    let outcome = build_collector(&producer, opts()).await;
    assert!(
        matches!(outcome, Err(StartError::Subscribe(SubscribeError::Rejected(e))) if e.to_string() == "no room")
    );
}

#[tokio::test]
async fn resubscribe_moves_a_consumer_to_another_producer() {
    let (first, first_record) = scripted().await;
    let (second, _) = scripted().await;
    let (consumer, record) = collector().await;
    let old = subscribe(&consumer, &first, opts()).await;

    let new = consumer
        .resubscribe(old, ExitReason::Normal, &second, opts())
        .await
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(
        first_record.wait_for_cancels(1).await,
        vec![(old, CancelReason::Cancelled(ExitReason::Normal))]
    );
    assert_eq!(
        record.cancels(),
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

/// A producer that can be held busy in `handle_message` until released.
struct Holdable;

enum Hold {
    Until(tokio::sync::oneshot::Receiver<()>),
    Emit(Vec<u64>),
}

impl Producer for Holdable {
    type Event = u64;
    type Message = Hold;

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_message(
        &mut self,
        message: Hold,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Hold::Until(release) => {
                let _ = release.await;
            }
            Hold::Emit(events) => ctx.emit(events),
        }
        Ok(())
    }
}

/// A consumer, and a producer held in a hook so that it cannot answer a subscription.
async fn held_producer() -> (
    ProducerRef<Holdable>,
    tokio::sync::oneshot::Sender<()>,
    Collector<u64>,
    Watch<Record<u64>>,
) {
    let producer = gen_stage::producer(Holdable)
        .start()
        .await
        .expect("the producer starts");
    let (release, held) = tokio::sync::oneshot::channel();
    assert!(producer.cast(Hold::Until(held)).is_ok());
    let (consumer, record) = collector().await;
    (producer, release, consumer, record)
}

/// Once the consumer has taken the cancellation (its answer comes after it), the
/// producer catches up, then has events: none may reach the consumer.
async fn assert_never_live(
    producer: ProducerRef<Holdable>,
    release: tokio::sync::oneshot::Sender<()>,
    consumer: Collector<u64>,
    record: Watch<Record<u64>>,
) {
    assert!(answers(&consumer).await);
    release.send(()).expect("the producer is held");
    assert!(producer.cast(Hold::Emit(vec![1, 2, 3])).is_ok());
    assert_eq!(producer.estimate_buffered_count().await, Ok(3));
    assert!(answers(&consumer).await);
    assert_eq!(record.event_count(), 0);
    assert_eq!(producer.stats().consumers, 0);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_that_timed_out_never_goes_live() {
    let (producer, release, consumer, record) = held_producer().await;
    let subscribed = consumer.subscribe_to(&producer, opts()).await;
    assert!(
        matches!(subscribed, Err(SubscribeError::Timeout)),
        "{subscribed:?}"
    );
    assert_never_live(producer, release, consumer, record).await;
}

#[tokio::test(start_paused = true)]
async fn a_subscription_whose_caller_stopped_waiting_never_goes_live() {
    let (producer, release, consumer, record) = held_producer().await;
    // The caller's own timeout drops the subscribing future before any answer.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        consumer.subscribe_to(&producer, opts()),
    )
    .await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    assert_never_live(producer, release, consumer, record).await;
}

/// Subscribes, from its message hook, to the producer it is sent, and records the
/// outcome.
struct SubscribesWhenTold {
    options: SubscribeOptions,
    outcomes: gen_stage_test::Recorded<Result<(), OptionsError>>,
}

impl gen_stage::Consumer for SubscribesWhenTold {
    type Event = u64;
    type Message = ProducerRef<gen_stage_test::Counter>;

    async fn handle_events(
        &mut self,
        _: Vec<u64>,
        _: gen_stage::SubscriptionTag,
        _: &mut gen_stage::ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_message(
        &mut self,
        producer: Self::Message,
        ctx: &mut gen_stage::ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let outcome = ctx.subscribe_to(&producer, self.options.clone());
        self.outcomes.push(outcome.map(|_| ()));
        Ok(())
    }
}

#[tokio::test]
async fn a_hook_subscribing_with_invalid_options_is_told_so() {
    let producer = gen_stage::producer(gen_stage_test::Counter::new(0))
        .start()
        .await
        .expect("the producer starts");
    let outcomes = gen_stage_test::Recorded::default();
    let consumer = gen_stage::consumer(SubscribesWhenTold {
        options: SubscribeOptions::new().max_demand(0),
        outcomes: outcomes.clone(),
    })
    .start()
    .await
    .expect("the consumer starts");
    assert!(consumer.cast(producer.clone()).is_ok());
    outcomes.wait_for_len(1).await;
    assert_eq!(outcomes.snapshot(), vec![Err(OptionsError::MaxDemandZero)]);
    assert_eq!(producer.stats().consumers, 0);
}

#[tokio::test]
async fn a_barrier_returns_once_the_events_queued_before_it_are_handled() {
    let (producer, _) = scripted_with(range(0, 6)).await;
    let gate = Gate::closed();
    // One delivery of 6, handled in three batches of 2, each held at the gate.
    let options = opts().max_demand(6).min_demand(4);
    let (consumer, record) = collect_gated(&producer, options, &gate).await;
    // The producer has answered the ask: the delivery is in the consumer's mailbox.
    crate::support::barrier(&producer).await;
    let mut barrier = Box::pin(consumer.barrier());
    assert!(
        (&mut barrier).now_or_never().is_none(),
        "the barrier waits behind the held batches"
    );
    gate.open_for_good();
    within("the barrier", barrier).await.expect("alive");
    assert_eq!(
        record.batch_sizes(),
        [2, 2, 2],
        "handled before the barrier returned"
    );
}

#[tokio::test]
async fn a_barrier_on_a_stopped_stage_says_so() {
    let producer = dead_producer().await;
    assert_eq!(producer.barrier().await, Err(CallError::NotAlive));
}
