//! Handles typed by event: producers of different types held alike, subscribed to from
//! every `subscribe_to`, stopped, read, found by name without their type, and keeping
//! their pipeline reachable as a `StageRef` does.

mod support;

use gen_stage::{AnyProducer, CancelMode, ExitReason, Registry, SubscribeOptions};
use gen_stage_test::{CollectingConsumer, Counter, ScriptedProducer};
use support::{range, within};

/// Two producers of different types, both emitting `u64`, held as one type.
async fn two_sources() -> Vec<AnyProducer<u64>> {
    let counter = gen_stage::producer(Counter::new(0).limit(3))
        .start()
        .await
        .expect("starts");
    let (scripted, _) = ScriptedProducer::with_queue(range(100, 103));
    let scripted = gen_stage::producer(scripted).start().await.expect("starts");
    vec![counter.into(), AnyProducer::from(&scripted)]
}

#[tokio::test]
async fn every_subscribe_to_takes_a_handle_typed_by_event() {
    let sources = two_sources().await;
    // The builder's subscription, then a running consumer's. Temporary: the first
    // source's end does not stop the consumer.
    let temporary = || SubscribeOptions::new().cancel(CancelMode::Temporary);
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer)
        .subscribe_to(&sources[0], temporary())
        .start()
        .await
        .expect("starts");
    consumer
        .subscribe_to(&sources[1], temporary())
        .await
        .expect("subscribes");
    within("every event", record.wait_for_events(6)).await;
    let mut events = record.events();
    events.sort_unstable();
    assert_eq!(events, [0, 1, 2, 100, 101, 102]);
}

#[tokio::test]
async fn a_handle_typed_by_event_reads_statistics_and_stops_its_stage() {
    let producer = gen_stage::producer(Counter::new(0))
        .start()
        .await
        .expect("starts");
    let any = AnyProducer::from(&producer);
    assert_eq!(any.id(), producer.id());
    assert_eq!(any, any.clone());
    let stream =
        gen_stage::stream::subscribe(&any, SubscribeOptions::new().max_demand(5)).expect("valid");
    let events: Vec<u64> = within(
        "five events",
        futures::StreamExt::collect(futures::StreamExt::take(stream, 5)),
    )
    .await;
    assert_eq!(events, range(0, 5));
    any.barrier().await.expect("alive");
    assert!(any.stats().events_emitted >= 5);

    any.stop(ExitReason::Shutdown).await.expect("was alive");
    assert!(!any.is_alive());
    assert_eq!(any.exit_reason(), Some(ExitReason::Shutdown));
    assert_eq!(producer.exit_reason(), Some(ExitReason::Shutdown));
    assert!(
        any.stop(ExitReason::Shutdown).await.is_err(),
        "stopped already"
    );
}

#[tokio::test]
async fn a_handle_typed_by_event_keeps_the_stage_reachable_until_dropped() {
    let producer = gen_stage::producer(Counter::new(0))
        .start()
        .await
        .expect("starts");
    let weak = producer.downgrade();
    let any: AnyProducer<u64> = producer.into();
    // The stage's own handle is gone; the event-typed one keeps it running.
    any.barrier().await.expect("alive");
    let watch = weak.upgrade().expect("running").downgrade();
    drop(any);
    // Nothing user code holds reaches it now: it stops as unreachable.
    within("the stage stops", async {
        while watch.upgrade().is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_registry_finds_a_producer_by_name_and_event_type_alone() {
    let registry = Registry::new();
    let producer = gen_stage::producer(Counter::new(0))
        .name(&registry, "counter")
        .start()
        .await
        .expect("starts");
    let found: AnyProducer<u64> = registry.lookup_producer("counter").expect("registered");
    assert_eq!(found.id(), producer.id());
    assert!(registry.lookup_producer::<String>("counter").is_none());
    assert!(registry.lookup_producer::<u64>("nobody").is_none());
    producer.stop(ExitReason::Normal).await.expect("alive");
    assert!(registry.lookup_producer::<u64>("counter").is_none());
}

#[tokio::test]
async fn a_supervisor_watches_and_restarts_a_child_started_as_a_handle_typed_by_event() {
    use gen_stage::supervision::{ChildEvent, ChildSpec, Supervisor};
    let registry = Registry::new();
    let spec = {
        let registry = registry.clone();
        ChildSpec::new("counter", move || {
            let started = gen_stage::producer(Counter::new(0))
                .name(&registry, "counter")
                .start();
            async move { started.await.map(AnyProducer::from) }
        })
    };
    let supervisor = Supervisor::new().child(spec).start().await.expect("starts");
    let mut events = supervisor.watch();
    let first: AnyProducer<u64> = registry.lookup_producer("counter").expect("running");
    first.kill();
    within("the restart", async {
        while let Some(event) = events.next().await {
            if matches!(event, Ok(ChildEvent::Restarted { .. })) {
                return;
            }
        }
        panic!("the supervisor stopped");
    })
    .await;
    let second: AnyProducer<u64> = registry.lookup_producer("counter").expect("restarted");
    assert_ne!(second.id(), first.id());
    // Stopping the supervisor stops the child through the handle it was given.
    supervisor.stop(ExitReason::Shutdown).await.expect("alive");
    assert_eq!(
        within("the child stops", second.stopped()).await,
        ExitReason::Shutdown
    );
}
