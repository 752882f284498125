//! The test kit's own promises: a counter limited where it starts stops, and a wait on
//! a consumer that is gone, or on anything that cannot change, fails instead of waiting
//! forever.

use gen_stage::{ExitReason, SubscribeOptions};
use gen_stage_test::{CollectingConsumer, Counter, Recorded};

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
    let producer = gen_stage::from_iter(0..3u64).start().await.unwrap();
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
