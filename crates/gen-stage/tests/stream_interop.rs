//! Streams and iterators: `from_iter` / `from_stream` producers (exhaustion, `OnCancel`, a
//! stream's producer answering and stopping while its stream waits, a stream's panic) and
//! `gen_stage::stream` (lazy demand, cancellation on drop, several producers, how and why
//! the stream ends, invalid options).

mod support;

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use gen_stage::error::{OptionsError, SubscribeError};
use gen_stage::kind::{EmitsEvents, StageKind};
use gen_stage::source::{IterSource, OnCancel, SourceProducer, StreamProducer};
use gen_stage::stream::EventStream;
use gen_stage::{CancelMode, CancelReason, ExitReason, ProducerRef, StageRef, SubscribeOptions};
use gen_stage_test::{Counter, Gate, Record, Script, ScriptedProducer, Watch};
use support::{
    Collector, Events, barrier, collect, collect_gated, manual_consumer, opts, recorded_counter,
    scripted, scripted_with, within,
};
use tokio::sync::mpsc::UnboundedSender;

/// Waits for `producer` to stop normally and for its permanent consumer, which follows
/// it out, to run its `terminate` hook.
async fn both_stop_normally<K: StageKind, T: Send + 'static>(
    producer: &StageRef<K>,
    record: &Watch<Record<T>>,
) {
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    record.wait_until(|r| r.terminated().is_some()).await;
}

/// A stream of what is sent on the returned sender: pending while nothing is, ended once
/// the sender is dropped. The sender sees the stream dropped (`closed`).
fn channel_stream<T: Send + 'static>() -> (UnboundedSender<T>, BoxStream<'static, T>) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<T>();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    (sender, stream.boxed())
}

/// A `from_stream` producer over `source`, fed by `sender`, whose consumer asked for 5
/// events, received the item 1 (sent here), and waits for 4 more.
async fn waiting_for_more<St>(
    sender: &UnboundedSender<u32>,
    source: St,
) -> (ProducerRef<StreamProducer<St>>, Collector<u32>, Events<u32>)
where
    St: Stream<Item = u32> + Send + 'static,
{
    let producer = gen_stage::source::from_stream(source).start().await;
    let producer = producer.expect("the producer starts");
    let (consumer, record) = collect(&producer, opts(5, 0)).await;
    sender.send(1).expect("the stream is there");
    within("the first item", record.wait_for_events(1)).await;
    (producer, consumer, record)
}

fn transient() -> SubscribeOptions {
    SubscribeOptions::new().cancel(CancelMode::Transient)
}

fn temporary() -> SubscribeOptions {
    SubscribeOptions::new().cancel(CancelMode::Temporary)
}

/// A stream over `first` that is also subscribed to `second`, each with its options.
fn stream_over_both<A, B, T>(
    (first, first_options): (&StageRef<A>, SubscribeOptions),
    (second, second_options): (&StageRef<B>, SubscribeOptions),
) -> EventStream<T>
where
    A: EmitsEvents<Out = T>,
    B: EmitsEvents<Out = T>,
    T: Send + 'static,
{
    let mut stream = gen_stage::stream::subscribe(first, first_options).expect("valid options");
    stream
        .subscribe_to(second, second_options)
        .expect("valid options");
    stream
}

/// Pulls the first `count` items of a fresh stream over `producer`, then drops the stream.
async fn take<K: EmitsEvents>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    count: usize,
) -> Vec<K::Out> {
    let stream = gen_stage::stream::subscribe(producer, options).expect("valid options");
    stream.take(count).collect().await
}

/// `last`, the stream's one producer left, still serves it: the events queued now arrive
/// in order, and once `last` stops normally the stream ends without a reason.
async fn served_to_the_end_by(
    stream: &mut EventStream<u32>,
    last: &ProducerRef<ScriptedProducer<u32>>,
    events: Vec<u32>,
) {
    last.cast(Script::Queue(events.clone())).expect("alive");
    for event in events {
        assert_eq!(stream.next().await, Some(event));
    }
    last.stop(ExitReason::Normal).await.expect("alive");
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

// ---------------------------------------------------------------------------------------
// from_iter / from_stream
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn from_iter_emits_every_item_in_order_then_stops_normally() {
    let producer = gen_stage::source::from_iter(0..100u32)
        .start()
        .await
        .unwrap();
    let (_, record) = collect(&producer, SubscribeOptions::new()).await;
    both_stop_normally(&producer, &record).await;
    assert_eq!(record.events(), (0..100).collect::<Vec<_>>());
    let (tag, terminated, cancels) = record.read(|r| {
        (
            r.subscriptions[0],
            r.terminated().cloned(),
            r.cancels.clone(),
        )
    });
    // The permanent consumer follows its producer out, after handling every event.
    assert_eq!(terminated, Some(ExitReason::Normal));
    assert_eq!(cancels, vec![(tag, CancelReason::Down(ExitReason::Normal))]);
}

#[tokio::test]
async fn from_iter_with_small_max_demand_delivers_the_last_items_before_stopping() {
    let producer = gen_stage::source::from_iter(0..50u32)
        .start()
        .await
        .unwrap();
    let (_, record) = collect(&producer, opts(3, 1)).await;
    // The stop reaches the consumer behind the last events: it has all of them when it ends.
    both_stop_normally(&producer, &record).await;
    assert_eq!(record.events(), (0..50).collect::<Vec<_>>());
    assert!(record.batch_sizes().iter().all(|&size| size <= 2));
    assert_eq!(record.terminated(), Some(ExitReason::Normal));
}

#[tokio::test]
async fn from_iter_does_not_stop_while_items_remain_undemanded() {
    let producer = gen_stage::source::from_iter(0..50u32)
        .start()
        .await
        .unwrap();
    let gate = Gate::closed();
    let (_, record) = collect_gated(&producer, opts(4, 2), &gate).await;
    // The consumer holds its first batch: the producer has served its demand of 4 and
    // must wait for more, alive, with the rest of its items.
    barrier(&producer).await;
    assert!(producer.exit_reason().is_none());
    assert_eq!(record.event_count(), 0);
    gate.open_for_good();
    both_stop_normally(&producer, &record).await;
    assert_eq!(record.events(), (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_iter_of_nothing_stops_normally_on_the_first_demand() {
    let producer = gen_stage::source::from_iter(Vec::<u32>::new())
        .start()
        .await
        .unwrap();
    let (_, record) = collect(&producer, SubscribeOptions::new()).await;
    both_stop_normally(&producer, &record).await;
    assert_eq!(record.event_count(), 0);
    assert_eq!(record.terminated(), Some(ExitReason::Normal));
}

#[tokio::test]
async fn from_stream_emits_every_item_in_order_then_stops_normally() {
    let producer = gen_stage::source::from_stream(futures::stream::iter(0..60u32))
        .start()
        .await
        .unwrap();
    let (_, record) = collect(&producer, opts(7, 3)).await;
    both_stop_normally(&producer, &record).await;
    assert_eq!(record.events(), (0..60).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_stream_waits_for_a_pending_stream_and_stops_when_it_ends() {
    let (sender, source) = channel_stream::<u32>();
    let producer = gen_stage::source::from_stream(source)
        .start()
        .await
        .unwrap();
    let (_, record) = collect(&producer, opts(5, 0)).await;
    for item in 0..5 {
        sender.send(item).unwrap();
    }
    record.wait_for_events(5).await;
    for item in 5..7 {
        sender.send(item).unwrap();
    }
    // The stream has not ended: the producer waits for it, and does not stop.
    assert!(producer.exit_reason().is_none());
    drop(sender);
    both_stop_normally(&producer, &record).await;
    assert_eq!(record.events(), (0..7).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_stream_delivers_what_is_ready_without_waiting_for_the_whole_demand() {
    let (sender, source) = channel_stream::<u32>();
    // Two items are ready before the demand of 1000 comes, and no more are coming yet.
    sender.send(1).unwrap();
    sender.send(2).unwrap();
    let producer = gen_stage::source::from_stream(source)
        .start()
        .await
        .unwrap();
    let (_, record) = collect(&producer, opts(1000, 500)).await;
    record.wait_for_events(2).await;
    // The rest of the demand is served as items come.
    sender.send(3).unwrap();
    record.wait_for_events(3).await;
    // What was ready went out together, as one batch.
    assert_eq!(record.batches(), vec![vec![1, 2], vec![3]]);
}

#[tokio::test(start_paused = true)]
async fn from_stream_answers_while_its_stream_is_pending() {
    let (sender, source) = channel_stream::<u32>();
    let (producer, _, record) = waiting_for_more(&sender, source).await;
    // The consumer still wants 4 events and the stream has none: the producer waits for
    // them, and answers meanwhile. (The clock is paused: a stage that does not answer
    // makes these calls time out at once.)
    assert_eq!(producer.estimate_buffered_count().await, Ok(0));
    let demands = producer.demand_snapshot().await.expect("answers");
    let pending: Vec<usize> = demands.iter().map(|demand| demand.pending).collect();
    assert_eq!(pending, vec![4]);
    // A new consumer is accepted, and shares the items that come.
    let (_, second) = collect(&producer, opts(5, 0)).await;
    for item in 2..11 {
        sender.send(item).unwrap();
    }
    within("the items sent", async {
        record.wait_for_events(5).await;
        second.wait_for_events(5).await;
    })
    .await;
    let mut all = [record.events(), second.events()].concat();
    all.sort_unstable();
    assert_eq!(all, (1..11).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn from_stream_stops_when_asked_while_its_stream_is_pending_and_drops_the_stream() {
    let (sender, source) = channel_stream::<u32>();
    let (producer, consumer, _record) = waiting_for_more(&sender, source).await;
    let stopped = producer.stop(ExitReason::Shutdown);
    within("the producer stops", stopped).await.unwrap();
    assert_eq!(producer.exit_reason(), Some(ExitReason::Shutdown));
    assert_eq!(consumer.stopped().await, ExitReason::Shutdown);
    // Nothing polls the stream any more: it was dropped with the producer.
    within("the stream is dropped", sender.closed()).await;
}

#[tokio::test(start_paused = true)]
async fn stream_producer_with_on_cancel_stop_stops_when_its_consumer_leaves_a_pending_stream() {
    let (sender, source) = channel_stream::<u32>();
    let stage = StreamProducer::new(source).on_cancel(OnCancel::Stop);
    let producer = gen_stage::producer(stage).start().await.unwrap();
    sender.send(1).unwrap();
    // The stream asks for 2, takes 1 and leaves while the producer waits for the next.
    assert_eq!(take(&producer, opts(2, 0), 1).await, vec![1]);
    let stopped = within("the producer stops", producer.stopped()).await;
    assert_eq!(stopped, ExitReason::Normal);
    within("the stream is dropped", sender.closed()).await;
}

#[tokio::test(start_paused = true)]
async fn from_stream_whose_stream_panics_stops_with_the_panic() {
    let (sender, source) = channel_stream::<u32>();
    let source = source.map(|item| match item {
        0 => panic!("the stream broke"),
        item => item,
    });
    let (producer, consumer, record) = waiting_for_more(&sender, source).await;
    assert_eq!(producer.estimate_buffered_count().await, Ok(0));
    sender.send(0).unwrap();
    let broke = ExitReason::Panic("the stream broke".into());
    assert_eq!(
        within("the producer stops", producer.stopped()).await,
        broke
    );
    assert_eq!(consumer.stopped().await, broke);
    assert_eq!(record.events(), vec![1]);
}

#[tokio::test]
async fn from_iter_consumed_as_a_stream_ends_the_stream_normally() {
    let producer = gen_stage::source::from_iter(0..25u32)
        .start()
        .await
        .unwrap();
    let mut stream = gen_stage::stream::subscribe(&producer, opts(4, 1)).unwrap();
    let items: Vec<u32> = stream.by_ref().collect().await;
    assert_eq!(items, (0..25).collect::<Vec<_>>());
    assert_eq!(stream.end_reason(), None);
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

// ---------------------------------------------------------------------------------------
// OnCancel
// ---------------------------------------------------------------------------------------

type RangeSource = SourceProducer<IterSource<std::ops::Range<u32>>>;

/// A started producer of `items` that stops once its last consumer cancels.
async fn stop_on_cancel(items: std::ops::Range<u32>) -> ProducerRef<RangeSource> {
    let source = SourceProducer::new(IterSource::new(items)).on_cancel(OnCancel::Stop);
    gen_stage::producer(source).start().await.expect("starts")
}

#[tokio::test]
async fn on_cancel_stop_stops_the_producer_when_its_last_consumer_cancels() {
    let producer = stop_on_cancel(0..100).await;
    let (first, first_record, first_tag) =
        manual_consumer(&producer, SubscribeOptions::new()).await;
    let (second, _, second_tag) = manual_consumer(&producer, SubscribeOptions::new()).await;

    first.cancel(first_tag, ExitReason::Normal).unwrap();
    first_record.wait_for_cancels(1).await;
    barrier(&producer).await;
    assert!(producer.exit_reason().is_none(), "one consumer is left");

    second.cancel(second_tag, ExitReason::Normal).unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn on_cancel_stop_stops_the_producer_when_its_consumer_stops() {
    let producer = stop_on_cancel(0..100).await;
    let (consumer, _record, _tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn on_cancel_stop_stops_the_producer_when_its_stream_is_dropped() {
    let producer = stop_on_cancel(0..100).await;
    assert_eq!(take(&producer, opts(2, 0), 2).await, vec![0, 1]);
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn on_cancel_continue_keeps_the_producer_running_for_the_next_consumer() {
    let producer = gen_stage::source::from_iter(0..100u32)
        .start()
        .await
        .unwrap();
    assert_eq!(take(&producer, opts(2, 0), 2).await, vec![0, 1]);
    barrier(&producer).await;
    assert!(producer.exit_reason().is_none());
    // The next consumer continues where the first stopped asking.
    assert_eq!(take(&producer, opts(2, 0), 2).await, vec![2, 3]);
    assert!(producer.is_alive());
}

// ---------------------------------------------------------------------------------------
// stream: lazy demand and cancellation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_asks_nothing_before_the_first_poll_then_max_demand_once() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let mut stream = gen_stage::stream::subscribe(&producer, opts(30, 10)).unwrap();
    barrier(&producer).await;
    assert!(demands.is_empty(), "asked before the first poll");

    assert_eq!(stream.next().now_or_never(), None);
    demands.wait_for_len(1).await;
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![30]);
}

#[tokio::test]
async fn stream_take_ten_with_max_demand_1000_asks_the_producer_once() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let items = take(&producer, SubscribeOptions::new(), 10).await;
    assert_eq!(items, (0..10).collect::<Vec<_>>());
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![1000]);
}

#[tokio::test]
async fn stream_asks_again_only_as_its_events_are_pulled() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let mut stream = gen_stage::stream::subscribe(&producer, opts(10, 5)).unwrap();
    for expected in 0..5 {
        assert_eq!(stream.next().await, Some(expected));
    }
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![10]);
    // Pulling past the first batch of max - min = 5 events asks for 5 more.
    assert_eq!(stream.next().await, Some(5));
    barrier(&producer).await;
    assert_eq!(demands.snapshot(), vec![10, 5]);

    for expected in 6..23 {
        assert_eq!(stream.next().await, Some(expected));
    }
    barrier(&producer).await;
    let asked: usize = demands.snapshot().iter().sum();
    // The counter emits exactly what it is asked: it never runs more than max_demand ahead.
    assert!(asked <= 23 + 10, "asked {asked} for 23 pulled");
    barrier(&producer).await;
    assert_eq!(demands.snapshot().iter().sum::<usize>(), asked);
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_subscription() {
    let (producer, record) = scripted_with::<u32>(vec![1, 2, 3]).await;
    let mut stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    assert_eq!(stream.next().await, Some(1));
    drop(stream);
    record.wait_until(|r| !r.cancels.is_empty()).await;
    let (subscriptions, cancels) = record.read(|r| (r.subscriptions.clone(), r.cancels.clone()));
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(
        cancels,
        vec![(
            subscriptions[0],
            CancelReason::Cancelled(ExitReason::Normal)
        )]
    );
    assert!(producer.is_alive());
}

#[tokio::test]
async fn dropping_a_stream_never_polled_subscribes_nothing() {
    let (producer, record) = scripted::<u32>().await;
    let stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    drop(stream);
    barrier(&producer).await;
    let (subscriptions, demands) = record.read(|r| (r.subscriptions.len(), r.demands.len()));
    assert_eq!((subscriptions, demands), (0, 0));
}

// ---------------------------------------------------------------------------------------
// stream: several producers, and how the stream ends
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_of_several_producers_keeps_each_order_and_ends_when_all_finish() {
    let sizes = [40u32, 17, 63];
    let mut producers = Vec::new();
    for (name, size) in ['a', 'b', 'c'].into_iter().zip(sizes) {
        let items: Vec<(char, u32)> = (0..size).map(|i| (name, i)).collect();
        producers.push(gen_stage::source::from_iter(items).start().await.unwrap());
    }
    let options = opts(5, 2).cancel(CancelMode::Transient);
    let mut stream = gen_stage::stream::subscribe(&producers[0], options.clone()).unwrap();
    stream.subscribe_to(&producers[1], options.clone()).unwrap();
    stream.subscribe_to(&producers[2], options).unwrap();
    let items: Vec<(char, u32)> = stream.by_ref().collect().await;
    assert_eq!(stream.end_reason(), None);
    for (name, size) in ['a', 'b', 'c'].into_iter().zip(sizes) {
        let own: Vec<u32> = items
            .iter()
            .filter(|(from, _)| *from == name)
            .map(|&(_, i)| i)
            .collect();
        assert_eq!(own, (0..size).collect::<Vec<_>>(), "producer {name}");
    }
    for producer in &producers {
        assert_eq!(producer.stopped().await, ExitReason::Normal);
    }
}

#[tokio::test]
async fn permanent_subscription_ending_normally_ends_the_stream_and_cancels_the_others() {
    let finite = gen_stage::source::from_iter(0..5u32).start().await.unwrap();
    let (silent, record) = scripted::<u32>().await;
    let mut stream = stream_over_both((&finite, SubscribeOptions::new()), (&silent, temporary()));
    let items: Vec<u32> = stream.by_ref().collect().await;
    assert_eq!(items, (0..5).collect::<Vec<_>>());
    assert_eq!(stream.end_reason(), None);
    record.wait_until(|r| !r.cancels.is_empty()).await;
    assert_eq!(
        record.read(|r| r.cancels[0].1.clone()),
        CancelReason::Cancelled(ExitReason::Normal)
    );
}

#[tokio::test]
async fn producer_stopping_abnormally_ends_the_stream_with_its_reason() {
    let (producer, _record) = scripted_with(vec![1u32, 2, 3]).await;
    let mut stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    for expected in 1..=3 {
        assert_eq!(stream.next().await, Some(expected));
    }
    assert_eq!(stream.end_reason(), None);
    producer
        .cast(Script::Stop(ExitReason::error("boom")))
        .unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::error("boom")));
}

#[tokio::test]
async fn permanent_subscription_shut_down_ends_the_stream_with_shutdown() {
    let (producer, _) = scripted_with::<u32>(vec![1]).await;
    let mut stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    assert_eq!(stream.next().await, Some(1));
    producer.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::Shutdown));
}

#[tokio::test]
async fn transient_subscription_ending_abnormally_ends_the_stream() {
    let (failing, _) = scripted_with::<u32>(vec![7]).await;
    let (other, _) = scripted::<u32>().await;
    let mut stream = stream_over_both((&failing, transient()), (&other, transient()));
    assert_eq!(stream.next().await, Some(7));
    failing
        .stop(ExitReason::Panic("kaput".into()))
        .await
        .unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(
        stream.end_reason(),
        Some(&ExitReason::Panic("kaput".into()))
    );
}

#[tokio::test]
async fn transient_subscription_shut_down_drops_out_while_the_others_continue() {
    let (first, _) = scripted_with::<u32>(vec![1, 2]).await;
    let (second, _) = scripted::<u32>().await;
    let mut stream = stream_over_both((&first, transient()), (&second, transient()));
    assert_eq!(stream.next().await, Some(1));
    assert_eq!(stream.next().await, Some(2));
    first.stop(ExitReason::Shutdown).await.unwrap();
    served_to_the_end_by(&mut stream, &second, vec![10, 11]).await;
}

#[tokio::test]
async fn temporary_subscription_whose_producer_fails_drops_out_while_the_others_continue() {
    let (failing, _) = scripted_with::<u32>(vec![1]).await;
    let (steady, _) = scripted::<u32>().await;
    let mut stream = stream_over_both((&failing, temporary()), (&steady, transient()));
    assert_eq!(stream.next().await, Some(1));
    failing.stop(ExitReason::error("boom")).await.unwrap();
    served_to_the_end_by(&mut stream, &steady, vec![2, 3]).await;
}

#[tokio::test]
async fn subscribing_mid_stream_adds_a_producer() {
    let (first, _) = scripted_with::<u32>(vec![1]).await;
    let (second, _) = scripted_with::<u32>(vec![2, 3]).await;
    let mut stream = gen_stage::stream::subscribe(&first, transient()).unwrap();
    assert_eq!(stream.next().await, Some(1));
    stream.subscribe_to(&second, transient()).unwrap();
    assert_eq!(stream.next().await, Some(2));
    assert_eq!(stream.next().await, Some(3));
    first.stop(ExitReason::Normal).await.unwrap();
    second.stop(ExitReason::Normal).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

#[tokio::test]
async fn rejected_subscription_never_ends_the_stream_silently() {
    let (steady, _) = scripted_with::<u32>(vec![10]).await;
    let (picky, _) = ScriptedProducer::<u32>::new();
    let picky = gen_stage::producer(picky.refuses_subscriptions("no thanks"))
        .start()
        .await
        .unwrap();
    let mut stream = stream_over_both((&steady, transient()), (&picky, SubscribeOptions::new()));
    assert_eq!(stream.next().await, Some(10));
    steady.cast(Script::Queue(vec![11])).unwrap();
    // Either the rejection only drops its own subscription (as a rejection never stops
    // a consumer), or it ends the stream and `end_reason` says why (as in GenStage).
    match stream.next().await {
        Some(item) => assert_eq!(item, 11),
        None => assert_eq!(
            stream.end_reason(),
            Some(&ExitReason::error("no thanks")),
            "the stream ended early without a reason"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// stream: invalid options, producers that are gone
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_with_invalid_options_is_refused() {
    let producer = gen_stage::source::from_iter(0..10u32)
        .start()
        .await
        .unwrap();
    let error =
        gen_stage::stream::subscribe(&producer, SubscribeOptions::new().max_demand(0)).unwrap_err();
    assert!(matches!(
        error,
        SubscribeError::InvalidOptions(OptionsError::MaxDemandZero)
    ));
    let error = gen_stage::stream::subscribe(&producer, opts(5, 5)).unwrap_err();
    assert!(matches!(
        error,
        SubscribeError::InvalidOptions(OptionsError::MinDemandNotBelowMax {
            min_demand: 5,
            max_demand: 5
        })
    ));
    // A refused extra subscription leaves the stream as it was.
    let mut stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    let error = stream
        .subscribe_to(
            &producer,
            SubscribeOptions::new().max_demand(1).min_demand(3),
        )
        .unwrap_err();
    assert!(matches!(error, SubscribeError::InvalidOptions(_)));
    let items: Vec<u32> = stream.collect().await;
    assert_eq!(items, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn stream_over_a_stopped_producer_ends_at_once() {
    let producer = gen_stage::source::from_iter(0..10u32)
        .start()
        .await
        .unwrap();
    producer.stop(ExitReason::Shutdown).await.unwrap();

    let mut stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::NotAlive));

    let mut stream = gen_stage::stream::subscribe(&producer, temporary()).unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

#[tokio::test]
async fn stream_with_a_dead_permanent_producer_ends_whatever_the_order() {
    let dead = gen_stage::source::from_iter(0..10u32)
        .start()
        .await
        .unwrap();
    dead.stop(ExitReason::Shutdown).await.unwrap();
    let (alive, _) = scripted_with::<u32>(vec![1, 2]).await;
    let mut stream = stream_over_both(
        (&dead, SubscribeOptions::new()),
        (&alive, SubscribeOptions::new()),
    );
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::NotAlive));
}

#[tokio::test(start_paused = true)]
async fn stream_over_a_producer_that_is_stopping_ends() {
    let (producer, _) = scripted::<u32>().await;
    // The stop is queued first; the stream's subscription lands behind it, in the
    // mailbox of a stage that is still alive but will never handle it.
    producer.cast(Script::Stop(ExitReason::Shutdown)).unwrap();
    let mut stream = gen_stage::stream::subscribe(&producer, SubscribeOptions::new()).unwrap();
    assert_eq!(stream.next().now_or_never(), None);
    assert_eq!(producer.stopped().await, ExitReason::Shutdown);
    // Paused time: the timeout only fires if the stream is stuck for good.
    let next = tokio::time::timeout(Duration::from_secs(60), stream.next()).await;
    assert_eq!(
        next,
        Ok(None),
        "the stream must end once its producer is gone"
    );
    assert!(stream.end_reason().is_some());
}

#[tokio::test]
async fn a_stream_that_ends_while_its_producer_accumulates_keeps_its_last_items() {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let (ended, stream_ended) = tokio::sync::oneshot::channel();
    let source = futures::stream::unfold(
        (receiver, Some(ended)),
        |(mut receiver, ended)| async move {
            match receiver.recv().await {
                Some(item) => Some((item, (receiver, ended))),
                None => {
                    let _ = ended.map(|ended| ended.send(()));
                    None
                }
            }
        },
    );
    let producer = gen_stage::source::from_stream(source)
        .start()
        .await
        .unwrap();
    let (_consumer, record) = collect(&producer, opts(10, 5)).await;
    barrier(&producer).await; // the demand reached the stream's task
    producer
        .set_demand_mode(gen_stage::DemandMode::Accumulate)
        .unwrap();
    sender.send(1).unwrap();
    sender.send(2).unwrap();
    drop(sender);
    // The stream's task hands over both items and the stream's end in the same turn.
    within("the stream ends", stream_ended).await.unwrap();
    barrier(&producer).await;
    // The end waits behind the items stashed while accumulating...
    assert!(producer.is_alive());
    assert_eq!(producer.estimate_buffered_count().await, Ok(2));
    // ...which go out once forwarding, before the producer stops.
    producer
        .set_demand_mode(gen_stage::DemandMode::Forward)
        .unwrap();
    within("both items", record.wait_for_events(2)).await;
    assert_eq!(record.events(), [1, 2]);
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn a_stream_producers_cancel_option_is_set_on_its_builder() {
    let counting = gen_stage::source::from_stream(futures::stream::iter(0_u64..))
        .on_cancel(gen_stage::source::OnCancel::Stop)
        .start()
        .await
        .expect("starts");
    let events =
        gen_stage::stream::subscribe(&counting, gen_stage::SubscribeOptions::new().max_demand(10))
            .expect("subscribes");
    assert_eq!(events.take(3).collect::<Vec<_>>().await, [0, 1, 2]);
    // Its only consumer left: it stops (by default it would keep running).
    let reason = support::within("the producer stops", counting.stopped()).await;
    assert!(reason.is_normal(), "{reason:?}");
}
