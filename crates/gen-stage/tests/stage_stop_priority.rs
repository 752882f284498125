//! Stops overtake what is queued: a stop, a supervisor's shutdown or a producer's
//! failure takes effect before the next batch; a producer's normal end, and a drain,
//! still let everything sent before them be handled.

mod support;

use std::time::Duration;

use futures::FutureExt;
use gen_stage::supervision::{ChildSpec, Shutdown, Strategy, Supervisor};
use gen_stage::{
    BoxError, CancelMode, Consumer, ConsumerContext, ConsumerRef, ExitReason, ProducerRef,
    Registry, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{Gate, Recorded, Relay, Script, ScriptedProducer};
use support::{manual_consumer, n, opts, range, scripted, scripted_with, within};

/// A consumer that records each batch as it enters `handle_events`, waits for a pass
/// of its gate, then records the batch as handled.
struct Slow {
    entered: Recorded<Vec<u64>>,
    handled: Recorded<Vec<u64>>,
    terminated: Recorded<ExitReason>,
    gate: Gate,
}

/// What a [`Slow`] consumer saw.
#[derive(Clone, Default)]
struct SlowLog {
    entered: Recorded<Vec<u64>>,
    handled: Recorded<Vec<u64>>,
    terminated: Recorded<ExitReason>,
}

impl SlowLog {
    fn consumer(&self, gate: &Gate) -> Slow {
        Slow {
            entered: self.entered.clone(),
            handled: self.handled.clone(),
            terminated: self.terminated.clone(),
            gate: gate.clone(),
        }
    }

    fn handled_events(&self) -> usize {
        self.handled.snapshot().iter().map(Vec::len).sum()
    }
}

impl Consumer for Slow {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.entered.push(events.clone());
        self.gate.pass().await;
        self.handled.push(events);
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        self.terminated.push(reason.clone());
    }
}

/// One event per batch: each delivery of the producer is cut into batches of one.
fn one_per_batch() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(100).min_demand(99)
}

/// A scripted producer with `0..count` queued, and a [`Slow`] consumer subscribed to
/// it that is inside its first batch, held by a closed gate.
async fn consumer_in_first_batch(
    count: u64,
) -> (
    ProducerRef<ScriptedProducer<u64>>,
    ConsumerRef<Slow>,
    SlowLog,
    Gate,
) {
    let (producer, _) = scripted_with(range(0, count)).await;
    let (log, gate) = (SlowLog::default(), Gate::closed());
    let consumer = gen_stage::consumer(log.consumer(&gate))
        .subscribe_to(&producer, one_per_batch())
        .start()
        .await
        .expect("the consumer starts");
    log.entered.wait_for_len(1).await;
    (producer, consumer, log, gate)
}

#[tokio::test]
async fn a_stop_takes_effect_after_the_batch_in_hand() {
    let (_producer, consumer, log, gate) = consumer_in_first_batch(100).await;
    // The whole first delivery (100 batches of one) is in the consumer's hands.
    assert!(consumer.stop(ExitReason::Shutdown).now_or_never().is_none());
    gate.open_for_good();
    assert_eq!(
        within("the stop", consumer.stopped()).await,
        ExitReason::Shutdown
    );
    assert_eq!(
        log.handled.snapshot(),
        vec![vec![0]],
        "only the batch in hand"
    );
    assert_eq!(log.terminated.snapshot(), vec![ExitReason::Shutdown]);
    let unhandled = consumer.stats().events_unhandled;
    assert!(unhandled >= 99, "the rest is counted: {unhandled}");
}

#[tokio::test]
async fn a_stop_overtakes_the_deliveries_a_producer_consumer_holds_for_demand() {
    let (producer, _) = scripted::<u64>().await;
    let gate = Gate::closed();
    let relay = Relay::pass_through().gated(gate.clone());
    let entered = relay.handled();
    let middle = gen_stage::producer_consumer(relay)
        .subscribe_to(&producer, opts(10, 0))
        .start()
        .await
        .expect("the producer-consumer starts");
    let (consumer, _record, tag) = manual_consumer(&middle, opts(10, 0)).await;
    // Three deliveries of one event, held by the stage: nobody downstream asked yet.
    for event in 0..3 {
        producer.cast(Script::Emit(vec![event])).expect("alive");
        producer.barrier().await.expect("alive");
    }
    middle.barrier().await.expect("alive");
    assert!(entered.snapshot().is_empty(), "held for demand");
    consumer.ask(tag, n(10)).expect("alive");
    entered.wait_for_len(1).await;
    // Asked while the first delivery is in hand: the other two wait behind it.
    assert!(middle.stop(ExitReason::Shutdown).now_or_never().is_none());
    gate.open_for_good();
    assert_eq!(
        within("the stop", middle.stopped()).await,
        ExitReason::Shutdown
    );
    assert_eq!(
        entered.snapshot(),
        vec![vec![0]],
        "only the delivery in hand"
    );
    assert_eq!(
        middle.stats().events_unhandled,
        2,
        "the two held are counted"
    );
}

#[tokio::test]
async fn a_producers_failure_stops_its_permanent_consumer_before_what_is_queued() {
    let (producer, consumer, log, gate) = consumer_in_first_batch(100).await;
    let failure = ExitReason::error("the producer failed");
    producer.cast(Script::Stop(failure.clone())).expect("alive");
    within("the producer stops", producer.stopped()).await;
    gate.open_for_good();
    assert_eq!(
        within("the consumer stops", consumer.stopped()).await,
        failure
    );
    assert_eq!(
        log.handled.snapshot(),
        vec![vec![0]],
        "only the batch in hand"
    );
    assert_eq!(log.terminated.snapshot(), vec![failure]);
}

#[tokio::test]
async fn a_producers_failure_lets_its_temporary_consumer_handle_everything_sent() {
    let (producer, _) = scripted_with(range(0, 100)).await;
    let (log, gate) = (SlowLog::default(), Gate::closed());
    let temporary = one_per_batch().cancel(CancelMode::Temporary);
    let consumer = gen_stage::consumer(log.consumer(&gate))
        .subscribe_to(&producer, temporary)
        .start()
        .await
        .expect("the consumer starts");
    log.entered.wait_for_len(1).await;
    let failure = ExitReason::error("the producer failed");
    producer.cast(Script::Stop(failure)).expect("alive");
    within("the producer stops", producer.stopped()).await;
    gate.open_for_good();
    // Taken in after the delivery and the producer's cancellation queued before it.
    consumer
        .sync_info(())
        .await
        .expect("a temporary consumer keeps running");
    // The failure does not overtake the delivery: its mode does not stop the stage.
    let handled: Vec<u64> = log.handled.snapshot().into_iter().flatten().collect();
    assert_eq!(
        handled,
        range(0, 100),
        "every event sent before the failure"
    );
    let stats = consumer.stats();
    assert_eq!((stats.events_discarded, stats.producers), (0, 0));
}

#[tokio::test]
async fn a_producers_normal_end_lets_its_consumer_handle_everything_sent() {
    let (producer, consumer, log, gate) = consumer_in_first_batch(100).await;
    producer
        .cast(Script::Stop(ExitReason::Normal))
        .expect("alive");
    within("the producer stops", producer.stopped()).await;
    gate.open_for_good();
    assert_eq!(
        within("the consumer stops", consumer.stopped()).await,
        ExitReason::Normal
    );
    let handled: Vec<u64> = log.handled.snapshot().into_iter().flatten().collect();
    assert_eq!(handled, range(0, 100), "every event sent before the end");
    assert_eq!(consumer.stats().events_unhandled, 0);
}

#[tokio::test]
async fn a_drain_handles_what_was_delivered_then_stops() {
    let (producer, consumer, log, gate) = consumer_in_first_batch(1000).await;
    let draining = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            consumer
                .drain_and_stop(ExitReason::Shutdown, Duration::from_secs(60))
                .await
        }
    });
    gate.open_for_good();
    let reason = within("the drain", draining).await.expect("the task ran");
    assert_eq!(reason, Ok(ExitReason::Shutdown));
    // Everything the producer sent was handled: nothing more was asked after the
    // drain began, and nothing that came was left.
    let sent = producer.stats().events_emitted;
    assert_eq!(log.handled_events() as u64, sent);
    assert!(sent < 1000, "the drain stopped the asks: {sent} sent");
    assert_eq!(consumer.stats().events_unhandled, 0);
    assert_eq!(log.terminated.snapshot(), vec![ExitReason::Shutdown]);
    assert!(
        producer.is_alive(),
        "a drain cancels, it does not stop upstream"
    );
}

#[tokio::test]
async fn a_drain_handles_the_deliveries_queued_before_the_producer_learns_of_it() {
    let (producer, _) = scripted_with(range(0, 5)).await;
    let (log, gate) = (SlowLog::default(), Gate::closed());
    // Asks 10, handles batches of 5: the first delivery is one batch, held.
    let consumer = gen_stage::consumer(log.consumer(&gate))
        .subscribe_to(
            &producer,
            SubscribeOptions::new().max_demand(10).min_demand(5),
        )
        .start()
        .await
        .expect("the consumer starts");
    log.entered.wait_for_len(1).await;
    // A second delivery, queued in the consumer's mailbox behind the one in hand.
    producer.cast(Script::Queue(range(5, 10))).expect("alive");
    support::barrier(&producer).await;
    assert_eq!(producer.stats().events_emitted, 10);
    let mut draining =
        Box::pin(consumer.drain_and_stop(ExitReason::Shutdown, Duration::from_secs(60)));
    assert!(
        (&mut draining).now_or_never().is_none(),
        "the drain is asked"
    );
    gate.open_for_good();
    let reason = within("the drain", draining).await;
    assert_eq!(reason, Ok(ExitReason::Shutdown));
    // The subscription closes on the producer's acknowledgement, behind the second
    // delivery: both were handled.
    let handled: Vec<u64> = log.handled.snapshot().into_iter().flatten().collect();
    assert_eq!(handled, range(0, 10));
    assert_eq!(consumer.stats().events_unhandled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_outlasts_its_timeout_acts_as_a_stop() {
    let (_producer, consumer, log, gate) = consumer_in_first_batch(100).await;
    let draining = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            consumer
                .drain_and_stop(ExitReason::Shutdown, Duration::from_secs(1))
                .await
        }
    });
    // Held past the timeout in the first batch: the rest is not handled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    gate.open_for_good();
    let reason = within("the drain", draining).await.expect("the task ran");
    assert_eq!(reason, Ok(ExitReason::Shutdown));
    assert_eq!(log.handled.snapshot(), vec![vec![0]]);
    assert!(consumer.stats().events_unhandled >= 99);
}

#[tokio::test(start_paused = true)]
async fn a_stop_whose_hook_never_returns_drops_it_and_still_terminates() {
    let (_producer, consumer, log, _closed_for_ever) = consumer_in_first_batch(10).await;
    let reason = consumer
        .stop_within(ExitReason::Shutdown, Duration::from_secs(5))
        .await;
    assert_eq!(reason, Ok(ExitReason::ShutdownTimedOut));
    assert!(log.handled.is_empty());
    assert_eq!(
        log.terminated.snapshot(),
        vec![ExitReason::ShutdownTimedOut]
    );
}

/// The pipeline `producer -> consumer` under `rest_for_one`: the producer is
/// scripted, registered as "numbers", and each consumer incarnation logs to its own
/// [`SlowLog`] (in `consumers`), gated by `gate`.
fn supervised_pipeline(
    registry: &Registry,
    gate: &Gate,
    shutdown: Shutdown,
) -> (Supervisor, Recorded<SlowLog>) {
    let consumers = Recorded::default();
    let producer = {
        let registry = registry.clone();
        ChildSpec::new("producer", move || {
            let (script, _) = ScriptedProducer::with_queue(range(0, 10_000));
            gen_stage::producer(script)
                .name(&registry, "numbers")
                .start()
        })
    };
    let consumer = {
        let (registry, gate, consumers) = (registry.clone(), gate.clone(), consumers.clone());
        ChildSpec::new("consumer", move || {
            let log = SlowLog::default();
            consumers.push(log.clone());
            gen_stage::consumer(log.consumer(&gate))
                .subscribe_to_name(&registry, "numbers", one_per_batch())
                .start()
        })
        .shutdown(shutdown)
    };
    let supervisor = Supervisor::new()
        .strategy(Strategy::RestForOne)
        .child(producer)
        .child(consumer);
    (supervisor, consumers)
}

#[tokio::test]
async fn a_rest_for_one_restart_never_lets_the_old_consumer_see_another_event() {
    let registry = Registry::new();
    let gate = Gate::closed();
    let (supervisor, consumers) = supervised_pipeline(
        &registry,
        &gate,
        Shutdown::Graceful(Duration::from_secs(60)),
    );
    let supervisor = supervisor.start().await.expect("starts");
    let old = consumers.snapshot()[0].clone();
    old.entered.wait_for_len(1).await;
    let producer: ProducerRef<ScriptedProducer<u64>> =
        registry.lookup("numbers").expect("registered");
    producer
        .cast(Script::Stop(ExitReason::error("crash")))
        .expect("alive");
    within("the producer stops", producer.stopped()).await;
    // The old consumer finishes the batch in hand, and no other.
    gate.open_for_good();
    consumers.wait_for_len(2).await;
    assert_eq!(old.handled.snapshot(), vec![vec![0]]);
    assert_eq!(old.terminated.len(), 1, "its terminate ran");
    // The new pipeline runs.
    let new = consumers.snapshot()[1].clone();
    new.handled.wait_for_len(1).await;
    supervisor.stop(ExitReason::Shutdown).await.expect("alive");
}

#[tokio::test(start_paused = true)]
async fn a_supervisors_shutdown_drops_a_hook_that_outlasts_it_and_terminates() {
    let registry = Registry::new();
    let gate = Gate::closed();
    let (supervisor, consumers) =
        supervised_pipeline(&registry, &gate, Shutdown::Graceful(Duration::from_secs(1)));
    let supervisor = supervisor.start().await.expect("starts");
    let consumer = consumers.snapshot()[0].clone();
    consumer.entered.wait_for_len(1).await;
    // The consumer never leaves its first batch.
    supervisor.stop(ExitReason::Shutdown).await.expect("alive");
    assert!(consumer.handled.is_empty());
    assert_eq!(
        consumer.terminated.snapshot(),
        vec![ExitReason::ShutdownTimedOut]
    );
}

/// A producer that emits what it is sent and says whether it drains.
struct Watchful;

enum Ask {
    Emit(Vec<u64>),
    IsDraining(gen_stage::ReplyTo<bool>),
}

impl gen_stage::Producer for Watchful {
    type Event = u64;
    type Message = Ask;

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut gen_stage::ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_message(
        &mut self,
        ask: Ask,
        ctx: &mut gen_stage::ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match ask {
            Ask::Emit(events) => ctx.emit(events),
            Ask::IsDraining(reply) => reply.send(ctx.is_draining()),
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_draining_producer_knows_it_while_its_buffer_goes_out() {
    let producer = gen_stage::producer(Watchful).start().await.expect("starts");
    let (consumer, record) = gen_stage_test::CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer.manual())
        .start()
        .await
        .expect("starts");
    let tag = consumer
        .subscribe_to(&producer, SubscribeOptions::new())
        .await
        .expect("subscribes");
    // No demand: the events wait in the producer's buffer.
    producer.cast(Ask::Emit(range(0, 3))).expect("alive");
    let is_draining = || producer.call(Ask::IsDraining);
    assert_eq!(is_draining().await, Ok(false));

    let mut draining =
        Box::pin(producer.drain_and_stop(ExitReason::Shutdown, Duration::from_secs(60)));
    assert!(
        (&mut draining).now_or_never().is_none(),
        "the drain is asked"
    );
    assert_eq!(is_draining().await, Ok(true));

    consumer
        .ask(tag, std::num::NonZeroUsize::new(3).expect("not zero"))
        .expect("alive");
    let reason = within("the drain", draining).await;
    assert_eq!(reason, Ok(ExitReason::Shutdown));
    within("the buffered events", record.wait_for_events(3)).await;
    assert_eq!(record.events(), range(0, 3));
}
