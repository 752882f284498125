//! `from_fetch` / `FetchProducer` when things go wrong or end: failed fetches retried
//! after the source's backoff, a source that says stop, a source that panics, and what
//! is given back (never dropped) when the producer stops, drains, or its last consumer
//! leaves, within the give-back timeout.

use std::convert::Infallible;
use std::time::Duration;

use crate::scripted_source::{Failure, FetchLog, ScriptedSource, Turn};
use crate::support::{barrier, manual_consumer, n, range, settle, within};
use crate::{queue_of, start};
use futures::FutureExt;
use gen_stage::source::{Fetch, FetchProducer, Fetched, MemorySource, OnCancel};
use gen_stage::{ExitReason, ProducerRef, SubscribeOptions};
use gen_stage_test::Gate;
use tokio::sync::oneshot;

/// A producer over a scripted source over `queue`, with `prefetch`.
async fn scripted(
    queue: &MemorySource<u64>,
    script: Vec<Turn>,
    prefetch: usize,
) -> (ProducerRef<FetchProducer<ScriptedSource>>, FetchLog) {
    let (source, log) = ScriptedSource::new(queue, script);
    (
        start(FetchProducer::new(source).prefetch(prefetch)).await,
        log,
    )
}

#[tokio::test(start_paused = true)]
async fn a_failed_fetch_is_retried_after_the_sources_backoff() {
    let queue = queue_of(5);
    let busy = || Turn::PushThenFail(0, Failure::Passing);
    let (producer, log) = scripted(&queue, vec![busy(), busy(), busy()], 0).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(5)).expect("alive");
    within("the events", record.wait_for_events(5)).await;
    assert_eq!(record.events(), range(0, 5));
    assert_eq!(log.attempts.snapshot(), [1, 2, 3]);
    let at: Vec<_> = log.calls.read(|calls| calls.iter().map(|c| c.at).collect());
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let ms = Duration::from_millis;
    assert_eq!(gaps, [ms(100), ms(200), ms(400)]);
    assert!(
        producer.is_alive(),
        "a passing failure never stops the stage"
    );
}

#[tokio::test(start_paused = true)]
async fn what_a_failed_fetch_pushed_goes_out_before_the_retry() {
    let queue = queue_of(5);
    let script = vec![Turn::PushThenFail(2, Failure::Passing)];
    let (producer, log) = scripted(&queue, script, 0).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(5)).expect("alive");
    within("the events", record.wait_for_events(5)).await;
    assert_eq!(record.batches(), [vec![0, 1], vec![2, 3, 4]]);
    // The retry asks for what is still owed, after the backoff.
    assert_eq!(log.maxes(), [5, 3]);
    let at: Vec<_> = log.calls.read(|calls| calls.iter().map(|c| c.at).collect());
    assert_eq!(at[1] - at[0], Duration::from_millis(100));
    barrier(&producer).await;
}

#[tokio::test(start_paused = true)]
async fn a_source_that_says_stop_stops_the_stage_with_its_error_and_gets_back_its_items() {
    let queue = queue_of(10);
    let script = vec![Turn::PushThenFail(2, Failure::Fatal)];
    let (producer, log) = scripted(&queue, script, 0).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(5)).expect("alive");
    let reason = within("the stop", producer.stopped()).await;
    let ExitReason::Error(error) = reason else {
        panic!("stopped with {reason:?}");
    };
    assert_eq!(error.downcast_ref::<Failure>(), Some(&Failure::Fatal));
    assert_eq!(log.given_back.snapshot(), [vec![0, 1]]);
    assert_eq!(queue.drain(), range(0, 10));
    // Its permanent consumer follows it out, having received nothing.
    within("the consumer stops", consumer.stopped()).await;
    assert_eq!(record.event_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_stops_the_stage_with_the_panic() {
    let queue = queue_of(10);
    let (producer, _log) = scripted(&queue, vec![Turn::Panic], 0).await;
    let (consumer, _record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(1)).expect("alive");
    let reason = within("the stop", producer.stopped()).await;
    assert_eq!(reason, ExitReason::Panic("the source exploded".into()));
}

#[tokio::test(start_paused = true)]
async fn items_pushed_beyond_max_are_given_back_at_once() {
    let queue = queue_of(10);
    let (producer, log) = scripted(&queue, vec![Turn::Greedy(5)], 0).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(2)).expect("alive");
    within("2 events", record.wait_for_events(2)).await;
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.events(), [0, 1]);
    assert_eq!(log.given_back.snapshot(), [vec![2, 3, 4]]);
    assert_eq!(queue.drain(), range(2, 10));
}

/// A producer with a prefetch of 3 over `0..10` whose consumer asked 1, then 2: it
/// kept 3, and its third fetch (for 2) pushed 4 and waits.
async fn kept_and_waiting() -> (
    MemorySource<u64>,
    ProducerRef<FetchProducer<ScriptedSource>>,
    FetchLog,
    crate::support::Collector<u64>,
    crate::support::Events<u64>,
) {
    let queue = queue_of(10);
    let script = vec![Turn::Queue, Turn::Queue, Turn::PushThenHang(1)];
    let (producer, log) = scripted(&queue, script, 3).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    // 0, 1, 2 fetched at the start; 0 goes out, 3 is fetched; 1 and 2 go out.
    consumer.ask(tag, n(1)).expect("alive");
    within("1 event", record.wait_for_events(1)).await;
    consumer.ask(tag, n(2)).expect("alive");
    within("3 events", record.wait_for_events(3)).await;
    within("the waiting fetch", log.calls.wait_for_len(3)).await;
    assert_eq!(log.maxes(), [3, 1, 2]);
    (queue, producer, log, consumer, record)
}

#[tokio::test(start_paused = true)]
async fn a_stop_gives_back_what_was_kept_then_what_the_cancelled_fetch_pushed() {
    let (queue, producer, log, _consumer, record) = kept_and_waiting().await;
    let stopped = within("the stop", producer.stop(ExitReason::Shutdown)).await;
    assert_eq!(stopped, Ok(()));
    assert_eq!(log.given_back.snapshot(), [vec![3, 4]]);
    assert_eq!(queue.drain(), range(3, 10));
    assert_eq!(record.events(), range(0, 3));
}

#[tokio::test(start_paused = true)]
async fn a_fetch_that_comes_back_as_the_stage_stops_is_given_back() {
    let queue = queue_of(10);
    let gate = Gate::closed();
    let (producer, log) = scripted(&queue, vec![Turn::WaitFor(gate.clone())], 0).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(3)).expect("alive");
    within("the fetch", log.calls.wait_for_len(1)).await;
    // The fetch is woken first, the stage second: the fetch comes back with its
    // items, and the stage sees the stop before the word that they came.
    gate.open(1);
    let stopped = within("the stop", producer.stop(ExitReason::Shutdown)).await;
    assert_eq!(stopped, Ok(()));
    assert_eq!(log.given_back.snapshot(), [vec![0, 1, 2]]);
    assert_eq!(queue.drain(), range(0, 10));
    assert_eq!(record.event_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_drain_cancels_the_fetch_and_gives_back_what_was_not_emitted() {
    let (queue, producer, log, _consumer, record) = kept_and_waiting().await;
    let drained = producer.drain_and_stop(ExitReason::Shutdown, Duration::from_secs(60));
    assert_eq!(within("the drain", drained).await, Ok(ExitReason::Shutdown));
    assert_eq!(log.given_back.snapshot(), [vec![3, 4]]);
    assert_eq!(queue.drain(), range(3, 10));
    assert_eq!(record.events(), range(0, 3));
}

#[tokio::test(start_paused = true)]
async fn a_drain_cancels_the_fetch_in_progress_at_once() {
    let queue = queue_of(10);
    let (first, second) = (Gate::closed(), Gate::closed());
    let script = vec![Turn::WaitFor(first.clone()), Turn::WaitFor(second.clone())];
    let (producer, log) = scripted(&queue, script, 2).await;
    let (leaving, _, leaving_tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    let (staying, record, staying_tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    // Demand from a consumer that leaves before the fetch comes back: what comes
    // back waits in the buffer for the one that stays (which asks nothing yet).
    leaving.ask(leaving_tag, n(3)).expect("alive");
    settle(&producer, &[&leaving]).await;
    leaving
        .cancel(leaving_tag, ExitReason::Normal)
        .expect("alive");
    settle(&producer, &[&leaving]).await;
    first.open(1);
    within("the second fetch", log.calls.wait_for_len(2)).await;
    assert_eq!(producer.estimate_buffered_count().await, Ok(2));

    let mut draining =
        Box::pin(producer.drain_and_stop(ExitReason::Shutdown, Duration::from_secs(60)));
    assert!(
        (&mut draining).now_or_never().is_none(),
        "the drain is asked"
    );
    barrier(&producer).await;
    // The drain cancelled the fetch in progress at once (`prepare_for_draining`):
    // what it waits for never comes out of the source.
    second.open(1);
    barrier(&producer).await;
    assert!(log.all_given_back().is_empty(), "it had pushed nothing");
    assert!(producer.is_alive(), "its buffer has not gone out yet");

    staying.ask(staying_tag, n(2)).expect("alive");
    assert_eq!(
        within("the drain", draining).await,
        Ok(ExitReason::Shutdown)
    );
    within("the buffered events", record.wait_for_events(2)).await;
    assert_eq!(record.events(), [0, 1]);
    assert_eq!(log.calls.len(), 2, "nothing is fetched once draining");
    assert_eq!(queue.drain(), range(2, 10));
}

#[tokio::test(start_paused = true)]
async fn the_last_consumer_leaving_stops_the_producer_which_gives_back_what_it_kept() {
    let queue = queue_of(10);
    let (source, log) = ScriptedSource::new(&queue, Vec::new());
    let producer = FetchProducer::new(source)
        .prefetch(2)
        .on_cancel(OnCancel::Stop);
    let producer = gen_stage::producer(producer).start().await;
    let producer = producer.expect("the producer starts");
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(1)).expect("alive");
    within("1 event", record.wait_for_events(1)).await;
    within("the refill", log.calls.wait_for_len(2)).await;
    consumer.cancel(tag, ExitReason::Normal).expect("alive");
    assert_eq!(
        within("the stop", producer.stopped()).await,
        ExitReason::Normal
    );
    assert_eq!(log.all_given_back(), [1, 2]);
    assert_eq!(queue.drain(), range(1, 10));
}

/// A source whose `give_back` never ends; the sender it holds meanwhile is dropped
/// with that future.
struct Stubborn {
    next: u64,
    giving_back: Option<oneshot::Sender<()>>,
}

impl Fetch for Stubborn {
    type Item = u64;
    type Error = Infallible;

    async fn fetch(&mut self, max: usize, into: &mut Vec<u64>) -> Result<Fetched, Infallible> {
        into.extend(self.next..self.next + max as u64);
        self.next += max as u64;
        Ok(Fetched::More)
    }

    async fn give_back(&mut self, _items: Vec<u64>) {
        let _held = self.giving_back.take();
        std::future::pending::<()>().await;
    }
}

#[tokio::test(start_paused = true)]
async fn terminate_waits_for_the_give_back_no_longer_than_its_timeout() {
    let (giving_back, aborted) = oneshot::channel();
    let source = Stubborn {
        next: 0,
        giving_back: Some(giving_back),
    };
    let producer = FetchProducer::new(source)
        .prefetch(1)
        .give_back_timeout(Duration::from_secs(3));
    let producer = gen_stage::producer(producer).start().await;
    let producer = producer.expect("the producer starts");
    barrier(&producer).await;
    let asked = tokio::time::Instant::now();
    let stopped = within("the stop", producer.stop(ExitReason::Shutdown)).await;
    assert_eq!(stopped, Ok(()));
    assert_eq!(asked.elapsed(), Duration::from_secs(3));
    // Then the task is aborted, and the give-back with it.
    assert!(within("the abort", aborted).await.is_err());
}
