//! Consuming producers as a `futures::Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use tokio::sync::mpsc;

use crate::demand::Batch;
use crate::error::SubscribeError;
use crate::exit::{CancelMode, CancelReason, ExitReason};
use crate::options::SubscribeOptions;
use crate::runtime::consumer_side::ConsumerSide;
use crate::stats::StatsCell;
use crate::subscription::{AskMode, StageId, SubscriptionTag};
use crate::upstream::Upstream;
use crate::upstream::sealed::Ports;
use crate::wire::Parcel;
use crate::wire::{EventSink, ProducerPort};

enum Delivery<T> {
    Events(SubscriptionTag, Parcel<T>),
    Cancelled(SubscriptionTag, CancelReason),
}

struct StreamSink<T>(mpsc::UnboundedSender<Delivery<T>>, StageId);

impl<T: Send + 'static> EventSink<T> for StreamSink<T> {
    fn send_events(&self, tag: SubscriptionTag, events: Parcel<T>) -> Result<(), usize> {
        let count = events.len();
        self.0
            .send(Delivery::Events(tag, events))
            .map_err(|_| count)
    }

    fn send_cancel(&self, tag: SubscriptionTag, reason: CancelReason) {
        let _ = self.0.send(Delivery::Cancelled(tag, reason));
    }

    fn consumer_id(&self) -> StageId {
        self.1
    }
}

/// Events of one or more producers as a [`Stream`], with back-pressure.
///
/// Made by [`subscribe`]. Nothing is asked until the stream is first polled; then each
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
    /// Its subscriptions and their demand, kept as a consumer stage keeps them.
    side: ConsumerSide<T>,
    batches: VecDeque<(SubscriptionTag, Batch<T>)>,
    current: std::vec::IntoIter<T>,
    ask_when_done: Option<(SubscriptionTag, usize)>,
    end_reason: Option<ExitReason>,
}

/// Consumes `producer` as a [`Stream`] of its events: subscribes a new [`EventStream`]
/// to it with `options`. Add producers with [`EventStream::subscribe_to`].
///
/// # Errors
///
/// [`SubscribeError::InvalidOptions`] if the options are invalid.
pub fn subscribe<T: Send + 'static>(
    producer: &impl Upstream<T>,
    options: SubscribeOptions,
) -> Result<EventStream<T>, SubscribeError> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let id = StageId::next();
    let mut stream = EventStream {
        id,
        sender,
        receiver,
        waiting: Vec::new(),
        side: ConsumerSide::new(Arc::new(StatsCell::default()), id),
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
    pub fn subscribe_to(
        &mut self,
        producer: &impl Upstream<T>,
        options: SubscribeOptions,
    ) -> Result<(), SubscribeError> {
        options.validate()?;
        self.waiting.push((
            SubscriptionTag::next(),
            Ports::held_port(producer).into_inner(),
            options,
        ));
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
            let cancel = options.cancel_mode();
            let sink = Box::new(StreamSink(self.sender.clone(), self.id));
            let subscribed =
                self.side
                    .subscribe(tag, port, sink, options, AskMode::Automatic, None);
            if subscribed.is_err() && cancel != CancelMode::Temporary {
                // The rest of the waiting subscriptions are never made.
                self.end(ExitReason::NotAlive);
                return;
            }
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
        self.side
            .leave_all(&CancelReason::Cancelled(ExitReason::Normal));
    }

    fn receive(&mut self, delivery: Delivery<T>) {
        match delivery {
            Delivery::Events(tag, events) => {
                if let Some(batches) = self.side.batches(tag, events.into_vec()) {
                    self.batches.extend(batches.map(|batch| (tag, batch)));
                }
            }
            Delivery::Cancelled(tag, CancelReason::Rejected(error)) => {
                // A refused subscription drops out; if it was the last, the stream ends
                // and says why.
                if self.side.remove(tag).is_some() && self.side.is_empty() {
                    self.end_reason = Some(ExitReason::Error(error));
                }
            }
            Delivery::Cancelled(tag, reason) => {
                if let Some(cancel) = self.side.remove(tag) {
                    if cancel.stops_consumer(&reason) && !reason.exit_reason().is_normal() {
                        self.end(reason.exit_reason());
                    } else if cancel == CancelMode::Permanent {
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
    /// The same stream, yielding its events a batch at a time.
    ///
    /// Each batch is what a consumer's `handle_events` would be given: at most
    /// `max_demand - min_demand` events of one subscription, in order. The stream asks
    /// its producer for more when the next batch is pulled, that is once the code that
    /// pulled the previous one is done with it, as a consumer asks after its
    /// `handle_events`. Events of a batch already started with [`StreamExt::next`]
    /// come first, as a batch of their own.
    ///
    /// Batches cost one move per batch where events cost one per event: for code that
    /// works on slices (writing rows to a database, sending a request per batch), this
    /// is the cheaper way to pull.
    ///
    /// [`StreamExt::next`]: futures::StreamExt::next
    ///
    /// ```
    /// use futures::StreamExt;
    /// use gen_stage::SubscribeOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let producer = gen_stage::source::from_iter(0..10u32).start().await?;
    /// let options = SubscribeOptions::new().max_demand(4).min_demand(1);
    /// let batches = gen_stage::stream::subscribe(&producer, options)?.batches();
    /// let batches: Vec<Vec<u32>> = batches.collect().await;
    /// // Never more than max_demand - min_demand = 3 events in a batch, all in order.
    /// assert!(batches.iter().all(|batch| !batch.is_empty() && batch.len() <= 3));
    /// assert_eq!(batches.concat(), (0..10).collect::<Vec<_>>());
    /// # Ok(())
    /// # }
    /// ```
    pub fn batches(self) -> EventBatches<T> {
        EventBatches { stream: self }
    }

    /// Takes the next batch out of the stream's hands (not counting the rest of the one
    /// in hand): starts waiting subscriptions, asks for what the last batch used, then
    /// takes the batch from the queue or the channel.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<T>>> {
        if !self.waiting.is_empty() {
            self.start_subscriptions();
        }
        loop {
            if let Some((tag, demand)) = self.ask_when_done.take() {
                self.side.ask_after(tag, demand);
            }
            if let Some((tag, batch)) = self.batches.pop_front() {
                if batch.ask_after > 0 {
                    self.ask_when_done = Some((tag, batch.ask_after));
                }
                if batch.events.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(batch.events));
            }
            if self.side.is_empty() {
                return Poll::Ready(None);
            }
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(delivery)) => self.receive(delivery),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Takes the next batch in hand and its first event.
    #[inline(never)]
    fn poll_refill(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some(event) = self.current.next() {
                return Poll::Ready(Some(event));
            }
            match self.poll_batch(cx) {
                Poll::Ready(Some(events)) => self.current = events.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// An [`EventStream`] that yields `Vec`s of events, one per batch; made by
/// [`EventStream::batches`].
#[must_use = "streams do nothing unless polled"]
pub struct EventBatches<T> {
    stream: EventStream<T>,
}

impl<T: Send + 'static> EventBatches<T> {
    /// Adds another producer to the stream (see [`EventStream::subscribe_to`]).
    ///
    /// # Errors
    ///
    /// [`SubscribeError::InvalidOptions`] if the options are invalid.
    pub fn subscribe_to(
        &mut self,
        producer: &impl Upstream<T>,
        options: SubscribeOptions,
    ) -> Result<(), SubscribeError> {
        self.stream.subscribe_to(producer, options)
    }

    /// Why the stream ended early (see [`EventStream::end_reason`]).
    pub fn end_reason(&self) -> Option<&ExitReason> {
        self.stream.end_reason()
    }
}

impl<T: Send + 'static> Stream for EventBatches<T> {
    type Item = Vec<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<T>>> {
        let stream = &mut self.get_mut().stream;
        if stream.current.len() > 0 {
            // The rest of a batch started event by event.
            let rest = std::mem::replace(&mut stream.current, Vec::new().into_iter());
            return Poll::Ready(Some(rest.collect()));
        }
        stream.poll_batch(cx)
    }
}

impl<T: Send + 'static> FusedStream for EventBatches<T> {
    /// True once every subscription has ended and every event received has been
    /// pulled: the next poll returns `None`.
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<T> fmt::Debug for EventBatches<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventBatches").field(&self.stream).finish()
    }
}

impl<T: Send + 'static> FusedStream for EventStream<T> {
    /// True once the stream has returned `None`: every subscription has ended and
    /// every event received has been pulled.
    fn is_terminated(&self) -> bool {
        self.waiting.is_empty()
            && self.side.is_empty()
            && self.batches.is_empty()
            && self.current.len() == 0
    }
}

// The stream never pins its fields.
impl<T> Unpin for EventStream<T> {}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        self.side
            .leave_all(&CancelReason::Cancelled(ExitReason::Normal));
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("subscriptions", &self.side.len())
            .field("end_reason", &self.end_reason)
            .finish_non_exhaustive()
    }
}
