//! The test kit's own promises: a counter limited where it starts stops, and a wait on
//! a consumer that is gone fails instead of waiting forever.

use gen_stage::{ExitReason, SubscribeOptions};
use gen_stage_test::{CollectingConsumer, Counter};

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
