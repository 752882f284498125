//! The consumer half of a stage: its subscriptions to producers and their demand.

use std::sync::Arc;

use crate::demand::{AutoDemand, Batches};
use crate::error::UnknownSubscription;
use crate::exit::{CancelMode, CancelReason, ExitReason};
use crate::options::SubscribeOptions;
use crate::stats::{Side, StatsCell, SubscriptionDemand};
use crate::subscription::AskMode;
use crate::subscription::{SubscriptionTag, TagMap};
use crate::wire::{EventSink, ProducerPort, SubscribeReply};

struct Upstream<T> {
    port: Box<dyn ProducerPort<T>>,
    cancel: CancelMode,
    /// `None` for manual demand.
    auto: Option<AutoDemand>,
    /// Asked for and not yet received.
    asked: usize,
    /// Cancelled by a drain: what the producer sent before it learned of it is still
    /// handled, nothing more is asked, and the producer's acknowledgement ends it.
    closing: bool,
}

impl<T> Upstream<T> {
    /// Asks the producer for `demand` more events, unless the subscription is closing
    /// (a drain asks nothing more); true if it asked.
    fn ask(&mut self, tag: SubscriptionTag, demand: usize, stats: &StatsCell) -> bool {
        if self.closing {
            return false;
        }
        if self.port.ask(tag, demand) {
            stats.add_ask();
        }
        self.asked = self.asked.saturating_add(demand);
        true
    }
}

pub(crate) struct ConsumerSide<T> {
    producers: TagMap<Upstream<T>>,
    /// Subscriptions the stage cancelled itself; `handle_cancel` is still to run.
    pub(crate) self_cancelled: Vec<(SubscriptionTag, ExitReason)>,

    /// Told to producers when this side is dropped.
    pub(crate) exit_reason: ExitReason,
    /// Asked for and not yet received, over every subscription.
    demand_in: usize,
    /// The stage this side belongs to (see [`crate::reachability`]).
    me: crate::StageId,
    /// The subscription whose `handle_producer_subscribed` hook runs, and the demand
    /// the hook asked for: sent once the subscription is (GenStage's `ask` in
    /// `handle_subscribe`).
    pub(crate) subscribing: Option<(SubscriptionTag, usize)>,
    stats: Arc<StatsCell>,
}

impl<T: Send + 'static> ConsumerSide<T> {
    pub(crate) fn new(stats: Arc<StatsCell>, me: crate::StageId) -> Self {
        ConsumerSide {
            me,
            producers: TagMap::default(),
            self_cancelled: Vec::new(),
            exit_reason: ExitReason::Killed,
            demand_in: 0,
            subscribing: None,
            stats,
        }
    }

    pub(crate) fn tags(&self) -> Vec<SubscriptionTag> {
        self.producers.keys().copied().collect()
    }

    /// Sends the subscription to the producer and, with automatic demand, the first ask.
    /// Gives the reply back if the producer is gone.
    pub(crate) fn subscribe(
        &mut self,
        tag: SubscriptionTag,
        port: Box<dyn ProducerPort<T>>,
        sink: Box<dyn EventSink<T>>,
        options: SubscribeOptions,
        mode: AskMode,
        reply: Option<SubscribeReply>,
    ) -> Result<(), Option<SubscribeReply>> {
        let max = options.max_demand_value();
        let auto = match mode {
            AskMode::Automatic => Some(AutoDemand::new(options.min_demand_value(), max)),
            AskMode::Manual => None,
        };
        let cancel = options.cancel_mode();
        let asked_early = match self.subscribing.take() {
            Some((subscribing, demand)) if subscribing == tag => demand,
            _ => 0,
        };
        port.subscribe(tag, sink, options, reply)?;
        let first = if auto.is_some() { max } else { 0 };
        let first = first.saturating_add(asked_early);
        let asked = if first > 0 && port.ask(tag, first) {
            self.stats.add_ask();
            first
        } else {
            0
        };
        self.producers.insert(
            tag,
            Upstream {
                port,
                cancel,
                auto,
                asked,
                closing: false,
            },
        );
        self.add_demand_in(asked, 0);
        self.stats.set_producers(self.producers.len());
        Ok(())
    }

    /// Cuts a delivery into batches for `handle_events`; `None` if the subscription is
    /// unknown (the events are discarded and counted).
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    pub(crate) fn batches(&mut self, tag: SubscriptionTag, events: Vec<T>) -> Option<Batches<T>> {
        let Some(upstream) = self.producers.get_mut(&tag) else {
            self.stats.add_discarded(events.len());
            tracing::debug!(
                "{} events for unknown subscription {tag} discarded",
                events.len()
            );
            return None;
        };
        self.stats.add_delivery(events.len());
        let received = events.len().min(upstream.asked);
        upstream.asked -= received;
        self.demand_in -= received;
        self.stats.set_demand_in(self.demand_in);
        match upstream.auto.as_mut() {
            Some(auto) => {
                let (batches, excess) = auto.split(events);
                if excess > 0 {
                    self.stats.add_in_excess(excess);
                    tracing::error!("received {excess} events in excess from {tag}");
                }
                Some(batches)
            }
            None => Some(Batches::one(events, 0)),
        }
    }

    /// After a batch of `tag`'s delivery was handled: asks for what it used or, if the
    /// hook cancelled the subscription, drops the `rest` of the delivery (counted as
    /// discarded). False once no more of the delivery is to be handled.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    pub(crate) fn after_batch(
        &mut self,
        tag: SubscriptionTag,
        ask_after: usize,
        rest: &mut Batches<T>,
    ) -> bool {
        let Some(upstream) = self.producers.get_mut(&tag) else {
            let dropped: usize = rest.map(|batch| batch.events.len()).sum();
            if dropped > 0 {
                self.stats.add_discarded(dropped);
                tracing::debug!("{dropped} events of cancelled subscription {tag} discarded");
            }
            return false;
        };
        if ask_after > 0 && upstream.ask(tag, ask_after, &self.stats) {
            self.add_demand_in(ask_after, 0);
        }
        true
    }

    /// Counts events the stage will not handle: it stops.
    pub(crate) fn count_unhandled(&self, count: usize) {
        self.stats.add_unhandled(count);
    }

    pub(crate) fn ask_after(&mut self, tag: SubscriptionTag, demand: usize) {
        if demand == 0 {
            return;
        }
        if let Some(upstream) = self.producers.get_mut(&tag) {
            if upstream.ask(tag, demand, &self.stats) {
                self.add_demand_in(demand, 0);
            }
        }
    }

    /// Each subscription's demand asked and not yet received.
    pub(crate) fn demands(&self, into: &mut Vec<SubscriptionDemand>) {
        into.extend(
            self.producers
                .iter()
                .map(|(&tag, upstream)| SubscriptionDemand {
                    tag,
                    side: Side::ToProducer,
                    pending: upstream.asked,
                }),
        );
    }

    fn add_demand_in(&mut self, added: usize, removed: usize) {
        self.demand_in = self.demand_in.saturating_add(added).saturating_sub(removed);
        self.stats.set_demand_in(self.demand_in);
    }

    pub(crate) fn ask(
        &mut self,
        tag: SubscriptionTag,
        demand: usize,
    ) -> Result<(), UnknownSubscription> {
        let Some(upstream) = self.producers.get_mut(&tag) else {
            return match &mut self.subscribing {
                Some((subscribing, asked)) if *subscribing == tag => {
                    *asked = asked.saturating_add(demand);
                    Ok(())
                }
                _ => Err(UnknownSubscription(tag)),
            };
        };
        if upstream.ask(tag, demand, &self.stats) {
            self.add_demand_in(demand, 0);
        }
        Ok(())
    }

    /// Whether the end of `tag` with `reason` stops the stage (its cancel mode says
    /// so); false for a subscription it does not have, or one it is draining.
    pub(crate) fn stops_at(&self, tag: SubscriptionTag, reason: &CancelReason) -> bool {
        self.producers
            .get(&tag)
            .is_some_and(|upstream| !upstream.closing && upstream.cancel.stops_consumer(reason))
    }

    /// Starts a drain: every subscription is cancelled and closes once its producer
    /// acknowledges (after the events it sent before).
    pub(crate) fn begin_drain(&mut self, reason: &ExitReason) {
        for (&tag, upstream) in self.producers.iter_mut() {
            if !upstream.closing {
                upstream.closing = true;
                upstream
                    .port
                    .cancel(tag, CancelReason::Cancelled(reason.clone()));
            }
        }
    }

    /// Whether no subscription is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Cancels a subscription on the stage's own initiative.
    pub(crate) fn cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
    ) -> Result<(), UnknownSubscription> {
        let upstream = self
            .producers
            .remove(&tag)
            .ok_or(UnknownSubscription(tag))?;
        crate::reachability::unlink(tag, self.me);
        self.stats.set_producers(self.producers.len());
        self.add_demand_in(0, upstream.asked);
        upstream
            .port
            .cancel(tag, CancelReason::Cancelled(reason.clone()));
        self.self_cancelled.push((tag, reason));
        Ok(())
    }

    /// The producer ended the subscription: forget it. Returns its cancel mode, or
    /// `None` if it was unknown. A subscription closed by a drain never stops the
    /// stage: its mode is then temporary.
    pub(crate) fn remove(&mut self, tag: SubscriptionTag) -> Option<CancelMode> {
        let upstream = self.producers.remove(&tag)?;
        crate::reachability::unlink(tag, self.me);
        self.stats.set_producers(self.producers.len());
        self.add_demand_in(0, upstream.asked);
        Some(if upstream.closing {
            CancelMode::Temporary
        } else {
            upstream.cancel
        })
    }
}

impl<T> ConsumerSide<T> {
    /// Leaves every subscription at once, telling each producer `reason`.
    pub(crate) fn leave_all(&mut self, reason: &CancelReason) {
        for (tag, upstream) in self.producers.drain() {
            crate::reachability::unlink(tag, self.me);
            upstream.port.cancel(tag, reason.clone());
        }
        self.demand_in = 0;
        self.stats.set_demand_in(0);
        self.stats.set_producers(0);
    }

    /// How many subscriptions it holds.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }
}

impl<T> Drop for ConsumerSide<T> {
    fn drop(&mut self) {
        let reason = CancelReason::Down(self.exit_reason.clone());
        self.leave_all(&reason);
    }
}
