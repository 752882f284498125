//! Streams and iterators: `from_iter` / `from_stream` producers (exhaustion, `OnCancel`)
//! and `gen_stage::stream` (lazy demand, cancellation on drop, several producers, how and
//! why the stream ends, invalid options).

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gen_stage::{
    BoxError, CancelMode, CancelReason, ExitReason, IterSource, OnCancel, OptionsError, Producer,
    ProducerContext, ProducerRef, SourceProducer, SubscribeError, SubscribeOptions,
    SubscriptionTag,
};
use gen_stage_test::{CollectingConsumer, Counter, Gate, Script, ScriptedProducer};

fn opts(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// A round trip through a counter's mailbox: everything sent to it before has been handled.
async fn settle(counter: &ProducerRef<Counter>) {
    counter
        .estimate_buffered_count()
        .await
        .expect("counter alive");
}

/// A round trip through a scripted producer's mailbox.
async fn settle_scripted(producer: &ProducerRef<ScriptedProducer<u32>>) {
    producer.call(Script::Owed).await.expect("producer alive");
}

// ---------------------------------------------------------------------------------------
// from_iter / from_stream
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn from_iter_emits_every_item_in_order_then_stops_normally() {
    let producer = gen_stage::from_iter(0..100u32).start().await.unwrap();
    let (consumer, record) = CollectingConsumer::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    record.wait_until(|r| r.terminated.is_some()).await;
    assert_eq!(record.events(), (0..100).collect::<Vec<_>>());
    let (tag, terminated, cancels) =
        record.read(|r| (r.subscriptions[0], r.terminated.clone(), r.cancels.clone()));
    // The permanent consumer follows its producer out, after handling every event.
    assert_eq!(terminated, Some(ExitReason::Normal));
    assert_eq!(cancels, vec![(tag, CancelReason::Down(ExitReason::Normal))]);
}

#[tokio::test]
async fn from_iter_with_small_max_demand_delivers_the_last_items_before_stopping() {
    let producer = gen_stage::from_iter(0..50u32).start().await.unwrap();
    let (consumer, record) = CollectingConsumer::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, opts(3, 1))
        .start()
        .await
        .unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    // The stop reaches the consumer behind the last events: it has all of them when it ends.
    record.wait_until(|r| r.terminated.is_some()).await;
    assert_eq!(record.events(), (0..50).collect::<Vec<_>>());
    assert!(record.batch_sizes().iter().all(|&size| size <= 2));
    assert_eq!(
        record.read(|r| r.terminated.clone()),
        Some(ExitReason::Normal)
    );
}

#[tokio::test]
async fn from_iter_does_not_stop_while_items_remain_undemanded() {
    let producer = gen_stage::from_iter(0..50u32).start().await.unwrap();
    let gate = Gate::closed();
    let (consumer, record) = CollectingConsumer::new();
    gen_stage::consumer(consumer.gated(gate.clone()))
        .subscribe_to(&producer, opts(4, 2))
        .start()
        .await
        .unwrap();
    // The consumer holds its first batch: the producer has served its demand of 4 and
    // must wait for more, alive, with the rest of its items.
    producer.estimate_buffered_count().await.unwrap();
    assert!(producer.exit_reason().is_none());
    assert_eq!(record.event_count(), 0);
    gate.open_for_good();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    record.wait_until(|r| r.terminated.is_some()).await;
    assert_eq!(record.events(), (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_iter_of_nothing_stops_normally_on_the_first_demand() {
    let producer = gen_stage::from_iter(Vec::<u32>::new())
        .start()
        .await
        .unwrap();
    let (consumer, record) = CollectingConsumer::<u32>::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    record.wait_until(|r| r.terminated.is_some()).await;
    assert_eq!(record.event_count(), 0);
    assert_eq!(
        record.read(|r| r.terminated.clone()),
        Some(ExitReason::Normal)
    );
}

#[tokio::test]
async fn from_stream_emits_every_item_in_order_then_stops_normally() {
    let producer = gen_stage::from_stream(futures::stream::iter(0..60u32))
        .start()
        .await
        .unwrap();
    let (consumer, record) = CollectingConsumer::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, opts(7, 3))
        .start()
        .await
        .unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    record.wait_until(|r| r.terminated.is_some()).await;
    assert_eq!(record.events(), (0..60).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_stream_waits_for_a_pending_stream_and_stops_when_it_ends() {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let source = Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ));
    let producer = gen_stage::from_stream(source).start().await.unwrap();
    let (consumer, record) = CollectingConsumer::new();
    gen_stage::consumer(consumer)
        .subscribe_to(&producer, opts(5, 0))
        .start()
        .await
        .unwrap();
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
    assert_eq!(producer.stopped().await, ExitReason::Normal);
    record.wait_until(|r| r.terminated.is_some()).await;
    assert_eq!(record.events(), (0..7).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_iter_consumed_as_a_stream_ends_the_stream_normally() {
    let producer = gen_stage::from_iter(0..25u32).start().await.unwrap();
    let mut stream = gen_stage::stream(&producer, opts(4, 1)).unwrap();
    let items: Vec<u32> = stream.by_ref().collect().await;
    assert_eq!(items, (0..25).collect::<Vec<_>>());
    assert_eq!(stream.end_reason(), None);
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

// ---------------------------------------------------------------------------------------
// OnCancel
// ---------------------------------------------------------------------------------------

fn stop_on_cancel(items: std::ops::Range<u32>) -> SourceProducer<IterSource<std::ops::Range<u32>>> {
    SourceProducer::new(IterSource::new(items)).on_cancel(OnCancel::Stop)
}

#[tokio::test]
async fn on_cancel_stop_stops_the_producer_when_its_last_consumer_cancels() {
    let producer = gen_stage::producer(stop_on_cancel(0..100))
        .start()
        .await
        .unwrap();
    let (first, first_record) = CollectingConsumer::<u32>::new();
    let (second, second_record) = CollectingConsumer::<u32>::new();
    let first = gen_stage::consumer(first.manual())
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();
    let second = gen_stage::consumer(second.manual())
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();

    let tag = first_record.wait_for_subscriptions(1).await[0];
    first.cancel(tag, ExitReason::Normal).unwrap();
    first_record.wait_for_cancels(1).await;
    producer.estimate_buffered_count().await.unwrap();
    assert!(producer.exit_reason().is_none(), "one consumer is left");

    let tag = second_record.wait_for_subscriptions(1).await[0];
    second.cancel(tag, ExitReason::Normal).unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn on_cancel_stop_stops_the_producer_when_its_consumer_stops() {
    let producer = gen_stage::producer(stop_on_cancel(0..100))
        .start()
        .await
        .unwrap();
    let (consumer, _record) = CollectingConsumer::<u32>::new();
    let consumer = gen_stage::consumer(consumer.manual())
        .subscribe_to(&producer, SubscribeOptions::new())
        .start()
        .await
        .unwrap();
    consumer.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn on_cancel_stop_stops_the_producer_when_its_stream_is_dropped() {
    let producer = gen_stage::producer(stop_on_cancel(0..100))
        .start()
        .await
        .unwrap();
    let stream = gen_stage::stream(&producer, opts(2, 0)).unwrap();
    let items: Vec<u32> = stream.take(2).collect().await;
    assert_eq!(items, vec![0, 1]);
    assert_eq!(producer.stopped().await, ExitReason::Normal);
}

#[tokio::test]
async fn on_cancel_continue_keeps_the_producer_running_for_the_next_consumer() {
    let producer = gen_stage::from_iter(0..100u32).start().await.unwrap();
    let first: Vec<u32> = gen_stage::stream(&producer, opts(2, 0))
        .unwrap()
        .take(2)
        .collect()
        .await;
    assert_eq!(first, vec![0, 1]);
    producer.estimate_buffered_count().await.unwrap();
    assert!(producer.exit_reason().is_none());
    // The next consumer continues where the first stopped asking.
    let next: Vec<u32> = gen_stage::stream(&producer, opts(2, 0))
        .unwrap()
        .take(2)
        .collect()
        .await;
    assert_eq!(next, vec![2, 3]);
    assert!(producer.is_alive());
}

// ---------------------------------------------------------------------------------------
// stream: lazy demand and cancellation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_asks_nothing_before_the_first_poll_then_max_demand_once() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let mut stream = gen_stage::stream(&producer, opts(30, 10)).unwrap();
    settle(&producer).await;
    assert!(demands.is_empty(), "asked before the first poll");

    assert_eq!(stream.next().now_or_never(), None);
    demands.wait_for_len(1).await;
    settle(&producer).await;
    assert_eq!(demands.snapshot(), vec![30]);
}

#[tokio::test]
async fn stream_take_ten_with_max_demand_1000_asks_the_producer_once() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let items: Vec<u64> = gen_stage::stream(&producer, SubscribeOptions::new())
        .unwrap()
        .take(10)
        .collect()
        .await;
    assert_eq!(items, (0..10).collect::<Vec<_>>());
    settle(&producer).await;
    assert_eq!(demands.snapshot(), vec![1000]);
}

#[tokio::test]
async fn stream_asks_again_only_as_its_events_are_pulled() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter).start().await.unwrap();
    let mut stream = gen_stage::stream(&producer, opts(10, 5)).unwrap();
    for expected in 0..5 {
        assert_eq!(stream.next().await, Some(expected));
    }
    settle(&producer).await;
    assert_eq!(demands.snapshot(), vec![10]);
    // Pulling past the first batch of max - min = 5 events asks for 5 more.
    assert_eq!(stream.next().await, Some(5));
    settle(&producer).await;
    assert_eq!(demands.snapshot(), vec![10, 5]);

    for expected in 6..23 {
        assert_eq!(stream.next().await, Some(expected));
    }
    settle(&producer).await;
    let asked: usize = demands.snapshot().iter().sum();
    // The counter emits exactly what it is asked: it never runs more than max_demand ahead.
    assert!(asked <= 23 + 10, "asked {asked} for 23 pulled");
    settle(&producer).await;
    assert_eq!(demands.snapshot().iter().sum::<usize>(), asked);
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_subscription() {
    let (scripted, record) = ScriptedProducer::<u32>::with_queue(vec![1, 2, 3]);
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let mut stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
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
    let (scripted, record) = ScriptedProducer::<u32>::new();
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
    drop(stream);
    settle_scripted(&producer).await;
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
        producers.push(gen_stage::from_iter(items).start().await.unwrap());
    }
    let options = opts(5, 2).cancel(CancelMode::Transient);
    let mut stream = gen_stage::stream(&producers[0], options.clone()).unwrap();
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
    let finite = gen_stage::from_iter(0..5u32).start().await.unwrap();
    let (scripted, record) = ScriptedProducer::<u32>::new();
    let silent = gen_stage::producer(scripted).start().await.unwrap();
    let mut stream = gen_stage::stream(&finite, SubscribeOptions::new()).unwrap();
    stream
        .subscribe_to(
            &silent,
            SubscribeOptions::new().cancel(CancelMode::Temporary),
        )
        .unwrap();
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
    let (scripted, _record) = ScriptedProducer::with_queue(vec![1u32, 2, 3]);
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let mut stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
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
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![1]);
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    let mut stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
    assert_eq!(stream.next().await, Some(1));
    producer.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::Shutdown));
}

#[tokio::test]
async fn transient_subscription_ending_abnormally_ends_the_stream() {
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![7]);
    let failing = gen_stage::producer(scripted).start().await.unwrap();
    let (scripted, _) = ScriptedProducer::<u32>::new();
    let other = gen_stage::producer(scripted).start().await.unwrap();
    let transient = SubscribeOptions::new().cancel(CancelMode::Transient);
    let mut stream = gen_stage::stream(&failing, transient.clone()).unwrap();
    stream.subscribe_to(&other, transient).unwrap();
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
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![1, 2]);
    let first = gen_stage::producer(scripted).start().await.unwrap();
    let (scripted, _) = ScriptedProducer::<u32>::new();
    let second = gen_stage::producer(scripted).start().await.unwrap();
    let transient = SubscribeOptions::new().cancel(CancelMode::Transient);
    let mut stream = gen_stage::stream(&first, transient.clone()).unwrap();
    stream.subscribe_to(&second, transient).unwrap();
    assert_eq!(stream.next().await, Some(1));
    assert_eq!(stream.next().await, Some(2));
    first.stop(ExitReason::Shutdown).await.unwrap();
    second.cast(Script::Queue(vec![10, 11])).unwrap();
    assert_eq!(stream.next().await, Some(10));
    assert_eq!(stream.next().await, Some(11));
    second.stop(ExitReason::Normal).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

#[tokio::test]
async fn temporary_subscription_whose_producer_fails_drops_out_while_the_others_continue() {
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![1]);
    let failing = gen_stage::producer(scripted).start().await.unwrap();
    let (scripted, _) = ScriptedProducer::<u32>::new();
    let steady = gen_stage::producer(scripted).start().await.unwrap();
    let mut stream = gen_stage::stream(
        &failing,
        SubscribeOptions::new().cancel(CancelMode::Temporary),
    )
    .unwrap();
    stream
        .subscribe_to(
            &steady,
            SubscribeOptions::new().cancel(CancelMode::Transient),
        )
        .unwrap();
    assert_eq!(stream.next().await, Some(1));
    failing.stop(ExitReason::error("boom")).await.unwrap();
    steady.cast(Script::Queue(vec![2, 3])).unwrap();
    assert_eq!(stream.next().await, Some(2));
    assert_eq!(stream.next().await, Some(3));
    steady.stop(ExitReason::Normal).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

#[tokio::test]
async fn subscribing_mid_stream_adds_a_producer() {
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![1]);
    let first = gen_stage::producer(scripted).start().await.unwrap();
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![2, 3]);
    let second = gen_stage::producer(scripted).start().await.unwrap();
    let transient = SubscribeOptions::new().cancel(CancelMode::Transient);
    let mut stream = gen_stage::stream(&first, transient.clone()).unwrap();
    assert_eq!(stream.next().await, Some(1));
    stream.subscribe_to(&second, transient).unwrap();
    assert_eq!(stream.next().await, Some(2));
    assert_eq!(stream.next().await, Some(3));
    first.stop(ExitReason::Normal).await.unwrap();
    second.stop(ExitReason::Normal).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

/// Refuses every subscription.
struct Picky;

impl Producer for Picky {
    type Event = u32;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u32>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_consumer_subscribed(
        &mut self,
        _tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Err("no thanks".into())
    }
}

#[tokio::test]
async fn rejected_subscription_never_ends_the_stream_silently() {
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![10]);
    let steady = gen_stage::producer(scripted).start().await.unwrap();
    let picky = gen_stage::producer(Picky).start().await.unwrap();
    let transient = SubscribeOptions::new().cancel(CancelMode::Transient);
    let mut stream = gen_stage::stream(&steady, transient).unwrap();
    stream
        .subscribe_to(&picky, SubscribeOptions::new())
        .unwrap();
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
    let producer = gen_stage::from_iter(0..10u32).start().await.unwrap();
    let error = gen_stage::stream(&producer, SubscribeOptions::new().max_demand(0)).unwrap_err();
    assert!(matches!(
        error,
        SubscribeError::InvalidOptions(OptionsError::MaxDemandZero)
    ));
    let error = gen_stage::stream(&producer, opts(5, 5)).unwrap_err();
    assert!(matches!(
        error,
        SubscribeError::InvalidOptions(OptionsError::MinDemandNotBelowMax {
            min_demand: 5,
            max_demand: 5
        })
    ));
    // A refused extra subscription leaves the stream as it was.
    let mut stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
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
    let producer = gen_stage::from_iter(0..10u32).start().await.unwrap();
    producer.stop(ExitReason::Shutdown).await.unwrap();

    let mut stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::NotAlive));

    let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
    let mut stream = gen_stage::stream(&producer, temporary).unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), None);
}

#[tokio::test]
async fn stream_with_a_dead_permanent_producer_ends_whatever_the_order() {
    let dead = gen_stage::from_iter(0..10u32).start().await.unwrap();
    dead.stop(ExitReason::Shutdown).await.unwrap();
    let (scripted, _) = ScriptedProducer::<u32>::with_queue(vec![1, 2]);
    let alive = gen_stage::producer(scripted).start().await.unwrap();
    let mut stream = gen_stage::stream(&dead, SubscribeOptions::new()).unwrap();
    stream
        .subscribe_to(&alive, SubscribeOptions::new())
        .unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.end_reason(), Some(&ExitReason::NotAlive));
}

#[tokio::test(start_paused = true)]
async fn stream_over_a_producer_that_is_stopping_ends() {
    let (scripted, _) = ScriptedProducer::<u32>::new();
    let producer = gen_stage::producer(scripted).start().await.unwrap();
    // The stop is queued first; the stream's subscription lands behind it, in the
    // mailbox of a stage that is still alive but will never handle it.
    producer.cast(Script::Stop(ExitReason::Shutdown)).unwrap();
    let mut stream = gen_stage::stream(&producer, SubscribeOptions::new()).unwrap();
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
