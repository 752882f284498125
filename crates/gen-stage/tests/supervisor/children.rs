//! The supervised children of these tests, and what a test reads of them.
//!
//! A worker is a named `CollectingConsumer<u64>`; every worker of a test fills the
//! same record (its `Workers`), each incarnation recording its start (with its handle)
//! and its exit there, so that a test sees the order of starts and exits across
//! children. Its spec starts a clone of it at each (re)start.

use gen_stage::supervision::{ChildEvent, ChildEvents, ChildSpec, Supervisor, SupervisorRef};
use gen_stage::{ConsumerRef, ExitReason, Registry, SubscribeOptions};
use gen_stage_test::{CollectingConsumer, Record, Request, Watch};

use crate::support::within;

/// A supervised consumer: see the module's doc.
pub(crate) type Worker = CollectingConsumer<u64>;

/// The record every worker of a test fills.
pub(crate) type Workers = Watch<Record<u64>>;

/// A worker named `id` that fills `workers`.
pub(crate) fn worker(workers: &Workers, id: &'static str) -> Worker {
    CollectingConsumer::sharing(workers).named(id)
}

/// A child that starts a clone of `worker` at each (re)start.
pub(crate) fn spec(worker: Worker) -> ChildSpec {
    let id = worker.name().expect("a named worker");
    ChildSpec::new(id, move || gen_stage::consumer(worker.clone()).start())
}

/// A child that subscribes to "numbers" by name at each (re)start.
pub(crate) fn subscriber(
    worker: Worker,
    registry: &Registry,
    options: SubscribeOptions,
) -> ChildSpec {
    let id = worker.name().expect("a named worker");
    let registry = registry.clone();
    ChildSpec::new(id, move || {
        gen_stage::consumer(worker.clone())
            .subscribe_to_name(&registry, "numbers", options.clone())
            .start()
    })
}

/// Starts `supervisor` with `children`.
pub(crate) async fn supervise(supervisor: Supervisor, children: Vec<ChildSpec>) -> SupervisorRef {
    let supervisor = children.into_iter().fold(supervisor, Supervisor::child);
    supervisor.start().await.expect("the children start")
}

/// A default supervisor (one-for-one, 3 restarts in 5 s) over plain workers.
pub(crate) async fn supervise_workers(workers: &Workers, ids: &[&'static str]) -> SupervisorRef {
    let specs = ids.iter().map(|id| spec(worker(workers, id))).collect();
    supervise(Supervisor::new(), specs).await
}

// --- Reading the workers' record -------------------------------------------------------

/// The name of each start, in order.
pub(crate) fn start_names(workers: &Workers) -> Vec<&'static str> {
    workers.read(|r| r.starts.iter().map(|(id, _)| *id).collect())
}

/// The latest incarnation of `id`.
pub(crate) fn current(workers: &Workers, id: &str) -> ConsumerRef<Worker> {
    workers.incarnations(id).pop().expect("started")
}

/// Whether every incarnation that ever started has stopped.
pub(crate) fn none_alive(workers: &Workers) -> bool {
    workers.read(|r| r.starts.iter().all(|(_, stage)| !stage.is_alive()))
}

/// Each exit, in order: the worker and its reason.
pub(crate) fn exits(workers: &Workers) -> Vec<(&'static str, ExitReason)> {
    workers.read(|r| r.exits.clone())
}

/// The worker of each exit, in order.
pub(crate) fn exit_names(workers: &Workers) -> Vec<&'static str> {
    workers.read(|r| r.exits.iter().map(|(id, _)| *id).collect())
}

/// The reason of each exit, in order.
pub(crate) fn exit_reasons(workers: &Workers) -> Vec<ExitReason> {
    workers.read(|r| r.exits.iter().map(|(_, reason)| reason.clone()).collect())
}

/// Every batch delivered to the workers, handled or not (a batch a worker panicked
/// on), in the order of their first events.
pub(crate) fn delivered(workers: &Workers) -> Vec<Vec<u64>> {
    let mut all = workers.read(|r| {
        let all = r.batches.iter().chain(&r.trapped);
        all.map(|(_, batch)| batch.clone()).collect::<Vec<_>>()
    });
    all.sort_unstable_by_key(|batch| batch.first().copied());
    all
}

// --- Crashes ---------------------------------------------------------------------------

/// The reason of a worker that crashed on request.
pub(crate) fn crashed() -> ExitReason {
    ExitReason::Panic("panics on request".into())
}

/// Makes the current `id` panic and returns its exit reason.
pub(crate) async fn crash(workers: &Workers, id: &str) -> ExitReason {
    let worker = current(workers, id);
    assert!(worker.cast(Request::Panic).is_ok(), "{id} is not running");
    within("the crash", worker.stopped()).await
}

/// Crashes `id` and waits for the restart, the `starts`-th start in all.
pub(crate) async fn crash_and_restart(workers: &Workers, id: &str, starts: usize) {
    crash(workers, id).await;
    workers.wait_for_starts(starts).await;
}

// --- The supervisor's side -------------------------------------------------------------

/// A child as `which_children` reports it: (id, running, restarts).
pub(crate) type Row = (String, bool, usize);

pub(crate) fn rows(expected: &[(&str, bool, usize)]) -> Vec<Row> {
    expected
        .iter()
        .map(|&(id, up, n)| (id.into(), up, n))
        .collect()
}

pub(crate) async fn children(supervisor: &SupervisorRef) -> Vec<Row> {
    let children = supervisor.which_children().await;
    let children = children.expect("the supervisor runs");
    children
        .into_iter()
        .map(|c| (c.id, c.running, c.restarts))
        .collect()
}

pub(crate) async fn assert_children(supervisor: &SupervisorRef, expected: &[(&str, bool, usize)]) {
    assert_eq!(children(supervisor).await, rows(expected));
}

pub(crate) async fn gives_up(supervisor: &SupervisorRef) {
    let reason = within("the supervisor gives up", supervisor.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);
}

/// The watcher's next event, which must come, none missed.
pub(crate) async fn next_event(events: &mut ChildEvents) -> ChildEvent {
    let next = within("the next child event", events.next()).await;
    next.expect("the supervisor runs").expect("no event missed")
}

/// Reads the watcher's events until each child in `ids` has exited gracefully, which
/// for a transient child is for good (it is not restarted).
pub(crate) async fn until_ended_gracefully(events: &mut ChildEvents, ids: &[&str]) {
    let mut ended = Vec::new();
    while !ids.iter().all(|id| ended.iter().any(|e: &String| e == id)) {
        match next_event(events).await {
            ChildEvent::Exited { id, reason } if reason.is_graceful() => ended.push(id),
            ChildEvent::Restarted { id } => ended.retain(|e| *e != id),
            _ => {}
        }
    }
}
