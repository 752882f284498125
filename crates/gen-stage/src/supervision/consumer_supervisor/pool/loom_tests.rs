//! The pool's model check: loom runs each scenario below in every interleaving of its
//! threads (the supervisor's, the workers', a task's outside waker) up to
//! `LOOM_MAX_PREEMPTIONS` forced switches, with the pool's locks, atomics, `Notify`s
//! and tasks swapped for models (see `crate::sync`). A wake that gets lost leaves
//! every thread waiting, which loom reports as a deadlock; a broken promise fails an
//! assertion.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gen-stage
//! --release --lib supervision::consumer_supervisor::pool::loom_tests` (a target folder of its own,
//! `CARGO_TARGET_DIR=target/loom`, saves rebuilding the ordinary one): about half a
//! minute once built.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use loom::future::{AtomicWaker, block_on};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Pool, TaskFailure, TaskId, TaskOutcome};
use crate::exit::BoxError;

/// What a task does: end at once, fail at once, wait at its gate, or count its start
/// and then wait until aborted.
enum Job {
    Quick,
    Fail,
    Gated(Arc<Gate>),
    Hold(Arc<Starts>),
}

/// Counts the `Hold` tasks that started, for the supervisor's thread to wait on: the
/// lightest way to see several tasks run at once.
#[derive(Default)]
struct Starts {
    count: AtomicUsize,
    watcher: AtomicWaker,
}

impl Starts {
    fn wait_for(&self, count: usize) {
        wait_until(&self.watcher, || self.count.load(Ordering::SeqCst) == count);
    }
}

/// A task that waits until the gate opens, telling whoever watches when it starts.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    /// Set by the task's first poll.
    started: AtomicBool,
    /// Set while the task's future exists, from its first poll to its drop.
    alive: AtomicBool,
    /// Set when the task ended by itself.
    finished: AtomicBool,
    task: AtomicWaker,
    watcher: AtomicWaker,
}

impl Gate {
    fn closed() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    fn opened() -> Arc<Gate> {
        let gate = Gate::closed();
        gate.open.store(true, Ordering::SeqCst);
        gate
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.task.wake();
    }

    fn wait_started(&self) {
        wait_until(&self.watcher, || self.started.load(Ordering::SeqCst));
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn has_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

/// The future of a gated task.
struct Gated(Arc<Gate>);

impl Future for Gated {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let gate = &self.0;
        if !gate.started.load(Ordering::SeqCst) {
            gate.alive.store(true, Ordering::SeqCst);
            gate.started.store(true, Ordering::SeqCst);
            gate.watcher.wake();
        }
        gate.task.register_by_ref(cx.waker());
        if !gate.open.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        gate.finished.store(true, Ordering::SeqCst);
        Poll::Ready(())
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
    }
}

async fn run_job(job: Job) -> Result<(), BoxError> {
    match job {
        Job::Quick => Ok(()),
        Job::Fail => Err("failed".into()),
        Job::Gated(gate) => {
            Gated(gate).await;
            Ok(())
        }
        Job::Hold(starts) => {
            starts.count.fetch_add(1, Ordering::SeqCst);
            starts.watcher.wake();
            std::future::pending().await
        }
    }
}

/// Runs `scenario` in every interleaving up to `LOOM_MAX_PREEMPTIONS` forced switches, 2
/// when unset: unbounded, the scenarios with two workers would run far too long (with
/// 3, over ten minutes here).
fn model(scenario: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(2);
    builder.check(scenario);
}

/// A pool of jobs whose rings wake the returned waker.
fn pool() -> (Pool<Job>, Arc<AtomicWaker>) {
    let pool = Pool::new(run_job);
    let bell = Arc::new(AtomicWaker::new());
    let rung = bell.clone();
    pool.set_ring(move || rung.wake());
    (pool, bell)
}

/// Blocks the calling model thread until `done`, woken through `waker`.
fn wait_until(waker: &AtomicWaker, done: impl Fn() -> bool) {
    block_on(poll_fn(|cx| {
        waker.register_by_ref(cx.waker());
        if done() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
}

/// Gathers outcomes as the pool rings until there are `count`, sorted by task.
fn wait_outcomes(pool: &Pool<Job>, bell: &AtomicWaker, count: usize) -> Vec<TaskOutcome> {
    let mut outcomes = Vec::new();
    block_on(poll_fn(|cx| {
        bell.register_by_ref(cx.waker());
        outcomes.extend(pool.take_finished());
        if outcomes.len() >= count {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    outcomes.sort_by_key(|(id, _)| *id);
    outcomes
}

/// The lost-wake case: the only worker reports its task and goes idle while the next
/// task arrives. Either it sees the task, or the pool's wake reaches it.
#[test]
fn a_task_queued_as_the_worker_goes_idle_is_run() {
    model(|| {
        let (mut pool, bell) = pool();
        pool.run([(TaskId(1), Job::Quick)], 1);
        assert_eq!(wait_outcomes(&pool, &bell, 1), vec![(TaskId(1), Ok(()))]);
        pool.run([(TaskId(2), Job::Quick)], 1);
        assert_eq!(wait_outcomes(&pool, &bell, 1), vec![(TaskId(2), Ok(()))]);
        block_on(pool.shutdown(None));
    });
}

/// Two tasks queued at once into two idle workers: the woken worker passes the wake on,
/// so each task starts without waiting for the other to end. (The tasks never end:
/// dropping the pool aborts them.)
#[test]
fn tasks_queued_together_each_get_an_idle_worker() {
    model(|| {
        let (mut pool, _bell) = pool();
        pool.run([], 2);
        let starts = Arc::new(Starts::default());
        let tasks = [
            (TaskId(1), Job::Hold(starts.clone())),
            (TaskId(2), Job::Hold(starts.clone())),
        ];
        pool.run(tasks, 2);
        starts.wait_for(2);
    });
}

/// A task queued while a new worker starts and the first one takes its own task: the
/// new worker looks at the queue itself.
#[test]
fn tasks_queued_with_new_workers_each_get_one() {
    model(|| {
        let (mut pool, _bell) = pool();
        let starts = Arc::new(Starts::default());
        pool.run([(TaskId(1), Job::Hold(starts.clone()))], 1);
        pool.run([(TaskId(2), Job::Hold(starts.clone()))], 2);
        starts.wait_for(2);
    });
}

/// Two workers report their outcomes, with one ring between them: all reach the
/// supervisor.
#[test]
fn outcomes_of_two_workers_all_reach_the_supervisor() {
    model(|| {
        let (mut pool, bell) = pool();
        pool.run([(TaskId(1), Job::Quick), (TaskId(2), Job::Fail)], 2);
        let outcomes = wait_outcomes(&pool, &bell, 2);
        assert!(matches!(
            outcomes.as_slice(),
            [(TaskId(1), Ok(())), (TaskId(2), Err(TaskFailure::Run(_)))]
        ));
        block_on(pool.shutdown(None));
    });
}

/// Terminating a running task drops its future before `terminate` returns, reports no
/// outcome for it, and leaves the worker free for the next task.
#[test]
fn terminate_ends_a_running_task() {
    terminate_a_gated_task(true);
}

/// Terminating a task as its worker takes it from the queue: the task is found either
/// queued or running, and never runs on after `terminate` returns.
#[test]
fn terminate_ends_a_task_being_taken() {
    terminate_a_gated_task(false);
}

/// Queues a task that waits, terminates it (once it started, if `once_started`), and
/// checks that it no longer runs and that its worker then runs the next task.
fn terminate_a_gated_task(once_started: bool) {
    model(move || {
        let (mut pool, bell) = pool();
        let gate = Gate::closed();
        pool.run([(TaskId(1), Job::Gated(gate.clone()))], 1);
        if once_started {
            gate.wait_started();
        }
        block_on(pool.terminate(TaskId(1)));
        assert!(!gate.is_alive(), "the terminated task still runs");
        pool.run([(TaskId(2), Job::Quick)], 1);
        assert_eq!(wait_outcomes(&pool, &bell, 1), vec![(TaskId(2), Ok(()))]);
        block_on(pool.shutdown(None));
    });
}

/// A shutdown without a deadline lets the running task end (here woken from another
/// thread while the shutdown starts) and the queued one run, then stops the workers.
#[test]
fn shutdown_waits_for_running_and_queued_tasks() {
    model(|| {
        let (mut pool, _bell) = pool();
        let (running, queued) = (Gate::closed(), Gate::opened());
        let tasks = [
            (TaskId(1), Job::Gated(running.clone())),
            (TaskId(2), Job::Gated(queued.clone())),
        ];
        pool.run(tasks, 1);
        let opener = {
            let running = running.clone();
            loom::thread::spawn(move || running.open())
        };
        block_on(pool.shutdown(None));
        assert!(running.has_finished() && queued.has_finished());
        assert!(!running.is_alive() && !queued.is_alive());
        let _ = opener.join();
    });
}
