//! Producer-consumers under demand: back-pressure from their consumers, filtering and
//! fanning out, output buffered beyond demand, and pipelines that run to the end
//! (semantics §7.2).

mod support;

use std::sync::{Arc, Mutex};

use gen_stage::kind::EmitsEvents;
use gen_stage::{ExitReason, ProducerConsumerRef, StageRef, SubscribeOptions};
use gen_stage_test::{Counter, Gate, Recorded, Relay, Script};
use support::{
    ask_in_steps, barrier, collect, collect_gated, consumer_barrier, manual_consumer, n, opts,
    range, recorded_counter, scripted, scripted_with, stops_normally, within,
};

/// Starts a `Relay` with `map` subscribed to `producer`; returns its handled batches.
async fn relay<K: EmitsEvents<Out = u64>>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    map: fn(u64) -> Vec<u64>,
) -> (ProducerConsumerRef<Relay<u64>>, Recorded<Vec<u64>>) {
    let stage = Relay::new(map);
    let handled = stage.handled();
    let middle = gen_stage::producer_consumer(stage)
        .subscribe_to(producer, options)
        .start()
        .await
        .expect("the relay starts");
    (middle, handled)
}

fn identity(x: u64) -> Vec<u64> {
    vec![x]
}

/// Lets messages go back and forth a few times between two stages.
async fn rounds<A: EmitsEvents, B: EmitsEvents>(upstream: &StageRef<A>, middle: &StageRef<B>) {
    for _ in 0..4 {
        barrier(upstream).await;
        barrier(middle).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. Back-pressure
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn producer_consumer_without_downstream_demand_neither_handles_nor_reasks() {
    let (producer, demands) = recorded_counter(Counter::new(0)).await;
    let (middle, handled) = relay(&producer, opts(10, 5), identity).await;

    within("first ask", demands.wait_for_len(1)).await;
    rounds(&producer, &middle).await;
    assert!(handled.is_empty());
    assert_eq!(demands.snapshot(), vec![10]);

    // A consumer that subscribes but does not ask changes nothing.
    let (consumer, record, tag) = manual_consumer(&middle, opts(10, 5)).await;
    rounds(&producer, &middle).await;
    assert!(handled.is_empty());
    assert_eq!(demands.snapshot(), vec![10]);

    // Asking 3 lets the queued delivery through (two batches of max - min = 5, each
    // followed by its re-ask); the output beyond 3 is buffered, nothing more is handled.
    consumer.ask(tag, n(3)).unwrap();
    within("3 events", record.wait_for_events(3)).await;
    within("re-asks", demands.wait_for_len(3)).await;
    rounds(&producer, &middle).await;
    assert_eq!(handled.snapshot(), vec![range(0, 5), range(5, 10)]);
    assert_eq!(demands.snapshot(), vec![10, 5, 5]);
    assert_eq!(middle.estimate_buffered_count().await.unwrap(), 7);
    consumer_barrier(&consumer).await;
    assert_eq!(record.events(), range(0, 3));
}

#[tokio::test]
async fn producer_consumer_stops_pulling_while_its_consumer_is_busy() {
    let (producer, demands) = recorded_counter(Counter::new(0).limit(200)).await;
    let (middle, handled) = relay(&producer, opts(10, 5), identity).await;
    let gate = Gate::closed();
    let (consumer, record) = collect_gated(&middle, opts(4, 2), &gate).await;

    within("first delivery handled", handled.wait_for_len(2)).await;
    within("re-asks", demands.wait_for_len(3)).await;
    rounds(&producer, &middle).await;
    // The consumer asked 4 and is stuck on its first batch: one delivery handled.
    assert_eq!(handled.snapshot().concat(), range(0, 10));
    assert_eq!(demands.snapshot(), vec![10, 5, 5]);
    assert_eq!(middle.estimate_buffered_count().await.unwrap(), 6);
    assert_eq!(record.event_count(), 0);

    gate.open_for_good();
    stops_normally(&consumer).await;
    assert_eq!(record.events(), range(0, 200));
}

#[tokio::test]
async fn filtering_producer_consumer_keeps_asking_upstream() {
    let (producer, demands) = recorded_counter(Counter::new(0).limit(60)).await;
    let keep_from_50 = |x| if x >= 50 { vec![x] } else { Vec::new() };
    let (middle, handled) = relay(&producer, opts(10, 5), keep_from_50).await;
    let (consumer, record) = collect(&middle, opts(10, 5)).await;

    stops_normally(&consumer).await;
    stops_normally(&middle).await;
    assert_eq!(record.events(), range(50, 60));
    assert_eq!(handled.snapshot().concat(), range(0, 60));
    assert!(demands.snapshot().iter().sum::<usize>() >= 60);
}

#[tokio::test]
async fn producer_consumer_output_beyond_demand_is_buffered_and_delivered_in_order() {
    let (producer, upstream_record) = scripted_with(vec![0u64, 1, 2]).await;
    let (middle, handled) = relay(&producer, opts(10, 5), |x| range(x * 10, x * 10 + 10)).await;
    let (consumer, record, tag) = manual_consumer(&middle, opts(100, 50)).await;

    let steps = [(5, 5, 25), (7, 12, 18), (18, 30, 0)];
    ask_in_steps(&middle, (&consumer, &record, tag), &steps).await;
    // The three inputs were handled once; 3 of the 10 asked upstream arrived, so the
    // producer-consumer did not ask again.
    assert_eq!(handled.snapshot(), vec![vec![0, 1, 2]]);
    assert_eq!(upstream_record.snapshot().demands, vec![10]);
    assert_eq!(producer.call(Script::Owed).await.unwrap(), 7);
}

// ---------------------------------------------------------------------------------------
// 2. Pipelines
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn three_stage_pipeline_delivers_everything_once_in_order_and_stops_normally() {
    let producer = gen_stage::producer(Counter::new(0).limit(1000))
        .start()
        .await
        .unwrap();
    let (middle, _) = relay(&producer, opts(50, 25), |x| vec![x * 2]).await;
    let (consumer, record) = collect(&middle, opts(20, 5)).await;

    stops_normally(&consumer).await;
    stops_normally(&middle).await;
    stops_normally(&producer).await;
    let expected: Vec<u64> = (0..1000).map(|x| x * 2).collect();
    assert_eq!(record.events(), expected);
    assert_eq!(record.terminated(), Some(ExitReason::Normal));
}

#[tokio::test]
async fn pipeline_from_an_iterator_with_a_filter_completes() {
    let producer = gen_stage::source::from_iter(0..300u64)
        .start()
        .await
        .unwrap();
    let multiples_of_3 = |x| if x % 3 == 0 { vec![x] } else { Vec::new() };
    let (middle, handled) = relay(&producer, opts(7, 3), multiples_of_3).await;
    let (consumer, record) = collect(&middle, SubscribeOptions::new().max_demand(1)).await;

    stops_normally(&consumer).await;
    stops_normally(&middle).await;
    stops_normally(&producer).await;
    let expected: Vec<u64> = (0..300).filter(|x| x % 3 == 0).collect();
    assert_eq!(record.events(), expected);
    assert!(record.batch_sizes().iter().all(|&size| size == 1));
    assert_eq!(handled.snapshot().concat(), range(0, 300));
    assert!(handled.snapshot().iter().all(|batch| batch.len() <= 4));
}

#[tokio::test]
async fn producer_consumer_delivers_its_buffered_output_before_winding_down() {
    let (producer, _) = scripted::<u64>().await;
    let (middle, handled) = relay(&producer, opts(10, 5), identity).await;
    let (consumer, record) = collect(&middle, opts(2, 1)).await;

    // The last five events reach the producer-consumer while its consumer wants 2: three
    // are buffered. Then the producer finishes normally.
    producer.cast(Script::Queue(range(0, 5))).unwrap();
    producer.cast(Script::Stop(ExitReason::Normal)).unwrap();

    stops_normally(&producer).await;
    stops_normally(&consumer).await;
    assert_eq!(handled.snapshot().concat(), range(0, 5));
    // The buffered three must not be lost when the permanent subscription ends.
    assert_eq!(record.events(), range(0, 5));
}

// ---------------------------------------------------------------------------------------
// 5. Upstream failures with output buffered
// ---------------------------------------------------------------------------------------

/// A producer-consumer that turns each input event into three output events.
struct Triple;

impl gen_stage::ProducerConsumer for Triple {
    type Input = u64;
    type Output = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: gen_stage::SubscriptionTag,
        _ctx: &mut gen_stage::ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<u64>, gen_stage::BoxError> {
        Ok(events.iter().flat_map(|&e| [e, e, e]).collect())
    }
}

/// A scripted producer, a tripling producer-consumer subscribed to it permanently, and
/// a manual consumer of the producer-consumer that took one event (with its record and
/// its subscription's tag): two more wait in the producer-consumer's output buffer.
async fn output_buffered() -> (
    gen_stage::ProducerRef<gen_stage_test::ScriptedProducer<u64>>,
    gen_stage::ProducerConsumerRef<Triple>,
    (
        support::Collector<u64>,
        support::Events<u64>,
        gen_stage::SubscriptionTag,
    ),
) {
    let (producer, _) = scripted().await;
    let middle = gen_stage::producer_consumer(Triple)
        .subscribe_to(&producer, opts(10, 5))
        .start()
        .await
        .expect("starts");
    let (consumer, events, tag) = manual_consumer(&middle, opts(10, 5)).await;
    consumer.ask(tag, n(1)).expect("alive");
    barrier(&middle).await;
    producer.cast(Script::Queue(vec![7])).expect("alive");
    events.wait_for_events(1).await;
    assert_eq!(
        within("buffered", middle.estimate_buffered_count()).await,
        Ok(2)
    );
    (producer, middle, (consumer, events, tag))
}

#[tokio::test]
async fn a_crash_upstream_stops_a_producer_consumer_at_once_whatever_it_buffers() {
    let (producer, middle, _consumer) = output_buffered().await;
    producer
        .cast(Script::Stop(ExitReason::error("boom")))
        .expect("alive");
    let reason = within("the producer-consumer stops", middle.stopped()).await;
    assert_eq!(reason, ExitReason::error("boom"));
}

#[tokio::test]
async fn an_upstream_end_stops_a_producer_consumer_whose_consumers_are_gone() {
    let (producer, middle, (consumer, ..)) = output_buffered().await;
    consumer.stop(ExitReason::Shutdown).await.expect("alive");
    barrier(&middle).await;
    producer
        .cast(Script::Stop(ExitReason::Normal))
        .expect("alive");
    stops_normally(&middle).await;
}

#[tokio::test]
async fn a_producer_consumer_whose_upstream_ended_stops_when_its_last_consumer_leaves() {
    let (producer, middle, (consumer, ..)) = output_buffered().await;
    // The end waits behind the two events buffered for the consumer...
    producer
        .cast(Script::Stop(ExitReason::Normal))
        .expect("alive");
    stops_normally(&producer).await;
    barrier(&middle).await;
    assert!(middle.is_alive());
    // ...until no consumer is left to take them: then nothing would ever deliver them.
    consumer.stop(ExitReason::Shutdown).await.expect("alive");
    stops_normally(&middle).await;
}

#[tokio::test]
async fn an_upstream_end_keeps_waiting_behind_buffered_output_while_a_consumer_is_left() {
    let (producer, middle, (first, events, tag)) = output_buffered().await;
    let (second, _, _) = manual_consumer(&middle, opts(10, 5)).await;
    producer
        .cast(Script::Stop(ExitReason::Normal))
        .expect("alive");
    stops_normally(&producer).await;
    // One of two consumers leaves: the other can still take the two buffered events,
    // so the end keeps waiting behind them.
    second.stop(ExitReason::Shutdown).await.expect("alive");
    barrier(&middle).await;
    assert!(middle.is_alive());
    // Once they have gone out, the end goes through.
    first.ask(tag, n(2)).expect("alive");
    stops_normally(&middle).await;
    assert_eq!(events.events(), vec![7, 7, 7]);
}

// ---------------------------------------------------------------------------------------
// 6. Upstream ends in order with what came before them
// ---------------------------------------------------------------------------------------

/// A pass-through producer-consumer that logs its infos and cancellations, in order.
struct Logging(Arc<Mutex<Vec<String>>>);

impl gen_stage::ProducerConsumer for Logging {
    type Input = u64;
    type Output = u64;
    type Message = &'static str;

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: gen_stage::SubscriptionTag,
        _ctx: &mut gen_stage::ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<u64>, gen_stage::BoxError> {
        Ok(events)
    }

    async fn handle_cancel(
        &mut self,
        _tag: gen_stage::SubscriptionTag,
        reason: &gen_stage::CancelReason,
        _ctx: &mut gen_stage::ProducerConsumerContext<'_, Self>,
    ) -> Result<(), gen_stage::BoxError> {
        self.log(format!("cancel: {reason}"));
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: &'static str,
        _ctx: &mut gen_stage::ProducerConsumerContext<'_, Self>,
    ) -> Result<(), gen_stage::BoxError> {
        self.log(format!("info: {message}"));
        Ok(())
    }
}

impl Logging {
    fn log(&self, line: String) {
        self.0.lock().expect("not poisoned").push(line);
    }
}

#[tokio::test]
async fn an_info_sent_before_an_upstream_failure_is_handled_before_it() {
    let (producer, _) = scripted().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let middle = gen_stage::producer_consumer(Logging(log.clone()))
        .subscribe_to(
            &producer,
            opts(10, 5).cancel(gen_stage::CancelMode::Temporary),
        )
        .start()
        .await
        .unwrap();
    let (consumer, _events, tag) = manual_consumer(&middle, opts(10, 5)).await;
    // Nobody asked: the events wait as input, then the info behind them.
    producer.cast(Script::Queue(vec![1, 2, 3])).unwrap();
    barrier(&producer).await;
    barrier(&middle).await;
    middle.async_info("before the failure").unwrap();
    producer
        .cast(Script::Stop(ExitReason::error("boom")))
        .unwrap();
    within("the producer stops", producer.stopped()).await;
    barrier(&middle).await;
    assert!(log.lock().unwrap().is_empty());
    // Demand lets the input through, then the info, then the failure, in that order.
    consumer.ask(tag, n(10)).unwrap();
    consumer_barrier(&consumer).await;
    barrier(&middle).await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "info: before the failure",
            "cancel: peer down (error: boom)"
        ]
    );
}
