//! A consumer that runs one task per event, with demand as the limit on tasks.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use tokio::time::Instant;

use crate::context::ConsumerContext;
use crate::error::{CallError, StartChildError};
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::handle::{ConsumerRef, DEFAULT_CALL_TIMEOUT, wait_reply};
use crate::options::SubscribeOptions;
use crate::reply::ReplyTo;
use crate::stage::{Consumer, Init};
use crate::subscription::{AskMode, BuildTagHasher, SubscriptionTag, TagMap};
use crate::supervision::child::{Restart, Shutdown};
use crate::supervision::events::{Announcer, ChildEvent, ChildEvents};
use crate::supervision::intensity::RestartIntensity;

mod pool;

use pool::{Pool, TaskFailure};

/// Names one task of a [`ConsumerSupervisor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task#{}", self.0)
    }
}

/// How many tasks a [`ConsumerSupervisor`] runs, and has run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Tasks running now (restarting ones included).
    pub running: usize,
    /// The most tasks that ever ran at once.
    pub high_water_mark: usize,
    /// Tasks restarted after a failure.
    pub restarts: usize,
    /// Tasks that failed and were not restarted.
    pub failed: usize,
    /// Tasks that finished successfully.
    pub completed: usize,
    /// Tasks aborted with `terminate_child`.
    pub terminated: usize,
}

/// The messages a [`ConsumerSupervisor`] takes (its [`Consumer::Message`]): opaque,
/// sent by the methods of its handle ([`ConsumerRef::start_child`] and the others
/// below it).
pub struct TaskMessage<E>(Request<E>);

enum Request<E> {
    /// Tasks finished: their outcomes wait in the supervisor's pool.
    Finished,
    AskInitial(SubscriptionTag),
    StartChild(E, ReplyTo<TaskId>),
    TerminateChild(TaskId, ReplyTo<bool>),
    WhichChildren(ReplyTo<Vec<TaskId>>),
    CountChildren(ReplyTo<TaskCounts>),
    Watch(ReplyTo<ChildEvents<TaskId>>),
}

impl<E> fmt::Debug for TaskMessage<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskMessage")
    }
}

struct Task<E> {
    /// The subscription whose demand slot it holds (none for `start_child` tasks).
    slot: Option<SubscriptionTag>,
    /// Kept to run the task again after a failure (transient tasks).
    event: Option<E>,
}

struct Slots {
    /// Slots freed and not yet asked for again.
    freed: usize,
    min: usize,
    max: usize,
}

/// A consumer that starts one task per event, from a template (an async function of
/// the event), with each subscription's `max_demand` as the limit on tasks running at
/// once: demand is asked again, in chunks of `min_demand`, only as tasks finish. So a
/// slow task holds the producer back.
///
/// Each task runs concurrently with the others, as a tokio task of its own would, but
/// the supervisor keeps the tokio tasks that ran them (its workers) for the next ones
/// instead of spawning one per event: it has as many workers as tasks ever ran at
/// once, so a task never waits for another to end. The template runs on the worker,
/// and its future runs there in place, without an allocation per task: short tasks run
/// faster than with a spawn each (`BENCHMARKS.md` in the repository has the figures).
/// The workers stay until the supervisor stops.
///
/// A task that panics, or whose state panics when dropped, is caught on its worker,
/// which runs on. A template that panics for an event is a task that failed to start:
/// it is counted as failed and never run again, as GenStage counts a child that
/// crashes as it starts.
///
/// A worker reports the tasks it ran in runs (when it has nothing queued to take, when
/// a task waits, or every 64 tasks). So a task that computes for long without waiting
/// holds back the report of the few tasks its worker ran just before it, and so their
/// demand slots, until it waits or ends. Such work, like any blocking work in async
/// code, belongs in [`tokio::task::spawn_blocking`].
///
/// [`ConsumerRef::watch`] tells each task's start and end (and restart) as the
/// supervisor learns it, where [`ConsumerRef::count_children`] answers only when asked.
///
/// Tasks are [`Restart::Temporary`] by default (a failed task is counted, not run
/// again). [`Restart::Transient`] runs a task whose future failed (error or panic)
/// again with the same event, keeping its demand slot, within the restart intensity (3
/// in 5 seconds by default; past it the stage stops with
/// [`ExitReason::TooManyRestarts`]).
/// [`Restart::Permanent`] is refused at start: a task that finished would run forever.
///
/// When the stage stops, running tasks get the shutdown policy's time to finish, then
/// are aborted ([`Shutdown::Graceful`], 5 seconds by default), or are aborted at once
/// ([`Shutdown::Kill`]). A producer that ends does not interrupt the tasks it fed:
/// through a temporary subscription (or a transient one, on a graceful end) the stage
/// keeps running, and so do they; through a permanent one (the default) the stage
/// stops, so a finite producer's last tasks have the shutdown policy's time to finish.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use gen_stage::supervision::ConsumerSupervisor;
/// use gen_stage::{BoxError, SubscribeOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let sum = Arc::new(AtomicU64::new(0));
/// let total = sum.clone();
/// let jobs = gen_stage::source::from_iter(1..=100u64).start().await?;
/// let workers = gen_stage::consumer(ConsumerSupervisor::new(move |job: u64| {
///     let sum = sum.clone();
///     async move {
///         sum.fetch_add(job, Ordering::Relaxed); // stands for real work
///         Ok::<(), BoxError>(())
///     }
/// }))
/// .subscribe_to(&jobs, SubscribeOptions::new().max_demand(10))
/// .start()
/// .await?;
/// workers.stopped().await; // the producer finished, and so did every task
/// assert_eq!(total.load(Ordering::Relaxed), 5050);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct ConsumerSupervisor<E> {
    restart: Restart,
    clone_event: Option<fn(&E) -> E>,
    shutdown: Shutdown,
    intensity: RestartIntensity,
    tasks: HashMap<TaskId, Task<E>, BuildTagHasher>,
    pool: Pool<E>,
    slots: TagMap<Slots>,
    counts: TaskCounts,
    next_id: u64,
    events: Announcer<TaskId>,
}

impl<E> fmt::Debug for ConsumerSupervisor<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerSupervisor")
            .field("restart", &self.restart)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<E: Send + 'static> ConsumerSupervisor<E> {
    /// A supervisor whose tasks run `template(event)`.
    pub fn new<F, Fut>(template: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        ConsumerSupervisor {
            restart: Restart::Temporary,
            clone_event: None,
            shutdown: Shutdown::default(),
            intensity: RestartIntensity::new(3, Duration::from_secs(5)),
            tasks: HashMap::default(),
            pool: Pool::new(template),
            slots: TagMap::default(),
            counts: TaskCounts::default(),
            next_id: 0,
            events: Announcer::default(),
        }
    }

    /// When tasks are run again (default [`Restart::Temporary`]; `Permanent` is
    /// refused at start). Running a task again needs its event, hence `E: Clone`.
    pub fn restart(mut self, restart: Restart) -> Self
    where
        E: Clone,
    {
        self.restart = restart;
        self.clone_event = Some(E::clone);
        self
    }

    /// How running tasks are stopped when the stage stops.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// At most `max_restarts` task restarts within any `period` (default 3 in 5 s).
    pub fn intensity(mut self, max_restarts: usize, period: Duration) -> Self {
        self.intensity = RestartIntensity::new(max_restarts, period);
        self
    }

    /// How many events the supervisor keeps for its watchers that have not read them
    /// yet (default 256, rounded up to a power of two; at least 1, at most 65 536):
    /// a watcher further behind misses the oldest (see [`ChildEvents`]). Every event
    /// a batch of `max_demand` events starts is announced at once: make room for it.
    /// Set it before the first [`watch`](ConsumerSupervisor::watch).
    pub fn watch_capacity(self, capacity: usize) -> Self {
        self.events.set_capacity(capacity);
        self
    }

    /// Watches the tasks from before the start, so that no task is missed (see
    /// [`ConsumerRef::watch`] for an example). Once started, watch with
    /// [`ConsumerRef::watch`].
    pub fn watch(&self) -> ChildEvents<TaskId> {
        self.events.watch()
    }

    /// Starts one task.
    fn spawn(&mut self, id: TaskId, event: E, slot: Option<SubscriptionTag>) {
        let task = self.prepare(id, event, slot);
        self.pool.run([task], self.tasks.len());
    }

    /// Records a task, for the pool to run.
    fn prepare(&mut self, id: TaskId, event: E, slot: Option<SubscriptionTag>) -> (TaskId, E) {
        let kept = match (self.restart, self.clone_event) {
            (Restart::Transient, Some(clone)) => Some(clone(&event)),
            _ => None,
        };
        self.tasks.insert(id, Task { slot, event: kept });
        self.counts.running = self.tasks.len();
        self.counts.high_water_mark = self.counts.high_water_mark.max(self.tasks.len());
        (id, event)
    }

    fn next_id(&mut self) -> TaskId {
        self.next_id += 1;
        TaskId(self.next_id)
    }

    /// A task ended: run it again, or free its slot and ask again in chunks. False once
    /// the supervisor is stopping.
    fn task_done(
        &mut self,
        id: TaskId,
        outcome: Result<(), TaskFailure>,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> bool {
        let Some(task) = self.tasks.remove(&id) else {
            return true; // terminated on request
        };
        match outcome {
            Ok(()) => {
                self.counts.completed += 1;
                self.events.announce(|| ChildEvent::Exited {
                    id,
                    reason: ExitReason::Normal,
                });
            }
            Err(TaskFailure::Start(reason)) => {
                // As in GenStage: a task that failed to start is counted, never run
                // again (it would most likely fail the same way).
                tracing::warn!("consumer supervisor: task {id:?} failed to start ({reason})");
                self.counts.failed += 1;
                self.events.announce(|| ChildEvent::Exited { id, reason });
            }
            Err(TaskFailure::Run(reason)) => match task.event {
                Some(event) => {
                    tracing::warn!(
                        "consumer supervisor: task {id:?} failed ({reason}); restarting"
                    );
                    self.events.announce(|| ChildEvent::Exited { id, reason });
                    if !self.intensity.allow_restart() {
                        ctx.stop(ExitReason::TooManyRestarts);
                        return false;
                    }
                    self.counts.restarts += 1;
                    self.events.announce(|| ChildEvent::Restarted { id });
                    self.spawn(id, event, task.slot);
                    return true;
                }
                None => {
                    tracing::warn!("consumer supervisor: task {id:?} failed ({reason})");
                    self.counts.failed += 1;
                    self.events.announce(|| ChildEvent::Exited { id, reason });
                }
            },
        }
        self.counts.running = self.tasks.len();
        self.free_slot(task.slot, ctx);
        true
    }

    /// A task's demand slot is free: ask again once `min_demand` slots are.
    fn free_slot(&mut self, slot: Option<SubscriptionTag>, ctx: &mut ConsumerContext<'_, Self>) {
        let Some(tag) = slot else { return };
        let Some(slots) = self.slots.get_mut(&tag) else {
            return; // the producer is gone: nothing to ask
        };
        slots.freed += 1;
        if slots.freed >= slots.min.max(1) {
            let freed = std::mem::take(&mut slots.freed);
            if let Some(demand) = NonZeroUsize::new(freed) {
                let _ = ctx.ask(tag, demand);
            }
        }
    }

    /// Tells the watchers how the tasks that ran at the stop ended (those that
    /// finished within the shutdown's time, then those aborted, by id), and the
    /// supervisor's own end.
    fn announce_last_exits(&mut self, reason: &ExitReason) {
        for (id, outcome) in self.pool.take_finished() {
            if self.tasks.remove(&id).is_some() {
                let reason = match outcome {
                    Ok(()) => ExitReason::Normal,
                    Err(TaskFailure::Start(reason) | TaskFailure::Run(reason)) => reason,
                };
                self.events.announce(|| ChildEvent::Exited { id, reason });
            }
        }
        let mut aborted: Vec<TaskId> = self.tasks.keys().copied().collect();
        aborted.sort_unstable();
        for id in aborted {
            self.events.announce(|| ChildEvent::Exited {
                id,
                reason: ExitReason::Killed,
            });
        }
        self.events.announce(|| ChildEvent::SupervisorStopped {
            reason: reason.clone(),
        });
    }
}

impl<E: Send + 'static> Consumer for ConsumerSupervisor<E> {
    type Event = E;
    type Message = TaskMessage<E>;

    async fn init(&mut self, ctx: &mut ConsumerContext<'_, Self>) -> Result<Init, BoxError> {
        if self.restart == Restart::Permanent {
            return Err(concat!(
                "ConsumerSupervisor does not support permanent tasks: a task that finished ",
                "would be started again forever; use Restart::Transient (run again only after ",
                "a failure) or Restart::Temporary"
            )
            .into());
        }
        let me = ctx.stage_ref().uncounted();
        self.pool.set_ring(move || {
            let _ = me.cast(TaskMessage(Request::Finished));
        });
        Ok(Init::Start)
    }

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        let slots = Slots {
            freed: 0,
            min: options.min_demand_value(),
            max: options.max_demand_value(),
        };
        self.slots.insert(tag, slots);
        // The subscription exists once this hook returns: ask for max_demand then.
        let _ = ctx.stage_ref().cast(TaskMessage(Request::AskInitial(tag)));
        Ok(AskMode::Manual)
    }

    async fn handle_events(
        &mut self,
        events: Vec<E>,
        from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        // Queued together: one lock of the pool's queue, one wake.
        let mut tasks = Vec::with_capacity(events.len());
        for event in events {
            let id = self.next_id();
            let prepared =
                std::panic::catch_unwind(AssertUnwindSafe(|| self.prepare(id, event, Some(from))));
            match prepared {
                Ok(task) => {
                    self.events.announce(|| ChildEvent::Started { id });
                    tasks.push(task);
                }
                Err(panic) => {
                    // The event's `Clone` panicked (kept for restarts): the tasks
                    // recorded before it still run (and get the shutdown policy's
                    // time), then the stage stops with it.
                    self.pool.run(tasks, self.tasks.len());
                    std::panic::resume_unwind(panic);
                }
            }
        }
        self.pool.run(tasks, self.tasks.len());
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        _reason: &CancelReason,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        // Its tasks keep running; their end frees nothing.
        self.slots.remove(&tag);
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: TaskMessage<E>,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message.0 {
            Request::Finished => {
                for (id, outcome) in self.pool.take_finished() {
                    if !self.task_done(id, outcome, ctx) {
                        // Stopping: what finished meanwhile changes nothing.
                        break;
                    }
                }
            }
            Request::AskInitial(tag) => {
                // The first ask: max_demand, the same as an automatic subscription.
                let max = self.slots.get(&tag).map(|slots| slots.max);
                if let Some(demand) = max.and_then(NonZeroUsize::new) {
                    let _ = ctx.ask(tag, demand);
                }
            }
            Request::StartChild(event, reply) => {
                let id = self.next_id();
                self.events.announce(|| ChildEvent::Started { id });
                self.spawn(id, event, None);
                reply.send(id);
            }
            Request::TerminateChild(id, reply) => {
                let task = self.tasks.remove(&id);
                let found = task.is_some();
                if let Some(task) = task {
                    // Its slot is free only once it has ended: never more than
                    // max_demand tasks at once.
                    self.pool.terminate(id).await;
                    self.counts.terminated += 1;
                    self.events.announce(|| ChildEvent::Exited {
                        id,
                        reason: ExitReason::Killed,
                    });
                    self.counts.running = self.tasks.len();
                    self.free_slot(task.slot, ctx);
                }
                reply.send(found);
            }
            Request::WhichChildren(reply) => {
                let mut ids: Vec<TaskId> = self.tasks.keys().copied().collect();
                ids.sort_unstable();
                reply.send(ids);
            }
            Request::CountChildren(reply) => reply.send(self.counts),
            Request::Watch(reply) => reply.send(self.events.watch()),
        }
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        let deadline = match self.shutdown {
            Shutdown::Kill => Some(Instant::now()),
            Shutdown::Wait => None,
            // A limit too long to add to now is no limit.
            Shutdown::Graceful(limit) => Instant::now().checked_add(limit),
        };
        // What still runs at the deadline is aborted, and waited for: no task runs on
        // after the stop. A supervisor killed meanwhile drops its pool, which aborts
        // the tasks.
        self.pool.shutdown(deadline).await;
        if self.events.is_watched() {
            self.announce_last_exits(reason);
        }
        self.events.close();
        self.tasks.clear();
    }
}

impl<E: Send + 'static> ConsumerRef<ConsumerSupervisor<E>> {
    /// Starts a task for `event` outside any subscription's demand.
    ///
    /// # Errors
    ///
    /// [`StartChildError::NotAlive`], with the event, if the supervisor is not alive;
    /// [`StartChildError::Stopped`] if it stopped before answering;
    /// [`StartChildError::Timeout`] if it did not answer within
    /// [`DEFAULT_CALL_TIMEOUT`](crate::DEFAULT_CALL_TIMEOUT).
    ///
    /// # Cancel safety
    ///
    /// The request is sent at once: dropping the future only stops the wait, and the
    /// task still starts.
    pub async fn start_child(&self, event: E) -> Result<TaskId, StartChildError<E>> {
        let (reply, answer) = ReplyTo::pair();
        let start = |event| TaskMessage(Request::StartChild(event, reply));
        if let Err(event) = self.cast_of(event, start) {
            return Err(StartChildError::NotAlive(event));
        }
        wait_reply(answer, DEFAULT_CALL_TIMEOUT)
            .await
            .map_err(|error| match error {
                CallError::Timeout => StartChildError::Timeout,
                CallError::NotAlive | CallError::Stopped(_) => StartChildError::Stopped,
            })
    }

    /// Aborts the task `id`, freeing its demand slot; false if no such task runs.
    ///
    /// # Errors
    ///
    /// [`CallError`] if the supervisor is not alive or does not answer in time.
    pub async fn terminate_child(&self, id: TaskId) -> Result<bool, CallError> {
        self.call(|reply| TaskMessage(Request::TerminateChild(id, reply)))
            .await
    }

    /// The tasks running now.
    ///
    /// # Errors
    ///
    /// [`CallError`] if the supervisor is not alive or does not answer in time.
    pub async fn which_children(&self) -> Result<Vec<TaskId>, CallError> {
        self.call(|reply| TaskMessage(Request::WhichChildren(reply)))
            .await
    }

    /// How many tasks run and have run.
    ///
    /// # Errors
    ///
    /// [`CallError`] if the supervisor is not alive or does not answer in time.
    pub async fn count_children(&self) -> Result<TaskCounts, CallError> {
        self.call(|reply| TaskMessage(Request::CountChildren(reply)))
            .await
    }

    /// Watches the tasks from now on: each task's start, its exit (with
    /// [`ExitReason::Normal`] when it succeeded) and its restart, then the
    /// supervisor's own stop (after the exits of the tasks that ran then), and the end
    /// (see [`ChildEvents`]). Where [`count_children`](Self::count_children) answers
    /// only when asked, this tells each task's end as the supervisor learns it. To see
    /// the tasks of the first events too, watch before the start with
    /// [`ConsumerSupervisor::watch`].
    ///
    /// Watching costs the supervisor nothing while nobody watches; a watcher never
    /// holds it back (one that falls behind misses events, and is told).
    ///
    /// ```
    /// use gen_stage::supervision::{ChildEvent, ConsumerSupervisor};
    /// use gen_stage::{BoxError, ExitReason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let workers = gen_stage::consumer(ConsumerSupervisor::new(|job: u64| async move {
    ///     println!("job {job}"); // stands for real work
    ///     Ok::<(), BoxError>(())
    /// }))
    /// .start()
    /// .await?;
    /// let mut events = workers.watch().await?;
    /// let task = workers.start_child(7).await?;
    /// assert_eq!(events.next().await, Some(Ok(ChildEvent::Started { id: task })));
    /// // Awaited, not polled: the task's end as soon as the supervisor learns it.
    /// assert_eq!(
    ///     events.next().await,
    ///     Some(Ok(ChildEvent::Exited { id: task, reason: ExitReason::Normal }))
    /// );
    /// workers.stop(ExitReason::Shutdown).await?;
    /// assert_eq!(
    ///     events.next().await,
    ///     Some(Ok(ChildEvent::SupervisorStopped { reason: ExitReason::Shutdown }))
    /// );
    /// assert_eq!(events.next().await, None);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError`] if the supervisor is not alive or does not answer in time.
    pub async fn watch(&self) -> Result<ChildEvents<TaskId>, CallError> {
        self.call(|reply| TaskMessage(Request::Watch(reply))).await
    }
}
