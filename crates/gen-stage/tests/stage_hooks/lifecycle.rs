//! The lifecycle of stages: init outcomes, stopping, failures in hooks, and how peers
//! react to each other's exit and cancellation (semantics §1.1, §2, §5.4, §10 item 11).

use std::time::Duration;

use crate::server::{Fault, Req, ServerLog, server, start_server};
use crate::support::{answers, collect, collector, scripted, subscribe};
use gen_stage::error::{NotAlive, StartError};
use gen_stage::{
    BoxError, CancelMode, CancelReason, Consumer, ConsumerContext, ExitReason, Init, Producer,
    ProducerContext, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{CollectingConsumer, Counter, Recorded, Script};

fn opts() -> SubscribeOptions {
    SubscribeOptions::new()
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

// --- init ----------------------------------------------------------------------------

async fn start_failing(fault: Fault) -> (Option<StartError>, ServerLog) {
    let (stage, log) = server();
    let stage = stage.on_init(fault);
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

/// A producer whose `init` never ends; its channel closes when the stage is dropped.
struct NeverStarts {
    _alive: tokio::sync::oneshot::Sender<()>,
}

impl Producer for NeverStarts {
    type Event = u64;
    type Message = ();

    async fn init(&mut self, _: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        std::future::pending().await
    }

    async fn handle_demand(
        &mut self,
        _: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(Vec::new())
    }
}

#[tokio::test(start_paused = true)]
async fn a_start_its_caller_gave_up_on_leaves_no_stage_running() {
    let (alive, dropped) = tokio::sync::oneshot::channel();
    let start = gen_stage::producer(NeverStarts { _alive: alive }).start();
    let gave_up = tokio::time::timeout(Duration::from_millis(10), start).await;
    assert!(gave_up.is_err(), "init never ends");
    // The stage's task is killed: the stage is dropped (with a paused clock, the
    // timeout below fires only if nothing else can happen).
    let gone = tokio::time::timeout(Duration::from_secs(60), dropped).await;
    assert!(matches!(gone, Ok(Err(_))), "the stage still runs");
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
    let producer = start_server(stage.on_demand(Fault::Panic)).await;
    let (consumer, record) = collector().await;
    let tag = subscribe(&consumer, &producer, opts().cancel(CancelMode::Temporary)).await;

    let reason = ExitReason::Panic("demand exploded".into());
    assert_eq!(producer.stopped().await, reason);
    assert_eq!(log.terminated.snapshot(), vec![reason.clone()]);
    assert!(answers(&consumer).await);
    assert_eq!(record.cancels(), vec![(tag, CancelReason::Down(reason))]);

    // Other stages, and the runtime, carry on.
    let counter = gen_stage::producer(Counter::new(0).limit(5))
        .start()
        .await
        .unwrap();
    let (_, events) = collect(&counter, opts()).await;
    events.wait_for_events(5).await;
    assert_eq!(events.events(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn an_error_in_handle_demand_stops_the_producer_and_its_permanent_consumer() {
    let (stage, _) = server();
    let producer = start_server(stage.on_demand(Fault::Error)).await;
    let (consumer, _) = collector().await;
    subscribe(&consumer, &producer, opts()).await;
    let reason = ExitReason::error("no more demand");
    assert_eq!(producer.stopped().await, reason);
    assert_eq!(consumer.stopped().await, reason);
}

#[tokio::test]
async fn a_failure_in_handle_events_stops_only_the_consumer() {
    type Trap = fn(CollectingConsumer<u64>) -> CollectingConsumer<u64>;
    let cases: [(Trap, ExitReason); 3] = [
        (
            |c| c.panics_on(|&event| event == 13),
            ExitReason::Panic("panics on event 13".into()),
        ),
        (
            |c| c.fails_on(|&event| event == 13),
            ExitReason::error("fails on event 13"),
        ),
        (
            |c| {
                c.stops_on(
                    |&event| event == 13,
                    ExitReason::custom_shutdown("stop event"),
                )
            },
            ExitReason::custom_shutdown("stop event"),
        ),
    ];
    for (trap, expected) in cases {
        let (producer, producer_record) = scripted().await;
        let (fragile, fragile_record) = CollectingConsumer::new();
        let fragile = gen_stage::consumer(trap(fragile)).start().await.unwrap();
        let tag = subscribe(&fragile, &producer, opts()).await;
        producer.cast(Script::Emit(vec![13])).unwrap();
        assert_eq!(fragile.stopped().await, expected, "{expected:?}");
        assert_eq!(fragile_record.terminated(), Some(expected.clone()));
        assert_eq!(
            producer_record.wait_for_cancels(1).await,
            vec![(tag, CancelReason::Down(expected))]
        );

        // The producer still serves others.
        let (healthy, events) = collector().await;
        subscribe(&healthy, &producer, opts()).await;
        producer.cast(Script::Emit(vec![1, 2])).unwrap();
        events.wait_for_events(2).await;
        assert_eq!(events.events(), vec![1, 2]);
        assert!(producer.is_alive());
    }
}

// --- Peers watch each other ----------------------------------------------------------

/// For each of [`reasons`], stops a fresh producer with it while a consumer with `mode` is
/// subscribed, and checks whether the consumer stopped too. Once `stop` returns, the
/// producer's cancellation is in the consumer's mailbox, so a call to it orders after.
async fn check_cancel_mode(mode: CancelMode, stops: [bool; 5]) {
    for (reason, stops) in reasons().into_iter().zip(stops) {
        let (producer, _) = scripted::<u64>().await;
        let (consumer, record) = collector().await;
        let tag = subscribe(&consumer, &producer, opts().cancel(mode)).await;
        let stopped = producer.stop(reason.clone()).await;
        stopped.expect("it was alive");
        if stops {
            assert_eq!(consumer.stopped().await, reason, "{mode:?}");
            assert_eq!(record.terminated(), Some(reason.clone()));
        } else {
            assert!(answers(&consumer).await, "{mode:?} {reason:?}");
        }
        let down = vec![(tag, CancelReason::Down(reason))];
        assert_eq!(record.cancels(), down, "{mode:?}");
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
    let (leaving, _) = collector().await;
    let leaving_tag = subscribe(&leaving, &producer, opts()).await;
    let (staying, events) = collector().await;
    subscribe(&staying, &producer, opts()).await;

    leaving.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(
        record.wait_for_cancels(1).await,
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
    let (consumer, record) = collector().await;
    let tag = subscribe(&consumer, &producer, opts()).await;

    let reason = ExitReason::error("changed my mind");
    consumer.cancel(tag, reason.clone()).unwrap();
    assert!(answers(&consumer).await, "a permanent consumer survives");
    let cancelled = vec![(tag, CancelReason::Cancelled(reason))];
    assert_eq!(record.cancels(), cancelled);
    assert_eq!(producer_record.wait_for_cancels(1).await, cancelled);
    // The producer no longer sends anything there.
    producer.cast(Script::Emit(vec![1, 2])).unwrap();
    assert_eq!(producer.estimate_buffered_count().await, Ok(2));
    assert!(answers(&consumer).await);
    assert_eq!(record.events(), Vec::<u64>::new());
}

/// Cancels its subscription from inside the first `handle_events` it gets.
struct CancelsAtOnce(Recorded<Vec<u64>>);

impl Consumer for CancelsAtOnce {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        from: SubscriptionTag,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.0.push(events);
        ctx.cancel(from, ExitReason::Normal)?;
        Ok(())
    }
}

#[tokio::test]
async fn a_subscription_cancelled_in_handle_events_gets_no_more_of_its_batches_handled() {
    let (producer, producer_record) =
        crate::support::scripted_with(crate::support::range(0, 10)).await;
    let handled = Recorded::default();
    // One delivery of 10 events, cut into two batches of 5.
    let consumer = gen_stage::consumer(CancelsAtOnce(handled.clone()))
        .subscribe_to(&producer, opts().max_demand(10).min_demand(5))
        .start()
        .await
        .unwrap();
    producer_record.wait_for_cancels(1).await;
    // Taken in once the delivery is done with.
    consumer.sync_info(()).await.unwrap();
    assert_eq!(handled.snapshot(), vec![crate::support::range(0, 5)]);
    // The second batch was received, then dropped unhandled: counted as discarded.
    assert_eq!(consumer.stats().events_discarded, 5);
}

/// A producer of `0..` that tells when its `terminate` hook runs, and with what.
struct Numbers {
    next: u64,
    terminated: tokio::sync::mpsc::UnboundedSender<ExitReason>,
}

impl gen_stage::Producer for Numbers {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        demand: usize,
        _ctx: &mut gen_stage::ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        Ok(events)
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        let _ = self.terminated.send(reason.clone());
    }
}

#[tokio::test]
async fn a_panic_in_user_code_outside_hooks_stops_the_stage_with_it_through_terminate() {
    use gen_stage::dispatcher::{Partition, PartitionDispatcher};
    // A partition's hash is the user's code, run by the dispatcher, not by a hook.
    let hash = |x: &u64| -> usize {
        assert!(*x < 3, "cannot place {x}");
        0
    };
    let (terminated, mut terminations) = tokio::sync::mpsc::unbounded_channel();
    let producer = gen_stage::producer(Numbers {
        next: 0,
        terminated,
    })
    .dispatcher(PartitionDispatcher::by_count(1, hash))
    .start()
    .await
    .unwrap();
    let (consumer, _) = collector().await;
    subscribe(&consumer, &producer, opts().with(Partition(0usize))).await;

    let reason = ExitReason::Panic("cannot place 3".into());
    assert_eq!(producer.stopped().await, reason);
    assert_eq!(terminations.recv().await, Some(reason.clone()));
    // Its permanent consumer learns the same reason.
    assert_eq!(consumer.stopped().await, reason);
}
