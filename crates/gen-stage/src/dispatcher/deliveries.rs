//! What a dispatcher hands out: batches for consumers, upstream demand, discards, and
//! the markers it gives back.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::dispatcher::Marker;
use crate::subscription::SubscriptionTag;
use crate::wire::{Parcel, SharedEvents};

/// Where a dispatcher writes what it decides: the batches it sends, the upstream demand
/// and the discards it makes outside its return values, and the [`Marker`]s it gives
/// back. Every [`Dispatcher`](super::Dispatcher) method gets one; the stage reads it
/// after each call.
///
/// To test a dispatcher without a stage, make one with [`Deliveries::new`] and
/// [`drain`](Deliveries::drain) the batches the dispatcher pushed.
pub struct Deliveries<T> {
    /// A queue: the stage takes them from the front as it sends them, without a
    /// `Drain` to make and drop per call.
    batches: VecDeque<(SubscriptionTag, Parcel<T>)>,
    upstream: usize,
    discarded: usize,
    /// Of `discarded`, those the dispatcher had taken in (their demand is used).
    discarded_after_taking: usize,
    released: Vec<Marker>,
    /// Whether the stage has more messages waiting (see [`Self::more_mail_waiting`]).
    more_mail: bool,
}

impl<T> Deliveries<T> {
    /// No deliveries.
    pub fn new() -> Self {
        Deliveries {
            batches: VecDeque::new(),
            upstream: 0,
            discarded: 0,
            discarded_after_taking: 0,
            released: Vec::new(),
            more_mail: false,
        }
    }

    /// Whether mail was still waiting in the stage's mailbox when the stage finished
    /// its previous message, so that the one it handles now was queued behind others
    /// (false in a `Deliveries` made with [`Deliveries::new`]). A
    /// dispatcher may then hold back a batch smaller than its consumer usually takes,
    /// to send it together with what the next messages produce; it must send what it
    /// held back when the stage calls [`Dispatcher::idle`](super::Dispatcher::idle).
    pub fn more_mail_waiting(&self) -> bool {
        self.more_mail
    }

    /// Sets what [`Self::more_mail_waiting`] says (the stage, after each message; a
    /// dispatcher's tests).
    pub fn set_more_mail_waiting(&mut self, more: bool) {
        self.more_mail = more;
    }

    /// Sends `events` to the consumer of `tag`. Empty batches are ignored.
    pub fn push(&mut self, tag: SubscriptionTag, events: Vec<T>) {
        if !events.is_empty() {
            self.batches.push_back((tag, Parcel::Owned(events)));
        }
    }

    /// Sends the same `events` to the consumer of each of `tags`, without copying them
    /// here: each consumer copies them when it receives them, on its own task, and the
    /// last to receive them takes the batch itself. A producer feeding several
    /// consumers thus spends no time copying, and the copies are made in parallel.
    /// Empty batches are ignored.
    ///
    /// ```
    /// use gen_stage::SubscriptionTag;
    /// use gen_stage::dispatcher::Deliveries;
    ///
    /// let (a, b) = (SubscriptionTag::from_raw(1), SubscriptionTag::from_raw(2));
    /// let mut deliveries = Deliveries::new();
    /// deliveries.push_to_each([a, b], vec![1, 2, 3]);
    /// let sent: Vec<_> = deliveries.drain().collect();
    /// assert_eq!(sent, [(a, vec![1, 2, 3]), (b, vec![1, 2, 3])]);
    /// ```
    pub fn push_to_each(&mut self, tags: impl IntoIterator<Item = SubscriptionTag>, events: Vec<T>)
    where
        T: Clone + Send + Sync + 'static,
    {
        if events.is_empty() {
            return;
        }
        let mut tags = tags.into_iter().peekable();
        let Some(first) = tags.next() else {
            return;
        };
        if tags.peek().is_none() {
            // One consumer: nothing to share.
            self.batches.push_back((first, Parcel::Owned(events)));
            return;
        }
        let shared: Arc<dyn SharedEvents<T>> = Arc::new(events);
        self.batches
            .push_back((first, Parcel::Shared(shared.clone())));
        for tag in tags {
            self.batches
                .push_back((tag, Parcel::Shared(shared.clone())));
        }
    }

    /// Asks the stage for `demand` more events, beyond what the method returns (for
    /// example from `dispatch`, when a consumer's filter rejected events it had
    /// asked for).
    pub fn demand_upstream(&mut self, demand: usize) {
        self.upstream = self.upstream.saturating_add(demand);
    }

    /// Records that the dispatcher dropped `count` of the events it was given, taking
    /// no demand for them (no consumer wanted them); the stage counts and reports them
    /// with its own discards.
    pub fn discard(&mut self, count: usize) {
        self.discarded = self.discarded.saturating_add(count);
    }

    /// Records that the dispatcher dropped `count` events it had taken in against
    /// demand (held for consumers, beyond a limit): counted and reported like
    /// [`Deliveries::discard`]s, but the demand they used stays used, so that the
    /// stage does not make up for them.
    pub fn discard_taken(&mut self, count: usize) {
        self.discard(count);
        self.discarded_after_taking = self.discarded_after_taking.saturating_add(count);
    }

    /// Gives `marker` back to the stage: every event the dispatcher held when it was
    /// queued (see [`Dispatcher::queue_marker`](super::Dispatcher::queue_marker)) has
    /// gone out, sent or dropped.
    pub fn release(&mut self, marker: Marker) {
        self.released.push(marker);
    }

    /// Takes the batches out, in order, each as its consumer would receive it (a batch
    /// pushed to several consumers is copied for each but the last): what a test of a
    /// dispatcher reads.
    pub fn drain(&mut self) -> impl Iterator<Item = (SubscriptionTag, Vec<T>)> + '_ {
        self.batches
            .drain(..)
            .map(|(tag, batch)| (tag, batch.into_vec()))
    }

    // The stage's side: what it reads after each call.

    /// Upstream demand recorded with [`Deliveries::demand_upstream`], reset to 0.
    pub(crate) fn take_upstream_demand(&mut self) -> usize {
        std::mem::take(&mut self.upstream)
    }

    /// Discards of events the dispatcher did not take (they used no demand).
    pub(crate) fn untaken_discards(&self) -> usize {
        self.discarded - self.discarded_after_taking
    }

    /// Every discard recorded, reset to 0.
    pub(crate) fn take_discarded(&mut self) -> usize {
        self.discarded_after_taking = 0;
        std::mem::take(&mut self.discarded)
    }

    /// The markers given back since the last call, in order.
    pub(crate) fn take_released(&mut self) -> std::vec::Drain<'_, Marker> {
        self.released.drain(..)
    }

    /// How many batches were pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether anything besides batches was recorded: upstream demand, discards,
    /// markers given back (rare: one test covers the usual case).
    pub(crate) fn has_records(&self) -> bool {
        (self.upstream | self.discarded | self.released.len()) != 0
    }

    /// True if there is nothing to send, no upstream demand, no discard and no marker
    /// given back.
    pub(crate) fn is_idle(&self) -> bool {
        (self.batches.len() | self.upstream | self.discarded | self.released.len()) == 0
    }

    pub(crate) fn reverse_from(&mut self, first: usize) {
        self.batches.make_contiguous()[first..].reverse();
    }

    /// Takes the batches out as they would be sent (for tests).
    #[cfg(test)]
    pub(crate) fn drain_batches(
        &mut self,
    ) -> std::collections::vec_deque::Drain<'_, (SubscriptionTag, Parcel<T>)> {
        self.batches.drain(..)
    }

    /// Takes the first batch out, to send it.
    #[inline(always)]
    pub(crate) fn next_batch(&mut self) -> Option<(SubscriptionTag, Parcel<T>)> {
        self.batches.pop_front()
    }
}

impl<T> Default for Deliveries<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Deliveries<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.batches.iter().map(|(tag, batch)| (tag, batch.len())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_batch_is_copied_for_each_holder_but_the_last() {
        let events = vec![String::from("a"), String::from("b")];
        let address = events.as_ptr();
        let (a, b) = (SubscriptionTag::from_raw(1), SubscriptionTag::from_raw(2));
        let mut deliveries = Deliveries::new();
        deliveries.push_to_each([a, b], events);
        let batches: Vec<_> = deliveries.drain_batches().collect();
        let mut received = batches.into_iter().map(|(_, batch)| batch.into_vec());
        let first = received.next().expect("two batches");
        let last = received.next().expect("two batches");
        assert_eq!(first, ["a", "b"]);
        assert_ne!(first.as_ptr(), address, "the first holder gets a copy");
        assert_eq!(last, ["a", "b"]);
        assert_eq!(
            last.as_ptr(),
            address,
            "the last holder gets the batch itself"
        );
    }

    #[test]
    fn events_for_one_consumer_are_not_shared() {
        let tag = SubscriptionTag::from_raw(1);
        let mut deliveries = Deliveries::new();
        deliveries.push_to_each([tag], vec![1]);
        deliveries.push_to_each([tag, tag], Vec::new());
        let batches: Vec<_> = deliveries.drain_batches().collect();
        assert_eq!(batches.len(), 1);
        assert!(matches!(&batches[0].1, Parcel::Owned(events) if events == &[1]));
    }

    #[test]
    fn discards_are_counted_apart_from_those_taken_in_until_taken_out() {
        let mut deliveries = Deliveries::<u32>::new();
        deliveries.discard(2);
        deliveries.discard_taken(3);
        assert_eq!(deliveries.untaken_discards(), 2);
        assert!(!deliveries.is_idle());
        assert_eq!(deliveries.take_discarded(), 5);
        assert_eq!(deliveries.untaken_discards(), 0);
        assert_eq!(deliveries.take_discarded(), 0);
        assert!(deliveries.is_idle());
    }

    #[test]
    fn markers_given_back_are_read_in_order_once() {
        let mut deliveries = Deliveries::<u32>::new();
        deliveries.release(Marker::new(4));
        deliveries.release(Marker::new(7));
        assert!(!deliveries.is_idle());
        let released: Vec<u64> = deliveries.take_released().map(|m| m.id()).collect();
        assert_eq!(released, [4, 7]);
        assert!(deliveries.is_idle());
    }

    #[test]
    fn upstream_demand_or_a_batch_makes_deliveries_busy() {
        let mut deliveries = Deliveries::new();
        assert!(deliveries.is_idle() && deliveries.len() == 0);
        deliveries.demand_upstream(4);
        deliveries.demand_upstream(1);
        assert!(!deliveries.is_idle());
        assert_eq!(deliveries.take_upstream_demand(), 5);
        assert!(deliveries.is_idle());
        let tag = SubscriptionTag::from_raw(1);
        deliveries.push(tag, vec![7, 8]);
        assert!(!deliveries.is_idle());
        assert_eq!(deliveries.len(), 1);
        assert_eq!(format!("{deliveries:?}"), format!("[({tag:?}, 2)]"));
        let seen: Vec<_> = deliveries.drain().collect();
        assert_eq!(seen, [(tag, vec![7, 8])]);
    }

    #[test]
    fn records_of_equal_counts_do_not_cancel_out() {
        // The checks fold the counts with `|`: with an exclusive or, two equal counts
        // would read as nothing recorded, and the stage would skip them.
        let tag = SubscriptionTag::from_raw(1);
        let mut batch_and_demand = Deliveries::new();
        batch_and_demand.push(tag, vec![1]);
        batch_and_demand.demand_upstream(1);
        assert!(!batch_and_demand.is_idle());

        let mut demand_only = Deliveries::<u32>::new();
        demand_only.demand_upstream(1);
        assert!(demand_only.has_records());

        let mut demand_and_discards = Deliveries::<u32>::new();
        demand_and_discards.demand_upstream(2);
        demand_and_discards.discard(2);
        assert!(!demand_and_discards.is_idle());
        assert!(demand_and_discards.has_records());

        let mut discard_and_marker = Deliveries::<u32>::new();
        discard_and_marker.discard(1);
        discard_and_marker.release(Marker::new(9));
        assert!(!discard_and_marker.is_idle());
        assert!(discard_and_marker.has_records());
    }

    #[test]
    fn a_shared_batch_shows_its_events_to_each_holder() {
        let (a, b) = (SubscriptionTag::from_raw(1), SubscriptionTag::from_raw(2));
        let mut deliveries = Deliveries::new();
        deliveries.push_to_each([a, b], vec![1, 2, 3]);
        let lengths: Vec<usize> = deliveries.drain_batches().map(|(_, p)| p.len()).collect();
        assert_eq!(lengths, [3, 3]);
    }
}
