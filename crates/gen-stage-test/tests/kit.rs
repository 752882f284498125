//! The test kit's own promises: a counter limited where it starts stops, a wait on a
//! consumer that is gone, or on anything that cannot change, fails instead of waiting
//! forever, and a collecting consumer's clones fill one record.

use gen_stage::error::StartError;
use gen_stage::{CancelReason, ExitReason, SubscribeOptions};
use gen_stage_test::{
    CollectingConsumer, Counter, ProducerRecord, Recorded, Request, Script, ScriptedProducer, Watch,
};

#[tokio::test]
async fn a_counter_limited_where_it_starts_stops_on_its_first_demand() {
    let producer = gen_stage::producer(Counter::new(5).limit(5))
        .start()
        .await
        .unwrap();
    let (consumer, record) = CollectingConsumer::<u64>::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    assert_eq!(record.read(|r| r.batches.len()), 0);
}

#[tokio::test]
#[should_panic(expected = "the consumer is gone")]
async fn waiting_for_events_a_consumer_that_is_gone_never_gets_fails() {
    let producer = gen_stage::source::from_iter(0..3u64).start().await.unwrap();
    let (consumer, record) = CollectingConsumer::<u64>::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();
    // The producer stops after 3 and its permanent consumer follows it out.
    record.wait_for_events(10).await;
}

#[tokio::test]
async fn a_counter_near_the_end_of_u64_stops_counting_instead_of_overflowing() {
    let producer = gen_stage::producer(Counter::new(u64::MAX - 2))
        .start()
        .await
        .unwrap();
    let (consumer, record) = CollectingConsumer::<u64>::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, SubscribeOptions::new().max_demand(10))
        .start()
        .await
        .unwrap();
    record.wait_for_events(2).await;
    assert_eq!(record.events(), vec![u64::MAX - 2, u64::MAX - 1]);
    // It is still running: a demand past the end did not make it panic.
    assert_eq!(producer.estimate_buffered_count().await, Ok(0));
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "the condition never held")]
async fn a_wait_nothing_can_end_fails_instead_of_hanging() {
    // Nothing will ever push: with the clock paused, the wait gives up as soon as the
    // runtime has nothing else to do.
    let recorded: Recorded<u32> = Recorded::default();
    recorded.wait_for_len(1).await;
}

/// A producer with nothing queued, the trapped `consumer` subscribed to it, and the
/// producer's record; the producer emits each of `batches` once the consumer is subscribed.
async fn trapped(
    consumer: CollectingConsumer<u64>,
    batches: Vec<Vec<u64>>,
) -> (
    gen_stage::ConsumerRef<CollectingConsumer<u64>>,
    gen_stage::ProducerRef<ScriptedProducer<u64>>,
    Watch<ProducerRecord>,
) {
    let (script, producer_record) = ScriptedProducer::new();
    let producer = gen_stage::producer(script)
        .start()
        .await
        .expect("the producer starts");
    let consumer = gen_stage::consumer(consumer)
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .expect("the consumer starts");
    for batch in batches {
        let cast = producer.cast(Script::Emit(batch));
        cast.expect("the producer is alive");
    }
    (consumer, producer, producer_record)
}

#[tokio::test]
async fn a_consumer_that_panics_on_an_event_stops_without_recording_its_batch() {
    let (consumer, record) = CollectingConsumer::new();
    let consumer = consumer.panics_on(|&event| event == 13);
    let (consumer, producer, producer_record) =
        trapped(consumer, vec![vec![1, 2], vec![12, 13, 14], vec![15]]).await;
    let reason = ExitReason::Panic("panics on event 13".into());
    assert_eq!(consumer.stopped().await, reason);
    assert_eq!(record.events(), vec![1, 2]);
    assert_eq!(record.read(|r| r.trapped[0].1.clone()), vec![12, 13, 14]);
    assert_eq!(record.terminated(), Some(reason.clone()));
    producer_record.wait_until(|r| !r.cancels.is_empty()).await;
    let cancels = producer_record.read(|r| r.cancels.clone());
    assert_eq!(
        cancels,
        vec![(
            record.read(|r| r.subscriptions[0]),
            CancelReason::Down(reason)
        )]
    );
    assert!(producer.is_alive());
}

#[tokio::test]
async fn a_consumer_that_fails_on_an_event_stops_with_an_error() {
    let (consumer, record) = CollectingConsumer::new();
    let consumer = consumer.fails_on(|&event| event % 2 == 1);
    let (consumer, _producer, _) = trapped(consumer, vec![vec![2, 4], vec![6, 7, 9]]).await;
    let reason = ExitReason::error("fails on event 7");
    assert_eq!(consumer.stopped().await, reason);
    assert_eq!(record.events(), vec![2, 4]);
    assert_eq!(record.terminated(), Some(reason));
}

#[tokio::test]
async fn a_consumer_that_stops_on_an_event_records_its_batch_first() {
    let reason = ExitReason::custom_shutdown("stop event");
    let (consumer, record) = CollectingConsumer::new();
    let consumer = consumer.stops_on(|&event| event == 13, reason.clone());
    let (consumer, _producer, _) = trapped(consumer, vec![vec![1], vec![13, 14], vec![15]]).await;
    assert_eq!(consumer.stopped().await, reason);
    assert_eq!(record.events(), vec![1, 13, 14]);
    assert_eq!(record.terminated(), Some(reason));
}

#[tokio::test]
async fn the_first_trap_that_matches_springs_and_an_untrapped_consumer_keeps_going() {
    let (consumer, record) = CollectingConsumer::new();
    let consumer = consumer
        .stops_on(|&event| event == 5, ExitReason::Shutdown)
        .panics_on(|&event| event >= 5);
    let (consumer, _producer, _) = trapped(consumer, vec![vec![1, 5, 6]]).await;
    assert_eq!(consumer.stopped().await, ExitReason::Shutdown);
    assert_eq!(record.events(), vec![1, 5, 6]);

    let (consumer, record) = CollectingConsumer::new();
    let consumer = consumer.panics_on(|&event| event > 100);
    let (consumer, _producer, _) = trapped(consumer, vec![vec![1, 2], vec![3]]).await;
    record.wait_for_events(3).await;
    consumer.call(Request::Ping).await.unwrap();
    assert!(consumer.is_alive());
}

#[tokio::test]
async fn a_record_filled_by_clones_is_gone_only_once_every_clone_is() {
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let template = consumer.named("worker");
    let first = gen_stage::consumer(template.clone()).start().await.unwrap();
    first.stop(ExitReason::Shutdown).await.unwrap();
    // The template could start another incarnation: the record is not gone.
    assert!(!record.read(|r| r.gone));
    let second = gen_stage::consumer(template.clone()).start().await.unwrap();
    record.wait_for_starts(2).await;
    let incarnations = record.incarnations("worker");
    assert_eq!(incarnations.len(), 2);
    assert_eq!(incarnations[1].id(), second.id());
    drop(template);
    second.stop(ExitReason::Normal).await.unwrap();
    record.wait_until(|r| r.gone).await;
    let exits = record.read(|r| r.exits.clone());
    assert_eq!(
        exits,
        [
            ("worker", ExitReason::Shutdown),
            ("worker", ExitReason::Normal)
        ]
    );
}

#[tokio::test]
async fn a_consumer_that_ignores_its_start_records_nothing() {
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let started = gen_stage::consumer(consumer.named("idle").ignores_start())
        .start()
        .await;
    assert!(matches!(started, Err(StartError::Ignored)));
    record.wait_until(|r| r.gone).await;
    assert!(record.read(|r| r.starts.is_empty() && r.exits.is_empty()));
}

#[tokio::test]
async fn an_unnamed_consumer_records_its_exit_under_no_name_and_no_start() {
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer).start().await.unwrap();
    consumer.stop(ExitReason::Shutdown).await.unwrap();
    assert!(record.read(|r| r.starts.is_empty()));
    assert_eq!(
        record.read(|r| r.exits.clone()),
        [("", ExitReason::Shutdown)]
    );
}
