//! The producer half of a stage: a dispatcher deciding who gets what, the consumers it
//! sends to ([`Outbox`]), the events without demand ([`Buffer`], which also stashes
//! while accumulating), and what waits for buffered events to go out ([`HeldQueue`],
//! each item behind a [`Marker`] the dispatcher gives back once the events it held
//! before the item have gone).
//! This file composes them: it runs the dispatcher and keeps the demand accounts.

mod held;
mod outbox;

pub(crate) use held::Held;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::buffer::{Buffer, Stashed};
use crate::context::{Downstream, Outlet};
use crate::dispatcher::{ChosenDispatcher, Deliveries, Marker, Subscriber};
use crate::error::UnknownSubscription;
use crate::exit::{CancelReason, ExitReason, SharedError};
use crate::options::{BufferKeep, BufferSize, DemandMode, SubscribeOptions};
use crate::stats::{StatsCell, SubscriptionDemand};
use crate::subscription::{StageId, SubscriptionTag};
use crate::wire::EventSink;
use held::HeldQueue;
use outbox::Outbox;

pub(crate) struct ProducerSide<T, M> {
    /// First, so that it is dropped first: the consumers learn at once that the stage
    /// went down.
    outbox: Outbox<T>,
    dispatcher: ChosenDispatcher<T>,
    deliveries: Deliveries<T>,
    buffer: Buffer<T, Held<M>>,
    held: HeldQueue<M>,
    mode: DemandMode,
    /// Downstream demand not yet met: what the dispatcher asked upstream, less what
    /// the buffer served and what the dispatcher took since (drives a
    /// producer-consumer's input).
    unmet_demand: usize,
    /// Upstream demand the dispatcher created outside `ask` (see
    /// [`Deliveries::demand_upstream`]), for the stage to serve.
    extra_upstream: usize,
    /// Discards not yet reported through the stage's hook.
    unreported_discards: usize,
    stats: Arc<StatsCell>,
}

impl<T: Send + 'static, M> ProducerSide<T, M> {
    pub(crate) fn new(
        dispatcher: ChosenDispatcher<T>,
        size: BufferSize,
        keep: BufferKeep,
        mode: DemandMode,
        stats: Arc<StatsCell>,
    ) -> Self {
        ProducerSide {
            outbox: Outbox::new(stats.clone()),
            dispatcher,
            deliveries: Deliveries::new(),
            buffer: Buffer::new(size, keep),
            held: HeldQueue::new(),
            mode,
            unmet_demand: 0,
            extra_upstream: 0,
            unreported_discards: 0,
            stats,
        }
    }

    pub(crate) fn demand_mode(&self) -> DemandMode {
        self.mode
    }

    pub(crate) fn buffered_count(&self) -> usize {
        self.buffer.len() + self.dispatcher.held() + self.buffer.stashed()
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.outbox.len()
    }

    /// Whether consumers asked for events that no input has served yet (a
    /// producer-consumer handles input only then).
    pub(crate) fn has_unmet_demand(&self) -> bool {
        self.unmet_demand > 0
    }

    /// The discards made since the last call, for the stage's hook to report.
    /// Whether nothing waits for the stage's attention after a message: no demand a
    /// dispatcher created on its own, no held item ready, no discard to report. The
    /// usual case, checked before the stage runs its (costlier) flush.
    pub(crate) fn is_settled(&self) -> bool {
        self.extra_upstream == 0 && self.unreported_discards == 0 && !self.has_ready()
    }

    pub(crate) fn take_unreported_discards(&mut self) -> usize {
        std::mem::take(&mut self.unreported_discards)
    }

    /// What the consumers are told if this side is dropped.
    pub(crate) fn set_exit_reason(&mut self, reason: &ExitReason) {
        self.outbox.set_exit_reason(reason);
    }

    /// Dispatches events to consumers with demand and buffers the rest; while
    /// accumulating, stashes them. Buffered events go out first: while some remain,
    /// new events join them.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    pub(crate) fn emit(&mut self, events: Vec<T>) {
        if events.is_empty() {
            return;
        }
        if self.mode == DemandMode::Accumulate {
            let discarded = self.buffer.stash(events, self.held.released());
            self.queue_markers();
            self.count_discards(discarded);
            return;
        }
        if self.buffer.len() > 0 {
            // Demand that appears is served from the buffer when it appears (asks,
            // cancellations), so a buffer that remains has no demand left; a bounded
            // attempt keeps the work proportional to the new events.
            let served = self.drain_buffer(events.len().min(self.buffer.len()));
            self.unmet_demand = self.unmet_demand.saturating_sub(served);
        }
        // The dispatcher sees every new event, even behind a buffer it cannot drain
        // (it then takes none of them): it counts what arrives against what it asked.
        let (consumed, leftovers) = self.dispatch(events, false);
        self.unmet_demand = self.unmet_demand.saturating_sub(consumed);
        if !leftovers.is_empty() {
            self.store(leftovers);
        }
    }

    fn store(&mut self, events: Vec<T>) {
        let discarded = self.buffer.store(events, self.held.released());
        self.queue_markers();
        self.count_discards(discarded);
        self.count_buffered();
    }

    fn count_discards(&mut self, discarded: usize) {
        if discarded > 0 {
            self.unreported_discards += discarded;
            self.stats.add_discarded(discarded);
        }
    }

    /// Shows the events buffered and held by the dispatcher in the statistics.
    // A hint the compiler takes here (removing it costs 13 instructions per round trip).
    #[inline]
    fn count_buffered(&self) {
        self.stats
            .set_buffered(self.buffer.len() + self.dispatcher.held());
    }

    /// Runs the dispatcher (on new events, or on `buffered` ones) and sends its
    /// deliveries, never more than a consumer asked for. Returns how many of the events
    /// the dispatcher took (sent or held, once each however many consumers got them)
    /// and the leftovers.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    fn dispatch(&mut self, events: Vec<T>, buffered: bool) -> (usize, Vec<T>) {
        let count = events.len();
        // The usual case: the consumer with the most demand takes them all (new or
        // buffered alike: the demand dispatcher deals both the same way), sent without
        // the delivery list.
        if let Some(tag) = self.dispatcher.take_whole(count) {
            let mut leftovers = Vec::new();
            let lost = self.outbox.send_one(tag, events, &mut leftovers);
            self.count_discards(lost);
            self.count_buffered();
            return (count.saturating_sub(leftovers.len()), leftovers);
        }
        let discarded_before = self.deliveries.untaken_discards();
        let mut leftovers = if buffered {
            self.dispatcher
                .dispatch_buffered(events, &mut self.deliveries)
        } else {
            self.dispatcher.dispatch(events, &mut self.deliveries)
        };
        let discarded = self.deliveries.untaken_discards() - discarded_before;
        self.send_deliveries(&mut leftovers);
        (count.saturating_sub(leftovers.len() + discarded), leftovers)
    }

    /// Sends what the dispatcher pushed to `deliveries` (never more than a consumer
    /// asked for: see [`Outbox::send`]), and collects what else it recorded.
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    fn send_deliveries(&mut self, leftovers: &mut Vec<T>) {
        let lost = self.outbox.send(&mut self.deliveries, leftovers);
        if self.deliveries.has_records() {
            self.take_records();
        }
        self.count_discards(lost);
        self.count_buffered();
    }

    /// Takes what the dispatcher recorded besides batches: upstream demand it made,
    /// discards, markers given back.
    fn take_records(&mut self) {
        for marker in self.deliveries.take_released() {
            self.held.marker_back(marker);
        }
        let extra = self.deliveries.take_upstream_demand();
        self.extra_upstream = self.extra_upstream.saturating_add(extra);
        self.unmet_demand = self.unmet_demand.saturating_add(extra);
        let discarded = self.deliveries.take_discarded();
        self.count_discards(discarded);
    }

    /// Sends what a dispatcher call other than `dispatch` delivered; anything it could
    /// not send goes to the buffer.
    // Inlined: the usual ask leaves nothing to send, and a call cost more than the check.
    #[inline(always)]
    fn send_side_deliveries(&mut self) {
        if !self.deliveries.is_idle() {
            self.send_side_deliveries_now();
        }
        // Otherwise nothing was delivered, asked or discarded: nothing to update.
    }

    fn send_side_deliveries_now(&mut self) {
        let mut leftovers = Vec::new();
        self.send_deliveries(&mut leftovers);
        if !leftovers.is_empty() {
            self.store(leftovers);
        }
    }

    /// Queues what the buffer just let go behind a marker each, and hands the markers
    /// to the dispatcher: an item is ready once its marker is back, when the events
    /// the dispatcher holds now (emitted before the item) have gone out.
    fn queue_markers(&mut self) {
        if self.held.released().is_empty() {
            return;
        }
        for id in self.held.queue_released() {
            self.dispatcher
                .queue_marker(Marker::new(id), &mut self.deliveries);
        }
        self.send_side_deliveries();
    }

    /// What is ready, in order: released items whose events held before them have
    /// gone out, then those made ready at once.
    pub(crate) fn take_ready(&mut self) -> Vec<Held<M>> {
        self.held.take_ready()
    }

    /// Whether [`Self::take_ready`] would return something.
    pub(crate) fn has_ready(&self) -> bool {
        self.held.has_ready()
    }

    /// Each consumer's demand not yet sent.
    pub(crate) fn demands(&self, into: &mut Vec<SubscriptionDemand>) {
        self.outbox.demands(into);
    }

    /// Upstream demand the dispatcher created outside the calls that return it (a
    /// broadcast consumer's rejected events, asked again), served from the buffer first
    /// so that new events do not overtake buffered ones; returns what is left for the
    /// stage to produce.
    pub(crate) fn take_extra_upstream(&mut self) -> usize {
        let mut left: usize = 0;
        // Buffered events served may be rejected in turn and asked again: until none are
        // (each round takes buffered events, or ends).
        loop {
            let extra = std::mem::take(&mut self.extra_upstream);
            if extra == 0 || self.mode == DemandMode::Accumulate {
                return left.saturating_add(extra);
            }
            let served = self.drain_buffer(extra);
            self.unmet_demand = self.unmet_demand.saturating_sub(served);
            left = left.saturating_add(extra.saturating_sub(served));
        }
    }

    /// Whether the stage should say after each message whether more mail waits
    /// ([`Self::mail_waiting`]): only a dispatcher that may hold events back needs to
    /// know.
    #[inline(always)]
    pub(crate) fn wants_mail_hints(&self) -> bool {
        self.dispatcher.wants_idle()
    }

    /// After a message: whether more mail waits in the stage's mailbox. The dispatcher
    /// sees it during the next message; when none waits, it sends what it held back.
    pub(crate) fn mail_waiting(&mut self, more: bool) {
        self.deliveries.set_more_mail_waiting(more);
        if !more {
            self.dispatcher.idle(&mut self.deliveries);
            self.send_side_deliveries();
        }
    }

    /// Registers a consumer; the subscription becomes active with [`Self::accept`].
    /// A tag already in use is refused (and the newcomer told).
    pub(crate) fn add_consumer(
        &mut self,
        tag: SubscriptionTag,
        sink: Box<dyn EventSink<T>>,
    ) -> Result<(), SharedError> {
        self.outbox.add(tag, sink)
    }

    /// Hands the new subscription to the dispatcher. Returns the upstream demand left to
    /// serve, or the dispatcher's rejection (the consumer is then removed and told).
    pub(crate) fn accept(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> Result<usize, SharedError> {
        let consumer = self.outbox.consumer_id(tag);
        let subscriber = Subscriber::new(tag, consumer.unwrap_or(StageId::from_raw(0)), options);
        let subscribed = self.dispatcher.subscribe(&subscriber, &mut self.deliveries);
        self.send_side_deliveries();
        match subscribed {
            Ok(upstream) => Ok(self.serve(self.buffer.len().max(upstream), upstream)),
            Err(error) => {
                let error = SharedError::from(error);
                self.reject(tag, CancelReason::Rejected(error.clone()));
                Err(error)
            }
        }
    }

    /// Removes a consumer that was refused, telling it why.
    pub(crate) fn reject(&mut self, tag: SubscriptionTag, reason: CancelReason) {
        self.outbox.remove(tag, reason);
    }

    /// A consumer asked for more. Returns the upstream demand left after the buffer
    /// (0 while accumulating: it is stashed).
    // Inlined (one of the calls of an event's path: see BENCHMARKS.md, issue 18).
    #[inline(always)]
    pub(crate) fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> usize {
        if !self.outbox.ask(tag, demand) {
            tracing::debug!("ask for unknown subscription {tag} ignored");
            return 0;
        }
        let upstream = self.dispatcher.ask(tag, demand, &mut self.deliveries);
        self.send_side_deliveries();
        self.serve(demand.max(upstream), upstream)
    }

    /// A consumer left. Returns the upstream demand left to serve, or `None` if the
    /// subscription was unknown. The consumer gets `reason` back, after every event
    /// sent to it: a consumer that drains learns that nothing more will come.
    pub(crate) fn remove_consumer(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
    ) -> Option<usize> {
        if !self.outbox.remove(tag, reason.clone()) {
            return None;
        }
        let upstream = self.dispatcher.cancel(tag, &mut self.deliveries);
        self.send_side_deliveries();
        // A dispatcher may drop what it held for the consumer.
        self.count_buffered();
        if self.outbox.is_empty() {
            self.release_cancellations();
        }
        // A cancellation can free demand for events already buffered (broadcast).
        Some(self.serve(self.buffer.len().max(upstream), upstream))
    }

    /// Serves new demand: up to `limit` buffered events go out first, and what is left
    /// of `upstream` is returned for the stage to produce (or stashed when accumulating).
    #[inline]
    fn serve(&mut self, limit: usize, upstream: usize) -> usize {
        if self.mode == DemandMode::Accumulate {
            self.buffer.stash_demand(upstream);
            return 0;
        }
        let served = self.drain_buffer(limit);
        self.unmet_demand = self
            .unmet_demand
            .saturating_add(upstream)
            .saturating_sub(served);
        upstream.saturating_sub(served)
    }

    /// Dispatches up to `limit` buffered events, releasing info messages as their
    /// events go out. Returns how many the dispatcher took.
    // Inlined: the usual ask finds nothing buffered, and a call cost more than the check.
    #[inline(always)]
    fn drain_buffer(&mut self, limit: usize) -> usize {
        if self.buffer.len() == 0 {
            // Nothing buffered: nothing changes. (What the dispatcher holds changes
            // with what it records, which publishes the count: see `Dispatcher::held`;
            // a cancellation publishes it in any case.)
            0
        } else {
            self.drain_buffer_now(limit)
        }
    }

    fn drain_buffer_now(&mut self, limit: usize) -> usize {
        let mut served = 0;
        while served < limit && self.buffer.len() > 0 {
            let chunk = self.buffer.take(limit - served);
            let taken = chunk.len();
            let (consumed, leftovers) = self.dispatch(chunk, true);
            let stuck = !leftovers.is_empty();
            self.buffer.put_back(leftovers);
            self.buffer.release_due(self.held.released());
            self.queue_markers();
            served += consumed;
            if stuck || taken == 0 {
                break;
            }
        }
        self.count_buffered();
        served
    }

    /// Holds `item` until every event buffered now has gone out, those the dispatcher
    /// holds included (while accumulating, behind the events stashed).
    pub(crate) fn after_buffered(&mut self, item: Held<M>) {
        if let Some(item) = self.buffer.store_info(item) {
            self.held.released().push(item);
            self.queue_markers();
        }
    }

    /// Makes `item` ready at once, ahead of every event buffered or held.
    pub(crate) fn ready_now(&mut self, item: Held<M>) {
        self.held.ready_now(item);
    }

    /// The last consumer left: the upstream ends waiting for buffered output to go out
    /// would wait for ever, so they are ready now, in order (infos keep waiting for a
    /// consumer to come).
    fn release_cancellations(&mut self) {
        let buffer = &mut self.buffer;
        self.held
            .cancellations_now(|into| buffer.take_infos_where(Held::is_cancelled, into));
    }

    /// Switches the demand mode. Switching to forward sends the buffer and returns the
    /// stash, for the stage to [`replay`](Self::replay) in order: each stashed demand
    /// produces its events before the events stashed after it go out, as in GenStage.
    pub(crate) fn set_mode(&mut self, mode: DemandMode) -> VecDeque<Stashed<T, Held<M>>> {
        let was = std::mem::replace(&mut self.mode, mode);
        if was != DemandMode::Accumulate || mode != DemandMode::Forward {
            return Default::default();
        }
        let mut stash = self.buffer.take_stash();
        // Everything buffered is older than everything stashed (what is emitted while
        // accumulating is stashed, never buffered), and the consumers' asks reached the
        // dispatcher meanwhile: the buffer goes out first, and what it serves is taken
        // off the stashed demand, earliest first.
        let mut served = self.drain_buffer(self.buffer.len());
        for item in stash.iter_mut() {
            if let Stashed::Demand(demand) = item {
                let cut = served.min(*demand);
                *demand -= cut;
                served -= cut;
            }
        }
        stash
    }

    /// Replays one stashed item: events are dispatched, demand is served from the
    /// buffer. Returns the demand left for the stage to produce now.
    pub(crate) fn replay(&mut self, item: Stashed<T, Held<M>>) -> usize {
        match item {
            Stashed::Info(held) => {
                self.after_buffered(held);
                0
            }
            Stashed::Events(events) => {
                self.emit(events);
                0
            }
            Stashed::Demand(upstream) => self.serve(self.buffer.len().max(upstream), upstream),
        }
    }
}

impl<T: Send + 'static, M: Send + 'static> Outlet<T> for ProducerSide<T, M> {
    fn emit(&mut self, events: Vec<T>) {
        ProducerSide::emit(self, events);
    }

    fn downstream(&mut self) -> &mut dyn Downstream {
        self
    }
}

impl<T: Send + 'static, M: Send + 'static> Downstream for ProducerSide<T, M> {
    fn demand_mode(&self) -> DemandMode {
        ProducerSide::demand_mode(self)
    }

    fn buffered_count(&self) -> usize {
        ProducerSide::buffered_count(self)
    }

    fn consumer_count(&self) -> usize {
        ProducerSide::consumer_count(self)
    }

    fn consumers(&self) -> Vec<SubscriptionTag> {
        self.outbox.tags()
    }

    fn cancel_consumer(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
        after_buffered: bool,
    ) -> Result<(), UnknownSubscription> {
        let reason = CancelReason::Cancelled(reason);
        if after_buffered {
            if !self.outbox.contains(tag) {
                return Err(UnknownSubscription(tag));
            }
            self.after_buffered(Held::CancelConsumer(tag, reason));
        } else {
            // Gone from the dispatcher now: nothing more is sent to it.
            let upstream = self
                .remove_consumer(tag, &reason)
                .ok_or(UnknownSubscription(tag))?;
            self.ready_now(Held::ConsumerRemoved(tag, reason, upstream));
        }
        Ok(())
    }
}
