//! ConsumerSupervisor: one task per event with `max_demand` as the limit on tasks
//! running at once, demand asked again in chunks of `min_demand`, transient and
//! temporary restarts, the task API (start/terminate/which/count), tasks outliving
//! their producer, and the shutdown policies.
//!
//! Tasks are driven by the test: each waits on a gate of its own (or on simulated work
//! in paused time) and records when it starts, ends, fails or is aborted. The tests run
//! on the current-thread runtime (except the one about concurrency): there a task's
//! last poll both records its end and casts `Done` to the supervisor, so a call to the
//! supervisor made after the test saw the record is handled after that `Done`.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gen_stage::supervisor::{Restart, Shutdown};
use gen_stage::{
    BoxError, CancelMode, ConsumerRef, ConsumerSupervisor, ExitReason, StageState, StartError,
    TaskCounts,
};
use gen_stage_test::{Counter, Gate, Recorded};
use support::{barrier, opts, recorded_counter, scripted_with, start_consumer, within};
use tokio::time::Instant;

type Sup = ConsumerRef<ConsumerSupervisor<u64>>;

// ---------------------------------------------------------------------------------------
// Controllable tasks
// ---------------------------------------------------------------------------------------

/// What one attempt of a task does once it passes its gate.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Fail,
    Panic,
}

/// The template's shared state: per-event gates and scripted failures, and records
/// of what the tasks did.
#[derive(Clone, Default)]
struct Jobs {
    /// Each attempt's event, when it starts running.
    started: Recorded<u64>,
    /// Events whose task returned `Ok`.
    finished: Recorded<u64>,
    /// Events whose attempt failed (error or panic).
    failed: Recorded<u64>,
    /// Events whose task was dropped before it ended (aborted).
    aborted: Recorded<u64>,
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
    sup: Arc<OnceLock<Sup>>,
    states_at_end: Recorded<StageState>,
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
    fn gated() -> Self {
        Jobs::default()
    }

    /// Tasks end at once.
    fn free() -> Self {
        Jobs {
            free: true,
            ..Jobs::default()
        }
    }

    /// Tasks take `work` of (paused) time, then end.
    fn working(work: Duration) -> Self {
        Jobs {
            work: Some(work),
            ..Jobs::free()
        }
    }

    /// The attempts of `event`'s task, in order, end this way (later ones succeed).
    fn script(self, event: u64, outcomes: &[Outcome]) -> Self {
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
    fn release(&self, event: u64) {
        self.gate(event).open(1);
    }

    fn supervisor(&self) -> ConsumerSupervisor<u64> {
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

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    fn attempts(&self, event: u64) -> usize {
        self.started
            .read(|s| s.iter().filter(|&&e| e == event).count())
    }

    async fn wait_started(&self, event: u64) {
        within(
            "the task starts",
            self.started.wait_until(|s| s.contains(&event)),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

async fn counts(sup: &Sup) -> TaskCounts {
    sup.count_children().await.expect("the supervisor answers")
}

async fn children(sup: &Sup) -> Vec<gen_stage::TaskId> {
    sup.which_children().await.expect("the supervisor answers")
}

/// (running, high_water_mark, restarts, failed, completed)
fn tally(c: TaskCounts) -> (usize, usize, usize, usize, usize) {
    (
        c.running,
        c.high_water_mark,
        c.restarts,
        c.failed,
        c.completed,
    )
}

fn sorted(mut values: Vec<u64>) -> Vec<u64> {
    values.sort_unstable();
    values
}

/// Returns once the supervisor has handled what was sent to it before, and the producer
/// has handled any demand the supervisor asked meanwhile.
async fn settle<K: gen_stage::kind::EmitsEvents>(sup: &Sup, producer: &gen_stage::StageRef<K>) {
    counts(sup).await;
    barrier(producer).await;
}

/// A supervisor of `jobs` with no subscription.
async fn start_alone(stage: ConsumerSupervisor<u64>) -> Sup {
    gen_stage::consumer(stage).start().await.expect("starts")
}

// ---------------------------------------------------------------------------------------
// Concurrency and demand
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_running_at_once_never_exceed_max_demand() {
    let jobs = Jobs::gated();
    let (producer, _demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(5, 2)).await;
    within("max_demand tasks start", jobs.started.wait_for_len(5)).await;
    settle(&sup, &producer).await;
    assert_eq!(sorted(jobs.started.snapshot()), vec![0, 1, 2, 3, 4]);
    assert_eq!(children(&sup).await.len(), 5);
    // Release the tasks one by one, in event order, as they start.
    for event in 0..40 {
        jobs.wait_started(event).await;
        jobs.release(event);
    }
    within("40 tasks finish", jobs.finished.wait_for_len(40)).await;
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
    let producer = gen_stage::from_iter(0..10u64).start().await.unwrap();
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
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(4, 2)).await;
    within("4 tasks start", jobs.started.wait_for_len(4)).await;
    settle(&sup, &producer).await;
    assert_eq!(demands.snapshot(), vec![4]);
    assert_eq!(jobs.started.len(), 4);
    assert_eq!(tally(counts(&sup).await), (4, 4, 0, 0, 0));
    // Still nothing after another round trip: the producer is held back.
    settle(&sup, &producer).await;
    assert_eq!(demands.snapshot(), vec![4]);
}

#[tokio::test]
async fn demand_is_asked_again_in_chunks_of_min_demand_as_tasks_finish() {
    let jobs = Jobs::gated();
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(6, 3)).await;
    within("6 tasks start", jobs.started.wait_for_len(6)).await;
    for (event, expected) in [(0, vec![6]), (1, vec![6]), (2, vec![6, 3])] {
        jobs.release(event);
        within(
            "the task ends",
            jobs.finished.wait_for_len(event as usize + 1),
        )
        .await;
        settle(&sup, &producer).await;
        assert_eq!(demands.snapshot(), expected, "after event {event} finished");
    }
    within("3 more tasks start", jobs.started.wait_for_len(9)).await;
    assert_eq!(sorted(jobs.started.snapshot()), (0..9).collect::<Vec<_>>());
    for event in [3, 4] {
        jobs.release(event);
    }
    within("two more end", jobs.finished.wait_for_len(5)).await;
    settle(&sup, &producer).await;
    // Only 2 slots free: below min_demand.
    assert_eq!(demands.snapshot(), vec![6, 3]);
    assert_eq!(tally(counts(&sup).await), (4, 6, 0, 0, 5));
}

#[tokio::test]
async fn min_demand_zero_asks_again_after_every_task() {
    let jobs = Jobs::gated();
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(3, 0)).await;
    within("3 tasks start", jobs.started.wait_for_len(3)).await;
    for event in 0..4u64 {
        jobs.release(event);
        within(
            "the task ends",
            jobs.finished.wait_for_len(event as usize + 1),
        )
        .await;
        settle(&sup, &producer).await;
        let mut expected = vec![3];
        expected.extend(std::iter::repeat_n(1, event as usize + 1));
        assert_eq!(demands.snapshot(), expected);
        within(
            "a new task starts",
            jobs.started.wait_for_len(event as usize + 4),
        )
        .await;
    }
    assert_eq!(counts(&sup).await.high_water_mark, 3);
}

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
    within("the tasks are aborted", jobs.aborted.wait_for_len(3)).await;
    assert_eq!(sorted(jobs.aborted.snapshot()), vec![0, 1, 2]);
    assert!(jobs.finished.is_empty());
}

#[tokio::test]
async fn each_subscription_has_its_own_slots() {
    let jobs = Jobs::gated();
    let (first, first_demands) = recorded_counter(Counter::new(0)).await;
    let (second, second_demands) = recorded_counter(Counter::new(100)).await;
    let sup = start_alone(jobs.supervisor()).await;
    sup.subscribe_to(&first, opts(2, 0)).await.unwrap();
    sup.subscribe_to(&second, opts(3, 0)).await.unwrap();
    within("5 tasks start", jobs.started.wait_for_len(5)).await;
    assert_eq!(sorted(jobs.started.snapshot()), vec![0, 1, 100, 101, 102]);
    jobs.release(101);
    within("event 101 ends", jobs.finished.wait_for_len(1)).await;
    settle(&sup, &first).await;
    barrier(&second).await;
    // The first producer's slots are all busy.
    assert_eq!(first_demands.snapshot(), vec![2]);
    assert_eq!(second_demands.snapshot(), vec![3, 1]);
    jobs.wait_started(103).await;
    assert_eq!(tally(counts(&sup).await), (5, 5, 0, 0, 1));
}

// ---------------------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------------------

/// A transient task fails once with `outcome`: it runs again with the same event, in
/// the same slot (no demand asked), and its success then frees the slot.
async fn transient_failure_runs_again_in_its_slot(outcome: Outcome) {
    let jobs = Jobs::gated().script(0, &[outcome]);
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let stage = jobs.supervisor().restart(Restart::Transient);
    let sup = start_consumer(stage, &producer, opts(2, 0)).await;
    within("2 tasks start", jobs.started.wait_for_len(2)).await;
    let ids = children(&sup).await;
    jobs.release(0);
    within("event 0 runs again", jobs.started.wait_for_len(3)).await;
    settle(&sup, &producer).await;
    assert_eq!(jobs.attempts(0), 2);
    assert_eq!(children(&sup).await, ids, "it keeps its id");
    assert_eq!(jobs.failed.snapshot(), vec![0]);
    // The restarted task keeps its slot.
    assert_eq!(demands.snapshot(), vec![2]);
    assert_eq!(tally(counts(&sup).await), (2, 2, 1, 0, 0));
    jobs.release(0);
    within("event 0 succeeds", jobs.finished.wait_for_len(1)).await;
    settle(&sup, &producer).await;
    assert_eq!(demands.snapshot(), vec![2, 1]);
    jobs.wait_started(2).await;
    assert_eq!(tally(counts(&sup).await), (2, 2, 1, 0, 1));
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
    let jobs = Jobs::gated()
        .script(0, &[Outcome::Fail])
        .script(1, &[Outcome::Fail]);
    let (producer, _record) = scripted_with(vec![0u64, 1]).await;
    let stage = jobs
        .supervisor()
        .restart(Restart::Transient)
        .intensity(1, Duration::from_secs(10));
    let sup = start_consumer(stage, &producer, opts(2, 0)).await;
    within("2 tasks start", jobs.started.wait_for_len(2)).await;
    jobs.release(0);
    within("event 0 runs again", jobs.started.wait_for_len(3)).await;
    tokio::time::advance(Duration::from_secs(11)).await;
    jobs.release(1);
    within("event 1 runs again", jobs.started.wait_for_len(4)).await;
    assert_eq!(tally(counts(&sup).await), (2, 2, 2, 0, 0));
    jobs.release(0);
    jobs.release(1);
    within("both succeed", jobs.finished.wait_for_len(2)).await;
    assert!(sup.is_alive());
}

#[tokio::test(start_paused = true)]
async fn transient_restarts_beyond_the_intensity_within_the_period_stop_the_supervisor() {
    let jobs = Jobs::gated()
        .script(0, &[Outcome::Fail])
        .script(1, &[Outcome::Fail]);
    let (producer, _record) = scripted_with(vec![0u64, 1]).await;
    let stage = jobs
        .supervisor()
        .restart(Restart::Transient)
        .intensity(1, Duration::from_secs(10))
        .shutdown(Shutdown::Kill);
    let sup = start_consumer(stage, &producer, opts(2, 0)).await;
    within("2 tasks start", jobs.started.wait_for_len(2)).await;
    jobs.release(0);
    within("event 0 runs again", jobs.started.wait_for_len(3)).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    jobs.release(1);
    let reason = within("the supervisor gives up", sup.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);
    // The restart past the intensity never ran.
    assert_eq!(jobs.attempts(1), 1);
    within(
        "event 0's second run is aborted",
        jobs.aborted.wait_for_len(1),
    )
    .await;
    assert_eq!(jobs.aborted.snapshot(), vec![0]);
}

#[tokio::test]
async fn temporary_failures_are_counted_and_not_run_again() {
    let jobs = Jobs::gated()
        .script(0, &[Outcome::Fail])
        .script(1, &[Outcome::Panic]);
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    // Temporary is the default.
    let sup = start_consumer(jobs.supervisor(), &producer, opts(2, 0)).await;
    within("2 tasks start", jobs.started.wait_for_len(2)).await;
    jobs.release(0);
    jobs.release(1);
    within("both fail", jobs.failed.wait_for_len(2)).await;
    settle(&sup, &producer).await;
    assert_eq!(tally(counts(&sup).await), (2, 2, 0, 2, 0));
    assert_eq!(jobs.attempts(0), 1);
    assert_eq!(jobs.attempts(1), 1);
    // Their slots are free: the producer was asked for one event per failed task.
    assert_eq!(demands.snapshot(), vec![2, 1, 1]);
    within("events 2 and 3 start", jobs.started.wait_for_len(4)).await;
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
    assert_eq!(tally(counts(&sup).await), (1, 1, 0, 0, 0));
    jobs.release(42);
    within("the task ends", jobs.finished.wait_for_len(1)).await;
    assert_eq!(children(&sup).await, vec![]);
    assert_eq!(tally(counts(&sup).await), (0, 1, 0, 0, 1));
    assert!(
        !sup.terminate_child(id).await.unwrap(),
        "not running any more"
    );
    assert_eq!(counts(&sup).await.completed, 1);
}

#[tokio::test]
async fn start_child_runs_beyond_demand_and_its_end_asks_nothing() {
    let jobs = Jobs::gated();
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(2, 0)).await;
    within("2 tasks start", jobs.started.wait_for_len(2)).await;
    sup.start_child(100).await.unwrap();
    jobs.wait_started(100).await;
    assert_eq!(tally(counts(&sup).await), (3, 3, 0, 0, 0));
    jobs.release(100);
    within("the extra task ends", jobs.finished.wait_for_len(1)).await;
    settle(&sup, &producer).await;
    // No slot of the producer was freed.
    assert_eq!(demands.snapshot(), vec![2]);
    assert_eq!(tally(counts(&sup).await), (2, 3, 0, 0, 1));
}

#[tokio::test]
async fn which_children_lists_running_task_ids_in_start_order() {
    let jobs = Jobs::gated();
    let (producer, _demands) = scripted_with(vec![10u64, 11, 12]).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(3, 0)).await;
    within("3 tasks start", jobs.started.wait_for_len(3)).await;
    let ids = children(&sup).await;
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    jobs.release(11);
    within("event 11 ends", jobs.finished.wait_for_len(1)).await;
    assert_eq!(children(&sup).await, vec![ids[0], ids[2]]);
}

#[tokio::test]
async fn terminate_child_aborts_the_task_and_frees_its_slot() {
    let jobs = Jobs::gated();
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_consumer(jobs.supervisor(), &producer, opts(2, 0)).await;
    within("2 tasks start", jobs.started.wait_for_len(2)).await;
    let ids = children(&sup).await;
    assert!(sup.terminate_child(ids[0]).await.unwrap());
    within("event 0 is aborted", jobs.aborted.wait_for_len(1)).await;
    assert_eq!(jobs.aborted.snapshot(), vec![0]);
    barrier(&producer).await;
    // Its slot was asked for again.
    assert_eq!(demands.snapshot(), vec![2, 1]);
    jobs.wait_started(2).await;
    let counts = counts(&sup).await;
    assert_eq!((counts.running, counts.failed, counts.completed), (2, 0, 0));
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
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let stage = jobs.supervisor().restart(Restart::Transient);
    let sup = start_consumer(stage, &producer, opts(1, 0)).await;
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
// Tasks outlive their producer
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tasks_outlive_a_cancelled_subscription_and_free_no_demand() {
    let jobs = Jobs::gated();
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let sup = start_alone(jobs.supervisor()).await;
    let tag = sup.subscribe_to(&producer, opts(3, 0)).await.unwrap();
    within("3 tasks start", jobs.started.wait_for_len(3)).await;
    sup.cancel(tag, ExitReason::Shutdown).unwrap();
    counts(&sup).await;
    (0..3).for_each(|event| jobs.release(event));
    within("the tasks end", jobs.finished.wait_for_len(3)).await;
    settle(&sup, &producer).await;
    assert_eq!(tally(counts(&sup).await), (0, 3, 0, 0, 3));
    assert!(jobs.aborted.is_empty());
    // Nothing asked of a cancelled producer.
    assert_eq!(demands.snapshot(), vec![3]);
    assert!(sup.is_alive() && producer.is_alive());
}

#[tokio::test]
async fn tasks_outlive_a_producer_that_stops_with_a_temporary_subscription() {
    let jobs = Jobs::gated();
    let (producer, _demands) = recorded_counter(Counter::new(0)).await;
    let options = opts(3, 1).cancel(CancelMode::Temporary);
    let sup = start_consumer(jobs.supervisor(), &producer, options).await;
    within("3 tasks start", jobs.started.wait_for_len(3)).await;
    producer.stop(ExitReason::Shutdown).await.unwrap();
    (0..3).for_each(|event| jobs.release(event));
    within("the tasks end", jobs.finished.wait_for_len(3)).await;
    assert_eq!(tally(counts(&sup).await), (0, 3, 0, 0, 3));
    assert!(jobs.aborted.is_empty());
    assert!(sup.is_alive());
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

/// Starts a supervisor fed `events` and waits until a task runs for each.
async fn running(stage: ConsumerSupervisor<u64>, jobs: &Jobs, events: Vec<u64>) -> Sup {
    let count = events.len();
    let (producer, _record) = scripted_with(events).await;
    let sup = start_consumer(stage, &producer, opts(10, 5)).await;
    within("the tasks start", jobs.started.wait_for_len(count)).await;
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
    within("event 1 is aborted", jobs.aborted.wait_for_len(1)).await;
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
async fn kill_stop_aborts_running_tasks_at_once() {
    let jobs = Jobs::gated();
    let stage = jobs.supervisor().shutdown(Shutdown::Kill);
    let sup = running(stage, &jobs, vec![0, 1, 2]).await;
    assert_eq!(timed_stop(&sup).await, Duration::ZERO);
    within("the tasks are aborted", jobs.aborted.wait_for_len(3)).await;
    assert_eq!(sorted(jobs.aborted.snapshot()), vec![0, 1, 2]);
    assert!(jobs.finished.is_empty());
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
