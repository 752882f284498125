//! The consumers a producer sends to, what each asked for and was not sent yet, and the
//! guard that none ever receives more than that.

use std::sync::Arc;

use crate::dispatcher::Deliveries;
use crate::exit::{BoxError, CancelReason, ExitReason, SharedError};
use crate::stats::{Side, StatsCell, SubscriptionDemand};
use crate::subscription::{StageId, SubscriptionTag, TagMap};
use crate::wire::{EventSink, Parcel};

struct Consumer<T> {
    sink: Box<dyn EventSink<T>>,
    id: StageId,
    /// Events asked for and not yet sent.
    outstanding: usize,
}

/// The consumer table: where each subscription's events go, and its demand not yet
/// met. Dropping it tells every consumer left that the stage went down.
pub(super) struct Outbox<T> {
    consumers: TagMap<Consumer<T>>,
    /// What the consumers asked for and were not sent yet, in all.
    demand_out: usize,
    /// Told to the consumers when the outbox is dropped.
    exit_reason: ExitReason,
    stats: Arc<StatsCell>,
}

impl<T: Send + 'static> Outbox<T> {
    pub(super) fn new(stats: Arc<StatsCell>) -> Self {
        Outbox {
            consumers: TagMap::default(),
            demand_out: 0,
            exit_reason: ExitReason::Killed,
            stats,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.consumers.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }

    pub(super) fn contains(&self, tag: SubscriptionTag) -> bool {
        self.consumers.contains_key(&tag)
    }

    pub(super) fn tags(&self) -> Vec<SubscriptionTag> {
        self.consumers.keys().copied().collect()
    }

    /// The consumer of subscription `tag`.
    pub(super) fn consumer_id(&self, tag: SubscriptionTag) -> Option<StageId> {
        self.consumers.get(&tag).map(|consumer| consumer.id)
    }

    /// Each consumer's demand not yet sent.
    pub(super) fn demands(&self, into: &mut Vec<SubscriptionDemand>) {
        into.extend(
            self.consumers
                .iter()
                .map(|(&tag, consumer)| SubscriptionDemand {
                    tag,
                    side: Side::FromConsumer,
                    pending: consumer.outstanding,
                }),
        );
    }

    /// Adds a consumer. A tag already in use is refused (and the newcomer told).
    pub(super) fn add(
        &mut self,
        tag: SubscriptionTag,
        sink: Box<dyn EventSink<T>>,
    ) -> Result<(), SharedError> {
        if self.consumers.contains_key(&tag) {
            let error = SharedError::from(BoxError::from("duplicated subscription"));
            sink.send_cancel(tag, CancelReason::Rejected(error.clone()));
            return Err(error);
        }
        let id = sink.consumer_id();
        let consumer = Consumer {
            sink,
            id,
            outstanding: 0,
        };
        self.consumers.insert(tag, consumer);
        self.stats.set_consumers(self.consumers.len());
        Ok(())
    }

    /// Consumer `tag` asked for `demand` more events; false if it is unknown.
    pub(super) fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> bool {
        let Some(consumer) = self.consumers.get_mut(&tag) else {
            return false;
        };
        consumer.outstanding = consumer.outstanding.saturating_add(demand);
        self.demand_out = self.demand_out.saturating_add(demand);
        self.stats.set_demand_out(self.demand_out);
        true
    }

    /// Removes consumer `tag`, telling it `reason` after every event sent to it; false
    /// if it is unknown.
    pub(super) fn remove(&mut self, tag: SubscriptionTag, reason: CancelReason) -> bool {
        let Some(consumer) = self.consumers.remove(&tag) else {
            return false;
        };
        consumer.sink.send_cancel(tag, reason);
        self.demand_out = self.demand_out.saturating_sub(consumer.outstanding);
        self.stats.set_demand_out(self.demand_out);
        self.stats.set_consumers(self.consumers.len());
        true
    }

    /// Sends what the dispatcher pushed to `deliveries`, never more than a consumer
    /// asked for: a batch beyond its demand is cut (and an error logged), and the
    /// excess goes in front of `leftovers`, as do batches for no subscription (those
    /// events came before the ones the dispatcher left). Returns how many events were
    /// lost to consumers that are gone (their cancellations are on their way).
    ///
    /// Inlined into its one caller: once per delivery, a call's cost shows.
    #[inline(always)]
    pub(super) fn send(&mut self, deliveries: &mut Deliveries<T>, leftovers: &mut Vec<T>) -> usize {
        let mut sent = Sent::default();
        while let Some((tag, batch)) = deliveries.next_batch() {
            self.send_batch(tag, batch, &mut sent);
        }
        self.settle(sent, leftovers)
    }

    /// [`Self::send`] for one batch the dispatcher gave without the delivery list.
    #[inline(always)]
    pub(super) fn send_one(
        &mut self,
        tag: SubscriptionTag,
        batch: Vec<T>,
        leftovers: &mut Vec<T>,
    ) -> usize {
        let mut sent = Sent::default();
        self.send_batch(tag, Parcel::Owned(batch), &mut sent);
        self.settle(sent, leftovers)
    }

    #[inline(always)]
    fn send_batch(&mut self, tag: SubscriptionTag, mut batch: Parcel<T>, sent: &mut Sent<T>) {
        let Some(consumer) = self.consumers.get_mut(&tag) else {
            tracing::error!(
                "dispatcher delivered {} events to unknown subscription {tag}; buffered",
                batch.len()
            );
            sent.excess.extend(batch.into_vec());
            return;
        };
        if batch.len() > consumer.outstanding {
            tracing::error!(
                "dispatcher sent {} events to {tag}, which asked for {}; the excess is buffered",
                batch.len(),
                consumer.outstanding
            );
            let mut events = batch.into_vec();
            sent.excess.extend(events.drain(consumer.outstanding..));
            batch = Parcel::Owned(events);
        }
        consumer.outstanding -= batch.len();
        self.demand_out = self.demand_out.saturating_sub(batch.len());
        let count = batch.len();
        match consumer.sink.send_events(tag, batch) {
            Ok(()) => sent.delivered += count,
            // The consumer is gone; its cancellation is on its way.
            Err(count) => sent.lost += count,
        }
    }

    /// After a send: the excess goes in front of `leftovers`, the counters are
    /// published; returns the events lost.
    #[inline(always)]
    fn settle(&mut self, sent: Sent<T>, leftovers: &mut Vec<T>) -> usize {
        let Sent {
            delivered,
            lost,
            mut excess,
        } = sent;
        if !excess.is_empty() {
            excess.append(leftovers);
            *leftovers = excess;
        }
        self.stats.add_emitted(delivered);
        self.stats.set_demand_out(self.demand_out);
        lost
    }

    /// What the consumers are told if the outbox is dropped.
    pub(super) fn set_exit_reason(&mut self, reason: &ExitReason) {
        self.exit_reason = reason.clone();
    }
}

/// What a send did so far.
struct Sent<T> {
    delivered: usize,
    lost: usize,
    /// Events beyond a consumer's demand, or for no subscription.
    excess: Vec<T>,
}

impl<T> Default for Sent<T> {
    fn default() -> Self {
        Sent {
            delivered: 0,
            lost: 0,
            excess: Vec::new(),
        }
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        for (tag, consumer) in self.consumers.drain() {
            consumer
                .sink
                .send_cancel(tag, CancelReason::Down(self.exit_reason.clone()));
        }
    }
}
