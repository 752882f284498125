//! `start` refuses options a pipeline cannot run with, naming the option.

mod support;

use std::time::Duration;

use gen_stage_pipeline::{
    BatcherOptions, MemoryQueue, Outcome, Pipeline, PipelineBuilder, ProcessorOptions, StartError,
};
use std::sync::Arc;

use gen_stage_pipeline::RetryPolicy;
use support::{Accept, Recorder, Traced};

fn with_producer() -> PipelineBuilder<Accept> {
    let queue = MemoryQueue::new();
    Pipeline::builder(Accept).producer(move || queue.producer())
}

/// The option `start` names as invalid.
async fn refused(builder: PipelineBuilder<Accept>) -> String {
    match builder.start().await {
        Err(StartError::InvalidOption { option, problem }) => {
            assert!(!problem.is_empty());
            option
        }
        other => panic!("expected an invalid option, got {other:?}"),
    }
}

#[tokio::test]
async fn each_invalid_option_is_named() {
    assert_eq!(refused(Pipeline::builder(Accept)).await, "producer");
    assert_eq!(
        refused(with_producer().on_drop(Outcome::Ack)).await,
        "on_drop"
    );
    let processors = |options| with_producer().processors(options);
    assert_eq!(
        refused(processors(ProcessorOptions::new().concurrency(0))).await,
        "processors.concurrency"
    );
    assert_eq!(
        refused(processors(ProcessorOptions::new().max_demand(0))).await,
        "processors.max_demand"
    );
    assert_eq!(
        refused(processors(
            ProcessorOptions::new().max_demand(10).min_demand(10)
        ))
        .await,
        "processors.min_demand"
    );
    let batcher = |options| with_producer().batcher("db", options);
    assert_eq!(
        refused(batcher(BatcherOptions::new().batch_size(0))).await,
        "batchers[\"db\"].batch_size"
    );
    assert_eq!(
        refused(batcher(BatcherOptions::new().batch_timeout(Duration::ZERO))).await,
        "batchers[\"db\"].batch_timeout"
    );
    assert_eq!(
        refused(batcher(BatcherOptions::new().concurrency(0))).await,
        "batchers[\"db\"].concurrency"
    );
    let twice = with_producer()
        .batcher("db", BatcherOptions::new())
        .batcher("db", BatcherOptions::new());
    assert_eq!(refused(twice).await, "batchers[\"db\"].name");
    let message = with_producer()
        .processors(ProcessorOptions::new().max_demand(0))
        .start()
        .await
        .expect_err("refused")
        .to_string();
    assert_eq!(
        message,
        "invalid pipeline option processors.max_demand: must be at least 1"
    );
}

#[tokio::test]
async fn a_pipeline_can_be_started_from_a_spawned_task() {
    // The builder's `start` is `Send`: a service starts its pipeline inside a task.
    let started = tokio::spawn(with_producer().start())
        .await
        .expect("the task ran");
    let pipeline = started.expect("starts");
    assert_eq!(pipeline.drain(Duration::from_secs(1)).await.taken_in, 0);
}

#[tokio::test]
async fn a_policy_that_would_redeliver_a_failing_message_at_once_for_ever_is_warned_of() {
    let traced = Arc::new(Traced::default());
    let _default = tracing::subscriber::set_default(Recorder(traced.clone()));
    let looping = RetryPolicy::new()
        .unlimited_attempts()
        .first_delay(Duration::ZERO);
    let pipeline = with_producer()
        .retry(looping)
        .start()
        .await
        .expect("starts");
    let bounded = with_producer()
        .retry(RetryPolicy::new().unlimited_attempts())
        .start()
        .await
        .expect("starts");
    let warnings: Vec<String> = traced
        .events
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(level, text)| *level == tracing::Level::WARN && text.contains("for ever"))
        .map(|(_, text)| text.clone())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    pipeline.drain(Duration::from_secs(1)).await;
    bounded.drain(Duration::from_secs(1)).await;
}

/// A source with a budget of 10 messages in flight.
struct Budgeted;

impl gen_stage_pipeline::SourceHealth for Budgeted {
    fn status(&self) -> gen_stage_pipeline::SourceStatus {
        gen_stage_pipeline::SourceStatus::new("small")
    }

    fn in_flight_budget(&self) -> Option<usize> {
        Some(10)
    }
}

#[tokio::test]
async fn a_source_budget_that_cannot_fill_a_batch_is_refused_naming_both() {
    let batching = |batch_size| {
        with_producer()
            .source_health(Budgeted)
            .batcher("db", BatcherOptions::new().batch_size(batch_size))
            .batcher("log", BatcherOptions::new().batch_size(2))
    };
    match batching(11).start().await {
        Err(StartError::BudgetTooSmall {
            source,
            budget,
            batcher,
            batch_size,
        }) => assert_eq!(
            (source.as_str(), budget, batcher.as_str(), batch_size),
            ("small", 10, "db", 11)
        ),
        other => panic!("expected BudgetTooSmall, got {other:?}"),
    }
    batching(10)
        .start()
        .await
        .expect("a batch of 10 fills")
        .kill();
}
