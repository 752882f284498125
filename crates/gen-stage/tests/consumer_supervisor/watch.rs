//! Watching a `ConsumerSupervisor`: a task's start, its end (normal, failed, aborted)
//! and its restart awaited as events instead of polling `count_children`, a watcher
//! that falls behind told what it missed without holding the supervisor back, and the
//! stream's end with the supervisor's.
//!
//! Tasks are driven by the test (see `jobs`).

use crate::jobs::{Jobs, Outcome, start_alone};
use crate::support::{opts, start_consumer, within};
use gen_stage::ExitReason;
use gen_stage::error::CallError;
use gen_stage::supervision::{ChildEvent, ChildEvents, Missed, Restart, Shutdown, TaskId};

type Event = ChildEvent<TaskId>;

fn exited(id: TaskId, reason: ExitReason) -> Event {
    ChildEvent::Exited { id, reason }
}

/// The next event, which must come.
async fn next(events: &mut ChildEvents<TaskId>) -> Result<Event, Missed> {
    within("the next task event", events.next())
        .await
        .expect("the stream has not ended")
}

/// Every event left, up to the end of the stream.
async fn rest(events: &mut ChildEvents<TaskId>) -> Vec<Result<Event, Missed>> {
    let mut all = Vec::new();
    while let Some(event) = within("the end of the stream", events.next()).await {
        all.push(event);
    }
    all
}

#[tokio::test]
async fn a_task_that_finishes_is_seen_started_then_exited_normally() {
    let jobs = Jobs::gated();
    let sup = start_alone(jobs.supervisor()).await;
    let mut events = sup.watch().await.expect("the supervisor answers");
    let id = sup.start_child(7).await.expect("starts");
    assert_eq!(next(&mut events).await, Ok(ChildEvent::Started { id }));
    jobs.release(7);
    // Awaited: no count_children in a loop.
    assert_eq!(next(&mut events).await, Ok(exited(id, ExitReason::Normal)));
    assert_eq!(jobs.finished.snapshot(), vec![7]);
    sup.stop(ExitReason::Shutdown).await.expect("stops");
}

#[tokio::test]
async fn a_failed_transient_task_is_seen_exited_with_its_reason_then_restarted() {
    let jobs = Jobs::free().script(1, &[Outcome::Fail]);
    let sup = start_alone(jobs.supervisor().restart(Restart::Transient)).await;
    let mut events = sup.watch().await.expect("the supervisor answers");
    let id = sup.start_child(1).await.expect("starts");
    assert_eq!(next(&mut events).await, Ok(ChildEvent::Started { id }));
    let failed = ExitReason::error("job 1 failed");
    assert_eq!(next(&mut events).await, Ok(exited(id, failed)));
    assert_eq!(next(&mut events).await, Ok(ChildEvent::Restarted { id }));
    assert_eq!(next(&mut events).await, Ok(exited(id, ExitReason::Normal)));
    assert_eq!(jobs.attempts(1), 2);
    sup.stop(ExitReason::Shutdown).await.expect("stops");
}

#[tokio::test]
async fn a_terminated_task_is_seen_exited_as_killed() {
    let jobs = Jobs::gated();
    let sup = start_alone(jobs.supervisor()).await;
    let id = sup.start_child(3).await.expect("starts");
    jobs.wait_started(3).await;
    let mut events = sup.watch().await.expect("the supervisor answers");
    assert!(sup.terminate_child(id).await.expect("answers"));
    assert_eq!(next(&mut events).await, Ok(exited(id, ExitReason::Killed)));
    sup.stop(ExitReason::Shutdown).await.expect("stops");
}

#[tokio::test]
async fn watching_from_before_the_start_sees_the_first_tasks_and_the_end() {
    let jobs = Jobs::free();
    let stage = jobs.supervisor();
    let mut events = stage.watch();
    let producer = gen_stage::source::from_iter(0..3u64)
        .start()
        .await
        .expect("starts");
    // Permanent subscription: the producer's end stops the supervisor.
    let sup = start_consumer(stage, &producer, opts(3, 0)).await;
    let reason = within("the supervisor stops", sup.stopped()).await;
    let all = rest(&mut events).await;
    let all: Vec<Event> = all.into_iter().map(|event| event.expect("kept")).collect();
    let (last, tasks) = all.split_last().expect("events");
    assert_eq!(*last, ChildEvent::SupervisorStopped { reason });
    let mut starts = Vec::new();
    let mut exits = Vec::new();
    for event in tasks {
        match event {
            ChildEvent::Started { id } => starts.push(*id),
            ChildEvent::Exited { id, reason } => {
                assert!(starts.contains(id), "{id} exited before it started");
                assert_eq!(*reason, ExitReason::Normal);
                exits.push(*id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    exits.sort_unstable();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts, exits);
}

#[tokio::test]
async fn the_stream_ends_when_the_supervisor_stops_after_the_exits_of_its_tasks() {
    let jobs = Jobs::gated();
    let sup = start_alone(jobs.supervisor().shutdown(Shutdown::Kill)).await;
    let mut events = sup.watch().await.expect("the supervisor answers");
    let id = sup.start_child(5).await.expect("starts");
    jobs.wait_started(5).await;
    sup.stop(ExitReason::Shutdown).await.expect("stops");
    assert_eq!(
        rest(&mut events).await,
        vec![
            Ok(ChildEvent::Started { id }),
            Ok(exited(id, ExitReason::Killed)),
            Ok(ChildEvent::SupervisorStopped {
                reason: ExitReason::Shutdown
            }),
        ]
    );
    assert_eq!(jobs.aborted.snapshot(), vec![5]);
    assert!(matches!(sup.watch().await, Err(CallError::NotAlive)));
}

#[tokio::test]
async fn a_lagging_watcher_is_told_what_it_missed_and_never_holds_the_supervisor_back() {
    let jobs = Jobs::free();
    let stage = jobs.supervisor().watch_capacity(4);
    let mut idle = stage.watch();
    let sup = start_alone(stage).await;
    for event in 0..10 {
        sup.start_child(event)
            .await
            .expect("the supervisor answers");
    }
    jobs.wait_finished(10).await;
    sup.stop(ExitReason::Shutdown).await.expect("stops");
    // 10 starts, 10 exits and the stop went out while the watcher read nothing; it
    // kept the last 4.
    assert_eq!(next(&mut idle).await, Err(Missed(17)));
    let kept = rest(&mut idle).await;
    assert_eq!(kept.len(), 4);
    assert_eq!(
        kept.last(),
        Some(&Ok(ChildEvent::SupervisorStopped {
            reason: ExitReason::Shutdown
        }))
    );
}
