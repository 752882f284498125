//! The producer half of a stage: consumers, dispatcher, buffer, demand mode.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::buffer::Buffer;
use crate::dispatcher::{Deliveries, Dispatcher, Subscriber};
use crate::exit::{BoxError, CancelReason, ExitReason, SharedError};
use crate::options::{BufferKeep, BufferSize, DemandMode, SubscribeOptions};
use crate::protocol::EventSink;
use crate::stats::StatsCell;
use crate::subscription::{StageId, SubscriptionTag, TagMap};

/// Something that waits for the events buffered before it to go out.
pub(crate) enum Held<M> {
    /// An info message for `handle_message`.
    Info(M),
    /// A producer-consumer's upstream subscription ended: handled once the output
    /// that came before it has been delivered, so a finishing pipeline loses nothing.
    Cancelled(SubscriptionTag, CancelReason),
}

struct Downstream<T> {
    sink: Box<dyn EventSink<T>>,
    consumer: StageId,
    /// Events asked for and not yet sent.
    outstanding: usize,
}

pub(crate) struct ProducerSide<T, M> {
    dispatcher: Box<dyn Dispatcher<T>>,
    deliveries: Deliveries<T>,
    consumers: TagMap<Downstream<T>>,
    buffer: Buffer<T, Held<M>>,
    mode: DemandMode,
    /// Upstream demand recorded while accumulating, in order.
    stashed: VecDeque<usize>,
    /// Downstream demand not yet met (drives a producer-consumer's input).
    pub(crate) unmet_demand: usize,
    /// What was held behind buffered events and has been released by the buffer, in
    /// order; it is due once the dispatcher holds no events either.
    released: Vec<Held<M>>,
    /// Discards not yet reported through the stage's hook.
    pub(crate) unreported_discards: usize,
    /// Upstream demand the dispatcher created outside `ask` (see
    /// [`Deliveries::demand_upstream`]), for the stage to serve.
    extra_upstream: usize,

    /// Told to consumers when this side is dropped.
    pub(crate) exit_reason: ExitReason,
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
            mode,
            stashed: VecDeque::new(),
            unmet_demand: 0,
            released: Vec::new(),
            unreported_discards: 0,
            extra_upstream: 0,

            exit_reason: ExitReason::Killed,
            stats,
        }
    }

    pub(crate) fn demand_mode(&self) -> DemandMode {
        self.mode
    }

    pub(crate) fn buffered_count(&self) -> usize {
        self.buffer.len() + self.dispatcher.held()
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Dispatches events to consumers with demand and buffers the rest; while
    /// accumulating, buffers everything.
    pub(crate) fn emit(&mut self, events: Vec<T>) {
        if events.is_empty() {
            return;
        }
        if self.mode == DemandMode::Accumulate || self.consumers.is_empty() {
            self.store(events);
            return;
        }
        let (delivered, leftovers) = self.dispatch(events);
        self.unmet_demand = self.unmet_demand.saturating_sub(delivered);
        if !leftovers.is_empty() {
            self.store(leftovers);
        }
    }

    fn store(&mut self, events: Vec<T>) {
        let discarded = self.buffer.store(events, &mut self.released);
        self.count_discards(discarded);
        self.stats
            .set_buffered(self.buffer.len() + self.dispatcher.held());
    }

    pub(crate) fn count_discards(&mut self, discarded: usize) {
        self.unreported_discards += discarded;
        self.stats.add_discarded(discarded);
    }

    /// Runs the dispatcher and sends its deliveries, never more than a consumer asked
    /// for. Returns how many events went out and the leftovers.
    fn dispatch(&mut self, events: Vec<T>) -> (usize, Vec<T>) {
        let mut leftovers = self.dispatcher.dispatch(events, &mut self.deliveries);
        let delivered = self.send_deliveries(&mut leftovers);
        (delivered, leftovers)
    }

    /// Sends what the dispatcher pushed to `deliveries` (cutting any excess into
    /// `leftovers`), and collects the upstream demand and discards it recorded.
    fn send_deliveries(&mut self, leftovers: &mut Vec<T>) -> usize {
        let mut delivered = 0;
        let mut lost = 0;
        for (tag, mut batch) in self.deliveries.drain() {
            let Some(consumer) = self.consumers.get_mut(&tag) else {
                tracing::error!(
                    "dispatcher delivered {} events to unknown subscription {tag}; buffered",
                    batch.len()
                );
                leftovers.extend(batch);
                continue;
            };
            if batch.len() > consumer.outstanding {
                tracing::error!(
                    "dispatcher sent {} events to {tag}, which asked for {}; the excess is buffered",
                    batch.len(),
                    consumer.outstanding
                );
                leftovers.extend(batch.drain(consumer.outstanding..));
            }
            consumer.outstanding -= batch.len();
            delivered += batch.len();
            if let Err(events) = consumer.sink.send_events(tag, batch) {
                // The consumer is gone; its cancellation is on its way.
                lost += events.len();
            }
        }
        self.extra_upstream += self.deliveries.take_upstream_demand();
        lost += self.deliveries.take_discarded();
        self.count_discards(lost);
        self.stats.add_emitted(delivered);
        delivered
    }

    /// Sends what a dispatcher call other than `dispatch` delivered; anything it could
    /// not send goes to the buffer.
    fn send_side_deliveries(&mut self) {
        let mut leftovers = Vec::new();
        self.send_deliveries(&mut leftovers);
        if !leftovers.is_empty() {
            self.store(leftovers);
        }
    }

    /// What is due: items the buffer released, once the dispatcher holds no events
    /// (a partition dispatcher may hold events emitted before them).
    pub(crate) fn take_ready(&mut self) -> Vec<Held<M>> {
        if self.dispatcher.held() == 0 {
            std::mem::take(&mut self.released)
        } else {
            Vec::new()
        }
    }

    /// Whether [`Self::take_ready`] would return something.
    pub(crate) fn has_ready(&self) -> bool {
        !self.released.is_empty() && self.dispatcher.held() == 0
    }

    /// Upstream demand the dispatcher created outside the calls that return it.
    pub(crate) fn take_extra_upstream(&mut self) -> usize {
        std::mem::take(&mut self.extra_upstream)
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
            Downstream {
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
            Ok(upstream) => Ok(self.serve(upstream, upstream)),
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
        consumer.outstanding += demand;
        let upstream = self.dispatcher.ask(tag, demand, &mut self.deliveries);
        self.send_side_deliveries();
        self.serve(demand, upstream)
    }

    /// A consumer left. Returns the upstream demand left to serve, or `None` if the
    /// subscription was unknown.
    pub(crate) fn remove_consumer(&mut self, tag: SubscriptionTag) -> Option<usize> {
        self.consumers.remove(&tag)?;
        self.stats.set_consumers(self.consumers.len());
        let upstream = self.dispatcher.cancel(tag, &mut self.deliveries);
        self.send_side_deliveries();
        Some(self.serve(upstream, upstream))
    }

    /// Serves new demand: up to `limit` buffered events go out first, and what is left
    /// of `upstream` is returned for the stage to produce (or stashed when accumulating).
    fn serve(&mut self, limit: usize, upstream: usize) -> usize {
        if self.mode == DemandMode::Accumulate {
            if upstream > 0 {
                self.stashed.push_back(upstream);
            }
            return 0;
        }
        let served = self.drain_buffer(limit);
        upstream.saturating_sub(served)
    }

    /// Dispatches up to `limit` buffered events, releasing info messages as their
    /// events go out. Returns how many were delivered.
    fn drain_buffer(&mut self, limit: usize) -> usize {
        let mut served = 0;
        while served < limit && self.buffer.len() > 0 {
            let chunk = self.buffer.take(limit - served);
            let taken = chunk.len();
            let (delivered, leftovers) = self.dispatch(chunk);
            let stuck = !leftovers.is_empty();
            self.buffer.put_back(leftovers);
            self.buffer.release_due(&mut self.released);
            served += delivered;
            if stuck || taken == 0 {
                break;
            }
        }
        self.stats
            .set_buffered(self.buffer.len() + self.dispatcher.held());
        served
    }

    /// Holds `item` until every event buffered now has gone out (at once if none is).
    pub(crate) fn after_buffered(&mut self, item: Held<M>) {
        if let Some(item) = self.buffer.store_info(item) {
            self.released.push(item);
        }
    }

    /// Switches the demand mode. Returns the stashed demands to serve, in order, when
    /// switching to forward.
    pub(crate) fn set_mode(&mut self, mode: DemandMode) -> Vec<usize> {
        let was = std::mem::replace(&mut self.mode, mode);
        if was == DemandMode::Accumulate && mode == DemandMode::Forward {
            let stashed: Vec<usize> = self.stashed.drain(..).collect();
            stashed
                .into_iter()
                .map(|upstream| self.serve(upstream, upstream))
                .collect()
        } else {
            Vec::new()
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
