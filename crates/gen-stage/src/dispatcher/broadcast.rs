//! Every event to every consumer, at the pace of the slowest.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::dispatcher::{Deliveries, Dispatcher, Subscriber};
use crate::exit::BoxError;
use crate::subscription::{StageId, SubscriptionTag};

/// A per-subscription filter for a [`BroadcastDispatcher`]: the consumer receives only
/// the events it accepts. Give it with [`SubscribeOptions::with`].
///
/// Events a selector rejects count as delivered for that consumer's demand: the
/// dispatcher asks again on its behalf, so a consumer that rejects everything never
/// holds the others back.
///
/// [`SubscribeOptions::with`]: crate::SubscribeOptions::with
pub struct Selector<T>(Arc<dyn Fn(&T) -> bool + Send + Sync>);

impl<T> Selector<T> {
    /// A selector that keeps the events for which `accept` returns true.
    pub fn new(accept: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        Selector(Arc::new(accept))
    }
}

impl<T> Clone for Selector<T> {
    fn clone(&self) -> Self {
        Selector(self.0.clone())
    }
}

impl<T> fmt::Debug for Selector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Selector(..)")
    }
}

struct Entry<T> {
    tag: SubscriptionTag,
    consumer: StageId,
    /// Demand in excess of what every consumer can take (`waiting`).
    excess: usize,
    selector: Option<Selector<T>>,
}

/// Sends every event to every consumer (each filtered by its optional [`Selector`]).
///
/// The producer does not copy a batch for each consumer: the consumers share it, and
/// each copies it on its own task when it receives it (the last takes the batch
/// itself), which spreads the copies over the consumers' threads. Hence the events'
/// `Clone + Sync` bound. A consumer with a [`Selector`] gets its own batch of the
/// events it accepts.
///
/// Events go out only as fast as the slowest consumer asks: the upstream demand is the
/// minimum across consumers, and the same events are never asked for twice. When the
/// slowest consumer cancels, the others' demand is released.
///
/// A consumer that subscribes late receives only events dispatched after it
/// subscribed, and holds the others until it asks. To start every consumer on the
/// same first event, start the producer with [`DemandMode::Accumulate`], subscribe
/// them all, then switch it to forward:
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use gen_stage::dispatcher::BroadcastDispatcher;
/// use gen_stage::{BoxError, Consumer, ConsumerContext, DemandMode, SubscribeOptions, SubscriptionTag};
///
/// /// Keeps every event it receives where the caller can read them.
/// struct Collect(Arc<Mutex<Vec<u64>>>);
///
/// impl Consumer for Collect {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_events(&mut self, events: Vec<u64>, _: SubscriptionTag, _: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
///         self.0.lock().expect("not poisoned").extend(events);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // 0..100, then the producer stops normally.
/// let producer = gen_stage::source::from_iter(0..100u64)
///     .dispatcher(BroadcastDispatcher::new())
///     .demand_mode(DemandMode::Accumulate)
///     .start()
///     .await?;
/// let mut consumers = Vec::new();
/// for _ in 0..3 {
///     let received = Arc::new(Mutex::new(Vec::new()));
///     let consumer = gen_stage::consumer(Collect(received.clone()))
///         .subscribe_to(&producer, SubscribeOptions::new().max_demand(10))
///         .start()
///         .await?;
///     consumers.push((consumer, received));
/// }
/// producer.set_demand_mode(DemandMode::Forward)?;
/// for (consumer, received) in consumers {
///     // Each consumer stops when the producer does, after its last events.
///     assert!(consumer.stopped().await.is_normal());
///     assert_eq!(*received.lock().expect("not poisoned"), (0..100).collect::<Vec<u64>>());
/// }
/// # Ok(())
/// # }
/// ```
///
/// A consumer subscribing twice to the same producer is refused with
/// [`BroadcastError::AlreadySubscribed`]; the first subscription stays as it was.
///
/// [`DemandMode::Accumulate`]: crate::DemandMode::Accumulate
#[must_use]
pub struct BroadcastDispatcher<T> {
    entries: Vec<Entry<T>>,
    consumers: HashSet<StageId>,
    /// Events every consumer can take now.
    waiting: usize,
    /// Upstream demand asked and not yet dispatched.
    requested: usize,
}

impl<T> Default for BroadcastDispatcher<T> {
    fn default() -> Self {
        BroadcastDispatcher {
            entries: Vec::new(),
            consumers: HashSet::new(),
            waiting: 0,
            requested: 0,
        }
    }
}

impl<T> fmt::Debug for BroadcastDispatcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastDispatcher")
            .field("consumers", &self.entries.len())
            .field("waiting", &self.waiting)
            .field("requested", &self.requested)
            .finish()
    }
}

/// Why a [`BroadcastDispatcher`] refused a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The consumer already has a subscription to this producer.
    AlreadySubscribed(StageId),
}

impl fmt::Display for BroadcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BroadcastError::AlreadySubscribed(consumer) => {
                write!(
                    f,
                    "{consumer} is already subscribed to this broadcast producer"
                )
            }
        }
    }
}

impl std::error::Error for BroadcastError {}

impl<T> BroadcastDispatcher<T> {
    /// A dispatcher with no consumers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the demand every consumer shares into `waiting` and returns how much of
    /// it has not been asked upstream yet.
    fn sync_demands(&mut self) -> usize {
        let Some(shared) = self.entries.iter().map(|entry| entry.excess).min() else {
            return 0;
        };
        for entry in &mut self.entries {
            entry.excess -= shared;
        }
        self.waiting = self.waiting.saturating_add(shared);
        let request = self.waiting.saturating_sub(self.requested);
        self.requested = self.requested.saturating_add(request);
        request
    }
}

impl<T: Clone + Send + Sync + 'static> Dispatcher<T> for BroadcastDispatcher<T> {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        _: &mut Deliveries<T>,
    ) -> Result<usize, BoxError> {
        if !self.consumers.insert(subscriber.consumer) {
            return Err(Box::new(BroadcastError::AlreadySubscribed(
                subscriber.consumer,
            )));
        }
        // The newcomer holds delivery until it asks: what everyone could take so far
        // becomes the others' excess again.
        let waiting = std::mem::take(&mut self.waiting);
        for entry in &mut self.entries {
            entry.excess = entry.excess.saturating_add(waiting);
        }
        self.entries.push(Entry {
            tag: subscriber.tag,
            consumer: subscriber.consumer,
            excess: 0,
            selector: subscriber.options.extension::<Selector<T>>().cloned(),
        });
        Ok(0)
    }

    fn cancel(&mut self, tag: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
        let Some(index) = self.entries.iter().position(|entry| entry.tag == tag) else {
            return 0;
        };
        let entry = self.entries.remove(index);
        self.consumers.remove(&entry.consumer);
        if self.entries.is_empty() {
            self.waiting = 0;
            return 0;
        }
        self.sync_demands()
    }

    fn ask(&mut self, tag: SubscriptionTag, demand: usize, _: &mut Deliveries<T>) -> usize {
        let Some(entry) = self.entries.iter_mut().find(|entry| entry.tag == tag) else {
            return 0;
        };
        entry.excess = entry.excess.saturating_add(demand);
        self.sync_demands()
    }

    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        // Every event that arrives, sent or buffered, is no longer asked for.
        self.requested = self.requested.saturating_sub(events.len());
        self.deal(events, deliveries, false)
    }

    fn dispatch_buffered(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        self.deal(events, deliveries, true)
    }
}

impl<T: Clone + Send + Sync + 'static> BroadcastDispatcher<T> {
    /// Sends the first `waiting` events to every consumer; returns the rest.
    fn deal(
        &mut self,
        mut events: Vec<T>,
        deliveries: &mut Deliveries<T>,
        buffered: bool,
    ) -> Vec<T> {
        let count = self.waiting.min(events.len());
        if count == 0 || self.entries.is_empty() {
            return events;
        }
        let leftovers = events.split_off(count);
        self.waiting -= count;
        if buffered {
            // Buffered events that go out now serve demand this dispatcher has asked
            // upstream for (the stage asks its source for that much less); counted
            // before a selector's rejections are asked again, below.
            self.requested = self.requested.saturating_sub(count);
        }
        let mut rejected_any = false;
        for entry in &mut self.entries {
            if let Some(Selector(accept)) = &entry.selector {
                let kept: Vec<T> = events
                    .iter()
                    .filter(|event| accept(event))
                    .cloned()
                    .collect();
                // Rejected events were paid for: ask again on the consumer's behalf.
                let rejected = count - kept.len();
                entry.excess = entry.excess.saturating_add(rejected);
                rejected_any |= rejected > 0;
                deliveries.push(entry.tag, kept);
            }
        }
        // Consumers without a selector share the batch: each copies it on its own task.
        let everyone = self.entries.iter().filter(|entry| entry.selector.is_none());
        deliveries.push_to_each(everyone.map(|entry| entry.tag), events);
        if rejected_any {
            let upstream = self.sync_demands();
            deliveries.demand_upstream(upstream);
        }
        leftovers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::SubscribeOptions;

    fn tag(n: u64) -> SubscriptionTag {
        SubscriptionTag::from_raw(n)
    }

    #[test]
    fn debug_shows_the_counts_not_the_selectors() {
        let mut d = BroadcastDispatcher::new();
        subscribe(&mut d, 1, 1, SubscribeOptions::new()).unwrap();
        assert_eq!(
            format!("{d:?}"),
            "BroadcastDispatcher { consumers: 1, waiting: 0, requested: 0 }"
        );
        let selector = Selector::new(|event: &u32| *event > 2);
        assert_eq!(format!("{selector:?}"), "Selector(..)");
    }

    fn subscribe(
        d: &mut BroadcastDispatcher<u32>,
        t: u64,
        consumer: u64,
        options: SubscribeOptions,
    ) -> Result<usize, BoxError> {
        let subscriber = Subscriber::new(tag(t), StageId::from_raw(consumer), &options);
        d.subscribe(&subscriber, &mut Deliveries::new())
    }

    fn ask(d: &mut BroadcastDispatcher<u32>, t: u64, demand: usize) -> usize {
        d.ask(tag(t), demand, &mut Deliveries::new())
    }

    /// What one dispatch sent, left over, and asked upstream.
    type Outcome = (Vec<(SubscriptionTag, Vec<u32>)>, Vec<u32>, usize);

    fn dispatch(d: &mut BroadcastDispatcher<u32>, events: Vec<u32>) -> Outcome {
        let mut deliveries = Deliveries::new();
        let leftovers = d.dispatch(events, &mut deliveries);
        let upstream = deliveries.take_upstream_demand();
        (deliveries.drain().collect(), leftovers, upstream)
    }

    #[test]
    fn upstream_demand_is_the_minimum_and_never_asked_twice() {
        let mut d = BroadcastDispatcher::new();
        subscribe(&mut d, 1, 1, SubscribeOptions::new()).unwrap();
        subscribe(&mut d, 2, 2, SubscribeOptions::new()).unwrap();
        assert_eq!(
            ask(&mut d, 1, 10),
            0,
            "the other consumer has asked nothing"
        );
        assert_eq!(ask(&mut d, 2, 4), 4);
        assert_eq!(ask(&mut d, 2, 10), 6, "the first consumer caps it at 10");
        // Nothing was dispatched yet: asking again must not ask for the same events.
        assert_eq!(ask(&mut d, 1, 0), 0);
    }

    #[test]
    fn demand_beyond_usize_saturates_instead_of_overflowing() {
        let mut d = BroadcastDispatcher::new();
        subscribe(&mut d, 1, 1, SubscribeOptions::new()).unwrap();
        assert_eq!(ask(&mut d, 1, usize::MAX), usize::MAX);
        assert_eq!(ask(&mut d, 1, 1), 0, "everything was asked already");
    }

    #[test]
    fn every_consumer_receives_every_event() {
        let mut d = BroadcastDispatcher::new();
        for t in 1..=3 {
            subscribe(&mut d, t, t, SubscribeOptions::new()).unwrap();
            ask(&mut d, t, 2);
        }
        let (sent, left, _) = dispatch(&mut d, vec![7, 8, 9]);
        assert_eq!(
            sent,
            vec![
                (tag(1), vec![7, 8]),
                (tag(2), vec![7, 8]),
                (tag(3), vec![7, 8])
            ]
        );
        assert_eq!(left, vec![9]);
    }

    #[test]
    fn a_selector_filters_and_its_rejections_are_asked_again() {
        let mut d = BroadcastDispatcher::new();
        let evens = SubscribeOptions::new().with(Selector::new(|x: &u32| x % 2 == 0));
        subscribe(&mut d, 1, 1, evens).unwrap();
        subscribe(&mut d, 2, 2, SubscribeOptions::new()).unwrap();
        ask(&mut d, 1, 4);
        assert_eq!(ask(&mut d, 2, 8), 4);
        let (sent, left, upstream) = dispatch(&mut d, vec![1, 2, 3, 4]);
        assert_eq!(sent, vec![(tag(1), vec![2, 4]), (tag(2), vec![1, 2, 3, 4])]);
        assert!(left.is_empty());
        // Consumer 1 still wants 2 and consumer 2 wants 4 more: 2 more for everyone.
        assert_eq!(upstream, 2);
    }

    #[test]
    fn a_late_subscriber_holds_delivery_until_it_asks() {
        let mut d = BroadcastDispatcher::new();
        subscribe(&mut d, 1, 1, SubscribeOptions::new()).unwrap();
        assert_eq!(ask(&mut d, 1, 5), 5);
        subscribe(&mut d, 2, 2, SubscribeOptions::new()).unwrap();
        let (sent, left, _) = dispatch(&mut d, vec![1, 2]);
        assert!(sent.is_empty(), "nobody receives until the newcomer asks");
        assert_eq!(left, vec![1, 2]);
        // 3 of the 5 asked are still on their way; the 2 that arrived wait in the
        // stage's buffer, which the stage serves first: only 2 more are asked for.
        assert_eq!(ask(&mut d, 2, 5), 2);
        let mut out = Deliveries::new();
        assert!(d.dispatch_buffered(vec![1, 2], &mut out).is_empty());
        assert_eq!(
            out.drain().count(),
            2,
            "both consumers get the buffered events"
        );
    }

    #[test]
    fn cancelling_the_slowest_consumer_releases_demand() {
        let mut d = BroadcastDispatcher::new();
        subscribe(&mut d, 1, 1, SubscribeOptions::new()).unwrap();
        subscribe(&mut d, 2, 2, SubscribeOptions::new()).unwrap();
        ask(&mut d, 1, 10);
        assert_eq!(ask(&mut d, 2, 3), 3);
        assert_eq!(d.cancel(tag(2), &mut Deliveries::new()), 7);
    }

    #[test]
    fn the_same_consumer_cannot_subscribe_twice_even_after_a_refusal() {
        let mut d = BroadcastDispatcher::new();
        subscribe(&mut d, 1, 9, SubscribeOptions::new()).unwrap();
        let error = subscribe(&mut d, 2, 9, SubscribeOptions::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "stage#9 is already subscribed to this broadcast producer"
        );
        // GenStage's bug: a refused duplicate freed the consumer for a third attempt.
        assert!(subscribe(&mut d, 3, 9, SubscribeOptions::new()).is_err());
        assert_eq!(d.entries.len(), 1);
        // Once the real subscription ends, the consumer may subscribe again.
        d.cancel(tag(1), &mut Deliveries::new());
        assert!(subscribe(&mut d, 4, 9, SubscribeOptions::new()).is_ok());
    }
}
