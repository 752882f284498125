//! Stages joined by subscriptions keep running while user code can reach any one of
//! them (a handle, a registered name, a supervisor, a stream); once none can be
//! reached, every stage of the set stops. The witness is tokio's count of live tasks,
//! back to what it was before the pipeline started.

mod support;

use futures::StreamExt;
use gen_stage::{ExitReason, ProducerConsumerRef, ProducerRef, Registry, SubscribeOptions};
use gen_stage_test::Relay;
use gen_stage_test::{Counter, Record, Watch};
use support::{Collector, collect, opts, range, within};

/// Live tasks of the current runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits, yielding to the other tasks, until the runtime runs `count` tasks.
async fn tasks_back_to(count: usize) {
    within("the pipeline's tasks to end", async {
        while alive_tasks() != count {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// The chain `counter -> relay -> collector`, and what the collector records.
async fn chain(
    counter: Counter,
) -> (
    ProducerRef<Counter>,
    ProducerConsumerRef<Relay<u64>>,
    Collector<u64>,
    Watch<Record<u64>>,
) {
    let producer = gen_stage::producer(counter).start().await.expect("starts");
    let middle = gen_stage::producer_consumer(Relay::pass_through())
        .subscribe_to(&producer, opts(40, 10))
        .start()
        .await
        .expect("starts");
    let (consumer, record) = collect(&middle, SubscribeOptions::new().max_demand(15)).await;
    (producer, middle, consumer, record)
}

#[tokio::test]
async fn keeping_only_the_consumers_handle_the_chain_runs_to_completion() {
    let before = alive_tasks();
    let (producer, middle, consumer, record) = chain(Counter::new(0).limit(1000)).await;
    drop((producer, middle));
    assert_eq!(
        within("the consumer stops", consumer.stopped()).await,
        ExitReason::Normal
    );
    assert_eq!(record.events(), range(0, 1000), "every event, once");
    drop(consumer);
    tasks_back_to(before).await;
}

#[tokio::test]
async fn keeping_only_the_producers_handle_the_consumer_still_runs() {
    let before = alive_tasks();
    let producer = gen_stage::producer(Counter::new(0))
        .start()
        .await
        .expect("starts");
    let (consumer, record) = collect(&producer, SubscribeOptions::new().max_demand(10)).await;
    drop(consumer);
    // Long after its handle went, the consumer still receives.
    let sent = producer.stats().events_emitted;
    record.wait_for_events(sent as usize + 1000).await;
    assert_eq!(record.terminated(), None);
    producer.stop(ExitReason::Shutdown).await.expect("alive");
    drop(producer);
    tasks_back_to(before).await;
    assert_eq!(record.terminated(), Some(ExitReason::Shutdown));
}

#[tokio::test]
async fn dropping_every_handle_of_a_busy_pipeline_ends_every_task() {
    let before = alive_tasks();
    let (producer, middle, consumer, record) = chain(Counter::new(0)).await;
    record.wait_for_events(1000).await;
    drop((producer, middle, consumer));
    tasks_back_to(before).await;
    assert_eq!(record.terminated(), Some(ExitReason::Unreachable));
}

#[tokio::test]
async fn a_producer_consumed_through_a_stream_ends_with_the_stream_and_its_handle() {
    let before = alive_tasks();
    let producer = gen_stage::source::from_iter(0u64..)
        .start()
        .await
        .expect("starts");
    let mut stream =
        gen_stage::stream::subscribe(&producer, SubscribeOptions::new().max_demand(10))
            .expect("valid options");
    assert_eq!(stream.next().await, Some(0));
    drop(producer);
    // The stream still reaches the producer.
    assert_eq!(stream.next().await, Some(1));
    drop(stream);
    tasks_back_to(before).await;
}

#[tokio::test]
async fn a_registered_name_keeps_a_stage_reachable_while_the_registry_lives() {
    let before = alive_tasks();
    let registry = Registry::new();
    let producer = gen_stage::producer(Counter::new(0))
        .name(&registry, "numbers")
        .start()
        .await
        .expect("starts");
    drop(producer);
    let found: gen_stage::ProducerRef<Counter> = registry.lookup("numbers").expect("still running");
    drop(found);
    assert!(registry.contains("numbers"));
    drop(registry);
    tasks_back_to(before).await;
}
