//! Pins the auto traits of the public types: handles, errors and streams move freely
//! between tasks and threads.

mod support;

use gen_stage::error::{CallError, NotAlive, OptionsError, SendError, StartError, SubscribeError};
use gen_stage::stats::StageStats;
use gen_stage::stream::EventStream;
use gen_stage::{ConsumerRef, ExitReason, ProducerConsumerRef, ProducerRef, SubscribeOptions};
use gen_stage_test::Relay;
use gen_stage_test::{CollectingConsumer, Counter};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn handles_are_send_and_sync() {
    send_sync::<ProducerRef<Counter>>();
    send_sync::<ConsumerRef<CollectingConsumer<u64>>>();
    send_sync::<ProducerConsumerRef<Relay<u64>>>();
    send_sync::<SubscribeOptions>();
    send_sync::<ExitReason>();
    send_sync::<StageStats>();
    send_sync::<gen_stage::supervision::SupervisorRef>();
    send_sync::<gen_stage::supervision::ChildEvent>();
    send_sync::<gen_stage::supervision::ChildEvent<gen_stage::supervision::TaskId>>();
    // A queue that tasks on other threads push into.
    send_sync::<gen_stage::source::MemorySource<u64>>();
}

#[test]
fn errors_are_errors_that_cross_threads() {
    error::<StartError>();
    error::<SubscribeError>();
    error::<CallError>();
    error::<NotAlive>();
    error::<SendError<u64>>();
    error::<gen_stage::ExitReason>();
    error::<gen_stage::supervision::Missed>();
}

#[test]
fn an_exit_reason_converts_into_a_boxed_error_with_question_mark() {
    fn stopped_with(reason: gen_stage::ExitReason) -> Result<(), gen_stage::BoxError> {
        Err(reason)?
    }
    let error = stopped_with(gen_stage::ExitReason::error("disk full")).expect_err("failed");
    assert_eq!(error.to_string(), "error: disk full");
}

#[test]
fn an_error_says_what_it_wraps_once() {
    use std::error::Error;
    let error = StartError::from(SubscribeError::from(OptionsError::MaxDemandZero));
    assert_eq!(
        error.to_string(),
        "initial subscription failed: invalid subscription options: expected max_demand to be equal to or greater than 1, got: 0"
    );
    // The message has it all; a chain of sources would repeat it.
    assert!(error.source().is_none());
}

#[test]
fn builders_and_streams_can_move_to_other_tasks() {
    send::<gen_stage::builder::ProducerBuilder<Counter>>();
    send::<gen_stage::builder::ConsumerBuilder<CollectingConsumer<u64>>>();
    send::<gen_stage::builder::ProducerConsumerBuilder<Relay<u64>>>();
    send::<EventStream<u64>>();
    send::<gen_stage::stream::EventBatches<u64>>();
    send_sync::<gen_stage::supervision::ChildEvents>();
    send_sync::<gen_stage::supervision::ChildEvents<gen_stage::supervision::TaskId>>();
    send::<
        gen_stage::builder::ProducerBuilder<
            gen_stage::source::FetchProducer<gen_stage::source::MemorySource<u64>>,
        >,
    >();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_can_be_started_from_a_spawned_task() {
    let producer = tokio::spawn(async { gen_stage::producer(Counter::new(0)).start().await })
        .await
        .expect("the task ran")
        .expect("the producer started");
    assert!(producer.is_alive());
    producer
        .stop(ExitReason::Shutdown)
        .await
        .expect("it was alive");
    assert_eq!(producer.stopped().await, ExitReason::Shutdown);
}
