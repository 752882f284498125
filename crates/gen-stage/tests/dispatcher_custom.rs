//! User-written dispatchers in running stages (a round robin, one that over-delivers,
//! one that refuses subscriptions, one that discards and asks upstream on its own), and
//! property tests of the broadcast and partition dispatchers (semantics §6).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::dispatcher::{
    BroadcastDispatcher, Deliveries, DemandDispatcher, Dispatcher, Partition, PartitionDispatcher,
    Subscriber,
};
use gen_stage::kind::EmitsEvents;
use gen_stage::{
    BoxError, ConsumerRef, ExitReason, ProducerRef, StageRef, StartError, SubscribeError,
    SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{
    CollectingConsumer, Counter, Ping, Record, Recorded, Script, ScriptedProducer, Watch,
};
use proptest::prelude::*;

type Collector = ConsumerRef<CollectingConsumer<u64>>;
type Events = Watch<Record<u64>>;
type Scripted = ProducerRef<ScriptedProducer<u64>>;

/// Guard against a stalled pipeline in the property tests. Their runtimes start with the
/// clock paused, so a stalled case (nothing left to run) fails at once, and a passing
/// one never reaches it.
const STALL: Duration = Duration::from_secs(60);

fn n(count: usize) -> NonZeroUsize {
    NonZeroUsize::new(count).expect("non-zero")
}

fn opts(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

async fn scripted(dispatcher: impl Dispatcher<u64>) -> Scripted {
    let (stage, _) = ScriptedProducer::new();
    gen_stage::producer(stage)
        .dispatcher(dispatcher)
        .start()
        .await
        .expect("producer starts")
}

async fn start<P>(
    consumer: CollectingConsumer<u64>,
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> Collector
where
    P: EmitsEvents<Out = u64>,
{
    gen_stage::consumer(consumer)
        .subscribe_to(producer, options)
        .start()
        .await
        .expect("consumer starts")
}

async fn collect<P>(producer: &StageRef<P>, options: SubscribeOptions) -> (Collector, Events)
where
    P: EmitsEvents<Out = u64>,
{
    let (consumer, record) = CollectingConsumer::new();
    (start(consumer, producer, options).await, record)
}

async fn manual<P>(
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> (Collector, Events, SubscriptionTag)
where
    P: EmitsEvents<Out = u64>,
{
    let (consumer, record) = CollectingConsumer::new();
    let consumer = start(consumer.manual(), producer, options).await;
    let tag = record.wait_for_subscriptions(1).await[0];
    (consumer, record, tag)
}

/// Waits until the consumers forwarded what they were told, the producer handled it,
/// and the consumers handled the events it sent.
async fn settle<P: EmitsEvents>(producer: &StageRef<P>, consumers: &[&Collector]) {
    for consumer in consumers {
        consumer.call(Ping).await.expect("consumer answers");
    }
    producer
        .estimate_buffered_count()
        .await
        .expect("producer answers");
    for consumer in consumers {
        consumer.call(Ping).await.expect("consumer answers");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------
// Custom dispatchers
// ---------------------------------------------------------------------------------------

/// Deals events one at a time to the consumers in turn, skipping those without demand.
#[derive(Debug, Default)]
struct RoundRobin {
    /// `(tag, demand)` in turn order.
    consumers: Vec<(SubscriptionTag, usize)>,
    next: usize,
}

impl<T: Send + 'static> Dispatcher<T> for RoundRobin {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        _: &mut Deliveries<T>,
    ) -> Result<usize, BoxError> {
        self.consumers.push((subscriber.tag, 0));
        Ok(0)
    }

    fn cancel(&mut self, tag: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
        self.consumers.retain(|(t, _)| *t != tag);
        0
    }

    fn ask(&mut self, tag: SubscriptionTag, demand: usize, _: &mut Deliveries<T>) -> usize {
        if let Some(entry) = self.consumers.iter_mut().find(|(t, _)| *t == tag) {
            entry.1 += demand;
        }
        demand
    }

    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        let count = self.consumers.len();
        let mut batches: Vec<Vec<T>> = (0..count).map(|_| Vec::new()).collect();
        let mut events = events.into_iter();
        let mut leftovers = Vec::new();
        while let Some(event) = events.next() {
            let taker = (0..count)
                .map(|step| (self.next + step) % count)
                .find(|&i| self.consumers[i].1 > 0);
            let Some(taker) = taker else {
                leftovers.push(event);
                leftovers.extend(events);
                break;
            };
            self.consumers[taker].1 -= 1;
            batches[taker].push(event);
            self.next = taker + 1;
        }
        for (batch, (tag, _)) in batches.into_iter().zip(&self.consumers) {
            deliveries.push(*tag, batch);
        }
        leftovers
    }
}

/// A buggy dispatcher: sends every event to its first subscriber, whatever it asked.
#[derive(Debug, Default)]
struct Greedy {
    tags: Vec<SubscriptionTag>,
}

impl<T: Send + 'static> Dispatcher<T> for Greedy {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        _: &mut Deliveries<T>,
    ) -> Result<usize, BoxError> {
        self.tags.push(subscriber.tag);
        Ok(0)
    }

    fn cancel(&mut self, tag: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
        self.tags.retain(|t| *t != tag);
        0
    }

    fn ask(&mut self, _: SubscriptionTag, demand: usize, _: &mut Deliveries<T>) -> usize {
        demand
    }

    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        match self.tags.first() {
            Some(&first) => {
                deliveries.push(first, events);
                Vec::new()
            }
            None => events,
        }
    }
}

#[tokio::test]
async fn round_robin_dispatcher_deals_events_in_turn() {
    let producer = scripted(RoundRobin::default()).await;
    let (a, ra, ta) = manual(&producer, SubscribeOptions::new()).await;
    let (b, rb, tb) = manual(&producer, SubscribeOptions::new()).await;
    a.ask(ta, n(4)).unwrap();
    b.ask(tb, n(2)).unwrap();
    settle(&producer, &[&a, &b]).await;
    producer.cast(Script::Queue(range(0, 10))).unwrap();
    settle(&producer, &[&a, &b]).await;
    // In turn while both have demand, then the rest to whoever still has some.
    assert_eq!(ra.events(), vec![0, 2, 4, 5]);
    assert_eq!(rb.events(), vec![1, 3]);
}

#[tokio::test]
async fn round_robin_dispatcher_works_in_a_finite_pipeline() {
    let producer = gen_stage::producer(Counter::new(0).limit(500))
        .dispatcher(RoundRobin::default())
        .start()
        .await
        .unwrap();
    let (a, ra) = collect(&producer, opts(10, 5)).await;
    let (b, rb) = collect(&producer, opts(8, 2)).await;

    assert!(a.stopped().await.is_normal());
    assert!(b.stopped().await.is_normal());
    assert!(producer.stopped().await.is_normal());
    let (ea, eb) = (ra.events(), rb.events());
    assert!(ea.windows(2).all(|w| w[0] < w[1]) && eb.windows(2).all(|w| w[0] < w[1]));
    assert!(
        !ea.is_empty() && !eb.is_empty(),
        "both consumers take turns"
    );
    let mut all = [ea, eb].concat();
    all.sort_unstable();
    assert_eq!(all, range(0, 500));
}

#[tokio::test]
async fn over_delivering_dispatcher_never_exceeds_a_manual_consumers_demand() {
    let producer = scripted(Greedy::default()).await;
    let (consumer, record, tag) = manual(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(3)).unwrap();
    settle(&producer, &[&consumer]).await;

    // The dispatcher tries to send all 10 to the consumer, which asked for 3.
    producer.cast(Script::Emit(range(0, 10))).unwrap();
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.batch_sizes(), vec![3]);
    assert_eq!(record.events(), range(0, 3));
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 7);

    consumer.ask(tag, n(4)).unwrap();
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.batch_sizes(), vec![3, 4]);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 3);

    consumer.ask(tag, n(5)).unwrap();
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.events(), range(0, 10), "the excess arrives in order");
    assert_eq!(record.batch_sizes(), vec![3, 4, 3]);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
    assert_eq!(producer.stats().events_discarded, 0);
}

#[tokio::test]
async fn over_delivering_dispatcher_never_overruns_automatic_demand() {
    let producer = scripted(Greedy::default()).await;
    let (consumer, record) = collect(&producer, opts(4, 2)).await;
    settle(&producer, &[&consumer]).await;

    producer.cast(Script::Emit(range(0, 30))).unwrap();
    record.wait_for_events(30).await;
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.events(), range(0, 30));
    assert!(
        record.batch_sizes().iter().all(|&size| size <= 2),
        "{:?}",
        record.batch_sizes()
    );
    assert_eq!(consumer.stats().events_received, 30);
}

/// The option a [`Doorman`] wants from its subscribers.
#[derive(Debug)]
struct Ticket;

#[derive(Debug)]
struct NoTicket;

impl std::fmt::Display for NoTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no ticket, no events")
    }
}

impl std::error::Error for NoTicket {}

/// A demand dispatcher that refuses subscribers without a [`Ticket`], and records the
/// subscriptions it is told were cancelled.
struct Doorman {
    inner: DemandDispatcher,
    cancelled: Recorded<SubscriptionTag>,
}

impl Dispatcher<u64> for Doorman {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        deliveries: &mut Deliveries<u64>,
    ) -> Result<usize, BoxError> {
        if subscriber.options.extension::<Ticket>().is_none() {
            return Err(Box::new(NoTicket));
        }
        self.inner.subscribe(subscriber, deliveries)
    }

    fn cancel(&mut self, tag: SubscriptionTag, deliveries: &mut Deliveries<u64>) -> usize {
        self.cancelled.push(tag);
        self.inner.cancel(tag, deliveries)
    }

    fn ask(
        &mut self,
        tag: SubscriptionTag,
        demand: usize,
        deliveries: &mut Deliveries<u64>,
    ) -> usize {
        self.inner.ask(tag, demand, deliveries)
    }

    fn dispatch(&mut self, events: Vec<u64>, deliveries: &mut Deliveries<u64>) -> Vec<u64> {
        self.inner.dispatch(events, deliveries)
    }
}

#[tokio::test]
async fn dispatcher_refusal_reaches_the_subscriber_and_the_producer_keeps_running() {
    let cancelled = Recorded::default();
    let doorman = Doorman {
        inner: DemandDispatcher::new(),
        cancelled: cancelled.clone(),
    };
    let producer = gen_stage::producer(Counter::new(0))
        .dispatcher(doorman)
        .start()
        .await
        .unwrap();
    let (consumer, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(consumer).start().await.unwrap();

    let error = consumer
        .subscribe_to(&producer, opts(10, 5))
        .await
        .expect_err("no ticket");
    let SubscribeError::Rejected(error) = error else {
        panic!("expected a rejection, got {error:?}");
    };
    assert_eq!(error.to_string(), "no ticket, no events");
    assert!(error.downcast_ref::<NoTicket>().is_some());

    let started = gen_stage::consumer(CollectingConsumer::<u64>::new().0)
        .subscribe_to(&producer, opts(10, 5))
        .start()
        .await;
    assert!(matches!(
        started,
        Err(StartError::Subscribe(SubscribeError::Rejected(_)))
    ));

    consumer.call(Ping).await.unwrap();
    producer.estimate_buffered_count().await.unwrap();
    assert!(producer.is_alive() && consumer.is_alive());
    assert!(
        cancelled.is_empty(),
        "cancel is only called for accepted subscriptions"
    );
    assert_eq!(producer.stats().consumers, 0);

    consumer
        .subscribe_to(&producer, opts(10, 5).with(Ticket))
        .await
        .expect("with a ticket");
    record.wait_for_events(30).await;
    assert_eq!(record.events()[..30], range(0, 30));
}

/// Passes even events to its one consumer; discards odd ones, and asks upstream again
/// for them.
#[derive(Debug, Default)]
struct EvensOnly {
    consumer: Option<(SubscriptionTag, usize)>,
}

impl Dispatcher<u64> for EvensOnly {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        _: &mut Deliveries<u64>,
    ) -> Result<usize, BoxError> {
        if self.consumer.is_some() {
            return Err("one consumer only".into());
        }
        self.consumer = Some((subscriber.tag, 0));
        Ok(0)
    }

    fn cancel(&mut self, _: SubscriptionTag, _: &mut Deliveries<u64>) -> usize {
        self.consumer = None;
        0
    }

    fn ask(&mut self, _: SubscriptionTag, demand: usize, _: &mut Deliveries<u64>) -> usize {
        if let Some((_, owed)) = &mut self.consumer {
            *owed += demand;
        }
        demand
    }

    fn dispatch(&mut self, events: Vec<u64>, deliveries: &mut Deliveries<u64>) -> Vec<u64> {
        let Some((tag, demand)) = &mut self.consumer else {
            return events;
        };
        let (mut batch, mut leftovers, mut odd) = (Vec::new(), Vec::new(), 0);
        for event in events {
            if *demand == 0 {
                leftovers.push(event);
            } else if event % 2 == 1 {
                odd += 1;
            } else {
                *demand -= 1;
                batch.push(event);
            }
        }
        deliveries.push(*tag, batch);
        deliveries.discard(odd);
        deliveries.demand_upstream(odd);
        leftovers
    }
}

#[tokio::test]
async fn dispatcher_discards_and_extra_upstream_demand_reach_the_stage() {
    let (counter, demands) = Counter::new(0).recorded();
    let producer = gen_stage::producer(counter)
        .dispatcher(EvensOnly::default())
        .start()
        .await
        .unwrap();
    let (consumer, record, tag) = manual(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(10)).unwrap();
    settle(&producer, &[&consumer]).await;

    assert_eq!(
        record.events(),
        (0..20).filter(|x| x % 2 == 0).collect::<Vec<_>>()
    );
    // 10 asked; then once for each odd number discarded: 5, 2, 1 and 1.
    assert_eq!(demands.snapshot(), vec![10, 5, 2, 1, 1]);
    assert_eq!(producer.stats().events_discarded, 9);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// `(max_demand, min_demand)` with `min < max`.
fn demand_spec() -> impl Strategy<Value = (usize, usize)> {
    (1usize..20, 0usize..20).prop_map(|(max, min)| (max, min % max))
}

async fn queue_in_chunks(producer: &Scripted, events: Vec<u64>, chunk: usize) {
    for part in events.chunks(chunk) {
        producer
            .cast(Script::Queue(part.to_vec()))
            .expect("producer alive");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Manual consumers asking random amounts all receive the same events, in order,
    /// exactly as many as the slowest of them asked for (or all there are).
    #[test]
    fn broadcast_goes_at_the_pace_of_the_slowest_manual_consumer(
        consumers in 1usize..5,
        count in 0u64..60,
        asks in prop::collection::vec((0usize..5, 1usize..12), 0..20),
        chunk in 1usize..20,
    ) {
        runtime().block_on(async {
            tokio::time::timeout(STALL, async {
                let producer = scripted(BroadcastDispatcher::new()).await;
                let mut all = Vec::new();
                for _ in 0..consumers {
                    all.push(manual(&producer, SubscribeOptions::new()).await);
                }
                let refs: Vec<&Collector> = all.iter().map(|(c, _, _)| c).collect();
                queue_in_chunks(&producer, range(0, count), chunk).await;
                let mut asked = vec![0usize; consumers];
                for &(who, amount) in &asks {
                    let who = who % consumers;
                    let (consumer, _, tag) = &all[who];
                    consumer.ask(*tag, n(amount)).unwrap();
                    asked[who] += amount;
                    settle(&producer, &refs).await;
                    let slowest = *asked.iter().min().unwrap() as u64;
                    for (i, (_, record, _)) in all.iter().enumerate() {
                        assert_eq!(record.events(), range(0, slowest.min(count)), "consumer {i}");
                    }
                }
            })
            .await
            .expect("the pipeline stalled");
        });
    }

    /// Every consumer that stays subscribed receives every event in order; one that
    /// cancels keeps exactly what came before; no batch exceeds `max - min`.
    #[test]
    fn broadcast_delivers_every_event_to_every_live_consumer_in_order(
        specs in prop::collection::vec(demand_spec(), 1..5),
        first in 0u64..80,
        second in 1u64..80,
        chunk in 1usize..30,
        cancel_mask in any::<u8>(),
    ) {
        runtime().block_on(async {
            tokio::time::timeout(STALL, async {
                let producer = scripted(BroadcastDispatcher::new()).await;
                let mut consumers = Vec::new();
                for &(max, min) in &specs {
                    let (consumer, record) = collect(&producer, opts(max, min)).await;
                    consumers.push((consumer, record, max - min));
                }
                let all: Vec<&Collector> = consumers.iter().map(|(c, _, _)| c).collect();

                queue_in_chunks(&producer, range(0, first), chunk).await;
                for (_, record, _) in &consumers {
                    record.wait_for_events(first as usize).await;
                }
                settle(&producer, &all).await;
                let cancelled = |i: usize| cancel_mask & (1 << i) != 0;
                for (i, (consumer, record, _)) in consumers.iter().enumerate() {
                    if cancelled(i) {
                        let tag = record.read(|r| r.subscriptions[0]);
                        consumer.cancel(tag, ExitReason::Normal).unwrap();
                    }
                }
                settle(&producer, &all).await;

                let total = first + second;
                queue_in_chunks(&producer, range(first, total), chunk).await;
                for (i, (_, record, _)) in consumers.iter().enumerate() {
                    if !cancelled(i) {
                        record.wait_for_events(total as usize).await;
                    }
                }
                settle(&producer, &all).await;
                for (i, (_, record, step)) in consumers.iter().enumerate() {
                    let expected = if cancelled(i) { first } else { total };
                    assert_eq!(record.events(), range(0, expected), "consumer {i}");
                    assert!(record.batch_sizes().iter().all(|size| size <= step));
                }
            })
            .await
            .expect("the pipeline stalled");
        });
    }

    /// Each event reaches only the consumer of its partition, in order, and no consumer
    /// ever holds more than it asked for; once every consumer has asked enough, every
    /// event has arrived.
    #[test]
    fn partition_delivers_each_event_once_in_order_never_more_than_asked(
        count in 1usize..4,
        routes in prop::collection::vec(0usize..4, 0..60),
        asks in prop::collection::vec((0usize..4, 1usize..10), 0..15),
        chunk in 1usize..20,
    ) {
        let routes: Arc<Vec<usize>> = Arc::new(routes.iter().map(|r| r % count).collect());
        let events = range(0, routes.len() as u64);
        let expected: Vec<Vec<u64>> = (0..count)
            .map(|p| events.iter().copied().filter(|&e| routes[e as usize] == p).collect())
            .collect();
        runtime().block_on(async {
            tokio::time::timeout(STALL, async {
                let table = routes.clone();
                let dispatcher = PartitionDispatcher::by_count(count, move |e: &u64| table[*e as usize]);
                let producer = scripted(dispatcher).await;
                let mut consumers = Vec::new();
                for p in 0..count {
                    consumers.push(manual(&producer, SubscribeOptions::new().with(Partition(p))).await);
                }
                let all: Vec<&Collector> = consumers.iter().map(|(c, _, _)| c).collect();
                queue_in_chunks(&producer, events.clone(), chunk).await;

                let mut asked = vec![0; count];
                let check = |asked: &[usize]| {
                    for (p, (_, record, _)) in consumers.iter().enumerate() {
                        let got = record.events();
                        assert!(got.len() <= asked[p], "partition {p}: {} > {}", got.len(), asked[p]);
                        assert_eq!(got[..], expected[p][..got.len()], "partition {p}");
                    }
                };
                for &(who, amount) in &asks {
                    let p = who % count;
                    let (consumer, _, tag) = &consumers[p];
                    consumer.ask(*tag, n(amount)).unwrap();
                    asked[p] += amount;
                    settle(&producer, &all).await;
                    check(&asked);
                }
                for (p, (consumer, _, tag)) in consumers.iter().enumerate() {
                    if !expected[p].is_empty() {
                        consumer.ask(*tag, n(expected[p].len())).unwrap();
                        asked[p] += expected[p].len();
                    }
                }
                settle(&producer, &all).await;
                check(&asked);
                for (p, (_, record, _)) in consumers.iter().enumerate() {
                    assert_eq!(record.events(), expected[p], "partition {p}");
                }
            })
            .await
            .expect("the pipeline stalled");
        });
    }

    /// Whatever a dispatcher hands out, a consumer receives at most what it asked for,
    /// in order, and the excess arrives with later asks.
    #[test]
    fn over_delivery_is_always_cut_to_the_demand(
        emits in prop::collection::vec(1usize..15, 1..6),
        asks in prop::collection::vec(1usize..12, 1..10),
    ) {
        runtime().block_on(async {
            tokio::time::timeout(STALL, async {
                let producer = scripted(Greedy::default()).await;
                let (consumer, record, tag) = manual(&producer, SubscribeOptions::new()).await;
                let mut emitted = 0u64;
                let mut asked = 0usize;
                for (i, &amount) in asks.iter().enumerate() {
                    if let Some(&size) = emits.get(i) {
                        let events = range(emitted, emitted + size as u64);
                        emitted += size as u64;
                        producer.cast(Script::Emit(events)).unwrap();
                    }
                    consumer.ask(tag, n(amount)).unwrap();
                    asked += amount;
                    settle(&producer, &[&consumer]).await;
                    // Every event emitted that the asks cover has arrived, in order,
                    // and no more (the scripted producer owes the rest).
                    let expected = emitted.min(asked as u64);
                    assert_eq!(record.events(), range(0, expected));
                }
            })
            .await
            .expect("the pipeline stalled");
        });
    }
}
