//! ConsumerSupervisor demand: one task per event with `max_demand` as the limit on tasks
//! running at once, demand asked again in chunks of `min_demand`, each subscription with
//! its own slots, finite producers (their end drains or aborts the running tasks), and
//! tasks outliving their producer. Restarts are in `restarts.rs`, the task API
//! and shutdown policies in `tasks.rs`.
//!
//! Tasks are driven by the test (see `jobs`). The tests run on the
//! current-thread runtime, except the one about concurrency.

use std::time::Duration;

use crate::jobs::{
    Jobs, Outcome, children, counts, fed_by_counter, settle, sorted, start_alone, tally,
};
use crate::support::{barrier, opts, recorded_counter, start_consumer, within};
use gen_stage::stats::StageState;
use gen_stage::supervision::ChildEvent;
use gen_stage::{CancelMode, ExitReason};
use gen_stage_test::Counter;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------
// Concurrency and demand
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_running_at_once_never_exceed_max_demand() {
    let jobs = Jobs::gated();
    let (sup, producer, _demands) = fed_by_counter(jobs.supervisor(), opts(5, 2)).await;
    jobs.wait_starts(5).await;
    settle(&sup, &producer).await;
    assert_eq!(sorted(jobs.started.snapshot()), vec![0, 1, 2, 3, 4]);
    assert_eq!(children(&sup).await.len(), 5);
    // Release the tasks one by one, in event order, as they start.
    for event in 0..40 {
        jobs.wait_started(event).await;
        jobs.release(event);
    }
    jobs.wait_finished(40).await;
    let counts = counts(&sup).await;
    assert_eq!(counts.high_water_mark, 5);
    assert!(counts.running <= 5, "{counts:?}");
    assert_eq!(jobs.most(), 5, "the tasks' own measure agrees");
    assert!(jobs.aborted.is_empty());
}

#[tokio::test]
async fn max_demand_one_runs_tasks_one_at_a_time_and_failures_free_the_slot() {
    let jobs = Jobs::free()
        .script(3, &[Outcome::Fail])
        .script(6, &[Outcome::Panic]);
    let producer = gen_stage::source::from_iter(0..10u64)
        .start()
        .await
        .unwrap();
    let sup = start_consumer(jobs.supervisor(), &producer, opts(1, 0)).await;
    let reason = within("the supervisor stops", sup.stopped()).await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(sorted(jobs.started.snapshot()), (0..10).collect::<Vec<_>>());
    assert_eq!(sorted(jobs.failed.snapshot()), vec![3, 6]);
    assert_eq!(jobs.finished.len(), 8);
    assert_eq!(jobs.most(), 1);
}

#[tokio::test]
async fn first_ask_is_max_demand_and_nothing_more_while_all_slots_are_busy() {
    let jobs = Jobs::gated();
    let (sup, producer, demands) = fed_by_counter(jobs.supervisor(), opts(4, 2)).await;
    jobs.wait_starts(4).await;
    settle(&sup, &producer).await;
    assert_eq!(demands.snapshot(), vec![4]);
    assert_eq!(jobs.started.len(), 4);
    assert_eq!(tally(&sup).await, (4, 4, 0, 0, 0));
    // Still nothing after another round trip: the producer is held back.
    settle(&sup, &producer).await;
    assert_eq!(demands.snapshot(), vec![4]);
}

#[tokio::test]
async fn demand_is_asked_again_in_chunks_of_min_demand_as_tasks_finish() {
    let jobs = Jobs::gated();
    let (sup, producer, demands) = fed_by_counter(jobs.supervisor(), opts(6, 3)).await;
    jobs.wait_starts(6).await;
    for (event, expected) in [(0, vec![6]), (1, vec![6]), (2, vec![6, 3])] {
        jobs.release(event);
        jobs.wait_finished(event as usize + 1).await;
        settle(&sup, &producer).await;
        assert_eq!(demands.snapshot(), expected, "after event {event} finished");
    }
    jobs.wait_starts(9).await;
    assert_eq!(sorted(jobs.started.snapshot()), (0..9).collect::<Vec<_>>());
    for event in [3, 4] {
        jobs.release(event);
    }
    jobs.wait_finished(5).await;
    settle(&sup, &producer).await;
    // Only 2 slots free: below min_demand.
    assert_eq!(demands.snapshot(), vec![6, 3]);
    assert_eq!(tally(&sup).await, (4, 6, 0, 0, 5));
}

#[tokio::test]
async fn min_demand_zero_asks_again_after_every_task() {
    let jobs = Jobs::gated();
    let (sup, producer, demands) = fed_by_counter(jobs.supervisor(), opts(3, 0)).await;
    jobs.wait_starts(3).await;
    for event in 0..4u64 {
        jobs.release(event);
        jobs.wait_finished(event as usize + 1).await;
        settle(&sup, &producer).await;
        let mut expected = vec![3];
        expected.extend(std::iter::repeat_n(1, event as usize + 1));
        assert_eq!(demands.snapshot(), expected);
        // A new task starts in the freed slot.
        jobs.wait_starts(event as usize + 4).await;
    }
    assert_eq!(counts(&sup).await.high_water_mark, 3);
}

#[tokio::test]
async fn each_subscription_has_its_own_slots() {
    let jobs = Jobs::gated();
    let (first, first_demands) = recorded_counter(Counter::new(0)).await;
    let (second, second_demands) = recorded_counter(Counter::new(100)).await;
    let sup = start_alone(jobs.supervisor()).await;
    sup.subscribe_to(&first, opts(2, 0)).await.unwrap();
    sup.subscribe_to(&second, opts(3, 0)).await.unwrap();
    jobs.wait_starts(5).await;
    assert_eq!(sorted(jobs.started.snapshot()), vec![0, 1, 100, 101, 102]);
    jobs.release(101);
    jobs.wait_finished(1).await;
    settle(&sup, &first).await;
    barrier(&second).await;
    // The first producer's slots are all busy.
    assert_eq!(first_demands.snapshot(), vec![2]);
    assert_eq!(second_demands.snapshot(), vec![3, 1]);
    jobs.wait_started(103).await;
    assert_eq!(tally(&sup).await, (5, 5, 0, 0, 1));
}

// ---------------------------------------------------------------------------------------
// Finite producers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn events_of_a_finite_producer_each_run_once_then_the_supervisor_stops_normally() {
    let jobs = Jobs::free();
    let (producer, _demands) = recorded_counter(Counter::new(0).limit(50)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(4, 1)).await;
    let reason = within("the supervisor stops", sup.stopped()).await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(jobs.started.snapshot().len(), 50);
    assert_eq!(
        sorted(jobs.finished.snapshot()),
        (0..50).collect::<Vec<_>>()
    );
    assert!(jobs.aborted.is_empty() && jobs.failed.is_empty());
    assert!(jobs.most() <= 4);
}

#[tokio::test(start_paused = true)]
async fn end_of_a_finite_producer_drains_running_tasks() {
    let jobs = Jobs::working(Duration::from_secs(1));
    let start = Instant::now();
    let (producer, _demands) = recorded_counter(Counter::new(0).limit(3)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(10, 5)).await;
    jobs.sup.set(sup.clone()).unwrap();
    within("the producer stops", producer.stopped()).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    let reason = within("the supervisor stops", sup.stopped()).await;
    assert!(reason.is_normal(), "{reason:?}");
    // It waited for its tasks.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(sorted(jobs.finished.snapshot()), vec![0, 1, 2]);
    assert!(jobs.aborted.is_empty());
    // The tasks ended while the supervisor was already stopping.
    assert_eq!(jobs.states_at_end.snapshot(), vec![StageState::Stopping; 3]);
}

#[tokio::test(start_paused = true)]
async fn end_of_a_finite_producer_aborts_tasks_after_the_default_five_seconds() {
    let jobs = Jobs::gated();
    let start = Instant::now();
    let (producer, _demands) = recorded_counter(Counter::new(0).limit(3)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(10, 5)).await;
    let reason = within("the supervisor stops", sup.stopped()).await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    jobs.wait_aborted(3).await;
    assert_eq!(sorted(jobs.aborted.snapshot()), vec![0, 1, 2]);
    assert!(jobs.finished.is_empty());
}

// ---------------------------------------------------------------------------------------
// Tasks outlive their producer
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tasks_outlive_a_cancelled_subscription_and_free_no_demand() {
    let jobs = Jobs::gated();
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_alone(jobs.supervisor()).await;
    let tag = sup.subscribe_to(&producer, opts(3, 0)).await.unwrap();
    jobs.wait_starts(3).await;
    sup.cancel(tag, ExitReason::Shutdown).unwrap();
    counts(&sup).await;
    (0..3).for_each(|event| jobs.release(event));
    jobs.wait_finished(3).await;
    settle(&sup, &producer).await;
    assert_eq!(tally(&sup).await, (0, 3, 0, 0, 3));
    assert!(jobs.aborted.is_empty());
    // Nothing asked of a cancelled producer.
    assert_eq!(demands.snapshot(), vec![3]);
    assert!(sup.is_alive() && producer.is_alive());
}

#[tokio::test]
async fn tasks_outlive_a_producer_that_stops_with_a_temporary_subscription() {
    let jobs = Jobs::gated();
    let options = opts(3, 1).cancel(CancelMode::Temporary);
    let (sup, producer, _demands) = fed_by_counter(jobs.supervisor(), options).await;
    jobs.wait_starts(3).await;
    producer.stop(ExitReason::Shutdown).await.unwrap();
    (0..3).for_each(|event| jobs.release(event));
    jobs.wait_finished(3).await;
    assert_eq!(tally(&sup).await, (0, 3, 0, 0, 3));
    assert!(jobs.aborted.is_empty());
    assert!(sup.is_alive());
}

/// Waits until every sender of `runs` is gone (the supervisor and its tasks are), and
/// returns what they sent, sorted.
async fn all_runs(mut runs: tokio::sync::mpsc::UnboundedReceiver<u64>) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(event) = within("the tasks' runs or their end", runs.recv()).await {
        seen.push(event);
    }
    sorted(seen)
}

/// A supervisor whose template panics for event 2, and the events its tasks ran.
fn template_failing_on_2() -> (
    gen_stage::supervision::ConsumerSupervisor<u64>,
    tokio::sync::mpsc::UnboundedReceiver<u64>,
) {
    let (ran, runs) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = gen_stage::supervision::ConsumerSupervisor::new(move |event: u64| {
        assert_ne!(event, 2, "the template fails on event 2");
        let ran = ran.clone();
        async move {
            let _ = ran.send(event);
            Ok::<(), gen_stage::BoxError>(())
        }
    });
    (supervisor, runs)
}

#[tokio::test]
async fn a_template_that_panics_fails_that_task_only() {
    // As in GenStage, where a child that crashes as it starts is counted as an error.
    let (supervisor, runs) = template_failing_on_2();
    let mut events = supervisor.watch();
    let producer = gen_stage::source::from_iter(0..5u64)
        .start()
        .await
        .expect("starts");
    let options = opts(5, 0).cancel(CancelMode::Temporary);
    let sup = start_consumer(supervisor, &producer, options).await;
    // Every task's end, as the supervisor learns it.
    let mut failed = Vec::new();
    let mut exits = 0;
    while exits < 5 {
        let event = within("every task's end", events.next()).await;
        if let Some(Ok(ChildEvent::Exited { reason, .. })) = event {
            exits += 1;
            if !reason.is_normal() {
                failed.push(reason);
            }
        }
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    let counted = counts(&sup).await;
    assert_eq!((counted.failed, counted.completed), (1, 4));
    assert!(sup.is_alive());
    sup.stop(ExitReason::Shutdown).await.expect("stops");
    assert_eq!(all_runs(runs).await, vec![0, 1, 3, 4]);
}

#[tokio::test]
async fn a_transient_task_whose_template_panicked_is_not_run_again() {
    let (supervisor, runs) = template_failing_on_2();
    let supervisor = supervisor
        .restart(gen_stage::supervision::Restart::Transient)
        .intensity(0, Duration::from_secs(5));
    let producer = gen_stage::source::from_iter(2..5u64)
        .start()
        .await
        .expect("starts");
    let sup = start_consumer(supervisor, &producer, opts(1, 0)).await;
    // A restart would exceed the intensity of 0 and stop it with TooManyRestarts.
    let reason = within("the stop", sup.stopped()).await;
    assert!(reason.is_normal(), "{reason}");
    assert_eq!(all_runs(runs).await, vec![3, 4]);
}

/// An event whose clone panics for one value.
struct CloneFails(u64);

impl Clone for CloneFails {
    fn clone(&self) -> Self {
        assert_ne!(self.0, 2, "event 2 fails to clone");
        CloneFails(self.0)
    }
}

#[tokio::test]
async fn tasks_recorded_before_an_event_clone_panic_still_run() {
    let (ran, runs) = tokio::sync::mpsc::unbounded_channel();
    // Transient tasks keep a clone of their event: the clone runs on the supervisor.
    let supervisor = gen_stage::supervision::ConsumerSupervisor::new(move |event: CloneFails| {
        let ran = ran.clone();
        async move {
            let _ = ran.send(event.0);
            Ok::<(), gen_stage::BoxError>(())
        }
    })
    .restart(gen_stage::supervision::Restart::Transient);
    // One batch of five: events 0 and 1 have tasks when the clone of 2 panics.
    let producer = gen_stage::source::from_iter((0..5u64).map(CloneFails))
        .start()
        .await
        .expect("starts");
    let sup = start_consumer(supervisor, &producer, opts(5, 0)).await;
    let reason = within("the stop", sup.stopped()).await;
    assert!(matches!(reason, ExitReason::Panic(_)), "{reason}");
    assert_eq!(all_runs(runs).await, vec![0, 1]);
}
