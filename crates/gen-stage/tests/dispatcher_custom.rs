//! User-written dispatchers in running stages (a round robin, one that over-delivers,
//! one that refuses subscriptions, one that discards and asks upstream on its own), and
//! property tests of the broadcast and partition dispatchers (semantics §6).

mod support;

use std::sync::Arc;

use gen_stage::dispatcher::{
    BroadcastDispatcher, Deliveries, DemandDispatcher, Dispatcher, Partition, PartitionDispatcher,
    Subscriber,
};
use gen_stage::{BoxError, ExitReason, ProducerRef, SubscribeOptions, SubscriptionTag};
use gen_stage_test::{Counter, Recorded, Script, ScriptedProducer};
use proptest::prelude::*;
use support::{
    Collector, ask_then_queue, collect, collector, consumer_barrier, dispatching, manual_consumer,
    n, opts, range, rejection, settle, shared_exactly_once, start_is_rejected, stops_normally,
    within,
};

/// Runs one property-test case on a fresh current-thread runtime with the clock paused,
/// failing if it stalls: a case with nothing left to run reaches `within`'s deadline at
/// once.
fn run_paused<F: std::future::Future>(case: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(within("the case to finish", case))
}

type Scripted = ProducerRef<ScriptedProducer<u64>>;

async fn scripted(dispatcher: impl Dispatcher<u64>) -> Scripted {
    support::scripted_by(dispatcher).await.0
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

/// A buggy dispatcher: sends every event to its first subscriber, whatever it asked
/// (or, halving, the first half of each dispatch, leaving the rest).
#[derive(Debug, Default)]
struct Greedy {
    tags: Vec<SubscriptionTag>,
    halving: bool,
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

    fn dispatch(&mut self, mut events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        match self.tags.first() {
            Some(&first) => {
                let rest = if self.halving {
                    events.split_off(events.len() / 2)
                } else {
                    Vec::new()
                };
                deliveries.push(first, events);
                rest
            }
            None => events,
        }
    }
}

#[tokio::test]
async fn the_excess_of_an_over_delivery_is_buffered_before_what_the_dispatcher_left() {
    let halving = Greedy {
        halving: true,
        ..Greedy::default()
    };
    let producer = scripted(halving).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(2)).unwrap();
    settle(&producer, &[&consumer]).await;
    // The dispatcher pushes 0..4 to the consumer, which asked for 2, and leaves 4..8:
    // the excess 2 and 3 came first and must go out first.
    producer.cast(Script::Emit(range(0, 8))).unwrap();
    settle(&producer, &[&consumer]).await;
    assert_eq!(record.events(), range(0, 2));
    consumer.ask(tag, n(6)).unwrap();
    settle(&producer, &[&consumer]).await;
    // From the buffer (2..8) the dispatcher again pushes its first half, in order.
    assert_eq!(record.events(), range(0, 5));
}

#[tokio::test]
async fn round_robin_dispatcher_deals_events_in_turn() {
    let producer = scripted(RoundRobin::default()).await;
    let (a, ra, ta) = manual_consumer(&producer, SubscribeOptions::new()).await;
    let (b, rb, tb) = manual_consumer(&producer, SubscribeOptions::new()).await;
    ask_then_queue(&producer, &[(&a, ta, 4), (&b, tb, 2)], range(0, 10)).await;
    // In turn while both have demand, then the rest to whoever still has some.
    assert_eq!(ra.events(), vec![0, 2, 4, 5]);
    assert_eq!(rb.events(), vec![1, 3]);
}

#[tokio::test]
async fn round_robin_dispatcher_works_in_a_finite_pipeline() {
    let producer = dispatching(Counter::new(0).limit(500), RoundRobin::default()).await;
    let (a, ra) = collect(&producer, opts(10, 5)).await;
    let (b, rb) = collect(&producer, opts(8, 2)).await;

    stops_normally(&a).await;
    stops_normally(&b).await;
    stops_normally(&producer).await;
    let each = shared_exactly_once(&[&ra, &rb], range(0, 500));
    assert!(
        each.iter().all(|events| !events.is_empty()),
        "both consumers take turns"
    );
}

#[tokio::test]
async fn over_delivering_dispatcher_never_exceeds_a_manual_consumers_demand() {
    let producer = scripted(Greedy::default()).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
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
    let producer = dispatching(Counter::new(0), doorman).await;
    let (consumer, record) = collector::<u64>().await;

    // No ticket.
    let error = rejection(consumer.subscribe_to(&producer, opts(10, 5)).await);
    assert_eq!(error.to_string(), "no ticket, no events");
    assert!(error.downcast_ref::<NoTicket>().is_some());

    assert!(start_is_rejected(&producer, opts(10, 5)).await);

    consumer_barrier(&consumer).await;
    support::barrier(&producer).await;
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
    let producer = dispatching(counter, EvensOnly::default()).await;
    let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
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
        run_paused(async {
            let producer = scripted(BroadcastDispatcher::new()).await;
            let mut all = Vec::new();
            for _ in 0..consumers {
                all.push(manual_consumer(&producer, SubscribeOptions::new()).await);
            }
            let refs: Vec<&Collector<u64>> = all.iter().map(|(c, _, _)| c).collect();
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
        run_paused(async {
            let producer = scripted(BroadcastDispatcher::new()).await;
            let mut consumers = Vec::new();
            for &(max, min) in &specs {
                let (consumer, record) = collect(&producer, opts(max, min)).await;
                consumers.push((consumer, record, max - min));
            }
            let all: Vec<&Collector<u64>> = consumers.iter().map(|(c, _, _)| c).collect();

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
        run_paused(async {
            let table = routes.clone();
            let dispatcher = PartitionDispatcher::by_count(count, move |e: &u64| table[*e as usize]);
            let producer = scripted(dispatcher).await;
            let mut consumers = Vec::new();
            for p in 0..count {
                consumers.push(manual_consumer(&producer, SubscribeOptions::new().with(Partition(p))).await);
            }
            let all: Vec<&Collector<u64>> = consumers.iter().map(|(c, _, _)| c).collect();
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
        });
    }

    /// Whatever a dispatcher hands out, a consumer receives at most what it asked for,
    /// in order, and the excess arrives with later asks.
    #[test]
    fn over_delivery_is_always_cut_to_the_demand(
        emits in prop::collection::vec(1usize..15, 1..6),
        asks in prop::collection::vec(1usize..12, 1..10),
    ) {
        run_paused(async {
            let producer = scripted(Greedy::default()).await;
            let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
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
        });
    }
}
