//! Controllable tasks for the `ConsumerSupervisor` tests, and small helpers around a
//! supervisor.
//!
//! Tasks are driven by the test: each waits on a gate of its own (or on simulated work
//! in paused time) and records when it starts, ends, fails or is aborted. On the
//! current-thread runtime a task's last poll both records its end and casts `Done` to
//! the supervisor, so a call to the supervisor made after the test saw the record is
//! handled after that `Done`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gen_stage::kind::EmitsEvents;
use gen_stage::stats::StageState;
use gen_stage::supervision::{ConsumerSupervisor, TaskCounts, TaskId};
use gen_stage::{BoxError, ConsumerRef, ProducerRef, StageRef, SubscribeOptions};
use gen_stage_test::{Counter, Gate, Recorded};

use crate::support::{barrier, recorded_counter, start_consumer, within};

/// A started `ConsumerSupervisor` of `u64` events.
pub(crate) type Sup = ConsumerRef<ConsumerSupervisor<u64>>;

/// What one attempt of a task does once it passes its gate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Fail,
    Panic,
}

/// The template's shared state: per-event gates and scripted failures, and records
/// of what the tasks did.
#[derive(Clone, Default)]
pub(crate) struct Jobs {
    /// Each attempt's event, when it starts running.
    pub(crate) started: Recorded<u64>,
    /// Events whose task returned `Ok`.
    pub(crate) finished: Recorded<u64>,
    /// Events whose attempt failed (error or panic).
    pub(crate) failed: Recorded<u64>,
    /// Events whose task was dropped before it ended (aborted).
    pub(crate) aborted: Recorded<u64>,
    gates: Arc<Mutex<HashMap<u64, Gate>>>,
    outcomes: Arc<Mutex<HashMap<u64, VecDeque<Outcome>>>>,
    /// Gates let everyone through.
    free: bool,
    /// Simulated work (paused time) before the gate.
    work: Option<Duration>,
    /// An independent measure of the tasks running at once, and its maximum.
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// The supervisor, once started: tasks record its state when they end.
    pub(crate) sup: Arc<OnceLock<Sup>>,
    pub(crate) states_at_end: Recorded<StageState>,
}

/// Counts a task as running while it lives; reports it aborted if dropped early.
struct Alive {
    jobs: Jobs,
    event: u64,
    ended: bool,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.jobs.running.fetch_sub(1, Ordering::SeqCst);
        if !self.ended {
            self.jobs.aborted.push(self.event);
        }
    }
}

impl Jobs {
    /// Each task waits until the test releases its event.
    pub(crate) fn gated() -> Self {
        Jobs::default()
    }

    /// Tasks end at once.
    pub(crate) fn free() -> Self {
        Jobs {
            free: true,
            ..Jobs::default()
        }
    }

    /// Tasks take `work` of (paused) time, then end.
    pub(crate) fn working(work: Duration) -> Self {
        Jobs {
            work: Some(work),
            ..Jobs::free()
        }
    }

    /// The attempts of `event`'s task, in order, end this way (later ones succeed).
    pub(crate) fn script(self, event: u64, outcomes: &[Outcome]) -> Self {
        let outcomes = outcomes.iter().copied().collect();
        self.outcomes.lock().expect("lock").insert(event, outcomes);
        self
    }

    fn gate(&self, event: u64) -> Gate {
        if self.free {
            return Gate::opened();
        }
        let mut gates = self.gates.lock().expect("lock");
        gates.entry(event).or_insert_with(Gate::closed).clone()
    }

    /// Lets one attempt of `event`'s task end.
    pub(crate) fn release(&self, event: u64) {
        self.gate(event).open(1);
    }

    /// A supervisor whose template runs these jobs.
    pub(crate) fn supervisor(&self) -> ConsumerSupervisor<u64> {
        let jobs = self.clone();
        ConsumerSupervisor::new(move |event| jobs.clone().run(event))
    }

    async fn run(self, event: u64) -> Result<(), BoxError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let mut alive = Alive {
            jobs: self.clone(),
            event,
            ended: false,
        };
        self.started.push(event);
        if let Some(work) = self.work {
            tokio::time::sleep(work).await;
        }
        self.gate(event).pass().await;
        let outcome = self
            .outcomes
            .lock()
            .expect("lock")
            .get_mut(&event)
            .and_then(VecDeque::pop_front);
        alive.ended = true;
        if let Some(sup) = self.sup.get() {
            self.states_at_end.push(sup.stats().state);
        }
        match outcome {
            None => {
                self.finished.push(event);
                Ok(())
            }
            Some(Outcome::Fail) => {
                self.failed.push(event);
                Err(format!("job {event} failed").into())
            }
            Some(Outcome::Panic) => {
                self.failed.push(event);
                panic!("job {event} panicked")
            }
        }
    }

    /// The most tasks that ever ran at once.
    pub(crate) fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    pub(crate) fn attempts(&self, event: u64) -> usize {
        self.started
            .read(|s| s.iter().filter(|&&e| e == event).count())
    }

    pub(crate) async fn wait_started(&self, event: u64) {
        let started = self.started.wait_until(|s| s.contains(&event));
        within(&format!("the task of event {event} starts"), started).await;
    }

    /// Waits until `count` attempts have started in all.
    pub(crate) async fn wait_starts(&self, count: usize) {
        let what = format!("{count} attempts start");
        within(&what, self.started.wait_for_len(count)).await;
    }

    /// Waits until `count` tasks have finished in all.
    pub(crate) async fn wait_finished(&self, count: usize) {
        let what = format!("{count} tasks finish");
        within(&what, self.finished.wait_for_len(count)).await;
    }

    /// Waits until `count` tasks have been aborted in all.
    pub(crate) async fn wait_aborted(&self, count: usize) {
        let what = format!("{count} tasks are aborted");
        within(&what, self.aborted.wait_for_len(count)).await;
    }
}

/// Starts `stage` subscribed to an endless counter with `options`; returns the
/// supervisor, the counter and the demands it was asked.
pub(crate) async fn fed_by_counter(
    stage: ConsumerSupervisor<u64>,
    options: SubscribeOptions,
) -> (Sup, ProducerRef<Counter>, Recorded<usize>) {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(stage, &producer, options).await;
    (sup, producer, demands)
}

/// A supervisor with no subscription.
pub(crate) async fn start_alone(stage: ConsumerSupervisor<u64>) -> Sup {
    gen_stage::consumer(stage).start().await.expect("starts")
}

pub(crate) async fn counts(sup: &Sup) -> TaskCounts {
    sup.count_children().await.expect("the supervisor answers")
}

pub(crate) async fn children(sup: &Sup) -> Vec<TaskId> {
    sup.which_children().await.expect("the supervisor answers")
}

/// (running, high_water_mark, restarts, failed, completed)
pub(crate) async fn tally(sup: &Sup) -> (usize, usize, usize, usize, usize) {
    let c = counts(sup).await;
    (
        c.running,
        c.high_water_mark,
        c.restarts,
        c.failed,
        c.completed,
    )
}

pub(crate) fn sorted(mut values: Vec<u64>) -> Vec<u64> {
    values.sort_unstable();
    values
}

/// Returns once the supervisor has handled what was sent to it before, and the producer
/// has handled any demand the supervisor asked meanwhile.
pub(crate) async fn settle<K: EmitsEvents>(sup: &Sup, producer: &StageRef<K>) {
    counts(sup).await;
    barrier(producer).await;
}
