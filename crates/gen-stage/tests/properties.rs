//! Property tests: random finite topologies (producers, optional producer-consumers,
//! consumers with automatic or manual demand) never overrun a consumer's demand, lose,
//! duplicate or reorder events; automatic demand splitting through real stages and
//! streams keeps its bounds.

mod support;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt;
use gen_stage::{
    AskMode, BoxError, CancelMode, Consumer, ConsumerContext, DemandMode, ExitReason, ProducerRef,
    SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::Relay;
use gen_stage_test::{Counter, Script, Watch};
use proptest::prelude::*;
use support::{
    barrier, collect, manual_consumer, n, opts, proptest_config, recorded_counter, run_case,
    scripted,
};

/// `(producer index, sequence number)`: distinct across a topology.
type Event = (usize, u32);

/// Generous guard against a stalled pipeline; a passing case never comes near it.
const STALL: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Two worker threads: the stages then really run at the same time.
fn threaded_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------
// Topologies
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct StageSpec {
    max: usize,
    min: usize,
    /// Which upstream stages to subscribe to (bits, folded onto the upstream count).
    mask: u8,
    manual: bool,
}

impl StageSpec {
    fn options(&self) -> SubscribeOptions {
        SubscribeOptions::new()
            .max_demand(self.max)
            .min_demand(self.min)
            .cancel(CancelMode::Transient)
    }
}

#[derive(Clone, Debug)]
struct Topology {
    producers: Vec<u32>,
    middle: Vec<StageSpec>,
    filtering: bool,
    consumers: Vec<StageSpec>,
}

fn stage_spec() -> impl Strategy<Value = StageSpec> {
    (1..50usize)
        .prop_flat_map(|max| (Just(max), 0..max, 1..8u8, any::<bool>()))
        .prop_map(|(max, min, mask, manual)| StageSpec {
            max,
            min,
            mask,
            manual,
        })
}

fn topology() -> impl Strategy<Value = Topology> {
    (
        prop::collection::vec(0..80u32, 1..=3),
        prop::collection::vec(stage_spec(), 0..=2),
        any::<bool>(),
        prop::collection::vec(stage_spec(), 1..=4),
    )
        .prop_map(|(producers, middle, filtering, consumers)| Topology {
            producers,
            middle,
            filtering,
            consumers,
        })
}

/// Which of `upstream` stages each of `specs` subscribes to; every upstream stage gets
/// at least one subscriber.
fn fan_in(specs: &[StageSpec], upstream: usize) -> Vec<Vec<usize>> {
    if specs.is_empty() {
        return Vec::new();
    }
    let mut picks: Vec<Vec<usize>> = specs
        .iter()
        .map(|spec| {
            let chosen: Vec<usize> = (0..upstream).filter(|i| spec.mask >> i & 1 == 1).collect();
            if chosen.is_empty() {
                vec![spec.mask as usize % upstream]
            } else {
                chosen
            }
        })
        .collect();
    for i in 0..upstream {
        if !picks.iter().any(|pick| pick.contains(&i)) {
            let len = picks.len();
            picks[i % len].push(i);
        }
    }
    picks
}

fn dropped_by_filter(event: &Event) -> bool {
    event.1 % 3 == 0
}

/// What a relay in a filtering topology does with each event.
fn filter_every_third(event: Event) -> Vec<Event> {
    if dropped_by_filter(&event) {
        Vec::new()
    } else {
        vec![event]
    }
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    violations: Vec<String>,
}

struct Subscription {
    max: usize,
    min: usize,
    /// Asked and not yet received, as GenStage's rules say it should be.
    pending: usize,
    /// The last sequence number received from each producer.
    last: HashMap<usize, u32>,
}

/// A consumer that checks every batch against what it asked for, and the order of
/// each producer's events on each subscription.
struct Checker {
    manual: bool,
    subscriptions: HashMap<SubscriptionTag, Subscription>,
    log: Watch<Log>,
}

enum CheckerMessage {
    FirstAsk(SubscriptionTag),
}

impl Consumer for Checker {
    type Event = Event;
    type Message = CheckerMessage;

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        let max = options.max_demand_value();
        self.subscriptions.insert(
            tag,
            Subscription {
                max,
                min: options.min_demand_value(),
                // Automatic demand asks max at once; a manual one asks it right after.
                pending: max,
                last: HashMap::new(),
            },
        );
        if self.manual {
            ctx.stage_ref()
                .cast(CheckerMessage::FirstAsk(tag))
                .map_err(|_| "cannot reach myself")?;
            Ok(AskMode::Manual)
        } else {
            Ok(AskMode::Automatic)
        }
    }

    async fn handle_message(
        &mut self,
        message: CheckerMessage,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let CheckerMessage::FirstAsk(tag) = message;
        let max = self.subscriptions[&tag].max;
        ctx.ask(tag, NonZeroUsize::new(max).expect("max_demand >= 1"))?;
        Ok(())
    }

    async fn handle_events(
        &mut self,
        events: Vec<Event>,
        from: SubscriptionTag,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let mut violations = Vec::new();
        let sub = self
            .subscriptions
            .get_mut(&from)
            .ok_or("events from an unknown subscription")?;
        let count = events.len();
        if count > sub.pending {
            violations.push(format!(
                "{from}: received {count} events with {} asked",
                sub.pending
            ));
        }
        if !self.manual && count > sub.max - sub.min {
            violations.push(format!(
                "{from}: batch of {count} above max - min = {}",
                sub.max - sub.min
            ));
        }
        for &(producer, seq) in &events {
            if let Some(&last) = sub.last.get(&producer) {
                if seq <= last {
                    violations.push(format!(
                        "{from}: producer {producer} sent {seq} after {last}"
                    ));
                }
            }
            sub.last.insert(producer, seq);
        }
        sub.pending = sub.pending.saturating_sub(count);
        if sub.pending <= sub.min {
            // Automatic demand tops up after this batch; a manual one does the same here.
            let top_up = sub.max - sub.pending;
            if self.manual {
                ctx.ask(from, NonZeroUsize::new(top_up).expect("min < max"))?;
            }
            sub.pending = sub.max;
        }
        self.log.update(|log| {
            log.events.extend(events);
            log.violations.extend(violations);
        });
        Ok(())
    }
}

type Source =
    gen_stage::source::SourceProducer<gen_stage::source::IterSource<std::vec::IntoIter<Event>>>;

/// Builds the topology, runs it to the end, and checks it.
async fn run_topology(topology: Topology) -> Result<(), TestCaseError> {
    let mut producers: Vec<ProducerRef<Source>> = Vec::new();
    for (index, &size) in topology.producers.iter().enumerate() {
        let events: Vec<Event> = (0..size).map(|seq| (index, seq)).collect();
        // Accumulate until every stage is subscribed, so that no producer can finish
        // before its last subscriber arrives.
        let producer = gen_stage::source::from_iter(events)
            .demand_mode(DemandMode::Accumulate)
            .start()
            .await
            .expect("producer starts");
        producers.push(producer);
    }

    let mut relays = Vec::new();
    for (spec, picks) in topology
        .middle
        .iter()
        .zip(fan_in(&topology.middle, producers.len()))
    {
        let relay = if topology.filtering {
            Relay::new(filter_every_third)
        } else {
            Relay::pass_through()
        };
        let mut builder = gen_stage::producer_consumer(relay);
        for i in picks {
            builder = builder.subscribe_to(&producers[i], spec.options());
        }
        relays.push(builder.start().await.expect("relay starts"));
    }

    let log: Watch<Log> = Watch::default();
    let upstream_count = if relays.is_empty() {
        producers.len()
    } else {
        relays.len()
    };
    for (spec, picks) in topology
        .consumers
        .iter()
        .zip(fan_in(&topology.consumers, upstream_count))
    {
        let checker = Checker {
            manual: spec.manual,
            subscriptions: HashMap::new(),
            log: log.clone(),
        };
        let mut builder = gen_stage::consumer(checker);
        for i in picks {
            builder = if relays.is_empty() {
                builder.subscribe_to(&producers[i], spec.options())
            } else {
                builder.subscribe_to(&relays[i], spec.options())
            };
        }
        builder.start().await.expect("consumer starts");
    }

    for producer in &producers {
        producer
            .set_demand_mode(DemandMode::Forward)
            .expect("producer alive");
    }

    let filtered = !relays.is_empty() && topology.filtering;
    let mut expected: Vec<Event> = topology
        .producers
        .iter()
        .enumerate()
        .flat_map(|(index, &size)| (0..size).map(move |seq| (index, seq)))
        .filter(|event| !(filtered && dropped_by_filter(event)))
        .collect();
    expected.sort_unstable();

    let done =
        log.wait_until(|log| log.events.len() >= expected.len() || !log.violations.is_empty());
    let waited = tokio::time::timeout(STALL, done).await;
    let (mut received, violations) = log.read(|log| (log.events.clone(), log.violations.clone()));
    prop_assert!(violations.is_empty(), "violations: {:?}", violations);
    prop_assert!(
        waited.is_ok(),
        "stalled with {} of {} events",
        received.len(),
        expected.len()
    );
    // Every finite producer stops normally once its events are out.
    for producer in &producers {
        let stopped = tokio::time::timeout(STALL, producer.stopped()).await;
        prop_assert_eq!(stopped.ok(), Some(ExitReason::Normal));
    }
    received.sort_unstable();
    prop_assert_eq!(received, expected);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config(32))]

    /// No consumer receives more than it asked for on a subscription, automatic batches
    /// stay within max - min, every event arrives exactly once (minus the filtered ones),
    /// and each producer's order holds on every subscription; on one thread or two.
    #[test]
    fn random_topologies_keep_demand_bounds_and_deliver_each_event_once_in_order(
        topology in topology(),
        threaded in any::<bool>(),
    ) {
        let runtime = if threaded { threaded_runtime() } else { runtime() };
        run_case(runtime, run_topology(topology))?;
    }

    /// Deliveries of any size reach a consumer in batches of at most max - min, all of
    /// them, in order; the consumer asks max first, then top-ups between max - min and
    /// max, and never has more than max outstanding.
    #[test]
    fn automatic_demand_splits_deliveries_within_max_minus_min(
        (max, min) in (1..50usize).prop_flat_map(|max| (Just(max), 0..max)),
        deliveries in prop::collection::vec(1..60usize, 1..8),
    ) {
        run_case(runtime(), async move {
            let (producer, producer_record) = scripted::<usize>().await;
            let (_, record) = collect(&producer, opts(max, min)).await;
            let mut next = 0;
            for size in &deliveries {
                producer.cast(Script::Queue((next..next + size).collect())).unwrap();
                next += size;
            }
            let total = next;
            let waited = tokio::time::timeout(STALL, record.wait_for_events(total)).await;
            prop_assert!(waited.is_ok(), "stalled at {} of {total}", record.event_count());
            let sizes = record.batch_sizes();
            prop_assert_eq!(sizes.iter().sum::<usize>(), total);
            prop_assert!(sizes.iter().all(|&size| size <= max - min), "sizes {:?}", sizes);
            prop_assert_eq!(record.events(), (0..total).collect::<Vec<_>>());

            // Once quiet, the consumer has more than min outstanding (it topped up after
            // the batch that crossed min), and never more than max.
            let settled = producer_record.wait_until(|r| r.demands.iter().sum::<usize>() > total + min);
            prop_assert!(tokio::time::timeout(STALL, settled).await.is_ok());
            producer.call(Script::Owed).await.unwrap();
            let demands = producer_record.read(|r| r.demands.clone());
            prop_assert_eq!(demands[0], max);
            prop_assert!(
                demands[1..].iter().all(|&d| max - min <= d && d <= max),
                "demands {:?}", demands
            );
            prop_assert!(demands.iter().sum::<usize>() <= total + max, "demands {:?}", demands);
            Ok(())
        })?;
    }

    /// A stream pulled in random chunks yields the producer's events in order and never
    /// lets it run more than max_demand ahead of what was pulled.
    #[test]
    fn streams_ask_only_as_far_as_they_are_pulled(
        (max, min) in (1..50usize).prop_flat_map(|max| (Just(max), 0..max)),
        pulls in prop::collection::vec(1..40usize, 1..8),
    ) {
        run_case(runtime(), async move {
            let (producer, demands) = recorded_counter(Counter::new(0)).await;
            let mut stream = gen_stage::stream::subscribe(&producer, opts(max, min)).unwrap();
            let mut pulled = 0u64;
            for chunk in pulls {
                for _ in 0..chunk {
                    prop_assert_eq!(stream.next().await, Some(pulled));
                    pulled += 1;
                }
                barrier(&producer).await;
                let asked = demands.snapshot();
                prop_assert_eq!(asked[0], max);
                prop_assert!(
                    asked[1..].iter().all(|&d| max - min <= d && d <= max),
                    "demands {:?}", asked
                );
                let total: usize = asked.iter().sum();
                prop_assert!(
                    total as u64 <= pulled + max as u64,
                    "asked {total} with {pulled} pulled, max {max}"
                );
            }
            Ok(())
        })?;
    }

    /// A finite `from_iter` producer consumed as a stream with any demand bounds yields
    /// every item in order, ends the stream normally, and stops normally.
    #[test]
    fn from_iter_streams_end_normally_with_every_item(
        (max, min) in (1..50usize).prop_flat_map(|max| (Just(max), 0..max)),
        size in 0..200u32,
    ) {
        run_case(runtime(), async move {
            let producer = gen_stage::source::from_iter(0..size).start().await.unwrap();
            let mut stream = gen_stage::stream::subscribe(&producer, opts(max, min)).unwrap();
            let items = tokio::time::timeout(STALL, stream.by_ref().collect::<Vec<_>>()).await;
            prop_assert_eq!(items.ok(), Some((0..size).collect::<Vec<_>>()));
            prop_assert_eq!(stream.end_reason(), None);
            prop_assert_eq!(producer.stopped().await, ExitReason::Normal);
            Ok(())
        })?;
    }

    /// With manual demand, each ask from outside is served exactly: one batch of the
    /// asked size from a producer that meets demand at once, and nothing more.
    #[test]
    fn manual_asks_are_served_exactly(asks in prop::collection::vec(1..100usize, 1..10)) {
        run_case(runtime(), async move {
            let (producer, demands) = recorded_counter(Counter::new(0)).await;
            let (consumer, record, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
            let mut total = 0;
            for &ask in &asks {
                consumer.ask(tag, n(ask)).unwrap();
                total += ask;
                let waited = tokio::time::timeout(STALL, record.wait_for_events(total)).await;
                prop_assert!(waited.is_ok(), "stalled at {} of {total}", record.event_count());
            }
            barrier(&producer).await;
            prop_assert_eq!(demands.snapshot(), asks.clone());
            prop_assert_eq!(record.batch_sizes(), asks);
            prop_assert_eq!(record.events(), (0..total as u64).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}
