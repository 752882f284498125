//! Consuming producers as a `futures::Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use tokio::sync::mpsc;

use crate::demand::{AutoDemand, Batch};
use crate::error::SubscribeError;
use crate::exit::{CancelMode, CancelReason, ExitReason};
use crate::handle::StageRef;
use crate::kind::EmitsEvents;
use crate::options::SubscribeOptions;
use crate::protocol::{EventSink, ProducerPort};
use crate::subscription::{StageId, SubscriptionTag, TagMap};

enum Delivery<T> {
    Events(SubscriptionTag, Vec<T>),
    Cancelled(SubscriptionTag, CancelReason),
}

struct StreamSink<T>(mpsc::UnboundedSender<Delivery<T>>, StageId);

impl<T: Send + 'static> EventSink<T> for StreamSink<T> {
    fn send_events(&self, tag: SubscriptionTag, events: Vec<T>) -> Result<(), Vec<T>> {
        self.0
            .send(Delivery::Events(tag, events))
            .map_err(|error| match error.0 {
                Delivery::Events(_, events) => events,
                Delivery::Cancelled(..) => Vec::new(),
            })
    }

    fn send_cancel(&self, tag: SubscriptionTag, reason: CancelReason) {
        let _ = self.0.send(Delivery::Cancelled(tag, reason));
    }

    fn consumer_id(&self) -> StageId {
        self.1
    }
}

struct Upstream<T> {
    port: Box<dyn ProducerPort<T>>,
    cancel: CancelMode,
    demand: AutoDemand,
}

/// Events of one or more producers as a [`Stream`], with back-pressure.
///
/// Made by [`stream`]. Nothing is asked until the stream is first polled; then each
/// subscription asks `max_demand`, and asks again only as the events are pulled out,
/// so an unpolled stream holds its producers back. It ends once every subscription has
/// ended; a subscription whose cancel mode says so (a permanent one, or a transient one
/// ending abnormally) ends the whole stream at once, and [`EventStream::end_reason`]
/// then tells why. A subscription the producer refuses just drops out (and, if it was
/// the last, `end_reason` tells the refusal). Dropping the stream cancels its
/// subscriptions.
#[must_use = "streams do nothing unless polled"]
pub struct EventStream<T> {
    /// The stream's identity as a consumer.
    id: StageId,
    sender: mpsc::UnboundedSender<Delivery<T>>,
    receiver: mpsc::UnboundedReceiver<Delivery<T>>,
    waiting: Vec<(SubscriptionTag, Box<dyn ProducerPort<T>>, SubscribeOptions)>,
    upstreams: TagMap<Upstream<T>>,
    batches: VecDeque<(SubscriptionTag, Batch<T>)>,
    current: std::vec::IntoIter<T>,
    ask_when_done: Option<(SubscriptionTag, usize)>,
    end_reason: Option<ExitReason>,
}

/// Consumes `producer` as a [`Stream`] of its events.
///
/// # Errors
///
/// [`SubscribeError::InvalidOptions`] if the options are invalid.
pub fn stream<P: EmitsEvents>(
    producer: &StageRef<P>,
    options: SubscribeOptions,
) -> Result<EventStream<P::Out>, SubscribeError> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut stream = EventStream {
        id: StageId::next(),
        sender,
        receiver,
        waiting: Vec::new(),
        upstreams: TagMap::default(),
        batches: VecDeque::new(),
        current: Vec::new().into_iter(),
        ask_when_done: None,
        end_reason: None,
    };
    stream.subscribe_to(producer, options)?;
    Ok(stream)
}

impl<T: Send + 'static> EventStream<T> {
    /// Adds another producer to the stream. Its events are interleaved with the others
    /// as they arrive; each producer's own order is kept.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::InvalidOptions`] if the options are invalid.
    pub fn subscribe_to<P>(
        &mut self,
        producer: &StageRef<P>,
        options: SubscribeOptions,
    ) -> Result<(), SubscribeError>
    where
        P: EmitsEvents<Out = T>,
    {
        options.validate()?;
        self.waiting
            .push((SubscriptionTag::next(), producer.port(), options));
        Ok(())
    }

    /// Why the stream ended early: the reason of the subscription that ended it.
    /// `None` while it runs, and when every subscription ended without ending the
    /// stream (for example producers that finished normally).
    pub fn end_reason(&self) -> Option<&ExitReason> {
        self.end_reason.as_ref()
    }

    fn start_subscriptions(&mut self) {
        for (tag, port, options) in std::mem::take(&mut self.waiting) {
            let max = options.max_demand_value();
            let demand = AutoDemand::new(options.min_demand_value(), max);
            let cancel = options.cancel_mode();
            let sink = Box::new(StreamSink(self.sender.clone(), self.id));
            if port.subscribe(tag, sink, options, None).is_err() {
                if cancel != CancelMode::Temporary {
                    // The rest of the waiting subscriptions are never made.
                    self.end(ExitReason::NotAlive);
                    return;
                }
                continue;
            }
            port.ask(tag, max);
            self.upstreams.insert(
                tag,
                Upstream {
                    port,
                    cancel,
                    demand,
                },
            );
        }
    }

    fn end(&mut self, reason: ExitReason) {
        self.end_reason = Some(reason);
        self.cancel_all();
        self.batches.clear();
        self.current = Vec::new().into_iter();
        self.ask_when_done = None;
    }

    fn cancel_all(&mut self) {
        for (tag, upstream) in self.upstreams.drain() {
            upstream
                .port
                .cancel(tag, CancelReason::Cancelled(ExitReason::Normal));
        }
    }

    fn receive(&mut self, delivery: Delivery<T>) {
        match delivery {
            Delivery::Events(tag, events) => {
                if let Some(upstream) = self.upstreams.get_mut(&tag) {
                    let (batches, _excess) = upstream.demand.split(events);
                    self.batches
                        .extend(batches.into_iter().map(|batch| (tag, batch)));
                }
            }
            Delivery::Cancelled(tag, CancelReason::Rejected(error)) => {
                // A refused subscription drops out; if it was the last, the stream ends
                // and says why.
                if self.upstreams.remove(&tag).is_some() && self.upstreams.is_empty() {
                    self.end_reason = Some(ExitReason::Error(error));
                }
            }
            Delivery::Cancelled(tag, reason) => {
                if let Some(upstream) = self.upstreams.remove(&tag) {
                    if upstream.cancel.stops_consumer(&reason) && !reason.exit_reason().is_normal()
                    {
                        self.end(reason.exit_reason());
                    } else if upstream.cancel == CancelMode::Permanent {
                        // A permanent subscription that ended normally ends the stream
                        // once what it delivered has been pulled.
                        self.cancel_all();
                    }
                }
            }
        }
    }
}

impl<T: Send + 'static> Stream for EventStream<T> {
    type Item = T;

    // The common case, an event of the batch in hand, is inlined into the caller's
    // loop; everything else is out of line.
    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        match this.current.next() {
            Some(event) => Poll::Ready(Some(event)),
            None => this.poll_refill(cx),
        }
    }
}

impl<T: Send + 'static> EventStream<T> {
    /// Starts waiting subscriptions, asks for what the last batch used, and takes the
    /// next batch, from the queue or the channel.
    #[inline(never)]
    fn poll_refill(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if !self.waiting.is_empty() {
            self.start_subscriptions();
        }
        loop {
            if let Some(event) = self.current.next() {
                return Poll::Ready(Some(event));
            }
            if let Some((tag, demand)) = self.ask_when_done.take() {
                if let Some(upstream) = self.upstreams.get(&tag) {
                    upstream.port.ask(tag, demand);
                }
            }
            if let Some((tag, batch)) = self.batches.pop_front() {
                self.current = batch.events.into_iter();
                if batch.ask_after > 0 {
                    self.ask_when_done = Some((tag, batch.ask_after));
                }
                continue;
            }
            if self.upstreams.is_empty() {
                return Poll::Ready(None);
            }
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(delivery)) => self.receive(delivery),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: Send + 'static> FusedStream for EventStream<T> {
    /// True once the stream has returned `None`: every subscription has ended and
    /// every event received has been pulled.
    fn is_terminated(&self) -> bool {
        self.waiting.is_empty()
            && self.upstreams.is_empty()
            && self.batches.is_empty()
            && self.current.len() == 0
    }
}

// The stream never pins its fields.
impl<T> Unpin for EventStream<T> {}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        for (tag, upstream) in self.upstreams.drain() {
            upstream
                .port
                .cancel(tag, CancelReason::Cancelled(ExitReason::Normal));
        }
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("subscriptions", &self.upstreams.len())
            .field("end_reason", &self.end_reason)
            .finish_non_exhaustive()
    }
}
