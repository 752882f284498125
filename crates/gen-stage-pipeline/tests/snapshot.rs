//! The snapshot: the whole topology at once, read while every stage is inside a
//! callback, with busy shares and rates over the last few seconds.

mod support;

use std::sync::Arc;

use gen_stage::BoxError;
use gen_stage::stats::StageState;
use gen_stage_pipeline::{
    BatcherOptions, Handler, MemoryQueue, Message, ProcessorContext, ProcessorOptions, RateLimit,
    StageLayer,
};
use support::{SECOND, start};
use tokio::sync::Semaphore;

/// Waits for a permit per message: blocked until the test lets it go.
struct Gated(Semaphore);

impl Handler for Gated {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.0.acquire().await?.forget();
        message.put_batcher("out");
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_shows_every_stage_while_all_are_inside_callbacks() {
    let queue = MemoryQueue::new();
    queue.extend(0..100);
    let handler = Arc::new(Gated(Semaphore::new(0)));
    let pipeline = start(handler.clone(), &queue, |b| {
        b.name("gated")
            .processors(ProcessorOptions::new().concurrency(2).max_demand(4))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(10).batch_timeout(SECOND),
            )
            .rate_limit(RateLimit::new(1000, SECOND))
    })
    .await;
    // Both processors hold a delivery and wait in handle_message for two seconds.
    tokio::time::sleep(2 * SECOND).await;
    let snapshot = pipeline.snapshot();
    assert_eq!(snapshot.name, "gated");
    let layers: Vec<(StageLayer, &str)> = snapshot
        .stages
        .iter()
        .map(|stage| (stage.layer, stage.name.as_str()))
        .collect();
    assert_eq!(
        layers,
        [
            (StageLayer::Producer, "producer 0"),
            (StageLayer::Processor, "processor 0"),
            (StageLayer::Processor, "processor 1"),
            (StageLayer::Batcher, "batcher \"out\""),
            (StageLayer::BatchProcessor, "batch processor 0 of \"out\""),
        ]
    );
    for stage in &snapshot.stages {
        assert_eq!(stage.state, StageState::Running, "{}", stage.name);
    }
    for processor in &snapshot.stages[1..3] {
        assert!(processor.busy > 0.9, "{processor:?}");
        assert!(processor.in_flight > 0, "{processor:?}");
        assert_eq!(
            processor.demand_owed, 10,
            "the batcher asked for a batch: {processor:?}"
        );
    }
    assert_eq!(snapshot.counts.taken_in, 8, "two deliveries of four");
    assert_eq!(
        snapshot.rate_limit.map(|limit| limit.limit),
        Some(RateLimit::new(1000, SECOND))
    );

    // Let everything through: the rates show it, then fade with the window.
    handler.0.add_permits(1000);
    queue.settled().await;
    let busy = pipeline.snapshot();
    let rate = |snapshot: &gen_stage_pipeline::PipelineSnapshot, layer| -> f64 {
        snapshot
            .stages
            .iter()
            .filter(|s| s.layer == layer)
            .map(|s| s.messages_per_second)
            .sum()
    };
    assert!(rate(&busy, StageLayer::Processor) > 0.0);
    assert!(rate(&busy, StageLayer::BatchProcessor) > 0.0);
    assert_eq!(busy.counts.settled.acked, 100);
    tokio::time::sleep(10 * SECOND).await;
    let quiet = pipeline.snapshot();
    assert_eq!(rate(&quiet, StageLayer::Processor), 0.0);
    assert_eq!(rate(&quiet, StageLayer::Producer), 0.0);
    assert!(
        quiet
            .stages
            .iter()
            .all(|stage| stage.busy == 0.0 && stage.in_flight == 0)
    );
    assert!(quiet.window >= 4 * SECOND && quiet.window <= 5 * SECOND);
    pipeline.drain(SECOND).await;
}

/// A source whose connection the test sets.
struct Flaky(std::sync::Mutex<gen_stage_pipeline::SourceStatus>);

impl gen_stage_pipeline::SourceHealth for Flaky {
    fn status(&self) -> gen_stage_pipeline::SourceStatus {
        self.0.lock().expect("not poisoned").clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_reports_each_registered_source_as_it_is_now() {
    let queue = MemoryQueue::new();
    let flaky = Arc::new(Flaky(std::sync::Mutex::new(
        gen_stage_pipeline::SourceStatus::new("orders"),
    )));
    let handler = Arc::new(Gated(Semaphore::new(0)));
    let pipeline = start(handler, &queue, |b| b.source_health(flaky.clone())).await;
    let before = pipeline.snapshot().sources;
    assert_eq!(before.len(), 1);
    assert_eq!(
        (before[0].name.as_str(), before[0].connected),
        ("orders", false)
    );
    {
        let mut status = flaky.0.lock().expect("not poisoned");
        status.connected = true;
        status.reconnect_attempt = 0;
        status.voided_acks = 2;
    }
    let after = &pipeline.snapshot().sources[0];
    assert!(after.connected);
    assert_eq!(after.voided_acks, 2);
    pipeline.kill();
}
