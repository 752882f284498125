//! A processor, batcher or batch processor that fails is restarted with every stage
//! after the producers; what the failed stages held is never acked, but released for
//! redelivery; past the restart budget the pipeline stops. The queue is the witness.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::{BoxError, ExitReason};
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatcherOptions, Handler, MemoryQueue, Message, Outcome, Pipeline,
    ProcessorContext, ProcessorOptions, RetryPolicy, StageLayer,
};
use support::{SECOND, assert_adds_up};
use tokio::sync::Notify;

/// Data whose drop panics once its fuse is lit: it kills whichever stage drops it,
/// outside any callback.
#[derive(Clone, Debug)]
struct Fused {
    number: u64,
    lit: bool,
}

impl Drop for Fused {
    fn drop(&mut self) {
        if self.lit && !std::thread::panicking() {
            panic!("message {} blew up its stage", self.number);
        }
    }
}

/// Lights the fuse of message `fuse` (at the attempts `lit_on` allows) and fails
/// it: the processor that settles it then dies dropping it. Says when it sees
/// `watch` at attempt 2.
struct LightFuse {
    fuse: u64,
    lit_on: fn(u32) -> bool,
    watch: u64,
    seen_again: Arc<Notify>,
}

impl Handler for LightFuse {
    type Data = Fused;

    async fn handle_message(
        &self,
        message: &mut Message<Fused>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let attempt = message.metadata().attempt;
        let number = message.data().number;
        if number == self.watch && attempt == 2 {
            self.seen_again.notify_one();
        }
        if number == self.fuse && (self.lit_on)(attempt) {
            message.data_mut().lit = true;
            message.fail("lit");
        }
        Ok(())
    }
}

fn queue_of(count: u64) -> MemoryQueue<Fused> {
    let queue = MemoryQueue::new();
    queue.extend((0..count).map(|number| Fused { number, lit: false }));
    queue
}

/// Each message's outcomes by its number, in the order the queue received them (the
/// queue numbers messages from 1, in the order they were pushed).
fn outcomes_by_number(queue: &MemoryQueue<Fused>) -> BTreeMap<u64, Vec<Outcome>> {
    let mut by_number: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
    for (id, _, outcome) in queue.history() {
        by_number.entry(id - 1).or_default().push(outcome);
    }
    by_number
}

#[tokio::test(start_paused = true)]
async fn a_failed_processor_is_restarted_with_the_batcher_and_what_they_held_is_released() {
    let queue = queue_of(20);
    let source = queue.clone();
    let seen_again = Arc::new(Notify::new());
    let handler = LightFuse {
        fuse: 15,
        lit_on: |attempt| attempt == 1,
        watch: 15,
        seen_again: seen_again.clone(),
    };
    // The batcher never closes a batch before the drain: whatever it holds when the
    // processor dies was handled but not acked.
    let pipeline = Pipeline::builder(handler)
        .producer(move || source.producer())
        .processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(10)
                .min_demand(5),
        )
        .batcher(
            "default",
            BatcherOptions::new()
                .batch_size(100)
                .batch_timeout(Duration::from_secs(3600)),
        )
        .retry(RetryPolicy::new().first_delay(SECOND))
        .start()
        .await
        .expect("starts");
    // 15 comes back once its retry is due, to the new processor.
    tokio::time::timeout(60 * SECOND, seen_again.notified())
        .await
        .expect("the processors were restarted and took message 15 again");
    let snapshot = pipeline.snapshot();
    assert_eq!(snapshot.restarts, 1);
    assert!(snapshot.stages.iter().all(|stage| {
        stage.state == gen_stage::stats::StageState::Running || stage.layer == StageLayer::Producer
    }));
    let report = pipeline.drain(60 * SECOND).await;

    // Nothing was acked before the restart: every message but 15 was held by the
    // processor or the batcher that stopped, released, then acked after the drain's
    // flush; 15 failed once (retried), then was acked.
    let by_number = outcomes_by_number(&queue);
    assert_eq!(by_number.len(), 20);
    for (number, outcomes) in &by_number {
        let first_ok = match outcomes.first() {
            Some(Outcome::Retry { .. }) => *number == 15,
            Some(Outcome::Release) => *number != 15,
            _ => false,
        };
        assert!(
            first_ok && outcomes.len() == 2 && outcomes[1] == Outcome::Ack,
            "message {number}: {outcomes:?}"
        );
    }
    assert_eq!(queue.acked(), 20);
    assert_eq!(queue.in_flight(), 0);
    assert_eq!(queue.stray_outcomes(), 0);
    assert_eq!(report.settled.acked, 20);
    assert_eq!(report.settled.released, 19);
    assert_adds_up(&report);
    assert_eq!(pipeline.failure(), None);
}

/// Lights the fuse of message 3 in `handle_batch` at its first attempt and fails it:
/// the batch processor dies dropping it, after settling its batch.
struct LightFuseInBatch {
    seen_again: Arc<Notify>,
}

impl Handler for LightFuseInBatch {
    type Data = Fused;

    async fn handle_message(
        &self,
        _: &mut Message<Fused>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_batch(&self, mut batch: Batch<Fused>) -> BatchOutcome<Fused> {
        for message in batch.messages_mut() {
            if message.data().number == 3 {
                if message.metadata().attempt == 1 {
                    message.data_mut().lit = true;
                    message.fail("lit");
                } else {
                    self.seen_again.notify_one();
                }
            }
        }
        batch.done()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_processor_is_restarted_and_the_pipeline_goes_on() {
    let queue = queue_of(10);
    let source = queue.clone();
    let seen_again = Arc::new(Notify::new());
    let pipeline = Pipeline::builder(LightFuseInBatch {
        seen_again: seen_again.clone(),
    })
    .producer(move || source.producer())
    .processors(ProcessorOptions::new().concurrency(2))
    .batcher("default", BatcherOptions::new().batch_size(5))
    .retry(RetryPolicy::new().first_delay(SECOND))
    .start()
    .await
    .expect("starts");
    tokio::time::timeout(60 * SECOND, seen_again.notified())
        .await
        .expect("the batch processor was restarted and took message 3 again");
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;
    assert_eq!(pipeline.snapshot().restarts, 1);
    assert_eq!(queue.acked(), 10);
    assert_eq!(queue.in_flight(), 0);
    assert_eq!(queue.stray_outcomes(), 0);
    // Message 3 failed once, then was acked; none was acked twice.
    let by_number = outcomes_by_number(&queue);
    assert!(matches!(
        by_number[&3][..],
        [Outcome::Retry { .. }, Outcome::Ack]
    ));
    assert!(
        by_number
            .values()
            .all(|outcomes| { outcomes.iter().filter(|outcome| outcome.is_ack()).count() == 1 })
    );
    assert_adds_up(&report);
}

#[tokio::test(start_paused = true)]
async fn stages_that_keep_failing_spend_the_restart_budget_and_the_pipeline_stops() {
    let queue = queue_of(5);
    let source = queue.clone();
    // Message 0 blows up its processor at every attempt.
    let handler = LightFuse {
        fuse: 0,
        lit_on: |_| true,
        watch: u64::MAX,
        seen_again: Arc::new(Notify::new()),
    };
    let pipeline = Pipeline::builder(handler)
        .producer(move || source.producer())
        .processors(ProcessorOptions::new().concurrency(1))
        .retry(RetryPolicy::new().first_delay(SECOND).max_attempts(100))
        .max_restarts(2, 60 * SECOND)
        .start()
        .await
        .expect("starts");
    let reason = tokio::time::timeout(60 * SECOND, pipeline.failed())
        .await
        .expect("the pipeline stopped");
    assert!(matches!(reason, ExitReason::Panic(_)), "{reason:?}");
    assert_eq!(pipeline.snapshot().restarts, 2);
    pipeline.stopped().await;
    let report = pipeline.counts();
    assert_adds_up(&report);
    // Message 0 was never acked: each time it failed (then its stage died).
    let by_number = outcomes_by_number(&queue);
    let zero = &by_number[&0];
    assert!(
        zero.len() >= 3 && zero.iter().all(|outcome| !outcome.is_ack()),
        "{zero:?}"
    );
}
