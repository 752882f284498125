//! Batchers: batches never exceed their size nor wait past their timeout, a batch
//! lost to its callback is delivered again, and a drain flushes partial batches.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatchTrigger, BatcherOptions, Handler, MemoryQueue, Message,
    ProcessorContext, ProcessorOptions,
};
use support::{Log, SECOND, assert_adds_up, assert_settled_once, start};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Sends every message to the batcher "out"; records each message's entry and each
/// batch; panics in the first batch holding message `panic_on` on its first attempt.
struct Recorder {
    handled: Log<(u64, Instant)>,
    batches: Log<(Vec<u64>, BatchTrigger, Instant)>,
    panic_on: Option<u64>,
    /// Woken after each handle_message.
    progress: Notify,
}

impl Recorder {
    fn new(panic_on: Option<u64>) -> Arc<Self> {
        Arc::new(Recorder {
            handled: Log::default(),
            batches: Log::default(),
            panic_on,
            progress: Notify::new(),
        })
    }

    /// Waits until `count` messages went through handle_message.
    async fn handled_at_least(&self, count: usize) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.handled.len() >= count {
                return;
            }
            progress.await;
        }
    }
}

impl Handler for Recorder {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.handled.push((*message.data(), Instant::now()));
        message.put_batcher("out");
        self.progress.notify_waiters();
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<u64>) -> BatchOutcome<u64> {
        let panics = batch
            .messages()
            .iter()
            .any(|m| Some(*m.data()) == self.panic_on && m.metadata().attempt == 1);
        if panics {
            panic!("the sink failed");
        }
        let data = batch.data().copied().collect();
        self.batches
            .push((data, batch.info().trigger, Instant::now()));
        batch.done()
    }
}

#[tokio::test(start_paused = true)]
async fn batches_close_at_their_size_or_their_timeout_whichever_comes_first() {
    let queue = MemoryQueue::new();
    queue.extend(0..25);
    let recorder = Recorder::new(None);
    let timeout = Duration::from_millis(300);
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(10).batch_timeout(timeout),
            )
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let entered: std::collections::HashMap<u64, Instant> =
        recorder.handled.take().into_iter().collect();
    let batches = recorder.batches.take();
    let sizes: Vec<usize> = batches.iter().map(|(data, ..)| data.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let triggers: Vec<BatchTrigger> = batches.iter().map(|(_, trigger, _)| *trigger).collect();
    assert_eq!(
        triggers,
        [
            BatchTrigger::Size,
            BatchTrigger::Size,
            BatchTrigger::Timeout
        ]
    );
    // The partial batch waited its timeout from its first message, and no longer.
    let (last, _, closed) = &batches[2];
    let first = entered[&last[0]];
    assert!(*closed - first >= timeout);
    assert!(
        *closed - first < timeout + Duration::from_millis(50),
        "{:?}",
        *closed - first
    );
    assert_eq!(queue.acked(), 25);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn a_batch_lost_to_a_panic_is_released_counted_and_delivered_again() {
    let queue = MemoryQueue::new();
    queue.extend(0..20);
    let recorder = Recorder::new(Some(3));
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(5).batch_timeout(SECOND),
            )
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    // The batch holding 3 was dropped with the panic: its messages were released,
    // came back, and went through on their second attempt.
    assert_eq!(queue.acked(), 20);
    let released = report.settled.released;
    assert!((1..=5).contains(&released), "{report:?}");
    assert_eq!(report.dropped_handles, released);
    assert_eq!(report.settled.acked, 20);
    assert_eq!(report.taken_in, 20 + released);
    let written: usize = recorder
        .batches
        .take()
        .iter()
        .map(|(data, ..)| data.len())
        .sum();
    assert_eq!(written, 20, "every message written once");
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn a_drain_flushes_partial_batches_and_acks_them() {
    let queue = MemoryQueue::new();
    queue.extend(0..30);
    let recorder = Recorder::new(None);
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2))
            // Neither the size nor the timeout closes a batch in this test.
            .batcher(
                "out",
                BatcherOptions::new()
                    .batch_size(100)
                    .batch_timeout(3600 * SECOND),
            )
    })
    .await;
    recorder.handled_at_least(30).await;
    assert!(recorder.batches.take().is_empty());
    let report = pipeline.drain(5 * SECOND).await;

    let batches = recorder.batches.take();
    assert!(
        batches
            .iter()
            .all(|(_, trigger, _)| *trigger == BatchTrigger::Flush)
    );
    assert_eq!(
        batches.iter().map(|(data, ..)| data.len()).sum::<usize>(),
        30
    );
    assert_eq!(report.settled.acked, 30);
    assert_eq!(queue.acked(), 30);
    assert!(!report.deadline_reached);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}
