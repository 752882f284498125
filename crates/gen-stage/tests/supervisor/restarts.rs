//! Supervision restarts: restart types, the three strategies, restart intensity, and a
//! supervised pipeline that re-subscribes by name and loses exactly the events in the
//! crashed consumer's hands (semantics §11 items 10, 11 and 13). Nesting, shutdown and
//! start failures are in `shutdown.rs`.

use std::time::Duration;

use gen_stage::error::{CallError, NotAlive};
use gen_stage::supervision::{ChildEvent, ChildSpec, Restart, Strategy, Supervisor, SupervisorRef};
use gen_stage::{ConsumerRef, ExitReason, ProducerRef, Registry, SubscribeOptions};
use gen_stage_test::{Counter, ProducerRecord, Recorded, Request, Script, ScriptedProducer, Watch};

use crate::children::{
    Worker, Workers, assert_children, crash, crash_and_restart, crashed, current, delivered,
    exit_names, exit_reasons, exits, gives_up, next_event, spec, start_names, subscriber,
    supervise, supervise_workers, until_ended_gracefully, worker,
};
use crate::support::{opts, range, stops_normally, within};

// --- Producers registered as "numbers" --------------------------------------------------

type Scripted = ProducerRef<ScriptedProducer<u64>>;

/// A scripted producer registered as "numbers"; every incarnation and its record.
fn scripted_producer(
    registry: &Registry,
) -> (ChildSpec, Recorded<(Scripted, Watch<ProducerRecord>)>) {
    let incarnations = Recorded::default();
    let (registry, all) = (registry.clone(), incarnations.clone());
    let spec = ChildSpec::new("producer", move || {
        let (registry, all) = (registry.clone(), all.clone());
        async move {
            let (script, record) = ScriptedProducer::new();
            let producer = gen_stage::producer(script)
                .name(&registry, "numbers")
                .start();
            let producer = producer.await?;
            all.push((producer.clone(), record));
            Ok(producer)
        }
    });
    (spec, incarnations)
}

/// A finite counter registered as "numbers", done once it has emitted `0..limit`.
fn counter(registry: &Registry, limit: u64) -> ChildSpec {
    let registry = registry.clone();
    let start = move || {
        let counter = Counter::new(0).limit(limit);
        gen_stage::producer(counter)
            .name(&registry, "numbers")
            .start()
    };
    ChildSpec::new("producer", start).restart(Restart::Transient)
}

// --- Restart types under one-for-one ---------------------------------------------------

#[tokio::test]
async fn one_for_one_restarts_only_the_crashed_child() {
    let log = Workers::default();
    let sup = supervise_workers(&log, &["a", "b"]).await;
    let (a, b) = (current(&log, "a"), current(&log, "b"));

    assert_eq!(crash(&log, "a").await, crashed());
    log.wait_for_starts(3).await;
    assert_eq!(start_names(&log), ["a", "b", "a"]);
    assert_children(&sup, &[("a", true, 1), ("b", true, 0)]).await;
    assert_ne!(current(&log, "a").id(), a.id());
    assert!(b.is_alive());
    assert_eq!(exits(&log), [("a", crashed())]);
}

#[tokio::test]
async fn the_default_supervisor_is_the_new_one_and_restarts_a_crashed_child() {
    let log = Workers::default();
    let sup = supervise(Supervisor::default(), vec![spec(worker(&log, "a"))]).await;
    assert_eq!(crash(&log, "a").await, crashed());
    log.wait_for_starts(2).await;
    assert_children(&sup, &[("a", true, 1)]).await;
}

#[tokio::test]
async fn a_permanent_child_is_restarted_after_a_normal_stop_too() {
    let log = Workers::default();
    let sup = supervise_workers(&log, &["a"]).await;
    current(&log, "a").stop(ExitReason::Normal).await.unwrap();
    log.wait_for_starts(2).await;
    assert_children(&sup, &[("a", true, 1)]).await;
}

/// A supervisor over one transient worker "t", and the worker.
async fn transient(log: &Workers) -> (SupervisorRef, ConsumerRef<Worker>) {
    let child = spec(worker(log, "t")).restart(Restart::Transient);
    let sup = supervise(Supervisor::new(), vec![child]).await;
    (sup, current(log, "t"))
}

#[tokio::test]
async fn a_transient_child_is_not_restarted_after_a_graceful_stop() {
    let maintenance = ExitReason::custom_shutdown("maintenance");
    for reason in [ExitReason::Normal, ExitReason::Shutdown, maintenance] {
        let log = Workers::default();
        let (sup, t) = transient(&log).await;
        let mut events = sup.watch();
        t.stop(reason.clone()).await.unwrap();
        let exit = ChildEvent::Exited {
            id: "t".into(),
            reason: reason.clone(),
        };
        assert_eq!(next_event(&mut events).await, exit);
        assert_children(&sup, &[("t", false, 0)]).await;
        // Nothing followed the exit: no restart before the supervisor's own stop.
        sup.stop(ExitReason::Shutdown).await.unwrap();
        let stopped = ChildEvent::SupervisorStopped {
            reason: ExitReason::Shutdown,
        };
        assert_eq!(next_event(&mut events).await, stopped, "after {reason:?}");
        assert_eq!(log.incarnations("t").len(), 1, "after {reason:?}");
    }
}

#[tokio::test]
async fn a_transient_child_is_restarted_after_an_abnormal_stop() {
    for abnormal in [ExitReason::error("broken"), ExitReason::Killed, crashed()] {
        let log = Workers::default();
        let (sup, t) = transient(&log).await;
        match abnormal {
            ExitReason::Killed => t.kill(),
            ExitReason::Panic(_) => assert!(t.cast(Request::Panic).is_ok()),
            ref reason => t.stop(reason.clone()).await.unwrap(),
        }
        assert_eq!(t.stopped().await, abnormal);
        log.wait_for_starts(2).await;
        assert_children(&sup, &[("t", true, 1)]).await;
    }
}

#[tokio::test]
async fn a_temporary_child_is_never_restarted() {
    let log = Workers::default();
    let temporary = |id| spec(worker(&log, id)).restart(Restart::Temporary);
    let specs = vec![
        temporary("crashes"),
        temporary("ends"),
        spec(worker(&log, "stays")),
    ];
    let sup = supervise(Supervisor::new(), specs).await;
    let mut events = sup.watch();
    crash(&log, "crashes").await;
    current(&log, "ends")
        .stop(ExitReason::Normal)
        .await
        .unwrap();
    let crashed = ChildEvent::Exited {
        id: "crashes".into(),
        reason: crashed(),
    };
    let ended = ChildEvent::Exited {
        id: "ends".into(),
        reason: ExitReason::Normal,
    };
    assert_eq!(next_event(&mut events).await, crashed);
    assert_eq!(next_event(&mut events).await, ended);
    let expected = [
        ("crashes", false, 0),
        ("ends", false, 0),
        ("stays", true, 0),
    ];
    assert_children(&sup, &expected).await;
    assert_eq!(start_names(&log), ["crashes", "ends", "stays"]);
}

#[tokio::test]
async fn a_child_whose_start_is_ignored_is_left_not_running() {
    let log = Workers::default();
    let ignored = worker(&log, "ignored").ignores_start();
    let specs = vec![spec(ignored), spec(worker(&log, "b"))];
    let sup = supervise(Supervisor::new(), specs).await;
    assert_children(&sup, &[("ignored", false, 0), ("b", true, 0)]).await;
    assert_eq!(start_names(&log), ["b"]);
}

// --- Rest-for-one and one-for-all ------------------------------------------------------

/// A rest-for-one supervisor over a scripted producer "numbers" and two consumers
/// subscribing to it by name; every producer started, with its record.
async fn rest_for_one_pipeline(
    log: &Workers,
) -> (SupervisorRef, Recorded<(Scripted, Watch<ProducerRecord>)>) {
    let registry = Registry::new();
    let (producer, producers) = scripted_producer(&registry);
    let consumer = |id| subscriber(worker(log, id), &registry, opts(10, 5));
    let specs = vec![producer, consumer("c1"), consumer("c2")];
    let rest_for_one = Supervisor::new().strategy(Strategy::RestForOne);
    (supervise(rest_for_one, specs).await, producers)
}

#[tokio::test]
async fn rest_for_one_producer_crash_restarts_the_consumers_which_find_the_new_producer() {
    let log = Workers::default();
    let (sup, producers) = rest_for_one_pipeline(&log).await;
    let (old, _) = producers.snapshot().pop().unwrap();
    old.cast(Script::Queue(vec![100, 101])).unwrap();
    within("events", log.wait_for_events(2)).await;

    let broke = ExitReason::error("producer broke");
    old.cast(Script::Stop(broke)).unwrap();
    log.wait_for_starts(4).await;
    assert_children(
        &sup,
        &[("producer", true, 1), ("c1", true, 1), ("c2", true, 1)],
    )
    .await;
    assert_eq!(start_names(&log), ["c1", "c2", "c1", "c2"]);

    // The new consumers subscribed, by name, to the new producer.
    let (new, new_record) = producers.snapshot().pop().unwrap();
    assert!(!old.is_alive() && new.id() != old.id());
    assert_eq!(new_record.read(|r| r.subscriptions.len()), 2);
    new.cast(Script::Queue(range(1, 5))).unwrap();
    within("events", log.wait_for_events(6)).await;
    let mut handled = log.events();
    handled.sort_unstable();
    assert_eq!(handled, [1, 2, 3, 4, 100, 101]);
}

#[tokio::test]
async fn rest_for_one_consumer_crash_restarts_it_and_the_later_children_only() {
    let log = Workers::default();
    let (sup, producers) = rest_for_one_pipeline(&log).await;

    crash_and_restart(&log, "c1", 4).await;
    assert_children(
        &sup,
        &[("producer", true, 0), ("c1", true, 1), ("c2", true, 1)],
    )
    .await;
    assert_eq!(start_names(&log), ["c1", "c2", "c1", "c2"]);
    let stops = [("c1", crashed()), ("c2", ExitReason::Shutdown)];
    assert_eq!(exits(&log), stops);

    let c1 = current(&log, "c1");
    crash_and_restart(&log, "c2", 5).await;
    assert_children(
        &sup,
        &[("producer", true, 0), ("c1", true, 1), ("c2", true, 2)],
    )
    .await;
    assert!(c1.is_alive());

    let all = producers.snapshot();
    assert_eq!(all.len(), 1, "the producer was never restarted");
    let seen = all[0].1.read(|r| (r.subscriptions.len(), r.cancels.len()));
    assert_eq!(seen, (5, 3));
}

#[tokio::test]
async fn one_for_all_restarts_every_child_except_temporary_ones() {
    let log = Workers::default();
    let temporary = spec(worker(&log, "t")).restart(Restart::Temporary);
    let [a, b, c] = ["a", "b", "c"].map(|id| spec(worker(&log, id)));
    let one_for_all = Supervisor::new().strategy(Strategy::OneForAll);
    let sup = supervise(one_for_all, vec![a, b, temporary, c]).await;

    crash_and_restart(&log, "b", 7).await;
    let expected = [
        ("a", true, 1),
        ("b", true, 1),
        ("t", false, 0),
        ("c", true, 1),
    ];
    assert_children(&sup, &expected).await;
    assert_eq!(start_names(&log), ["a", "b", "t", "c", "a", "b", "c"]);
    // The others were stopped last first, then restarted in order.
    assert_eq!(exit_names(&log), ["b", "c", "t", "a"]);
    let reasons = exit_reasons(&log);
    assert!(reasons[1..].iter().all(|r| *r == ExitReason::Shutdown));
}

// --- A supervised pipeline that loses what the crashed consumer held -------------------

/// Runs a finite counter ("numbers", `0..limit`) and a transient worker "sink" that
/// subscribes to it by name and panics on a batch holding a `poison` event, until the
/// pipeline completes: the counter finishes and the sink, restarted after each crash,
/// stops with it. Returns the counter.
async fn run_pipeline(
    log: &Workers,
    strategy: Strategy,
    limit: u64,
    poison: &[u64],
    options: SubscribeOptions,
) -> ProducerRef<Counter> {
    let registry = Registry::new();
    let poison_events = poison.to_vec();
    let sink = worker(log, "sink").panics_on(move |event| poison_events.contains(event));
    let sink = subscriber(sink, &registry, options).restart(Restart::Transient);
    let supervisor = Supervisor::new()
        .strategy(strategy)
        .child(counter(&registry, limit))
        .child(sink);
    let mut events = supervisor.watch();
    let sup = supervisor.start().await.expect("the children start");
    let producer: ProducerRef<Counter> = registry.lookup("numbers").expect("registered");

    stops_normally(&producer).await;
    log.wait_for_starts(poison.len() + 1).await;
    stops_normally(&current(log, "sink")).await;
    until_ended_gracefully(&mut events, &["producer", "sink"]).await;
    let restarts = poison.len();
    assert_children(&sup, &[("producer", false, 0), ("sink", false, restarts)]).await;
    producer
}

#[tokio::test]
async fn supervised_pipeline_completes_losing_only_the_event_the_consumer_crashed_on() {
    let log = Workers::default();
    // One event at a time: the only event in the consumer's hands is the one it panics on.
    let producer = run_pipeline(&log, Strategy::RestForOne, 10, &[3, 7], opts(1, 0)).await;

    // Every event was delivered once; all but the two poisoned ones were handled once.
    assert_eq!(delivered(&log).concat(), range(0, 10));
    assert_eq!(log.events(), [0, 1, 2, 4, 5, 6, 8, 9]);
    let emitted = producer.stats().events_emitted;
    assert_eq!(emitted, 10);
    assert_eq!(
        emitted as usize - log.event_count(),
        2,
        "the loss is counted"
    );
    let poisoned = |event| ExitReason::Panic(format!("panics on event {event}").into());
    let expected = [poisoned(3), poisoned(7), ExitReason::Normal];
    assert_eq!(exit_reasons(&log), expected);
}

#[tokio::test]
async fn supervised_pipeline_loses_exactly_the_batch_in_the_crashed_consumers_hands() {
    let log = Workers::default();
    // Batches of two, and no more asked until a batch is handled: a crash loses its batch.
    let producer = run_pipeline(&log, Strategy::OneForOne, 12, &[5, 8], opts(2, 0)).await;

    let batches: Vec<Vec<u64>> = (0..6).map(|i| range(2 * i, 2 * i + 2)).collect();
    assert_eq!(delivered(&log), batches);
    assert_eq!(log.events(), [0, 1, 2, 3, 6, 7, 10, 11]);
    // The three sinks received all twelve events; four were lost in crashes.
    let sinks = log.incarnations("sink");
    let received: u64 = sinks.iter().map(|s| s.stats().events_received).sum();
    assert_eq!(received, producer.stats().events_emitted);
    assert_eq!(received, 12);
    assert_eq!(received as usize - log.event_count(), 4);
}

// --- Restart intensity -----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn past_the_default_intensity_the_supervisor_stops_with_every_child() {
    let log = Workers::default();
    let sup = supervise_workers(&log, &["a", "b"]).await;
    for starts in 3..=5 {
        crash_and_restart(&log, "a", starts).await;
    }
    assert_children(&sup, &[("a", true, 3), ("b", true, 0)]).await;
    let b = current(&log, "b");

    crash(&log, "a").await; // the fourth within 5 seconds
    gives_up(&sup).await;
    assert_eq!(log.incarnations("a").len(), 4);
    assert!(!b.is_alive());
    let last = exits(&log).pop();
    assert_eq!(last, Some(("b", ExitReason::Shutdown)));
    assert!(!sup.is_alive());
    assert_eq!(sup.which_children().await, Err(CallError::NotAlive));
    assert_eq!(sup.stop(ExitReason::Shutdown).await, Err(NotAlive));
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_over_more_than_the_period_are_allowed() {
    let log = Workers::default();
    let two_in_ten = Supervisor::new().intensity(2, Duration::from_secs(10));
    let sup = supervise(two_in_ten, vec![spec(worker(&log, "a"))]).await;
    // Crashes 6 seconds apart: never more than two within 10 seconds.
    for starts in 2..=6 {
        crash_and_restart(&log, "a", starts).await;
        tokio::time::advance(Duration::from_secs(6)).await;
    }
    assert_children(&sup, &[("a", true, 5)]).await;
    // Two more at once: with the one 6 seconds ago, three within the period.
    crash_and_restart(&log, "a", 7).await;
    crash(&log, "a").await;
    gives_up(&sup).await;
}

#[tokio::test(start_paused = true)]
async fn a_child_that_cannot_be_restarted_exhausts_the_intensity() {
    let log = Workers::default();
    let once = worker(&log, "once").fails_to_start_from(1);
    let sup = supervise(Supervisor::new(), vec![spec(once)]).await;
    crash(&log, "once").await;
    gives_up(&sup).await;
    assert_eq!(log.incarnations("once").len(), 1);
}
