//! Draining: in-flight work finishes and is acknowledged; at the deadline, work still
//! running is cancelled and what it held is left for redelivery; the report adds up.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Handler, MemoryQueue, Message, Outcome, ProcessorContext, ProcessorOptions,
};
use support::{SECOND, assert_adds_up, assert_settled_once, start};
use tokio::sync::Notify;

/// Blocks on message 0 (never returns while `blocking`), handles the rest.
struct Stuck {
    blocking: AtomicBool,
    reached: Notify,
}

impl Handler for Stuck {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if *message.data() == 0 && self.blocking.load(Ordering::SeqCst) {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_running_work_is_cancelled_and_left_for_redelivery() {
    let queue = MemoryQueue::new();
    queue.extend(0..50);
    let handler = Arc::new(Stuck {
        blocking: AtomicBool::new(true),
        reached: Notify::new(),
    });
    // One processor asking 10 at a time: 0 blocks it with 9 more behind it.
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1).max_demand(10))
    })
    .await;
    handler.reached.notified().await;
    let report = pipeline.drain(3 * SECOND).await;

    assert!(report.deadline_reached);
    assert_adds_up(&report);
    assert_eq!(report.settled.acked, 0);
    assert_eq!(report.settled.released, report.taken_in);
    assert_eq!(report.dropped_handles, report.taken_in);
    // The queue got every message back: none in flight, none lost, none acked twice.
    assert_settled_once(&queue);
    assert_eq!(queue.unsettled(), 50);

    // A second pipeline on the same queue, cut short the same way: its dropped
    // handles are counted in its own report, not the first one's.
    let first = report;
    let second = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1).max_demand(10))
    })
    .await;
    handler.reached.notified().await;
    let report = second.drain(3 * SECOND).await;
    assert_adds_up(&report);
    // (0 came back last: the others went through before it blocked again.)
    assert!(report.dropped_handles >= 1);
    assert_eq!(report.settled.released, report.dropped_handles);
    assert_eq!(
        report.settled.acked + report.settled.released,
        report.taken_in
    );
    assert_eq!(
        pipeline.counts(),
        first,
        "the first pipeline's report did not move"
    );
    assert_settled_once(&queue);

    // Delivered again to a pipeline that does not block, each ends acked.
    handler.blocking.store(false, Ordering::SeqCst);
    let again = start(handler.clone(), &queue, |b| b).await;
    queue.settled().await;
    let report = again.drain(3 * SECOND).await;
    assert_eq!(queue.acked(), 50);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Counts the messages it handles.
struct Slow;

impl Handler for Slow {
    type Data = u64;

    async fn handle_message(
        &self,
        _: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        tokio::time::sleep(SECOND / 10).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_drain_finishes_what_was_taken_in_and_takes_nothing_more() {
    let queue = MemoryQueue::new();
    queue.extend(0..1000);
    let pipeline = start(Slow, &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2).max_demand(10))
    })
    .await;
    tokio::time::sleep(SECOND).await;
    let report = pipeline.drain(60 * SECOND).await;

    assert!(!report.deadline_reached);
    // What was taken in was handled and acked; the rest never left the queue.
    assert_eq!(report.settled.acked, report.taken_in);
    assert!(report.taken_in < 1000);
    assert_eq!(queue.acked(), report.taken_in);
    assert_eq!(queue.unsettled() as u64, 1000 - report.taken_in);
    assert_adds_up(&report);
    assert_settled_once(&queue);
    // A second drain reports the same.
    assert_eq!(pipeline.drain(SECOND).await.settled, report.settled);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_handle_settles_as_the_configured_outcome() {
    // Handles dropped by a cancelled callback end as `on_drop` says: here, retried.
    let queue = MemoryQueue::new();
    queue.extend(0..5);
    let handler = Arc::new(Stuck {
        blocking: AtomicBool::new(true),
        reached: Notify::new(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1))
            .on_drop(Outcome::Retry { after: SECOND })
    })
    .await;
    handler.reached.notified().await;
    let report = pipeline.drain(SECOND).await;
    assert_eq!(report.settled.retried, report.taken_in);
    assert_eq!(report.settled.released, 0);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}
