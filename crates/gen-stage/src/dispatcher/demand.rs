//! The default dispatcher: each batch goes to the consumer with the most pending demand.

use std::hash::{BuildHasher, Hasher};

use crate::dispatcher::{Deliveries, Dispatcher, Subscriber};
use crate::exit::BoxError;
use crate::subscription::SubscriptionTag;

/// Sends events to the consumer with the most pending demand; ties go to the consumer
/// that has waited longest (subscription order at first).
///
/// Demand that a consumer had asked for and not received when it cancels stays owed
/// upstream: the next asks are served from it before the producer is asked for more.
///
/// ```
/// use gen_stage::dispatcher::{Deliveries, DemandDispatcher, Dispatcher, Subscriber};
/// use gen_stage::{StageId, SubscribeOptions, SubscriptionTag};
///
/// let mut dispatcher = DemandDispatcher::new();
/// let mut deliveries = Deliveries::new();
/// let options = SubscribeOptions::new();
/// let (a, b) = (SubscriptionTag::from_raw(1), SubscriptionTag::from_raw(2));
/// for (tag, stage) in [(a, 1), (b, 2)] {
///     let subscriber = Subscriber::new(tag, StageId::from_raw(stage), &options);
///     dispatcher.subscribe(&subscriber, &mut deliveries).unwrap();
///     assert_eq!(dispatcher.ask(tag, 3, &mut deliveries), 3);
/// }
/// dispatcher.dispatch(vec!['a', 'b'], &mut deliveries);
/// dispatcher.dispatch(vec!['c', 'd'], &mut deliveries);
/// // `a` had the most demand (ties: first subscribed), then `b` had more left.
/// let sent: Vec<_> = deliveries.drain().collect();
/// assert_eq!(sent, [(a, vec!['a', 'b']), (b, vec!['c', 'd'])]);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct DemandDispatcher {
    /// `(tag, demand)`, most demand first; equal demands in arrival order.
    demands: Vec<(SubscriptionTag, usize)>,
    /// Demand already asked upstream for consumers that have since cancelled.
    owed: usize,
    max_demand: Option<usize>,
    shuffle_on_first_dispatch: bool,
    plan: Vec<(SubscriptionTag, usize)>,
}

impl DemandDispatcher {
    /// A dispatcher with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest demand one consumer is expected to ask at once; a larger ask logs a
    /// warning, because mixed maximum demands overload the greediest consumers. By
    /// default the first ask sets it.
    pub fn max_demand(mut self, max_demand: usize) -> Self {
        self.max_demand = Some(max_demand);
        self
    }

    /// Shuffles the consumers once, before the first dispatch, so that the first
    /// subscriber does not always receive the first events.
    pub fn shuffle_demands_on_first_dispatch(mut self, shuffle: bool) -> Self {
        self.shuffle_on_first_dispatch = shuffle;
        self
    }

    /// Moves the consumer at `index`, whose demand changed, to its place: after every
    /// other consumer with at least as much demand (so equal demands stay in the order
    /// they were reached), before those with less.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    fn reposition(&mut self, index: usize) {
        let demand = self.demands[index].1;
        // Already in place (one consumer, or the usual small change): every consumer
        // before has at least as much demand, the one after has less.
        let after_more = index == 0 || self.demands[index - 1].1 >= demand;
        let before_less = self
            .demands
            .get(index + 1)
            .is_none_or(|&(_, next)| next < demand);
        if !(after_more && before_less) {
            self.move_to_place(index, demand);
        }
    }

    /// [`Self::reposition`] for a consumer out of place.
    fn move_to_place(&mut self, index: usize, demand: usize) {
        let others = self.demands.iter().enumerate().filter(|&(i, _)| i != index);
        let target = others
            .map(|(_, &(_, other))| other)
            .position(|other| other < demand)
            .unwrap_or(self.demands.len() - 1);
        if target < index {
            self.demands[target..=index].rotate_right(1);
        } else if target > index {
            self.demands[index..=target].rotate_left(1);
        }
    }

    fn shuffle(&mut self) {
        let mut seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
        for i in (1..self.demands.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = (seed % (i as u64 + 1)) as usize;
            self.demands.swap(i, j);
        }
        self.demands
            .sort_by_key(|&(_, demand)| std::cmp::Reverse(demand));
    }
}

impl<T: Send + 'static> Dispatcher<T> for DemandDispatcher {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        _: &mut Deliveries<T>,
    ) -> Result<usize, BoxError> {
        self.demands.push((subscriber.tag, 0));
        Ok(0)
    }

    fn cancel(&mut self, tag: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
        if let Some(index) = self.demands.iter().position(|&(t, _)| t == tag) {
            let (_, demand) = self.demands.remove(index);
            self.owed = self.owed.saturating_add(demand);
        }
        0
    }

    fn ask(&mut self, tag: SubscriptionTag, demand: usize, _: &mut Deliveries<T>) -> usize {
        let max = *self.max_demand.get_or_insert(demand);
        if demand > max {
            tracing::warn!(
                "DemandDispatcher expects a maximum demand of {max}; a demand of {demand} from {tag} will overload greedy consumers"
            );
        }
        let Some(index) = self.demands.iter().position(|&(t, _)| t == tag) else {
            return 0;
        };
        let current = &mut self.demands[index].1;
        *current = current.saturating_add(demand);
        self.reposition(index);
        let already_asked = self.owed.min(demand);
        self.owed -= already_asked;
        demand - already_asked
    }

    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        let leftovers = self.deal(events, deliveries);
        // Events that arrived and found no demand pay back demand owed upstream.
        self.owed = self.owed.saturating_sub(leftovers.len());
        leftovers
    }

    fn dispatch_buffered(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        self.deal(events, deliveries)
    }
}

impl DemandDispatcher {
    /// The usual dispatch: if the consumer with the most demand can take all `count`
    /// events (at least one), counts them against its demand and returns its tag; the
    /// caller sends them. `None` otherwise, or before the first dispatch's shuffle.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    pub(crate) fn take_whole(&mut self, count: usize) -> Option<SubscriptionTag> {
        if self.shuffle_on_first_dispatch || count == 0 {
            return None;
        }
        match self.demands.first_mut() {
            Some((tag, demand)) if *demand >= count => {
                let tag = *tag;
                *demand -= count;
                self.reposition(0);
                Some(tag)
            }
            _ => None,
        }
    }

    /// Deals `events` to the consumers with the most demand; returns the rest.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    fn deal<T>(&mut self, mut events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        if self.shuffle_on_first_dispatch {
            self.shuffle_on_first_dispatch = false;
            self.shuffle();
        }
        // The usual case: the consumer with the most demand takes the whole batch.
        if let Some(tag) = self.take_whole(events.len()) {
            deliveries.push(tag, events);
            return Vec::new();
        }
        // Plan who gets how many, then cut from the back so each event moves once.
        let mut remaining = events.len();
        self.plan.clear();
        while remaining > 0 {
            match self.demands.first_mut() {
                Some((tag, demand)) if *demand > 0 => {
                    let count = (*demand).min(remaining);
                    remaining -= count;
                    *demand -= count;
                    self.plan.push((*tag, count));
                    self.reposition(0);
                }
                _ => break,
            }
        }
        let planned = events.len() - remaining;
        let leftovers = events.split_off(planned);
        let first = deliveries.len();
        for (index, &(tag, count)) in self.plan.iter().enumerate().rev() {
            let batch = if index == 0 {
                std::mem::take(&mut events)
            } else {
                events.split_off(events.len() - count)
            };
            deliveries.push(tag, batch);
        }
        deliveries.reverse_from(first);
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

    fn subscribe(d: &mut DemandDispatcher, t: u64) -> usize {
        let options = SubscribeOptions::new();
        let subscriber = Subscriber::new(tag(t), crate::StageId::from_raw(t), &options);
        Dispatcher::<u32>::subscribe(d, &subscriber, &mut Deliveries::new()).unwrap()
    }

    fn ask(d: &mut DemandDispatcher, t: u64, demand: usize) -> usize {
        Dispatcher::<u32>::ask(d, tag(t), demand, &mut Deliveries::new())
    }

    fn cancel(d: &mut DemandDispatcher, t: u64) -> usize {
        Dispatcher::<u32>::cancel(d, tag(t), &mut Deliveries::new())
    }

    fn subscribed(tags: &[u64]) -> DemandDispatcher {
        let mut d = DemandDispatcher::new();
        for &t in tags {
            assert_eq!(subscribe(&mut d, t), 0);
        }
        d
    }

    fn dispatch(
        d: &mut DemandDispatcher,
        events: Vec<u32>,
    ) -> (Vec<(SubscriptionTag, Vec<u32>)>, Vec<u32>) {
        let mut deliveries = Deliveries::new();
        let leftovers = d.dispatch(events, &mut deliveries);
        (deliveries.drain().collect(), leftovers)
    }

    #[test]
    fn events_go_to_the_consumer_with_most_demand() {
        let mut d = subscribed(&[1, 2]);
        assert_eq!(ask(&mut d, 1, 2), 2);
        assert_eq!(ask(&mut d, 2, 5), 5);
        let (sent, left) = dispatch(&mut d, vec![1, 2, 3, 4]);
        assert_eq!(sent, vec![(tag(2), vec![1, 2, 3, 4])]);
        assert!(left.is_empty());
    }

    #[test]
    fn a_batch_is_split_across_consumers_in_order() {
        let mut d = subscribed(&[1, 2]);
        ask(&mut d, 1, 2);
        ask(&mut d, 2, 2);
        let (sent, left) = dispatch(&mut d, vec![1, 2, 3, 4, 5]);
        assert_eq!(sent, vec![(tag(1), vec![1, 2]), (tag(2), vec![3, 4])]);
        assert_eq!(left, vec![5]);
    }

    #[test]
    fn no_demand_means_everything_is_left_over() {
        let mut d = subscribed(&[1]);
        let (sent, left) = dispatch(&mut d, vec![1, 2]);
        assert!(sent.is_empty());
        assert_eq!(left, vec![1, 2]);
        let mut empty = DemandDispatcher::new();
        assert_eq!(dispatch(&mut empty, vec![3]).1, vec![3]);
    }

    #[test]
    fn demand_of_a_cancelled_consumer_is_owed_not_asked_again() {
        let mut d = subscribed(&[1, 2]);
        assert_eq!(ask(&mut d, 1, 10), 10);
        assert_eq!(cancel(&mut d, 1), 0);
        // The 10 already asked upstream will still arrive: serve tag 2 from them.
        assert_eq!(ask(&mut d, 2, 4), 0);
        assert_eq!(ask(&mut d, 2, 10), 4);
    }

    #[test]
    fn leftovers_pay_back_owed_demand() {
        let mut d = subscribed(&[1]);
        ask(&mut d, 1, 3);
        cancel(&mut d, 1);
        let (_, left) = dispatch(&mut d, vec![1, 2, 3]);
        assert_eq!(left.len(), 3);
        subscribe(&mut d, 2);
        assert_eq!(ask(&mut d, 2, 3), 3);
    }

    #[test]
    fn buffered_events_left_over_do_not_pay_back_owed_demand() {
        let mut d = subscribed(&[1, 2]);
        ask(&mut d, 1, 3);
        cancel(&mut d, 1);
        ask(&mut d, 2, 1);
        // 2 of the cancelled 3 are still owed; buffered events left over were already
        // counted when they arrived, so they pay back nothing.
        let mut deliveries = Deliveries::new();
        let left = d.dispatch_buffered(vec![1, 2, 3], &mut deliveries);
        assert_eq!(left, vec![2, 3]);
        assert_eq!(
            deliveries.drain().collect::<Vec<_>>(),
            vec![(tag(2), vec![1])]
        );
        assert_eq!(ask(&mut d, 2, 5), 3);
    }

    #[test]
    fn ties_go_to_the_longest_waiting_consumer() {
        let mut d = subscribed(&[1, 2, 3]);
        for t in [1, 2, 3] {
            ask(&mut d, t, 1);
        }
        let (sent, _) = dispatch(&mut d, vec![10, 20, 30]);
        assert_eq!(
            sent,
            vec![(tag(1), vec![10]), (tag(2), vec![20]), (tag(3), vec![30])]
        );
    }

    #[test]
    fn an_empty_dispatch_leaves_the_order_of_equal_demands_alone() {
        let mut d = subscribed(&[1, 2]);
        ask(&mut d, 1, 3);
        ask(&mut d, 2, 3);
        assert_eq!(dispatch(&mut d, Vec::new()), (Vec::new(), Vec::new()));
        let (sent, _) = dispatch(&mut d, vec![10, 20, 30]);
        assert_eq!(sent, vec![(tag(1), vec![10, 20, 30])]);
    }

    #[test]
    fn unknown_asks_create_no_demand() {
        let mut d = subscribed(&[1]);
        assert_eq!(ask(&mut d, 9, 5), 0);
    }

    #[test]
    fn shuffle_keeps_every_consumer() {
        let mut d = subscribed(&[1, 2, 3, 4]).shuffle_demands_on_first_dispatch(true);
        for t in 1..=4 {
            ask(&mut d, t, 1);
        }
        let (sent, left) = dispatch(&mut d, vec![1, 2, 3, 4]);
        let mut tags: Vec<u64> = sent.iter().map(|(t, _)| t.as_u64()).collect();
        tags.sort();
        assert_eq!(tags, vec![1, 2, 3, 4]);
        assert!(left.is_empty());
    }

    /// Who receives the one event dispatched first by a fresh dispatcher that shuffles,
    /// its consumers `1..=consumers` having asked one each.
    fn first_taker(consumers: u64) -> (DemandDispatcher, u64) {
        let tags: Vec<u64> = (1..=consumers).collect();
        let mut d = subscribed(&tags).shuffle_demands_on_first_dispatch(true);
        for &t in &tags {
            ask(&mut d, t, 1);
        }
        let (sent, _) = dispatch(&mut d, vec![0]);
        assert_eq!(sent.len(), 1);
        (d, sent[0].0.as_u64())
    }

    #[test]
    fn shuffling_gives_the_first_batch_to_any_consumer_the_first_subscriber_included() {
        let mut takers: Vec<u64> = (0..200).map(|_| first_taker(4).1).collect();
        takers.sort();
        takers.dedup();
        // Each consumer misses 200 fair draws with a probability of (3/4)^200 < 1e-24.
        assert_eq!(takers, vec![1, 2, 3, 4]);
    }

    #[test]
    fn only_the_first_dispatch_is_shuffled() {
        for _ in 0..64 {
            let (mut d, first) = first_taker(2);
            let other = 3 - first;
            // Equal demand again: the tie goes to the consumer that waited longest.
            ask(&mut d, first, 1);
            let (sent, _) = dispatch(&mut d, vec![1]);
            assert_eq!(sent, vec![(tag(other), vec![1])]);
        }
    }

    #[test]
    fn shuffling_keeps_the_consumer_with_most_demand_first() {
        for _ in 0..64 {
            let mut d = subscribed(&[1, 2, 3]).shuffle_demands_on_first_dispatch(true);
            ask(&mut d, 3, 3);
            let (sent, left) = dispatch(&mut d, vec![1, 2, 3]);
            assert_eq!(sent, vec![(tag(3), vec![1, 2, 3])]);
            assert!(left.is_empty());
        }
    }

    /// How many warnings `run` logs on this thread.
    fn warnings_during(run: impl FnOnce()) -> usize {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing::span::{Attributes, Id, Record};

        struct CountWarnings(Arc<AtomicUsize>);

        impl tracing::Subscriber for CountWarnings {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                if *event.metadata().level() == tracing::Level::WARN {
                    self.0.fetch_add(1, Ordering::Relaxed);
                }
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }

        let count = Arc::new(AtomicUsize::new(0));
        tracing::subscriber::with_default(CountWarnings(count.clone()), run);
        count.load(Ordering::Relaxed)
    }

    #[test]
    fn an_ask_above_max_demand_logs_a_warning_and_is_still_served() {
        let mut d = subscribed(&[1]).max_demand(5);
        assert_eq!(warnings_during(|| assert_eq!(ask(&mut d, 1, 5), 5)), 0);
        assert_eq!(warnings_during(|| assert_eq!(ask(&mut d, 1, 6), 6)), 1);
        let (sent, _) = dispatch(&mut d, (0..11).collect());
        assert_eq!(sent, vec![(tag(1), (0..11).collect())]);
    }

    #[test]
    fn max_demand_given_is_not_replaced_by_the_first_ask() {
        let mut d = subscribed(&[1]).max_demand(10);
        let warnings = warnings_during(|| {
            ask(&mut d, 1, 3);
            ask(&mut d, 1, 10);
        });
        assert_eq!(warnings, 0);
    }

    #[test]
    fn without_max_demand_the_first_ask_sets_it() {
        let mut d = subscribed(&[1, 2]);
        let warnings = warnings_during(|| {
            ask(&mut d, 1, 3);
            ask(&mut d, 2, 3);
        });
        assert_eq!(warnings, 0);
        assert_eq!(warnings_during(|| assert_eq!(ask(&mut d, 2, 4), 4)), 1);
    }

    #[test]
    fn the_consumer_with_most_demand_takes_a_whole_batch_it_can_hold() {
        let mut d = subscribed(&[1, 2]);
        ask(&mut d, 1, 2);
        ask(&mut d, 2, 5);
        assert_eq!(d.take_whole(4), Some(tag(2)));
        // 2 has 1 left and 1 has 2: a whole batch of 2 goes to 1.
        assert_eq!(d.take_whole(2), Some(tag(1)));
        assert_eq!(d.take_whole(2), None, "no consumer can take 2");
        assert_eq!(d.take_whole(0), None);
        // What was taken whole is counted: a dispatch sees the demand left.
        let (sent, left) = dispatch(&mut d, vec![1, 2]);
        assert_eq!(sent, vec![(tag(2), vec![1])]);
        assert_eq!(left, vec![2]);
    }

    #[test]
    fn a_whole_batch_waits_for_the_first_dispatchs_shuffle() {
        let mut d = subscribed(&[1]).shuffle_demands_on_first_dispatch(true);
        ask(&mut d, 1, 5);
        assert_eq!(d.take_whole(2), None);
        let (sent, _) = dispatch(&mut d, vec![1, 2]);
        assert_eq!(sent, vec![(tag(1), vec![1, 2])]);
        assert_eq!(d.take_whole(3), Some(tag(1)));
    }
}
