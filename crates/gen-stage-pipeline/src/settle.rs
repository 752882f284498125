//! The pipeline's side of acknowledgement: outcomes counted as they are settled, and
//! handed in groups to the task that calls the acknowledgers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use tokio::sync::{Notify, oneshot};

use crate::ack::{AckGroup, AckHandle, AckTag, Outcome, Settled};
use crate::failure::Failure;
use crate::report::OutcomeCounts;
use crate::sync::lock;

/// What the stages hand the acknowledging task, under one lock: outcomes are
/// appended in place (no allocation or channel message per delivery), and the task
/// takes them all at once.
#[derive(Default)]
struct Outbox {
    /// Outcomes in the order they were settled.
    settled: Vec<Settled>,
    /// The groups of `settled`, in order: each with how many consecutive outcomes
    /// are its.
    runs: Vec<(Arc<AckGroup>, usize)>,
    /// Flushes to answer once everything settled before them has been told.
    flushes: Vec<oneshot::Sender<()>>,
    /// Set when the settler is gone: the task ends once the outbox is empty.
    closed: bool,
    /// Set when the task is gone (its runtime shut down): nothing will be told.
    task_gone: bool,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.settled.is_empty() && self.flushes.is_empty()
    }
}

/// The outbox and the acknowledging task's wake-up.
#[derive(Default)]
struct AckQueue {
    outbox: Mutex<Outbox>,
    ready: Notify,
}

/// Counters of a pipeline's messages, each bumped once per message or call.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Messages that entered the pipeline from its producers.
    pub(crate) taken_in: AtomicU64,
    /// Messages settled, by kind of outcome ([`Outcome::kind_index`]).
    settled: [AtomicU64; 5],
    /// Handles dropped without an outcome (settled as the pipeline's `on_drop`).
    pub(crate) dropped_handles: AtomicU64,
    /// Messages whose acknowledgement failed, by kind of outcome.
    ack_failures: [AtomicU64; 5],
}

impl Counts {
    /// The settled messages, by outcome.
    pub(crate) fn settled(&self) -> OutcomeCounts {
        OutcomeCounts::read(&self.settled)
    }

    /// The messages whose acknowledgement failed, by outcome.
    pub(crate) fn ack_failures(&self) -> OutcomeCounts {
        OutcomeCounts::read(&self.ack_failures)
    }
}

/// Where a pipeline's stages settle messages.
pub(crate) struct Settler {
    queue: Arc<AckQueue>,
    pub(crate) counts: Arc<Counts>,
    /// The outcome of a handle dropped without one.
    on_drop: Outcome,
    /// The pipeline's name, for the logs.
    pipeline: Arc<str>,
}

impl fmt::Debug for Settler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settler")
            .field("pipeline", &self.pipeline)
            .field("on_drop", &self.on_drop)
            .finish_non_exhaustive()
    }
}

impl Settler {
    /// A settler, and the task that acknowledges what it is handed (spawned on the
    /// current runtime; it ends once the settler and every message bound to it are
    /// gone).
    pub(crate) fn start(pipeline: Arc<str>, on_drop: Outcome) -> Arc<Self> {
        let queue = Arc::new(AckQueue::default());
        let counts = Arc::new(Counts::default());
        tokio::spawn(acknowledge(queue.clone(), counts.clone(), pipeline.clone()));
        Arc::new(Settler {
            queue,
            counts,
            on_drop,
            pipeline,
        })
    }

    /// Starts settling a run of messages.
    pub(crate) fn run(&self) -> SettleRun<'_> {
        SettleRun {
            settler: self,
            outbox: None,
            was_empty: false,
            current: None,
            counted: [0; 5],
        }
    }

    /// One message settled on its own, ahead of the rest of its delivery.
    pub(crate) fn settle_one(&self, group: Arc<AckGroup>, tag: AckTag, outcome: Outcome) {
        self.hand(group, tag, outcome);
    }

    /// A handle was dropped without an outcome.
    pub(crate) fn dropped(&self, group: Arc<AckGroup>, tag: AckTag) {
        self.counts.dropped_handles.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pipeline = %self.pipeline, ?tag, outcome = %self.on_drop, "message handle dropped");
        self.hand(group, tag, self.on_drop);
    }

    /// Returns once everything settled before has been acknowledged (or failed to be).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        {
            let mut outbox = lock(&self.queue.outbox);
            if outbox.task_gone {
                return;
            }
            outbox.flushes.push(done);
        }
        self.queue.ready.notify_one();
        let _ = wait.await;
    }

    /// Settles one outcome in a run of its own (counted as every run counts).
    fn hand(&self, group: Arc<AckGroup>, tag: AckTag, outcome: Outcome) {
        let mut run = self.run();
        run.counted[outcome.kind_index()] += 1;
        run.push(
            group,
            Settled {
                tag,
                outcome,
                failure: None,
            },
        );
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        lock(&self.queue.outbox).closed = true;
        self.queue.ready.notify_one();
    }
}

/// Outcomes of messages settled together, appended to the outbox under one lock.
pub(crate) struct SettleRun<'a> {
    settler: &'a Settler,
    /// Taken at the run's first outcome, held to its end (a run never waits).
    outbox: Option<MutexGuard<'a, Outbox>>,
    /// Whether the outbox was empty when the run took it: the task is then woken.
    was_empty: bool,
    /// The group of the latest outcomes, and how many there are, until the group
    /// changes or the run ends.
    current: Option<(Arc<AckGroup>, usize)>,
    /// Outcomes settled, by kind, to add to the pipeline's counts at the end.
    counted: [u64; 5],
}

impl SettleRun<'_> {
    /// Settles one message's handle; a handle with nothing to settle is passed over.
    // Inlined (with `push`): called for every message settled.
    #[inline(always)]
    pub(crate) fn add(
        &mut self,
        handle: &mut AckHandle,
        outcome: Outcome,
        failure: Option<Failure>,
    ) {
        if handle.is_told() {
            return;
        }
        self.counted[outcome.kind_index()] += 1;
        let Some((group, tag)) = handle.take() else {
            return;
        };
        self.push(
            group,
            Settled {
                tag,
                outcome,
                failure,
            },
        );
    }

    #[inline(always)]
    fn push(&mut self, group: Arc<AckGroup>, settled: Settled) {
        match &mut self.current {
            Some((current, count)) if Arc::ptr_eq(current, &group) => *count += 1,
            _ => self.start_run(group),
        }
        if let Some(outbox) = &mut self.outbox {
            outbox.settled.push(settled);
        }
    }

    /// The outcomes that follow are `group`'s: the run so far goes to the outbox
    /// (taken now if it is not yet).
    #[cold]
    fn start_run(&mut self, group: Arc<AckGroup>) {
        if self.outbox.is_none() {
            let outbox = lock(&self.settler.queue.outbox);
            self.was_empty = outbox.is_empty();
            if outbox.task_gone {
                tracing::error!(
                    pipeline = %self.settler.pipeline,
                    "the acknowledging task is gone (its runtime stopped): outcomes not told"
                );
            }
            self.outbox = Some(outbox);
        }
        self.end_run();
        self.current = Some((group, 1));
    }

    /// Records the current run's group and length in the outbox.
    fn end_run(&mut self) {
        let (Some((group, count)), Some(outbox)) = (self.current.take(), &mut self.outbox) else {
            return;
        };
        match outbox.runs.last_mut() {
            Some((last, before)) if Arc::ptr_eq(last, &group) => *before += count,
            _ => outbox.runs.push((group, count)),
        }
    }
}

impl Drop for SettleRun<'_> {
    fn drop(&mut self) {
        // Counted before the acknowledger can be told: a drain's flush then finds them.
        for (index, &count) in self.counted.iter().enumerate() {
            if count > 0 {
                self.settler.counts.settled[index].fetch_add(count, Ordering::Relaxed);
            }
        }
        self.end_run();
        if self.outbox.take().is_some() && self.was_empty {
            self.settler.queue.ready.notify_one();
        }
    }
}

/// Marks the outbox when the acknowledging task ends, however it ends.
struct TaskGone(Arc<AckQueue>);

impl Drop for TaskGone {
    fn drop(&mut self) {
        lock(&self.0.outbox).task_gone = true;
    }
}

/// The acknowledging task: takes everything waiting in the outbox at once, and gives
/// each group's consecutive outcomes to its acknowledger in one call (in the order
/// they were settled), counting failures. With one group, the outbox's outcomes go to
/// its acknowledger as they are, uncopied.
async fn acknowledge(queue: Arc<AckQueue>, counts: Arc<Counts>, pipeline: Arc<str>) {
    let _gone = TaskGone(queue.clone());
    let mut taken: Vec<Settled> = Vec::new();
    let mut runs: Vec<(Arc<AckGroup>, usize)> = Vec::new();
    let mut flushes = Vec::new();
    loop {
        let closed = {
            let mut outbox = lock(&queue.outbox);
            std::mem::swap(&mut outbox.settled, &mut taken);
            std::mem::swap(&mut outbox.runs, &mut runs);
            std::mem::swap(&mut outbox.flushes, &mut flushes);
            outbox.closed
        };
        if taken.is_empty() && flushes.is_empty() {
            if closed {
                return;
            }
            queue.ready.notified().await;
            continue;
        }
        if let [(group, _)] = &runs[..] {
            // Room for as many as last time, for the stages to fill meanwhile.
            let next = Vec::with_capacity(taken.len());
            tell(
                group,
                std::mem::replace(&mut taken, next),
                &counts,
                &pipeline,
            )
            .await;
        } else {
            let mut records = taken.drain(..);
            for (group, count) in &runs {
                let settled: Vec<Settled> = records.by_ref().take(*count).collect();
                tell(group, settled, &counts, &pipeline).await;
            }
        }
        runs.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Calls one group's acknowledger, counting a failure or panic per outcome.
async fn tell(group: &AckGroup, settled: Vec<Settled>, counts: &Counts, pipeline: &str) {
    let mut kinds = [0u64; 5];
    for one in &settled {
        kinds[one.outcome.kind_index()] += 1;
    }
    let messages = settled.len();
    let span = tracing::debug_span!(
        "ack",
        pipeline = %pipeline,
        messages,
        acked = kinds[0],
        retried = kinds[1],
        rejected = kinds[2],
        terminated = kinds[3],
        released = kinds[4],
    );
    let result = tracing::Instrument::instrument(
        std::panic::AssertUnwindSafe(group.ack(settled)).catch_unwind(),
        span,
    )
    .await;
    let error = match result {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => "the acknowledger panicked".to_owned(),
    };
    for (index, &count) in kinds.iter().enumerate() {
        if count > 0 {
            counts.ack_failures[index].fetch_add(count, Ordering::Relaxed);
        }
    }
    tracing::warn!(pipeline = %pipeline, messages, %error, "acknowledgement failed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{AckError, Acknowledger};

    /// One call: which acknowledger, and the tags it was told.
    type Call = (&'static str, Vec<u64>);

    /// Records each call.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Call>>>);

    struct Named(&'static str, Calls);

    impl Acknowledger for Named {
        async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
            let tags = settled.iter().map(|one| one.tag.0).collect();
            lock(&(self.1).0).push((self.0, tags));
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_run_of_one_group_goes_to_its_acknowledger_in_one_call_in_order() {
        let calls = Calls::default();
        let a = AckGroup::new(Named("a", calls.clone()));
        let b = AckGroup::new(Named("b", calls.clone()));
        let settler = Settler::start(Arc::from("test"), Outcome::Release);
        let mut handles = [
            a.handle(AckTag(1)),
            a.handle(AckTag(2)),
            b.handle(AckTag(3)),
            a.handle(AckTag(4)),
        ];
        {
            let mut run = settler.run();
            for handle in &mut handles[..2] {
                run.add(handle, Outcome::Ack, None);
            }
        }
        {
            // Another group, then the first again: three calls, in order, whether
            // the task took the two runs at once or one after the other.
            let mut run = settler.run();
            for handle in &mut handles[2..] {
                run.add(handle, Outcome::Ack, None);
            }
        }
        settler.flush().await;
        let told = lock(&calls.0).clone();
        let expected: Vec<Call> = vec![("a", vec![1, 2]), ("b", vec![3]), ("a", vec![4])];
        assert_eq!(told, expected);
        assert_eq!(settler.counts.settled().acked, 4);
    }

    #[tokio::test]
    async fn the_task_ends_once_the_settler_is_gone_and_everything_was_told() {
        let calls = Calls::default();
        let a = AckGroup::new(Named("a", calls.clone()));
        let settler = Settler::start(Arc::from("test"), Outcome::Release);
        let queue = settler.queue.clone();
        let mut handle = a.handle(AckTag(7));
        settler.run().add(&mut handle, Outcome::Ack, None);
        drop(settler);
        // The task tells what was left, then marks itself gone.
        while !lock(&queue.outbox).task_gone {
            tokio::task::yield_now().await;
        }
        assert_eq!(*lock(&calls.0), [("a", vec![7])]);
    }
}
