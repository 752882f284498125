//! The worker tasks that run a [`ConsumerSupervisor`](super::ConsumerSupervisor)'s
//! tasks.
//!
//! Spawning a tokio task per event costs more than most short tasks themselves (the
//! runtime's task list, the allocation, the join handle). The pool instead keeps
//! worker tasks that take the events from a queue, one at a time each, run the
//! template's future for each in place (no allocation per task), and stay for the
//! next. It grows to as many workers as tasks ever ran at once, so that no task waits
//! for another to end: every queued task has a worker that is idle (and woken) or new
//! or about to finish the task it runs.
//!
//! The workers and the supervisor coordinate through a lock, atomics and wakes written
//! by hand; `pool/loom_tests.rs` model-checks them with loom (see the README).

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::{OnceLock, PoisonError};
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::TaskId;
use crate::exit::{BoxError, ExitReason};
use crate::sync::task::{self, JoinHandle};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicWaker, Mutex, MutexGuard, Notify, Ordering};

/// How one task ended.
pub(super) type TaskOutcome = (TaskId, Result<(), TaskFailure>);

/// Why a task failed.
#[derive(Debug, PartialEq)]
pub(super) enum TaskFailure {
    /// The template panicked for its event: the task never started (GenStage's start
    /// error, which is counted and never restarted).
    Start(ExitReason),
    /// Its future returned an error or panicked (in a poll or in its drop).
    Run(ExitReason),
}

/// Starts a worker; the template's own types live inside.
type StartWorker<E> = Box<dyn Fn(Arc<Shared<E>>, Arc<WorkerState>) -> JoinHandle<()> + Send + Sync>;

/// The workers, and what they share with the supervisor.
pub(super) struct Pool<E> {
    shared: Arc<Shared<E>>,
    workers: Vec<Worker>,
    start_worker: StartWorker<E>,
}

struct Worker {
    task: JoinHandle<()>,
    state: Arc<WorkerState>,
}

struct Shared<E> {
    /// The events of the tasks not yet taken by a worker.
    queue: Mutex<VecDeque<(TaskId, E)>>,
    /// Idle workers wait here for tasks.
    work: Notify,
    /// Outcomes of finished tasks, gathered between two looks of the supervisor: only
    /// the worker that finds the list empty rings, so a burst of completions costs the
    /// supervisor one message, not one each. Workers add theirs in runs (see
    /// [`work`]).
    outcomes: Mutex<Vec<TaskOutcome>>,
    /// Tells the supervisor that outcomes wait (set once the stage has its handle).
    ring: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Set while the supervisor waits for the tasks to end: workers then tell `drained`
    /// each time they end one.
    draining: AtomicBool,
    drained: Notify,
}

/// What the supervisor sees of one worker.
#[derive(Default)]
struct WorkerState {
    /// The task it runs (its id), 0 when idle. Set under the queue's lock when the
    /// worker takes a task, so that a task is always either queued or seen here.
    current: AtomicU64,
    /// A task to abort: the worker drops that task's work if it is the one it runs.
    abort: AtomicU64,
    /// Wakes the worker's task for an abort.
    waker: AtomicWaker,
    /// Rung when the worker ended a task it was asked to abort.
    ended: Notify,
}

/// Locks a pool mutex. Nothing panics while one is held (pushes, pops and scans), so a
/// poisoned one is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E: Send + 'static> Pool<E> {
    /// A pool whose tasks run `template(event)`.
    pub(super) fn new<F, Fut>(template: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let template = Arc::new(template);
        Pool {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                work: Notify::new(),
                outcomes: Mutex::new(Vec::new()),
                ring: OnceLock::new(),
                draining: AtomicBool::new(false),
                drained: Notify::new(),
            }),
            workers: Vec::new(),
            start_worker: Box::new(move |shared, state| {
                task::spawn(work(shared, state, template.clone()))
            }),
        }
    }

    /// Sets how workers tell the supervisor that outcomes wait (once, at start).
    pub(super) fn set_ring(&self, ring: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.ring.set(Box::new(ring));
    }

    /// Queues tasks. `running` counts the tasks that need a worker, these included:
    /// the pool grows to that many.
    pub(super) fn run(&mut self, tasks: impl IntoIterator<Item = (TaskId, E)>, running: usize) {
        let was_empty = {
            let mut queue = lock(&self.shared.queue);
            let was_empty = queue.is_empty();
            queue.extend(tasks);
            was_empty
        };
        let grows = self.workers.len() < running;
        while self.workers.len() < running {
            // A new worker looks at the queue first.
            let state = Arc::new(WorkerState::default());
            let task = (self.start_worker)(self.shared.clone(), state.clone());
            self.workers.push(Worker { task, state });
        }
        if was_empty && !grows {
            // One wake per burst: the worker woken passes it on if tasks remain.
            self.shared.work.notify_one();
        }
    }

    /// The outcomes of the tasks that finished since the last call.
    pub(super) fn take_finished(&self) -> Vec<TaskOutcome> {
        std::mem::take(&mut *lock(&self.shared.outcomes))
    }

    /// Aborts task `id` and waits until it has ended; its outcome is not reported. A
    /// task still queued is dropped; one that already ended is left as it is.
    pub(super) async fn terminate(&self, id: TaskId) {
        let worker = {
            let mut queue = lock(&self.shared.queue);
            if let Some(at) = queue.iter().position(|(queued, _)| *queued == id) {
                let removed = queue.remove(at);
                drop(queue);
                if let Some((_, event)) = removed {
                    // Never started: a panic in its drop is nobody's outcome.
                    let _ = drop_caught(event);
                }
                return;
            }
            self.workers
                .iter()
                .find(|worker| worker.state.current.load(Ordering::SeqCst) == id.0)
        };
        let Some(worker) = worker else { return };
        let state = &worker.state;
        state.abort.store(id.0, Ordering::SeqCst);
        state.waker.wake();
        loop {
            let mut ended = pin!(state.ended.notified());
            ended.as_mut().enable();
            if state.current.load(Ordering::SeqCst) != id.0 {
                return;
            }
            ended.await;
        }
    }

    /// Lets the tasks (queued ones included) run until they have all ended or
    /// `deadline` passes (`None`: no limit), then aborts the workers and waits for
    /// them: no task runs on after this returns.
    pub(super) async fn shutdown(&mut self, deadline: Option<Instant>) {
        self.shared.draining.store(true, Ordering::SeqCst);
        loop {
            let mut drained = pin!(self.shared.drained.notified());
            drained.as_mut().enable();
            if self.is_idle() {
                break;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, drained).await.is_err() {
                        break;
                    }
                }
                None => drained.await,
            }
        }
        for worker in &self.workers {
            worker.task.abort();
        }
        for worker in &mut self.workers {
            let _ = (&mut worker.task).await;
        }
        self.workers.clear();
        // Tasks still queued at the deadline never start.
        let queued = std::mem::take(&mut *lock(&self.shared.queue));
        for (_, event) in queued {
            let _ = drop_caught(event);
        }
    }

    fn is_idle(&self) -> bool {
        let queue = lock(&self.shared.queue);
        queue.is_empty()
            && self
                .workers
                .iter()
                .all(|worker| worker.state.current.load(Ordering::SeqCst) == 0)
    }
}

impl<E> Drop for Pool<E> {
    /// A pool that goes away without a shutdown (its supervisor was killed) takes its
    /// tasks with it: none outlives it unsupervised.
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.task.abort();
        }
    }
}

/// A worker's loop: take a task, run it, report how it ended; wait when none is queued.
///
/// Wakes go one at a time: the pool wakes one idle worker when a task arrives in an
/// empty queue (or starts a worker), and a worker just woken (or started) wakes the
/// next if it leaves tasks behind. So while tasks are queued, one worker is always on
/// its way to them (or a wake is stored for the next worker to wait), and none waits
/// for another task to end. A busy worker looks at the queue as soon as it ends its
/// task, so a burst of short tasks is mostly run by the workers already awake, without
/// a wake-up each.
///
/// A worker keeps the outcomes of its tasks and reports them together: when it finds
/// the queue empty, when a task it runs waits, and after [`REPORT_EVERY`] tasks. A
/// burst of short tasks then costs one lock of the outcomes and one ring, not one each
/// (this took the `consumer_supervisor` benchmark from 1.7 to 3.1 M tasks/s). The
/// price: a task that runs long in one poll (computing, or blocking its thread)
/// delays the report of the tasks its worker ran before it, up to that many, for as
/// long as that poll lasts; a task that waits delays nothing.
async fn work<E, F, Fut>(shared: Arc<Shared<E>>, state: Arc<WorkerState>, template: Arc<F>)
where
    F: Fn(E) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let mut woken = true;
    let mut ended = Vec::new();
    loop {
        let (next, more) = {
            let mut queue = lock(&shared.queue);
            let next = queue.pop_front();
            if let Some((id, _)) = &next {
                state.current.store(id.0, Ordering::SeqCst);
            }
            (next, !queue.is_empty())
        };
        if std::mem::take(&mut woken) && more {
            shared.work.notify_one();
        }
        if next.is_none() || ended.len() >= REPORT_EVERY {
            report(&shared, &mut ended);
        }
        let Some((id, event)) = next else {
            let mut notified = pin!(shared.work.notified());
            notified.as_mut().enable();
            if lock(&shared.queue).is_empty() {
                notified.await;
            }
            woken = true;
            continue;
        };
        let outcome = run_task(&*template, event, &state, id.0, || {
            report(&shared, &mut ended)
        })
        .await;
        state.current.store(0, Ordering::SeqCst);
        if state.abort.load(Ordering::SeqCst) == id.0 {
            // Terminated on request: the supervisor has already counted it.
            state.ended.notify_one();
        } else if let Some(outcome) = outcome {
            ended.push((id, outcome));
        }
        if shared.draining.load(Ordering::SeqCst) {
            shared.drained.notify_one();
        }
        // Tasks that end in their first poll never spend the worker's cooperative
        // budget: this gives the scheduler a turn every so many of them, as a task
        // spawned for each would.
        task::consume_budget().await;
    }
}

/// Runs one task on its worker, in place: `Some` with how it ended, `None` if it was
/// aborted. A template that panics for the event is a task that failed to start.
async fn run_task<E, F, Fut>(
    template: &F,
    event: E,
    state: &WorkerState,
    id: u64,
    before_waiting: impl FnOnce() + Unpin,
) -> Option<Result<(), TaskFailure>>
where
    F: Fn(E) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let made = std::panic::catch_unwind(AssertUnwindSafe(|| template(event)));
    let job = match made {
        Ok(job) => job,
        Err(panic) => return Some(Err(TaskFailure::Start(ExitReason::from_panic(&*panic)))),
    };
    let job = pin!(Some(job));
    let before_waiting = Some(before_waiting);
    Running {
        job,
        state,
        id,
        before_waiting,
    }
    .await
    .map(|ended| ended.map_err(TaskFailure::Run))
}

/// Outcomes a worker keeps before it reports them, at most: above the batch of a
/// supervisor that runs a few dozen tasks at once (25 at the benchmark's `max_demand`
/// of 50), so that such a batch of short tasks is reported once (with 16, twice per
/// batch, the benchmark ran 2.4 M tasks/s instead of 3.1).
const REPORT_EVERY: usize = 64;

/// Hands the outcomes a worker kept to the supervisor.
fn report<E>(shared: &Shared<E>, ended: &mut Vec<TaskOutcome>) {
    if ended.is_empty() {
        return;
    }
    let first = {
        let mut outcomes = lock(&shared.outcomes);
        let first = outcomes.is_empty();
        outcomes.append(ended);
        first
    };
    if first && let Some(ring) = shared.ring.get() {
        ring();
    }
}

/// Drops a value of the user's (an event, a task's future), catching a panic in its
/// drop as the panic it is, so that it stops neither the worker nor the supervisor.
fn drop_caught<T>(value: T) -> Result<(), ExitReason> {
    std::panic::catch_unwind(AssertUnwindSafe(move || drop(value)))
        .map_err(|panic| ExitReason::from_panic(&*panic))
}

/// Runs one task's future until it ends (`Some` with its outcome, a panic caught as
/// [`ExitReason::Panic`]) or its worker is asked to abort it (`None`). The future is
/// dropped in place as it ends, a panic in that drop caught too.
struct Running<'a, Fut, R> {
    /// `None` once ended.
    job: Pin<&'a mut Option<Fut>>,
    state: &'a WorkerState,
    id: u64,
    /// Runs the first time the future waits.
    before_waiting: Option<R>,
}

impl<Fut, R> Running<'_, Fut, R> {
    fn aborted(&self) -> bool {
        self.state.abort.load(Ordering::SeqCst) == self.id
    }

    /// Drops the future. A success whose drop panicked is that panic.
    fn end(&mut self, outcome: Option<Result<(), ExitReason>>) -> Option<Result<(), ExitReason>> {
        let job = &mut self.job;
        let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| job.set(None)))
            .map_err(|panic| ExitReason::from_panic(&*panic));
        match (outcome, dropped) {
            (Some(Ok(())), Err(panic)) => Some(Err(panic)),
            (outcome, _) => outcome,
        }
    }
}

impl<Fut, R> Future for Running<'_, Fut, R>
where
    Fut: Future<Output = Result<(), BoxError>>,
    R: FnOnce() + Unpin,
{
    type Output = Option<Result<(), ExitReason>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.aborted() {
            return Poll::Ready(this.end(None));
        }
        let Some(job) = this.job.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| job.poll(cx)));
        let outcome = match polled {
            Ok(Poll::Ready(Ok(()))) => Ok(()),
            Ok(Poll::Ready(Err(error))) => Err(ExitReason::error(error)),
            Err(panic) => Err(ExitReason::from_panic(&*panic)),
            Ok(Poll::Pending) => {
                if let Some(before_waiting) = this.before_waiting.take() {
                    before_waiting();
                }
                // An abort asked from now on wakes this task; one asked before is seen
                // by the check after the registration.
                this.state.waker.register(cx.waker());
                if this.aborted() {
                    return Poll::Ready(this.end(None));
                }
                return Poll::Pending;
            }
        };
        Poll::Ready(this.end(Some(outcome)))
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
