//! The pipeline's side of acknowledgement: outcomes counted as they are settled, and
//! handed in groups to the task that calls the acknowledgers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::ack::{AckGroup, AckHandle, AckTag, Outcome, Settled};
use crate::failure::Failure;
use crate::report::OutcomeCounts;

/// What the acknowledging task is handed.
enum AckWork {
    /// Outcomes for one group's acknowledger.
    Group(Arc<AckGroup>, Vec<Settled>),
    /// Answered once everything handed before has been acknowledged.
    Flush(oneshot::Sender<()>),
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
    fn add_settled(&self, outcome: Outcome, count: u64) {
        self.settled[outcome.kind_index()].fetch_add(count, Ordering::Relaxed);
    }

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
#[derive(Debug)]
pub(crate) struct Settler {
    work: mpsc::UnboundedSender<AckWork>,
    pub(crate) counts: Arc<Counts>,
    /// The outcome of a handle dropped without one.
    on_drop: Outcome,
    /// The pipeline's name, for the logs.
    pipeline: Arc<str>,
}

impl Settler {
    /// A settler, and the task that acknowledges what it is handed (spawned on the
    /// current runtime; it ends once the settler and every message bound to it are
    /// gone).
    pub(crate) fn start(pipeline: Arc<str>, on_drop: Outcome) -> Arc<Self> {
        let (work, receiver) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        tokio::spawn(acknowledge(receiver, counts.clone(), pipeline.clone()));
        Arc::new(Settler {
            work,
            counts,
            on_drop,
            pipeline,
        })
    }

    /// Starts settling a run of (about) `messages` messages.
    pub(crate) fn run(&self, messages: usize) -> SettleRun<'_> {
        SettleRun {
            settler: self,
            group: None,
            settled: Vec::with_capacity(messages),
            counted: [0; 5],
        }
    }

    /// One message settled on its own, ahead of the rest of its delivery.
    pub(crate) fn settle_one(&self, group: Arc<AckGroup>, tag: AckTag, outcome: Outcome) {
        self.counts.add_settled(outcome, 1);
        self.hand(
            group,
            vec![Settled {
                tag,
                outcome,
                failure: None,
            }],
        );
    }

    /// A handle was dropped without an outcome.
    pub(crate) fn dropped(&self, group: Arc<AckGroup>, tag: AckTag) {
        self.counts.dropped_handles.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pipeline = %self.pipeline, ?tag, outcome = %self.on_drop, "message handle dropped");
        self.counts.add_settled(self.on_drop, 1);
        self.hand(
            group,
            vec![Settled {
                tag,
                outcome: self.on_drop,
                failure: None,
            }],
        );
    }

    /// Returns once everything settled before has been acknowledged (or failed to be).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.work.send(AckWork::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    fn hand(&self, group: Arc<AckGroup>, settled: Vec<Settled>) {
        if let Err(lost) = self.work.send(AckWork::Group(group, settled)) {
            // The task ends only once no settler is left: a runtime shut down under it.
            if let AckWork::Group(_, settled) = lost.0 {
                tracing::error!(
                    pipeline = %self.pipeline,
                    messages = settled.len(),
                    "the acknowledging task is gone (its runtime stopped): outcomes not told"
                );
            }
        }
    }
}

/// Outcomes of messages settled together, handed on in one piece per group of
/// consecutive messages sharing an acknowledger.
pub(crate) struct SettleRun<'a> {
    settler: &'a Settler,
    group: Option<Arc<AckGroup>>,
    settled: Vec<Settled>,
    /// Outcomes settled, by kind, to add to the pipeline's counts at the end.
    counted: [u64; 5],
}

impl SettleRun<'_> {
    /// Settles one message's handle; a handle with nothing to settle is passed over.
    // Inlined: called for every message settled.
    #[inline]
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
        match &self.group {
            Some(current) if Arc::ptr_eq(current, &group) => {}
            _ => {
                self.hand_over();
                self.group = Some(group);
            }
        }
        self.settled.push(Settled {
            tag,
            outcome,
            failure,
        });
    }

    #[cold]
    fn hand_over(&mut self) {
        if let Some(group) = self.group.take() {
            // The next group's outcomes (rare) allocate when they come.
            let settled = std::mem::take(&mut self.settled);
            if !settled.is_empty() {
                self.settler.hand(group, settled);
            }
        }
    }
}

impl Drop for SettleRun<'_> {
    fn drop(&mut self) {
        // Counted before the acknowledger is told: a drain's flush then finds them.
        for (index, &count) in self.counted.iter().enumerate() {
            if count > 0 {
                self.settler.counts.settled[index].fetch_add(count, Ordering::Relaxed);
            }
        }
        self.hand_over();
    }
}

/// The most pieces of work the acknowledging task takes at once.
const TAKEN_AT_ONCE: usize = 64;

/// The acknowledging task: calls each group's acknowledger in turn, counting failures.
/// What waits is taken at once, and consecutive outcomes of one group go to its
/// acknowledger in one call (in the order they were settled).
async fn acknowledge(
    mut receiver: mpsc::UnboundedReceiver<AckWork>,
    counts: Arc<Counts>,
    pipeline: Arc<str>,
) {
    let mut taken = Vec::with_capacity(TAKEN_AT_ONCE);
    while receiver.recv_many(&mut taken, TAKEN_AT_ONCE).await > 0 {
        let mut pending: Option<(Arc<AckGroup>, Vec<Settled>)> = None;
        for work in taken.drain(..) {
            match work {
                AckWork::Group(group, settled) => match &mut pending {
                    Some((current, held)) if Arc::ptr_eq(current, &group) => {
                        held.extend(settled);
                    }
                    _ => {
                        if let Some((current, held)) = pending.replace((group, settled)) {
                            tell(&current, held, &counts, &pipeline).await;
                        }
                    }
                },
                AckWork::Flush(done) => {
                    // Everything handed before the flush is told before it is answered.
                    if let Some((current, held)) = pending.take() {
                        tell(&current, held, &counts, &pipeline).await;
                    }
                    let _ = done.send(());
                }
            }
        }
        if let Some((current, held)) = pending.take() {
            tell(&current, held, &counts, &pipeline).await;
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
