//! Logging workers for the `Supervisor` tests: a consumer child that reports every start
//! and stop, child specs for it, and helpers that read a supervisor's children.

use gen_stage::supervision::{ChildEvent, ChildEvents, ChildSpec, Supervisor, SupervisorRef};
use gen_stage::{
    BoxError, Consumer, ConsumerContext, ConsumerRef, ExitReason, Init, Registry, SubscribeOptions,
    SubscriptionTag,
};
use gen_stage_test::{Gate, Recorded};

use super::within;

/// What every incarnation of every worker reported, in order.
#[derive(Clone, Default)]
pub(crate) struct Log {
    pub(crate) starts: Recorded<(&'static str, ConsumerRef<Worker>)>,
    pub(crate) terminated: Recorded<(&'static str, ExitReason)>,
    /// Each batch as it reached `handle_events`, before it was handled.
    pub(crate) seen: Recorded<Vec<u64>>,
    /// Each event handled to the end.
    pub(crate) handled: Recorded<u64>,
}

/// A consumer child: it logs its start (from `init`) and its `terminate`, panics on a
/// `Crash` message or on a batch holding a poison event, and can be made to fail or
/// ignore its start, or to hang in `terminate` until a gate opens.
#[derive(Clone)]
pub(crate) struct Worker {
    pub(crate) id: &'static str,
    log: Log,
    pub(crate) poison: Vec<u64>,
    /// `init` fails once this many starts of this worker were logged.
    pub(crate) fail_from: Option<usize>,
    pub(crate) ignore: bool,
    pub(crate) terminate_gate: Gate,
}

pub(crate) struct Crash;

impl Worker {
    pub(crate) fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self
    }
}

impl Log {
    pub(crate) fn worker(&self, id: &'static str) -> Worker {
        Worker {
            id,
            log: self.clone(),
            poison: Vec::new(),
            fail_from: None,
            ignore: false,
            terminate_gate: Gate::opened(),
        }
    }

    pub(crate) fn start_ids(&self) -> Vec<&'static str> {
        self.starts.read(|s| s.iter().map(|(id, _)| *id).collect())
    }

    pub(crate) fn start_count(&self, id: &str) -> usize {
        self.starts
            .read(|s| s.iter().filter(|(i, _)| *i == id).count())
    }

    pub(crate) fn incarnations(&self, id: &str) -> Vec<ConsumerRef<Worker>> {
        let mut starts = self.starts.snapshot();
        starts.retain(|(i, _)| *i == id);
        starts.into_iter().map(|(_, w)| w).collect()
    }

    /// The latest incarnation of `id`.
    pub(crate) fn current(&self, id: &str) -> ConsumerRef<Worker> {
        self.incarnations(id).pop().expect("started")
    }

    pub(crate) async fn wait_starts(&self, count: usize) {
        within("starts", self.starts.wait_for_len(count)).await;
    }

    pub(crate) fn terminated_ids(&self) -> Vec<&'static str> {
        self.terminated
            .read(|t| t.iter().map(|(id, _)| *id).collect())
    }

    pub(crate) fn terminate_reasons(&self) -> Vec<ExitReason> {
        self.terminated
            .read(|t| t.iter().map(|(_, r)| r.clone()).collect())
    }

    /// Makes the current `id` panic and returns its exit reason.
    pub(crate) async fn crash(&self, id: &str) -> ExitReason {
        let worker = self.current(id);
        assert!(worker.cast(Crash).is_ok(), "{id} is not running");
        within("the crash", worker.stopped()).await
    }

    /// Crashes `id` and waits for the restart, the `starts`-th start in all.
    pub(crate) async fn crash_and_restart(&self, id: &str, starts: usize) {
        self.crash(id).await;
        self.wait_starts(starts).await;
    }
}

impl Consumer for Worker {
    type Event = u64;
    type Message = Crash;

    async fn init(&mut self, ctx: &mut ConsumerContext<'_, Self>) -> Result<Init, BoxError> {
        if self.ignore {
            return Ok(Init::Ignore);
        }
        if self
            .fail_from
            .is_some_and(|n| self.log.start_count(self.id) >= n)
        {
            return Err(format!("{} cannot start", self.id).into());
        }
        self.log.starts.push((self.id, ctx.stage_ref().clone()));
        Ok(Init::Start)
    }

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.log.seen.push(events.clone());
        if events.iter().any(|event| self.poison.contains(event)) {
            panic!("poisoned batch {events:?}");
        }
        self.log.handled.update(|handled| handled.extend(events));
        Ok(())
    }

    async fn handle_message(
        &mut self,
        _: Crash,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        panic!("{} crashed on request", self.id)
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        self.log.terminated.push((self.id, reason.clone()));
        self.terminate_gate.pass().await;
    }
}

/// The reason of a worker that crashed on request.
pub(crate) fn panicked(id: &str) -> ExitReason {
    ExitReason::Panic(format!("{id} crashed on request").into())
}

pub(crate) fn spec(worker: Worker) -> ChildSpec {
    ChildSpec::new(worker.id, move || {
        gen_stage::consumer(worker.clone()).start()
    })
}

/// A worker that subscribes to "numbers" by name at every start.
pub(crate) fn subscriber(
    worker: Worker,
    registry: &Registry,
    options: SubscribeOptions,
) -> ChildSpec {
    let registry = registry.clone();
    ChildSpec::new(worker.id, move || {
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
pub(crate) async fn workers(log: &Log, ids: &[&'static str]) -> SupervisorRef {
    let specs = ids.iter().map(|id| spec(log.worker(id))).collect();
    supervise(Supervisor::new(), specs).await
}

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

pub(crate) async fn assert_children(supervisor: &SupervisorRef, expected: &[(&str, bool, usize)]) {
    assert_eq!(children(supervisor).await, rows(expected));
}

pub(crate) async fn gives_up(supervisor: &SupervisorRef) {
    let reason = within("the supervisor gives up", supervisor.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);
}
