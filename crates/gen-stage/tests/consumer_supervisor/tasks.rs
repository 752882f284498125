//! ConsumerSupervisor tasks: the task API (start_child, terminate_child, which_children,
//! count_children) and what becomes of running tasks when the supervisor stops under
//! each shutdown policy, or is killed.
//!
//! Tasks are driven by the test (see `jobs`).

use std::time::Duration;

use crate::jobs::{
    Jobs, Sup, children, counts, fed_by_counter, settle, sorted, start_alone, tally,
};
use crate::support::{barrier, opts, scripted_with, start_consumer, within};
use gen_stage::ExitReason;
use gen_stage::supervision::{ConsumerSupervisor, Restart, Shutdown};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------
// start_child, terminate_child, which_children, count_children
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn start_child_runs_a_task_without_any_subscription() {
    let jobs = Jobs::gated();
    let sup = start_alone(jobs.supervisor()).await;
    let id = sup.start_child(42).await.unwrap();
    jobs.wait_started(42).await;
    assert_eq!(children(&sup).await, vec![id]);
    assert_eq!(tally(&sup).await, (1, 1, 0, 0, 0));
    jobs.release(42);
    jobs.wait_finished(1).await;
    assert_eq!(children(&sup).await, vec![]);
    assert_eq!(tally(&sup).await, (0, 1, 0, 0, 1));
    assert!(
        !sup.terminate_child(id).await.unwrap(),
        "not running any more"
    );
    assert_eq!(counts(&sup).await.completed, 1);
}

#[tokio::test]
async fn start_child_on_a_stopped_supervisor_gives_the_event_back() {
    let jobs = Jobs::gated();
    let sup = start_alone(jobs.supervisor()).await;
    sup.stop(ExitReason::Shutdown).await.unwrap();
    let error = sup.start_child(42).await.unwrap_err();
    assert_eq!(error.to_string(), "the supervisor is not alive");
    assert_eq!(error.into_event(), Some(42), "the event is not lost");
    assert!(jobs.started.is_empty());
}

#[tokio::test]
async fn start_child_runs_beyond_demand_and_its_end_asks_nothing() {
    let jobs = Jobs::gated();
    let (sup, producer, demands) = fed_by_counter(jobs.supervisor(), opts(2, 0)).await;
    jobs.wait_starts(2).await;
    sup.start_child(100).await.unwrap();
    jobs.wait_started(100).await;
    assert_eq!(tally(&sup).await, (3, 3, 0, 0, 0));
    jobs.release(100);
    jobs.wait_finished(1).await;
    settle(&sup, &producer).await;
    // No slot of the producer was freed.
    assert_eq!(demands.snapshot(), vec![2]);
    assert_eq!(tally(&sup).await, (2, 3, 0, 0, 1));
}

#[tokio::test]
async fn which_children_lists_running_task_ids_in_start_order() {
    let jobs = Jobs::gated();
    let (producer, _record) = scripted_with(vec![10u64, 11, 12]).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(3, 0)).await;
    jobs.wait_starts(3).await;
    let ids = children(&sup).await;
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    jobs.release(11);
    jobs.wait_finished(1).await;
    assert_eq!(children(&sup).await, vec![ids[0], ids[2]]);
}

#[tokio::test]
async fn terminate_child_aborts_the_task_and_frees_its_slot() {
    let jobs = Jobs::gated();
    let (sup, producer, demands) = fed_by_counter(jobs.supervisor(), opts(2, 0)).await;
    jobs.wait_starts(2).await;
    let ids = children(&sup).await;
    assert!(sup.terminate_child(ids[0]).await.unwrap());
    // The task has ended by the time terminate_child returns (its slot is only then
    // free: never more than max_demand tasks at once).
    assert_eq!(jobs.aborted.snapshot(), vec![0]);
    barrier(&producer).await;
    // Its slot was asked for again.
    assert_eq!(demands.snapshot(), vec![2, 1]);
    jobs.wait_started(2).await;
    let counts = counts(&sup).await;
    assert_eq!(
        (
            counts.running,
            counts.failed,
            counts.completed,
            counts.terminated
        ),
        (2, 0, 0, 1)
    );
    assert!(!children(&sup).await.contains(&ids[0]));
    assert!(
        !sup.terminate_child(ids[0]).await.unwrap(),
        "already terminated"
    );
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![2, 1], "no second credit");
}

#[tokio::test]
async fn terminate_child_does_not_restart_a_transient_task() {
    let jobs = Jobs::gated();
    let stage = jobs.supervisor().restart(Restart::Transient);
    let (sup, producer, demands) = fed_by_counter(stage, opts(1, 0)).await;
    jobs.wait_started(0).await;
    let ids = children(&sup).await;
    assert!(sup.terminate_child(ids[0]).await.unwrap());
    jobs.wait_started(1).await;
    settle(&sup, &producer).await;
    assert_eq!(jobs.attempts(0), 1);
    assert_eq!(demands.snapshot(), vec![1, 1]);
    assert_eq!(counts(&sup).await.restarts, 0);
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

/// Starts a supervisor fed `events` and waits until a task runs for each.
async fn running(stage: ConsumerSupervisor<u64>, jobs: &Jobs, events: Vec<u64>) -> Sup {
    let count = events.len();
    let (producer, _record) = scripted_with(events).await;
    let sup = start_consumer(stage, &producer, opts(10, 5)).await;
    jobs.wait_starts(count).await;
    sup
}

/// Stops the supervisor and returns how much (paused) time that took.
async fn timed_stop(sup: &Sup) -> Duration {
    let start = Instant::now();
    let stopping = sup.stop(ExitReason::Shutdown);
    let guard = tokio::time::timeout(Duration::from_secs(3600), stopping).await;
    guard.expect("the supervisor stops").expect("alive");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn graceful_stop_waits_for_tasks_up_to_its_limit_then_aborts_the_rest() {
    let jobs = Jobs::gated();
    let stage = jobs
        .supervisor()
        .shutdown(Shutdown::Graceful(Duration::from_secs(3)));
    let sup = running(stage, &jobs, vec![0, 1]).await;
    // Event 0 ends after 1 s of (paused) time; event 1 never would.
    let releaser = jobs.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        releaser.release(0);
    });
    assert_eq!(timed_stop(&sup).await, Duration::from_secs(3));
    assert_eq!(sup.exit_reason(), Some(ExitReason::Shutdown));
    assert_eq!(jobs.finished.snapshot(), vec![0]);
    jobs.wait_aborted(1).await;
    assert_eq!(jobs.aborted.snapshot(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn graceful_stop_returns_once_all_tasks_have_finished() {
    let jobs = Jobs::working(Duration::from_secs(1));
    let stage = jobs
        .supervisor()
        .shutdown(Shutdown::Graceful(Duration::from_secs(10)));
    let sup = running(stage, &jobs, vec![0, 1, 2]).await;
    assert_eq!(timed_stop(&sup).await, Duration::from_secs(1));
    assert_eq!(sorted(jobs.finished.snapshot()), vec![0, 1, 2]);
    assert!(jobs.aborted.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_graceful_limit_too_long_to_count_waits_for_the_tasks() {
    let jobs = Jobs::working(Duration::from_secs(600));
    let stage = jobs
        .supervisor()
        .shutdown(Shutdown::Graceful(Duration::MAX));
    let sup = running(stage, &jobs, vec![0, 1]).await;
    // No deadline can be set that far: the stop waits as long as the tasks take, as
    // Shutdown::Wait does, rather than failing and leaving them running.
    assert_eq!(timed_stop(&sup).await, Duration::from_secs(600));
    assert_eq!(sup.exit_reason(), Some(ExitReason::Shutdown));
    assert_eq!(sorted(jobs.finished.snapshot()), vec![0, 1]);
    assert!(jobs.aborted.is_empty());
}

#[tokio::test(start_paused = true)]
async fn kill_stop_aborts_running_tasks_at_once() {
    let jobs = Jobs::gated();
    let stage = jobs.supervisor().shutdown(Shutdown::Kill);
    let sup = running(stage, &jobs, vec![0, 1, 2]).await;
    assert_eq!(timed_stop(&sup).await, Duration::ZERO);
    // Ended, not only told to, once the stop returns.
    assert_eq!(sorted(jobs.aborted.snapshot()), vec![0, 1, 2]);
    assert!(jobs.finished.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_killed_while_it_waits_for_its_tasks_takes_them_with_it() {
    let jobs = Jobs::gated();
    let stage = jobs.supervisor().shutdown(Shutdown::Wait);
    let sup = running(stage, &jobs, vec![0, 1]).await;
    let stopping = tokio::spawn({
        let sup = sup.clone();
        async move { sup.stop(ExitReason::Shutdown).await }
    });
    // The stop waits for the gated tasks, in `terminate`; then the supervisor is killed.
    let waiting = tokio::time::timeout(Duration::from_secs(3600), sup.stopped()).await;
    assert!(waiting.is_err(), "the stop waits for its tasks");
    sup.kill();
    assert_eq!(sup.stopped().await, ExitReason::Killed);
    jobs.wait_aborted(2).await;
    assert_eq!(sorted(jobs.aborted.snapshot()), vec![0, 1]);
    assert!(jobs.finished.is_empty());
    let _ = stopping.await;
}

#[tokio::test(start_paused = true)]
async fn wait_stop_waits_as_long_as_the_tasks_take() {
    let jobs = Jobs::working(Duration::from_secs(600));
    let stage = jobs.supervisor().shutdown(Shutdown::Wait);
    let sup = running(stage, &jobs, vec![0, 1]).await;
    assert_eq!(timed_stop(&sup).await, Duration::from_secs(600));
    assert_eq!(sorted(jobs.finished.snapshot()), vec![0, 1]);
    assert!(jobs.aborted.is_empty());
}

#[tokio::test]
async fn killed_supervisor_does_not_leave_its_tasks_running() {
    let jobs = Jobs::gated();
    let sup = running(jobs.supervisor(), &jobs, vec![0, 1]).await;
    sup.kill();
    assert_eq!(
        within("the supervisor stops", sup.stopped()).await,
        ExitReason::Killed
    );
    jobs.release(0);
    jobs.release(1);
    // Either they were aborted with the supervisor, or they now run to their end.
    within("the tasks are aborted or end", async {
        tokio::select! {
            () = jobs.aborted.wait_for_len(2) => {}
            () = jobs.finished.wait_for_len(2) => {}
        }
    })
    .await;
    // Orphaned tasks ran on.
    assert_eq!(sorted(jobs.aborted.snapshot()), vec![0, 1]);
}
