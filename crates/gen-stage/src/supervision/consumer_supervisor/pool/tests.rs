//! The pool alone, on a single-threaded runtime: a worker runs only when the test
//! task waits, so each step below sees the workers where the previous one left them.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use futures::future::BoxFuture;

use super::{Pool, TaskFailure, TaskId};
use crate::exit::{BoxError, ExitReason};

/// The events of these pools are the tasks' futures themselves.
type Job = BoxFuture<'static, Result<(), BoxError>>;

/// Long enough for any step on a paused clock, which moves only when every task waits.
const LIMIT: Duration = Duration::from_secs(60);

/// A task that reports its start, then runs until released (or dropped); its drop
/// is reported too.
struct Gated {
    started: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
    dropped: oneshot::Receiver<()>,
}

struct OnDrop(Option<oneshot::Sender<()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

fn gated() -> (Job, Gated) {
    let (started_sender, started) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let (dropped_sender, dropped) = oneshot::channel();
    let job: Job = Box::pin(async move {
        let _guard = OnDrop(Some(dropped_sender));
        let _ = started_sender.send(());
        let _ = released.await;
        Ok(())
    });
    let gate = Gated {
        started,
        release,
        dropped,
    };
    (job, gate)
}

fn quick() -> Job {
    Box::pin(async { Ok(()) })
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen"))
}

/// Waits for a gated task's start.
async fn wait_started(what: &str, started: oneshot::Receiver<()>) {
    within(what, started)
        .await
        .expect("the task reports its start");
}

/// A pool whose template runs the future it is given, its rings counted on a channel.
fn ringing_pool() -> (Pool<Job>, mpsc::UnboundedReceiver<()>) {
    let pool = Pool::new(|job: Job| job);
    let (rings, rung) = mpsc::unbounded_channel();
    pool.set_ring(move || {
        let _ = rings.send(());
    });
    (pool, rung)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_queued_behind_a_new_worker_is_taken_by_an_idle_one() {
    let (mut pool, mut rung) = ringing_pool();
    pool.run([(TaskId(1), quick())], 1);
    within("the first task's end", rung.recv()).await;
    assert_eq!(pool.take_finished(), vec![(TaskId(1), Ok(()))]);
    // The first worker now waits for work. The supervisor still counts the first task
    // (it has not read its outcome), so the next task starts a worker, and the one
    // after it, queued behind, neither starts one nor wakes one.
    let (first, first_gate) = gated();
    let (second, second_gate) = gated();
    pool.run([(TaskId(2), first)], 2);
    pool.run([(TaskId(3), second)], 2);
    assert_eq!(pool.workers.len(), 2);
    wait_started("the second task's start", first_gate.started).await;
    // The new worker took the second task and, leaving one behind, woke the idle
    // worker: the third task does not wait for the second to end.
    wait_started("the third task's start", second_gate.started).await;
    drop((first_gate.release, second_gate.release));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn workers_are_reused_and_the_pool_grows_to_the_tasks_running_at_once() {
    let (mut pool, mut rung) = ringing_pool();
    for id in 1..=3 {
        pool.run([(TaskId(id), quick())], 1);
        within("a task's end", rung.recv()).await;
        assert_eq!(pool.take_finished(), vec![(TaskId(id), Ok(()))]);
    }
    assert_eq!(pool.workers.len(), 1, "one worker ran the three tasks");
    let mut gates = Vec::new();
    let mut jobs = Vec::new();
    for id in 10..13 {
        let (job, gate) = gated();
        jobs.push((TaskId(id), job));
        gates.push(gate);
    }
    pool.run(jobs, 3);
    assert_eq!(pool.workers.len(), 3);
    for gate in gates {
        wait_started("a task's start", gate.started).await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panic_is_the_task_outcome_and_its_worker_runs_on() {
    let (mut pool, mut rung) = ringing_pool();
    let panicking: Job = Box::pin(async { panic!("boom") });
    pool.run([(TaskId(1), panicking), (TaskId(2), quick())], 1);
    within("the outcomes", rung.recv()).await;
    let outcomes = pool.take_finished();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        matches!(&outcomes[0], (TaskId(1), Err(TaskFailure::Run(ExitReason::Panic(message)))) if message.contains("boom")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], (TaskId(2), Ok(())));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn terminate_drops_a_queued_task_and_aborts_a_running_one_without_an_outcome() {
    let (mut pool, mut rung) = ringing_pool();
    let (running, running_gate) = gated();
    let (queued, mut queued_gate) = gated();
    // One worker for two tasks: the second stays queued.
    pool.run([(TaskId(1), running), (TaskId(2), queued)], 1);
    wait_started("the first task's start", running_gate.started).await;
    within("terminate's return", pool.terminate(TaskId(2))).await;
    assert!(queued_gate.started.try_recv().is_err(), "never started");
    let mut running_dropped = running_gate.dropped;
    within("terminate's return", pool.terminate(TaskId(1))).await;
    assert!(
        running_dropped.try_recv().is_ok(),
        "dropped by the time terminate returns"
    );
    // The worker is free again, and reports the next task but not the aborted one.
    pool.run([(TaskId(3), quick())], 1);
    within("the next task's end", rung.recv()).await;
    assert_eq!(pool.take_finished(), vec![(TaskId(3), Ok(()))]);
    drop((running_gate.release, queued_gate.release));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_waits_for_the_tasks_until_the_deadline_then_aborts_them() {
    let (mut pool, _rung) = ringing_pool();
    let (finishing, finishing_gate) = gated();
    let (stuck, stuck_gate) = gated();
    pool.run([(TaskId(1), finishing), (TaskId(2), stuck)], 2);
    wait_started("a start", finishing_gate.started).await;
    wait_started("a start", stuck_gate.started).await;
    let _ = finishing_gate.release.send(());
    let (mut finished, mut stuck_dropped) = (finishing_gate.dropped, stuck_gate.dropped);
    let start = tokio::time::Instant::now();
    pool.shutdown(Some(start + Duration::from_secs(5))).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "waited for the deadline"
    );
    assert!(stuck_dropped.try_recv().is_ok(), "aborted");
    assert!(finished.try_recv().is_ok(), "ended");
    assert!(pool.workers.is_empty());
    drop(stuck_gate.release);
}

/// State whose drop panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("dropped badly");
    }
}

/// A future that is ready at once and panics when dropped.
struct ReadyThenPanics(PanicsOnDrop);

impl std::future::Future for ReadyThenPanics {
    type Output = Result<(), crate::exit::BoxError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panic_in_the_drop_of_an_ended_task_is_its_outcome_and_the_worker_runs_on() {
    let (mut pool, mut rung) = ringing_pool();
    let job: Job = Box::pin(ReadyThenPanics(PanicsOnDrop));
    pool.run([(TaskId(1), job), (TaskId(2), quick())], 1);
    within("the outcomes", rung.recv()).await;
    let outcomes = pool.take_finished();
    assert!(
        matches!(&outcomes[..], [(TaskId(1), Err(TaskFailure::Run(ExitReason::Panic(message)))), (TaskId(2), Ok(()))] if message.contains("dropped badly")),
        "{outcomes:?}"
    );
    within("an unbounded shutdown", pool.shutdown(None)).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn terminate_returns_when_the_aborted_task_panics_in_its_drop() {
    let (mut pool, mut rung) = ringing_pool();
    let (started_sender, started) = oneshot::channel();
    let aborted: Job = Box::pin(async move {
        let _state = PanicsOnDrop;
        let _ = started_sender.send(());
        std::future::pending::<()>().await;
        Ok(())
    });
    let queued: Job = Box::pin(async {
        let _state = PanicsOnDrop;
        Ok(())
    });
    pool.run([(TaskId(1), aborted), (TaskId(2), queued)], 1);
    wait_started("the first task's start", started).await;
    within("terminate's return", pool.terminate(TaskId(2))).await;
    within("terminate's return", pool.terminate(TaskId(1))).await;
    pool.run([(TaskId(3), quick())], 1);
    within("the next task's end", rung.recv()).await;
    assert_eq!(pool.take_finished(), vec![(TaskId(3), Ok(()))]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_worker_gives_the_scheduler_a_turn_within_a_long_run_of_short_tasks() {
    let (mut pool, _rung) = ringing_pool();
    let jobs: Vec<_> = (1..=1000).map(|id| (TaskId(id), quick())).collect();
    pool.run(jobs, 1);
    // The worker was spawned first: the observer runs when the worker yields.
    let shared = pool.shared.clone();
    let observer = tokio::spawn(async move { super::lock(&shared.outcomes).len() });
    let ended_before = within("the observer's turn", observer)
        .await
        .expect("the observer runs");
    assert!(ended_before < 1000, "{ended_before} tasks ran in one turn");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_worker_reports_the_outcomes_it_kept_before_a_task_that_waits() {
    let (mut pool, mut rung) = ringing_pool();
    let (waiting, gate) = gated();
    pool.run(
        [
            (TaskId(1), quick()),
            (TaskId(2), quick()),
            (TaskId(3), waiting),
        ],
        1,
    );
    wait_started("the waiting task's start", gate.started).await;
    within("the ring", rung.recv()).await;
    assert_eq!(
        pool.take_finished(),
        vec![(TaskId(1), Ok(())), (TaskId(2), Ok(()))],
        "reported while the third task runs on"
    );
    drop(gate.release);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_worker_reports_within_a_long_run_of_short_tasks() {
    let (mut pool, _rung) = ringing_pool();
    // The task after the first REPORT_EVERY sees their outcomes reported.
    let (seen_sender, seen) = oneshot::channel();
    let shared = pool.shared.clone();
    let observer: Job = Box::pin(async move {
        let _ = seen_sender.send(super::lock(&shared.outcomes).len());
        Ok(())
    });
    let mut jobs: Vec<_> = (1..=super::REPORT_EVERY as u64)
        .map(|id| (TaskId(id), quick()))
        .collect();
    jobs.push((TaskId(100), observer));
    pool.run(jobs, 1);
    let reported = within("the observer's run", seen).await;
    assert_eq!(reported, Ok(super::REPORT_EVERY));
}
