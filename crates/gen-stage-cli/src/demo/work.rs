//! The demo's work: synthetic jobs in an in-memory queue, a handler that runs each
//! delivery's simulated I/O concurrently, fails some jobs on their first attempt, and
//! writes batches to a ledger that counts how often each job was written.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use gen_stage::BoxError;
use gen_stage_pipeline::{Batch, BatchOutcome, Handler, Message, ProcessorContext};

/// The batcher every job goes to.
pub(crate) const BATCHER: &str = "db";

/// One unit of work.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    /// How long its simulated request takes.
    pub(crate) cost: Duration,
    /// Whether its first attempt fails (a service that timed out).
    pub(crate) fails_first: bool,
}

/// Makes `count` jobs from `seed`: costs between half and one and a half times
/// `task`, and about `fail_percent` of them failing at their first attempt.
pub(crate) fn jobs(
    count: u64,
    task: Duration,
    fail_percent: u64,
    seed: u64,
) -> impl Iterator<Item = Job> + Send + 'static {
    let mut state = seed | 1;
    (0..count).map(move |id| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let spread = state % 1000; // 0..1000 thousandths
        Job {
            id,
            cost: task.mul_f64(0.5 + spread as f64 / 1000.0),
            fails_first: (state >> 20) % 100 < fail_percent,
        }
    })
}

/// What the batch processor wrote, job by job, and the most messages the processors
/// held in their callbacks at once.
#[derive(Debug)]
pub(crate) struct Ledger {
    written: Mutex<Vec<u32>>,
    in_hand: AtomicUsize,
    peak_in_hand: AtomicUsize,
}

impl Ledger {
    pub(crate) fn new(jobs: u64) -> Self {
        Ledger {
            written: Mutex::new(vec![0; usize::try_from(jobs).unwrap_or(usize::MAX)]),
            in_hand: AtomicUsize::new(0),
            peak_in_hand: AtomicUsize::new(0),
        }
    }

    fn written(&self) -> MutexGuard<'_, Vec<u32>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Jobs written once, never, and more than once.
    pub(crate) fn check(&self) -> (usize, usize, usize) {
        let written = self.written();
        let once = written.iter().filter(|&&count| count == 1).count();
        let never = written.iter().filter(|&&count| count == 0).count();
        (once, never, written.len() - once - never)
    }

    /// The most messages the processors held in their callbacks at once.
    pub(crate) fn peak_in_hand(&self) -> usize {
        self.peak_in_hand.load(Ordering::Relaxed)
    }
}

/// The demo's callbacks.
pub(crate) struct Work {
    pub(crate) ledger: std::sync::Arc<Ledger>,
    /// How long writing one batch takes.
    pub(crate) write: Duration,
}

impl Handler for Work {
    type Data = Job;

    /// The delivery's requests, all in flight at once: a processor holds up to its
    /// `max_demand` jobs, and the processors run side by side.
    async fn prepare_messages(
        &self,
        messages: &mut [Message<Job>],
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let count = messages.len();
        let in_hand = self.ledger.in_hand.fetch_add(count, Ordering::Relaxed) + count;
        self.ledger
            .peak_in_hand
            .fetch_max(in_hand, Ordering::Relaxed);
        join_all(
            messages
                .iter()
                .map(|message| tokio::time::sleep(message.data().cost)),
        )
        .await;
        self.ledger.in_hand.fetch_sub(count, Ordering::Relaxed);
        Ok(())
    }

    async fn handle_message(
        &self,
        message: &mut Message<Job>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if message.data().fails_first && message.metadata().attempt == 1 {
            return Err("the service timed out".into());
        }
        message.put_batcher(BATCHER);
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<Job>) -> BatchOutcome<Job> {
        tokio::time::sleep(self.write).await;
        {
            let mut written = self.ledger.written();
            for job in batch.data() {
                if let Some(count) = usize::try_from(job.id)
                    .ok()
                    .and_then(|id| written.get_mut(id))
                {
                    *count += 1;
                }
            }
        }
        batch.done()
    }
}
