//! `from_fetch` / `FetchProducer` while it runs: the credit bound on fetches (demand plus
//! prefetch), prefetched items kept out of the stage's buffer, order across fetches, a
//! finite source's end, a waiting fetch that never blocks the stage, and the waits
//! after empty fetches (no busy loop).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::scripted_source::{ScriptedSource, Turn};
use crate::support::{
    barrier, collect, consumer_barrier, manual_consumer, n, opts, range, stops_having_received,
    stops_normally, within,
};
use crate::{queue_of, start};
use gen_stage::source::{Fetch, FetchProducer, Fetched, MemorySource};
use gen_stage::{ExitReason, SubscribeOptions};

#[tokio::test(start_paused = true)]
async fn fetches_never_exceed_the_demand_owed_plus_the_prefetch() {
    let queue = queue_of(100);
    let (source, log) = ScriptedSource::new(&queue, Vec::new());
    let producer = start(FetchProducer::new(source).prefetch(2)).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    let mut total = 0;
    for ask in [3, 1, 4, 10, 2] {
        log.ask(ask);
        consumer.ask(tag, n(ask)).expect("alive");
        total += ask;
        within("the events asked", record.wait_for_events(total)).await;
    }
    // Each fetch asks what is owed plus the prefetch, less what is kept: 2 at the
    // start; then 3 (1 owed after the 2 kept went out, + 2); 1 (the 1 kept left room
    // for 1); 4 (2 owed + 2); 10 (8 owed + 2); 2 (nothing owed + 2).
    within("the last fetch", log.calls.wait_for_len(6)).await;
    assert_eq!(log.maxes(), [2, 3, 1, 4, 10, 2]);
    for call in log.calls.snapshot() {
        assert!(
            call.outstanding + call.max <= call.asked + 2,
            "fetched and not emitted + fetching <= asked + prefetch: {call:?}"
        );
    }
    assert_eq!(record.events(), range(0, 20));
    // Two are kept beyond the demand, in the producer: its buffer holds none.
    barrier(&producer).await;
    assert_eq!(queue.len(), 78);
    assert_eq!(producer.estimate_buffered_count().await, Ok(0));
}

#[tokio::test(start_paused = true)]
async fn without_a_prefetch_nothing_is_fetched_before_demand() {
    let queue = queue_of(10);
    let (source, log) = ScriptedSource::new(&queue, Vec::new());
    let producer = start(FetchProducer::new(source)).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    barrier(&producer).await;
    assert!(log.calls.is_empty(), "no demand, no fetch");
    consumer.ask(tag, n(4)).expect("alive");
    within("4 events", record.wait_for_events(4)).await;
    consumer.ask(tag, n(3)).expect("alive");
    within("7 events", record.wait_for_events(7)).await;
    assert_eq!(log.maxes(), [4, 3]);
    assert_eq!(queue.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn prefetched_items_wait_in_the_producer_and_not_in_its_buffer() {
    let queue = queue_of(10);
    let (source, log) = ScriptedSource::new(&queue, Vec::new());
    // A buffer of 0 discards whatever is emitted without demand.
    let producer = gen_stage::producer(FetchProducer::new(source).prefetch(3))
        .buffer_size(0)
        .start()
        .await
        .expect("the producer starts");
    within("the prefetch", log.calls.wait_for_len(1)).await;
    barrier(&producer).await;
    assert_eq!(queue.len(), 7, "fetched before any demand");
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(2)).expect("alive");
    within("2 events", record.wait_for_events(2)).await;
    consumer.ask(tag, n(5)).expect("alive");
    within("7 events", record.wait_for_events(7)).await;
    assert_eq!(record.events(), range(0, 7));
    assert_eq!(producer.stats().events_discarded, 0);
}

#[tokio::test(start_paused = true)]
async fn a_closed_source_ends_the_producer_once_its_last_events_are_out() {
    let queue = queue_of(50);
    queue.close();
    let producer = gen_stage::source::from_fetch(queue.clone()).start().await;
    let producer = producer.expect("the producer starts");
    // Many fetches of a few each: the events keep their order across them.
    let (consumer, record) = collect(&producer, opts(7, 2)).await;
    within("the producer stops", stops_normally(&producer)).await;
    // Its permanent consumer stops after the last events.
    stops_having_received(&consumer, &record, range(0, 50)).await;
}

#[tokio::test(start_paused = true)]
async fn an_end_with_items_kept_beyond_demand_waits_for_the_demand_to_take_them() {
    let queue = queue_of(3);
    queue.close();
    let producer = start(FetchProducer::new(queue.clone()).prefetch(5)).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(1)).expect("alive");
    within("1 event", record.wait_for_events(1)).await;
    consumer_barrier(&consumer).await;
    barrier(&producer).await;
    assert!(producer.is_alive(), "two events are still kept for demand");
    consumer.ask(tag, n(2)).expect("alive");
    within("the producer stops", stops_normally(&producer)).await;
    stops_having_received(&consumer, &record, range(0, 3)).await;
}

#[tokio::test(start_paused = true)]
async fn a_waiting_fetch_leaves_the_stage_answering_and_stoppable() {
    let queue = queue_of(10);
    let (source, log) = ScriptedSource::new(&queue, vec![Turn::PushThenHang(0)]);
    let producer = start(FetchProducer::new(source)).await;
    let (consumer, _record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(3)).expect("alive");
    within("the fetch", log.calls.wait_for_len(1)).await;
    // The fetch never returns; the stage answers, subscribes, and stops.
    let answered = within("an answer", producer.estimate_buffered_count()).await;
    assert_eq!(answered, Ok(0));
    let (_second, _, _) = within(
        "a second subscription",
        manual_consumer(&producer, SubscribeOptions::new()),
    )
    .await;
    let stopped = within("the stop", producer.stop(ExitReason::Shutdown)).await;
    assert_eq!(stopped, Ok(()));
    assert_eq!(log.calls.len(), 1);
}

/// A source that never has anything, and waits as `Fetch::idle`'s default says;
/// counts its fetches. Past 1000 (a busy loop) it stops answering, so that the test
/// fails on the count instead of spinning forever.
struct AlwaysEmpty(Arc<AtomicUsize>);

impl Fetch for AlwaysEmpty {
    type Item = u64;
    type Error = Infallible;

    async fn fetch(&mut self, _max: usize, _into: &mut Vec<u64>) -> Result<Fetched, Infallible> {
        if self.0.fetch_add(1, Ordering::SeqCst) >= 1000 {
            std::future::pending::<()>().await;
        }
        Ok(Fetched::More)
    }

    async fn give_back(&mut self, _items: Vec<u64>) {}
}

#[tokio::test(start_paused = true)]
async fn an_always_empty_source_is_fetched_a_bounded_number_of_times() {
    let calls = Arc::new(AtomicUsize::new(0));
    let producer = start(FetchProducer::new(AlwaysEmpty(calls.clone()))).await;
    let (consumer, _record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(10)).expect("alive");
    tokio::time::sleep(Duration::from_secs(60)).await;
    // The default waits 0.1, 0.2, 0.4, 0.8, 1.6 s after the first five empty fetches
    // (the sixth starts at 3.1 s), then 2 s each: 28 more by 60 s.
    assert_eq!(calls.load(Ordering::SeqCst), 34);
    assert_eq!(producer.estimate_buffered_count().await, Ok(0));
}

#[tokio::test(start_paused = true)]
async fn a_source_that_waits_for_items_is_fetched_again_only_when_they_come() {
    let queue = MemorySource::new();
    let (source, log) = ScriptedSource::new(&queue, Vec::new());
    let producer = start(FetchProducer::new(source)).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(5)).expect("alive");
    within("the wait after an empty fetch", log.idles.wait_for_len(1)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(log.calls.len(), 1, "the queue's idle waits for a push");
    queue.push(7);
    within("the pushed item", record.wait_for_events(1)).await;
    assert_eq!(record.events(), [7]);
    // Then a fetch for the 4 still owed, which finds the queue empty and waits.
    within("the next wait", log.idles.wait_for_len(2)).await;
    assert_eq!(log.maxes(), [5, 5, 4]);
    assert!(producer.is_alive());
}
