//! ConsumerSupervisor restarts: a transient task that fails runs again with its event in
//! its slot, restart intensity (default and custom, within its period), temporary tasks
//! counted as failed and never run again, and permanent restart refused at start.
//!
//! Tasks are driven by the test (see `jobs`).

use std::time::Duration;

use crate::jobs::{Jobs, Outcome, Sup, children, fed_by_counter, settle, sorted, tally};
use crate::support::{barrier, opts, scripted_with, start_consumer, within};
use gen_stage::ExitReason;
use gen_stage::error::StartError;
use gen_stage::supervision::{Restart, Shutdown};

/// A transient supervisor of `jobs` (see [`failing_once`]) fed events 0 and 1, with one
/// restart allowed in 10 seconds and `shutdown`; returns once event 0's first attempt
/// was released (and failed) and it runs again.
async fn two_failing_with_one_restart(jobs: &Jobs, shutdown: Shutdown) -> Sup {
    let (producer, _record) = scripted_with(vec![0u64, 1]).await;
    let stage = jobs
        .supervisor()
        .restart(Restart::Transient)
        .intensity(1, Duration::from_secs(10))
        .shutdown(shutdown);
    let sup = start_consumer(stage, &producer, opts(2, 0)).await;
    jobs.wait_starts(2).await;
    jobs.release(0);
    // Event 0 runs again.
    jobs.wait_starts(3).await;
    sup
}

/// Gated jobs whose tasks for `events` fail their first attempt.
fn failing_once(events: &[u64]) -> Jobs {
    let fail = |jobs: Jobs, &event: &u64| jobs.script(event, &[Outcome::Fail]);
    events.iter().fold(Jobs::gated(), fail)
}

/// A transient task fails once with `outcome`: it runs again with the same event, in
/// the same slot (no demand asked), and its success then frees the slot.
async fn transient_failure_runs_again_in_its_slot(outcome: Outcome) {
    let jobs = Jobs::gated().script(0, &[outcome]);
    let stage = jobs.supervisor().restart(Restart::Transient);
    let (sup, producer, demands) = fed_by_counter(stage, opts(2, 0)).await;
    jobs.wait_starts(2).await;
    let ids = children(&sup).await;
    jobs.release(0);
    // Event 0 runs again.
    jobs.wait_starts(3).await;
    settle(&sup, &producer).await;
    assert_eq!(jobs.attempts(0), 2);
    assert_eq!(children(&sup).await, ids, "it keeps its id");
    assert_eq!(jobs.failed.snapshot(), vec![0]);
    // The restarted task keeps its slot.
    assert_eq!(demands.snapshot(), vec![2]);
    assert_eq!(tally(&sup).await, (2, 2, 1, 0, 0));
    jobs.release(0);
    jobs.wait_finished(1).await;
    settle(&sup, &producer).await;
    assert_eq!(demands.snapshot(), vec![2, 1]);
    jobs.wait_started(2).await;
    assert_eq!(tally(&sup).await, (2, 2, 1, 0, 1));
}

#[tokio::test]
async fn transient_task_returning_an_error_runs_again_with_its_event_in_its_slot() {
    transient_failure_runs_again_in_its_slot(Outcome::Fail).await;
}

#[tokio::test]
async fn transient_task_panicking_runs_again_with_its_event_in_its_slot() {
    transient_failure_runs_again_in_its_slot(Outcome::Panic).await;
}

#[tokio::test]
async fn transient_restarts_beyond_the_default_intensity_stop_with_too_many_restarts() {
    let jobs = Jobs::free().script(7, &[Outcome::Fail; 10]);
    let (producer, _record) = scripted_with(vec![7u64]).await;
    let stage = jobs.supervisor().restart(Restart::Transient);
    let sup = start_consumer(stage, &producer, opts(1, 0)).await;
    let reason = within("the supervisor gives up", sup.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);
    // 3 restarts in 5 seconds are allowed: the 4th attempt's failure is one too many.
    assert_eq!(jobs.attempts(7), 4);
    assert!(jobs.finished.is_empty());
}

#[tokio::test(start_paused = true)]
async fn transient_restart_intensity_counts_only_restarts_within_the_period() {
    let jobs = failing_once(&[0, 1]);
    let sup = two_failing_with_one_restart(&jobs, Shutdown::default()).await;
    tokio::time::advance(Duration::from_secs(11)).await;
    jobs.release(1);
    // Event 1 runs again.
    jobs.wait_starts(4).await;
    assert_eq!(tally(&sup).await, (2, 2, 2, 0, 0));
    jobs.release(0);
    jobs.release(1);
    jobs.wait_finished(2).await;
    assert!(sup.is_alive());
}

#[tokio::test(start_paused = true)]
async fn transient_restarts_beyond_the_intensity_within_the_period_stop_the_supervisor() {
    let jobs = failing_once(&[0, 1]);
    let sup = two_failing_with_one_restart(&jobs, Shutdown::Kill).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    jobs.release(1);
    let reason = within("the supervisor gives up", sup.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);
    // The restart past the intensity never ran.
    assert_eq!(jobs.attempts(1), 1);
    // Event 0's second run is aborted.
    jobs.wait_aborted(1).await;
    assert_eq!(jobs.aborted.snapshot(), vec![0]);
}

#[tokio::test]
async fn temporary_failures_are_counted_and_not_run_again() {
    let jobs = Jobs::gated()
        .script(0, &[Outcome::Fail])
        .script(1, &[Outcome::Panic]);
    // Temporary is the default.
    let (sup, producer, demands) = fed_by_counter(jobs.supervisor(), opts(2, 0)).await;
    jobs.wait_starts(2).await;
    jobs.release(0);
    jobs.release(1);
    within("both fail", jobs.failed.wait_for_len(2)).await;
    settle(&sup, &producer).await;
    assert_eq!(tally(&sup).await, (2, 2, 0, 2, 0));
    assert_eq!(jobs.attempts(0), 1);
    assert_eq!(jobs.attempts(1), 1);
    // Their slots are free: the producer was asked for one event per failed task.
    assert_eq!(demands.snapshot(), vec![2, 1, 1]);
    // Events 2 and 3 start.
    jobs.wait_starts(4).await;
    assert_eq!(sorted(jobs.started.snapshot()), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn permanent_restart_is_refused_at_start_with_an_explanation() {
    let (producer, record) = scripted_with(vec![1u64, 2, 3]).await;
    let stage = Jobs::free().supervisor().restart(Restart::Permanent);
    let started = gen_stage::consumer(stage)
        .subscribe_to(&producer, opts(5, 0))
        .start()
        .await;
    let Err(StartError::Init(ExitReason::Error(error))) = started else {
        panic!("expected an init error, got {:?}", started.map(|_| ()));
    };
    let text = error.to_string();
    assert!(text.contains("permanent"), "{text}");
    assert!(text.contains("Transient"), "{text}");
    barrier(&producer).await;
    assert!(record.read(|r| r.demands.is_empty()), "nothing was asked");
}
