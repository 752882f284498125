//! `EventStream::batches`: a stream of `Vec`s cut as a consumer's `handle_events` gets
//! them, asking for more only when the next batch is pulled.

mod support;

use futures::StreamExt;
use futures::stream::FusedStream;
use gen_stage::{CancelMode, ExitReason, SubscribeOptions};
use gen_stage_test::{Counter, Script};
use support::{barrier, opts, recorded_counter, scripted_with};

#[tokio::test]
async fn batches_hold_at_most_max_minus_min_events_in_order() {
    let producer = gen_stage::source::from_iter(0..25u32)
        .start()
        .await
        .unwrap();
    let mut batches = gen_stage::stream::subscribe(&producer, opts(8, 3))
        .unwrap()
        .batches();
    let mut pulled = Vec::new();
    while let Some(batch) = batches.next().await {
        assert!(
            !batch.is_empty() && batch.len() <= 5,
            "a batch of {} events",
            batch.len()
        );
        pulled.push(batch);
    }
    assert_eq!(pulled.concat(), (0..25).collect::<Vec<_>>());
    // The first delivery of max_demand = 8 events comes as batches of 5 and 3.
    assert_eq!(pulled[0], vec![0, 1, 2, 3, 4]);
    assert_eq!(pulled[1], vec![5, 6, 7]);
    assert!(batches.is_terminated());
    assert_eq!(batches.end_reason(), None);
}

#[tokio::test]
async fn the_stream_asks_again_only_when_the_next_batch_is_pulled() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let mut batches = gen_stage::stream::subscribe(&producer, opts(10, 5))
        .unwrap()
        .batches();
    assert_eq!(batches.next().await, Some(vec![0, 1, 2, 3, 4]));
    barrier(&producer).await;
    // The caller holds the first batch: nothing more is asked while it works on it.
    assert_eq!(demands.snapshot(), vec![10]);

    assert_eq!(batches.next().await, Some(vec![5, 6, 7, 8, 9]));
    barrier(&producer).await;
    // Pulling the second batch asks for what the first one used.
    assert_eq!(demands.snapshot(), vec![10, 5]);
    assert_eq!(batches.next().await, Some(vec![10, 11, 12, 13, 14]));
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![10, 5, 5]);
}

#[tokio::test]
async fn the_rest_of_a_batch_started_event_by_event_comes_first() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let mut stream = gen_stage::stream::subscribe(&producer, opts(10, 5)).unwrap();
    assert_eq!(stream.next().await, Some(0));
    assert_eq!(stream.next().await, Some(1));
    let mut batches = stream.batches();
    assert_eq!(batches.next().await, Some(vec![2, 3, 4]));
    barrier(&producer).await;
    // Handing over the rest of the first batch asks for nothing yet.
    assert_eq!(demands.snapshot(), vec![10]);
    assert_eq!(batches.next().await, Some(vec![5, 6, 7, 8, 9]));
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![10, 5]);
}

#[tokio::test]
async fn batches_of_several_producers_each_come_from_one_producer_in_its_order() {
    let letters = gen_stage::source::from_iter((0..30u32).map(|i| ('a', i)))
        .start()
        .await
        .unwrap();
    let digits = gen_stage::source::from_iter((0..20u32).map(|i| ('b', i)))
        .start()
        .await
        .unwrap();
    let transient = || opts(6, 2).cancel(CancelMode::Transient);
    let mut batches = gen_stage::stream::subscribe(&letters, transient())
        .unwrap()
        .batches();
    batches.subscribe_to(&digits, transient()).unwrap();
    let mut by_producer: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    while let Some(batch) = batches.next().await {
        let producer = batch[0].0;
        assert!(batch.len() <= 4, "a batch of {} events", batch.len());
        assert!(
            batch.iter().all(|&(p, _)| p == producer),
            "a batch mixes producers"
        );
        by_producer[usize::from(producer == 'b')].extend(batch.iter().map(|&(_, i)| i));
    }
    assert_eq!(by_producer[0], (0..30).collect::<Vec<_>>());
    assert_eq!(by_producer[1], (0..20).collect::<Vec<_>>());
    assert_eq!(batches.end_reason(), None);
}

#[tokio::test]
async fn a_producer_stopping_abnormally_ends_the_batches_with_its_reason() {
    let (producer, _record) = scripted_with(vec![1u32, 2, 3]).await;
    let mut batches = gen_stage::stream::subscribe(&producer, SubscribeOptions::new())
        .unwrap()
        .batches();
    assert_eq!(batches.next().await, Some(vec![1, 2, 3]));
    producer
        .cast(Script::Stop(ExitReason::error("boom")))
        .unwrap();
    assert_eq!(batches.next().await, None);
    assert_eq!(batches.end_reason(), Some(&ExitReason::error("boom")));
    assert!(batches.is_terminated());
}
