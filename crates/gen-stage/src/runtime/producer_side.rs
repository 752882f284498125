//! The producer half of a stage: consumers, dispatcher, buffer, demand mode.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::buffer::Buffer;
use crate::context::{Downstream, Outlet};
use crate::dispatcher::{Deliveries, Dispatcher, HeldMark, Subscriber};
use crate::error::UnknownSubscription;
use crate::exit::{BoxError, CancelReason, ExitReason, SharedError};
use crate::options::{BufferKeep, BufferSize, DemandMode, SubscribeOptions};
use crate::stats::{Side, StatsCell, SubscriptionDemand};
use crate::subscription::{StageId, SubscriptionTag, TagMap};
use crate::wire::EventSink;
use crate::wire::Parcel;

/// What an accumulating producer keeps until it forwards again, in order.
pub(crate) enum Stashed<T, M> {
    Demand(usize),
    Events(Vec<T>),
    /// Held behind the events stashed before it, as behind buffered ones.
    Held(Held<M>),
}

impl<T, M> Stashed<T, M> {
    fn len(&self) -> usize {
        match self {
            Stashed::Demand(_) | Stashed::Held(_) => 0,
            Stashed::Events(events) => events.len(),
        }
    }
}

/// Something that waits for the events buffered before it to go out.
pub(crate) enum Held<M> {
    /// An info message for `handle_message`.
    Info(M),
    /// A producer-consumer's upstream subscription ended: handled once the output
    /// that came before it has been delivered, so a finishing pipeline loses nothing
    /// (a graceful end with consumers to deliver to; otherwise handled at once).
    Cancelled(SubscriptionTag, CancelReason),
    /// The stage cancels one of its consumers, once the events buffered before this
    /// have gone out.
    CancelConsumer(SubscriptionTag, CancelReason),
    /// The stage cancelled one of its consumers: its `handle_cancel` runs, and the
    /// demand upstream the cancellation freed is produced.
    ConsumerRemoved(SubscriptionTag, CancelReason, usize),
}

struct ConsumerEntry<T> {
    sink: Box<dyn EventSink<T>>,
    consumer: StageId,
    /// Events asked for and not yet sent.
    outstanding: usize,
}

pub(crate) struct ProducerSide<T, M> {
    dispatcher: Box<dyn Dispatcher<T>>,
    deliveries: Deliveries<T>,
    consumers: TagMap<ConsumerEntry<T>>,
    buffer: Buffer<T, Held<M>>,
    buffer_size: BufferSize,
    buffer_keep: BufferKeep,
    mode: DemandMode,
    /// Upstream demand recorded while accumulating, in order.
    stash: VecDeque<Stashed<T, M>>,
    /// Events in `stash`.
    stashed_events: usize,
    /// Downstream demand not yet met: what the dispatcher asked upstream, less what
    /// the buffer served and what the dispatcher took since (drives a
    /// producer-consumer's input).
    pub(crate) unmet_demand: usize,
    /// What was held behind buffered events and has just been released by the buffer,
    /// in order (moved to `due` with a mark by [`Self::mark_released`]).
    released: Vec<Held<M>>,
    /// Released items, in order, each with a mark of the events the dispatcher held
    /// when it was released: it is ready once those have gone out.
    due: VecDeque<(HeldMark, Held<M>)>,
    /// Items ready ahead of everything, events held included (see [`Self::ready_now`]).
    immediate: Vec<Held<M>>,
    /// Discards not yet reported through the stage's hook.
    pub(crate) unreported_discards: usize,
    /// Upstream demand the dispatcher created outside `ask` (see
    /// [`Deliveries::demand_upstream`]), for the stage to serve.
    extra_upstream: usize,

    /// Told to consumers when this side is dropped.
    pub(crate) exit_reason: ExitReason,
    /// What the consumers asked for and were not sent yet, in all.
    demand_out: usize,
    stats: Arc<StatsCell>,
}

impl<T: Send + 'static, M> ProducerSide<T, M> {
    pub(crate) fn new(
        dispatcher: Box<dyn Dispatcher<T>>,
        size: BufferSize,
        keep: BufferKeep,
        mode: DemandMode,
        stats: Arc<StatsCell>,
    ) -> Self {
        ProducerSide {
            dispatcher,
            deliveries: Deliveries::new(),
            consumers: TagMap::default(),
            buffer: Buffer::new(size, keep),
            buffer_size: size,
            buffer_keep: keep,
            mode,
            stash: VecDeque::new(),
            stashed_events: 0,
            unmet_demand: 0,
            released: Vec::new(),
            due: VecDeque::new(),
            immediate: Vec::new(),
            unreported_discards: 0,
            extra_upstream: 0,

            exit_reason: ExitReason::Killed,
            demand_out: 0,
            stats,
        }
    }

    pub(crate) fn demand_mode(&self) -> DemandMode {
        self.mode
    }

    pub(crate) fn buffered_count(&self) -> usize {
        self.buffer.len() + self.dispatcher.held() + self.stashed_events
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Dispatches events to consumers with demand and buffers the rest; while
    /// accumulating, stashes them. Buffered events go out first: while some remain,
    /// new events join them.
    pub(crate) fn emit(&mut self, events: Vec<T>) {
        if events.is_empty() {
            return;
        }
        if self.mode == DemandMode::Accumulate {
            self.stash_events(events);
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

    /// Keeps events emitted while accumulating, in order with the stashed demand,
    /// within the buffer's size (discarding per its keep rule).
    fn stash_events(&mut self, mut events: Vec<T>) {
        let capacity = match self.buffer_size {
            BufferSize::Bounded(capacity) => capacity.saturating_sub(self.buffer.len()),
            BufferSize::Unbounded => usize::MAX,
        };
        let excess = (self.stashed_events + events.len()).saturating_sub(capacity);
        let mut discarded = 0;
        if excess > 0 {
            match self.buffer_keep {
                BufferKeep::First => {
                    let keep = events.len().saturating_sub(excess);
                    discarded += events.len() - keep;
                    events.truncate(keep);
                }
                BufferKeep::Last => {
                    let mut drop = excess;
                    // The oldest go: the buffer's (older than anything stashed), then
                    // the stash's, then the new ones.
                    while drop > 0 && self.buffer.len() > 0 {
                        let oldest = self.buffer.take(drop);
                        self.buffer.release_due(&mut self.released);
                        self.mark_released();
                        if oldest.is_empty() {
                            break;
                        }
                        drop -= oldest.len();
                        discarded += oldest.len();
                    }
                    for item in self.stash.iter_mut() {
                        if let Stashed::Events(old) = item {
                            let cut = drop.min(old.len());
                            old.drain(..cut);
                            drop -= cut;
                            discarded += cut;
                            if drop == 0 {
                                break;
                            }
                        }
                    }
                    let cut = drop.min(events.len());
                    events.drain(..cut);
                    discarded += cut;
                }
            }
        }
        self.count_discards(discarded);
        if !events.is_empty() {
            self.stash.push_back(Stashed::Events(events));
        }
        self.stashed_events = self.stash.iter().map(Stashed::len).sum();
    }

    fn store(&mut self, events: Vec<T>) {
        let discarded = self.buffer.store(events, &mut self.released);
        self.mark_released();
        self.count_discards(discarded);
        self.stats
            .set_buffered(self.buffer.len() + self.dispatcher.held());
    }

    pub(crate) fn count_discards(&mut self, discarded: usize) {
        self.unreported_discards += discarded;
        self.stats.add_discarded(discarded);
    }

    /// Runs the dispatcher (on new events, or on `buffered` ones) and sends its
    /// deliveries, never more than a consumer asked for. Returns how many of the events
    /// the dispatcher took (sent or held, once each however many consumers got them)
    /// and the leftovers.
    fn dispatch(&mut self, events: Vec<T>, buffered: bool) -> (usize, Vec<T>) {
        let count = events.len();
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

    /// Sends what the dispatcher pushed to `deliveries`, and collects the upstream
    /// demand and discards it recorded. What a faulty dispatcher delivered beyond
    /// demand (or to no subscription) goes in front of `leftovers`: those events came
    /// before the ones the dispatcher left.
    fn send_deliveries(&mut self, leftovers: &mut Vec<T>) -> usize {
        let mut delivered = 0;
        let mut lost = 0;
        let mut excess = Vec::new();
        for (tag, mut batch) in self.deliveries.drain_batches() {
            let Some(consumer) = self.consumers.get_mut(&tag) else {
                tracing::error!(
                    "dispatcher delivered {} events to unknown subscription {tag}; buffered",
                    batch.len()
                );
                excess.extend(batch.into_vec());
                continue;
            };
            if batch.len() > consumer.outstanding {
                tracing::error!(
                    "dispatcher sent {} events to {tag}, which asked for {}; the excess is buffered",
                    batch.len(),
                    consumer.outstanding
                );
                let mut events = batch.into_vec();
                excess.extend(events.drain(consumer.outstanding..));
                batch = Parcel::Owned(events);
            }
            consumer.outstanding -= batch.len();
            self.demand_out = self.demand_out.saturating_sub(batch.len());
            let count = batch.len();
            match consumer.sink.send_events(tag, batch) {
                Ok(()) => delivered += count,
                // The consumer is gone; its cancellation is on its way.
                Err(count) => lost += count,
            }
        }
        if !excess.is_empty() {
            excess.append(leftovers);
            *leftovers = excess;
        }
        let extra = self.deliveries.take_upstream_demand();
        self.extra_upstream = self.extra_upstream.saturating_add(extra);
        self.unmet_demand = self.unmet_demand.saturating_add(extra);
        lost += self.deliveries.take_discarded();
        self.count_discards(lost);
        self.stats.add_emitted(delivered);
        self.stats.set_demand_out(self.demand_out);
        self.stats
            .set_buffered(self.buffer.len() + self.dispatcher.held());
        delivered
    }

    /// Sends what a dispatcher call other than `dispatch` delivered; anything it could
    /// not send goes to the buffer.
    fn send_side_deliveries(&mut self) {
        if self.deliveries.is_idle() {
            // Nothing delivered, asked or discarded (the usual ask): nothing to update.
            return;
        }
        let mut leftovers = Vec::new();
        self.send_deliveries(&mut leftovers);
        if !leftovers.is_empty() {
            self.store(leftovers);
        }
    }

    /// Marks what the buffer just released with what the dispatcher holds now (the
    /// events emitted before it that a partition dispatcher may still hold).
    fn mark_released(&mut self) {
        if self.released.is_empty() {
            return;
        }
        let mark = self.dispatcher.held_mark();
        for item in self.released.drain(..) {
            self.due.push_back((mark.clone(), item));
        }
    }

    /// What is ready, in order: released items whose events held before them have
    /// gone out.
    pub(crate) fn take_ready(&mut self) -> Vec<Held<M>> {
        let mut ready = Vec::new();
        // Those already due came first; then those made ready at once.
        while self.is_due() {
            if let Some((_, item)) = self.due.pop_front() {
                ready.push(item);
            }
        }
        ready.append(&mut self.immediate);
        ready
    }

    fn is_due(&self) -> bool {
        self.due
            .front()
            .is_some_and(|(mark, _)| self.dispatcher.released_since(mark))
    }

    /// Whether [`Self::take_ready`] would return something.
    pub(crate) fn has_ready(&self) -> bool {
        !self.immediate.is_empty() || self.is_due()
    }

    /// Each consumer's demand not yet sent.
    pub(crate) fn demands(&self, into: &mut Vec<SubscriptionDemand>) {
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

    /// Registers a consumer; the subscription becomes active with [`Self::accept`].
    /// A tag already in use is refused (and the newcomer told).
    pub(crate) fn add_consumer(
        &mut self,
        tag: SubscriptionTag,
        sink: Box<dyn EventSink<T>>,
    ) -> Result<(), SharedError> {
        if self.consumers.contains_key(&tag) {
            let error = SharedError::from(BoxError::from("duplicated subscription"));
            sink.send_cancel(tag, CancelReason::Rejected(error.clone()));
            return Err(error);
        }
        let consumer = sink.consumer_id();
        self.consumers.insert(
            tag,
            ConsumerEntry {
                sink,
                consumer,
                outstanding: 0,
            },
        );
        self.stats.set_consumers(self.consumers.len());
        Ok(())
    }

    /// Hands the new subscription to the dispatcher. Returns the upstream demand left to
    /// serve, or the dispatcher's rejection (the consumer is then removed and told).
    pub(crate) fn accept(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> Result<usize, SharedError> {
        let consumer = self.consumers.get(&tag).map(|c| c.consumer);
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
        if let Some(consumer) = self.consumers.remove(&tag) {
            self.demand_out = self.demand_out.saturating_sub(consumer.outstanding);
            consumer.sink.send_cancel(tag, reason);
        }
        self.stats.set_consumers(self.consumers.len());
    }

    /// A consumer asked for more. Returns the upstream demand left after the buffer
    /// (0 while accumulating: it is stashed).
    pub(crate) fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> usize {
        let Some(consumer) = self.consumers.get_mut(&tag) else {
            tracing::debug!("ask for unknown subscription {tag} ignored");
            return 0;
        };
        consumer.outstanding = consumer.outstanding.saturating_add(demand);
        self.demand_out = self.demand_out.saturating_add(demand);
        self.stats.set_demand_out(self.demand_out);
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
        let consumer = self.consumers.remove(&tag)?;
        consumer.sink.send_cancel(tag, reason.clone());
        self.demand_out = self.demand_out.saturating_sub(consumer.outstanding);
        self.stats.set_demand_out(self.demand_out);
        self.stats.set_consumers(self.consumers.len());
        let upstream = self.dispatcher.cancel(tag, &mut self.deliveries);
        self.send_side_deliveries();
        if self.consumers.is_empty() {
            self.release_cancellations();
        }
        // A cancellation can free demand for events already buffered (broadcast).
        Some(self.serve(self.buffer.len().max(upstream), upstream))
    }

    /// Serves new demand: up to `limit` buffered events go out first, and what is left
    /// of `upstream` is returned for the stage to produce (or stashed when accumulating).
    fn serve(&mut self, limit: usize, upstream: usize) -> usize {
        if self.mode == DemandMode::Accumulate {
            if upstream > 0 {
                self.stash.push_back(Stashed::Demand(upstream));
            }
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
    fn drain_buffer(&mut self, limit: usize) -> usize {
        let mut served = 0;
        while served < limit && self.buffer.len() > 0 {
            let chunk = self.buffer.take(limit - served);
            let taken = chunk.len();
            let (consumed, leftovers) = self.dispatch(chunk, true);
            let stuck = !leftovers.is_empty();
            self.buffer.put_back(leftovers);
            self.buffer.release_due(&mut self.released);
            self.mark_released();
            served += consumed;
            if stuck || taken == 0 {
                break;
            }
        }
        self.stats
            .set_buffered(self.buffer.len() + self.dispatcher.held());
        served
    }

    /// Holds `item` until every event buffered now has gone out, those the dispatcher
    /// holds included.
    pub(crate) fn after_buffered(&mut self, item: Held<M>) {
        // While accumulating, what is emitted is stashed, not buffered: the item waits
        // in the stash behind it, and is replayed in order when forwarding again.
        let behind_stash = self
            .stash
            .iter()
            .any(|stashed| !matches!(stashed, Stashed::Demand(_)));
        if behind_stash {
            self.stash.push_back(Stashed::Held(item));
            return;
        }
        if let Some(item) = self.buffer.store_info(item) {
            self.released.push(item);
            self.mark_released();
        }
    }

    /// Makes `item` ready at once, ahead of every event buffered or held.
    pub(crate) fn ready_now(&mut self, item: Held<M>) {
        self.immediate.push(item);
    }

    /// The last consumer left: the upstream ends waiting for buffered output to go out
    /// would wait for ever, so they are ready now, in order (infos keep waiting for a
    /// consumer to come).
    fn release_cancellations(&mut self) {
        let is_cancel = |held: &Held<M>| matches!(held, Held::Cancelled(..));
        let due = std::mem::take(&mut self.due);
        let (cancelled, waiting): (VecDeque<_>, VecDeque<_>) =
            due.into_iter().partition(|(_, held)| is_cancel(held));
        self.due = waiting;
        self.immediate
            .extend(cancelled.into_iter().map(|(_, held)| held));
        self.buffer.take_infos_where(is_cancel, &mut self.immediate);
        let stash = std::mem::take(&mut self.stash);
        for stashed in stash {
            match stashed {
                Stashed::Held(held) if is_cancel(&held) => self.immediate.push(held),
                other => self.stash.push_back(other),
            }
        }
    }

    /// Switches the demand mode. Switching to forward sends the buffer and returns the
    /// stash, for the stage to [`replay`](Self::replay) in order: each stashed demand
    /// produces its events before the events stashed after it go out, as in GenStage.
    pub(crate) fn set_mode(&mut self, mode: DemandMode) -> VecDeque<Stashed<T, M>> {
        let was = std::mem::replace(&mut self.mode, mode);
        if was != DemandMode::Accumulate || mode != DemandMode::Forward {
            return Default::default();
        }
        let mut stash = std::mem::take(&mut self.stash);
        self.stashed_events = 0;
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
    pub(crate) fn replay(&mut self, item: Stashed<T, M>) -> usize {
        match item {
            Stashed::Held(held) => {
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

impl<T, M> Drop for ProducerSide<T, M> {
    fn drop(&mut self) {
        for (tag, consumer) in self.consumers.drain() {
            consumer
                .sink
                .send_cancel(tag, CancelReason::Down(self.exit_reason.clone()));
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
        self.consumers.keys().copied().collect()
    }

    fn cancel_consumer(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
        after_buffered: bool,
    ) -> Result<(), UnknownSubscription> {
        let reason = CancelReason::Cancelled(reason);
        if after_buffered {
            if !self.consumers.contains_key(&tag) {
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
