//! The messages stages exchange, and the type-erased ports through which a producer
//! reaches its consumers and a consumer its producers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::SubscribeError;
use crate::exit::{CancelReason, ExitReason};
use crate::kind::sealed::Halves;
use crate::kind::{EmitsEvents, ReceivesEvents, StageKind};
use crate::lifecycle::Lifecycle;
use crate::options::{DemandMode, SubscribeOptions};
use crate::stats::{StatsCell, SubscriptionDemand};
use crate::subscription::{StageId, SubscriptionTag};

/// Where a sync subscriber waits for the producer's answer.
pub(crate) type SubscribeReply = oneshot::Sender<Result<SubscriptionTag, SubscribeError>>;

/// Answers a sync subscriber, if there is one.
pub(crate) fn answer(
    reply: Option<SubscribeReply>,
    result: Result<SubscriptionTag, SubscribeError>,
) {
    if let Some(reply) = reply {
        let _ = reply.send(result);
    }
}

/// Everything a stage's mailbox carries, sorted by the half of the stage it is for.
///
/// The mail of a half carries the kind's proof that it has that half: `()` if it
/// has, `Infallible` if not (see [`Halves`]). A producer's loop therefore has no arm
/// for consumer mail, and a consumer's none for producer mail: nobody can build it.
pub(crate) enum Envelope<K: StageKind> {
    /// For the consumer half: from its producers, and the subscriptions its user asks.
    Consumer(ForConsumer<K::In>, <K as Halves>::Receives),
    /// For the producer half: from its consumers, and the demand mode its user sets.
    Producer(ForProducer<K::Out>, <K as Halves>::Emits),
    /// For the stage as a whole.
    Stage(ForStage<K::Message>),
}

/// Mail for a stage's consumer half.
pub(crate) enum ForConsumer<T> {
    // From producers.
    Events {
        tag: SubscriptionTag,
        /// Copied here, on the consumer's task, if other consumers share it.
        events: Parcel<T>,
    },
    ProducerCancelled {
        tag: SubscriptionTag,
        reason: CancelReason,
    },
    /// From the stage's user.
    Request(ConsumerRequest<T>),
}

/// What a stage's user asks of its consumer half.
pub(crate) enum ConsumerRequest<T> {
    SubscribeTo(Box<SubscribeToRequest<T>>),
    Cancel {
        tag: SubscriptionTag,
        reason: ExitReason,
    },
    /// A manual ask.
    Ask {
        tag: SubscriptionTag,
        demand: usize,
    },
}

/// Mail for a stage's producer half.
pub(crate) enum ForProducer<T> {
    // From consumers.
    Subscribe(Box<SubscribeRequest<T>>),
    Ask {
        tag: SubscriptionTag,
        demand: usize,
    },
    ConsumerCancelled {
        tag: SubscriptionTag,
        reason: CancelReason,
    },
    /// From the stage's user.
    Request(ProducerRequest),
}

/// What a stage's user asks of its producer half.
pub(crate) enum ProducerRequest {
    SetDemandMode(DemandMode),
    DemandModeQuery(oneshot::Sender<DemandMode>),
    BufferedQuery(oneshot::Sender<usize>),
}

/// Mail for the stage as a whole.
pub(crate) enum ForStage<M> {
    Message(M),
    Info {
        message: M,
        queued: Option<oneshot::Sender<()>>,
    },
    DemandSnapshot(oneshot::Sender<Vec<SubscriptionDemand>>),
    /// A stop asked from outside; the loop has already seen it in the stage's
    /// lifecycle requests, which overtake the mailbox: this wakes a loop waiting for mail.
    Stop(ExitReason),
    /// Wakes a loop waiting for mail to read its lifecycle requests.
    Wake,
    /// Answered when the loop takes it: everything queued before has been dealt with.
    Barrier(oneshot::Sender<()>),
    /// The stage may be unreachable (see [`crate::reachability`]): it checks, and
    /// stops if it is.
    CheckReachable,
}

impl<K: ReceivesEvents> Envelope<K> {
    /// Mail for the consumer half of a stage that has one.
    pub(crate) fn consumer(mail: ForConsumer<K::In>) -> Self {
        Envelope::Consumer(mail, ())
    }

    /// A request from the user to the consumer half.
    pub(crate) fn consumer_request(request: ConsumerRequest<K::In>) -> Self {
        Envelope::Consumer(ForConsumer::Request(request), ())
    }
}

impl<K: EmitsEvents> Envelope<K> {
    /// Mail for the producer half of a stage that has one.
    pub(crate) fn producer(mail: ForProducer<K::Out>) -> Self {
        Envelope::Producer(mail, ())
    }

    /// A request from the user to the producer half.
    pub(crate) fn producer_request(request: ProducerRequest) -> Self {
        Envelope::Producer(ForProducer::Request(request), ())
    }
}

impl<K: StageKind> Envelope<K> {
    /// Events this envelope brings to be handled.
    pub(crate) fn event_count(&self) -> usize {
        match self {
            Envelope::Consumer(ForConsumer::Events { events, .. }, _) => events.len(),
            _ => 0,
        }
    }

    /// Whether it is a user message, counted in the stage's entry bound.
    pub(crate) fn is_user_message(&self) -> bool {
        matches!(
            self,
            Envelope::Stage(ForStage::Message(_) | ForStage::Info { .. })
        )
    }

    /// Disposes of mail the stage will not handle (it stopped, or its mailbox is a view
    /// that does not take it): its events are counted as unhandled in `stats`, a
    /// subscription is refused (see [`SubscribeRequest::refuse`]) with the reason the
    /// stage stops for, or `not_stopping`'s if it has not begun to stop; anything else
    /// is dropped, and calls waiting on it fail.
    pub(crate) fn dispose(
        self,
        stats: &StatsCell,
        life: &Lifecycle,
        not_stopping: impl FnOnce() -> ExitReason,
    ) {
        stats.add_unhandled(self.event_count());
        if let Envelope::Producer(ForProducer::Subscribe(request), _) = self {
            request.refuse(|| life.stopping().cloned().unwrap_or_else(not_stopping));
        }
    }
}

/// A consumer's request to subscribe, as its producer receives it. Boxed in the
/// envelope: subscriptions are rare, and every message pays for the envelope's size
/// (it is copied into the mailbox and out of it).
pub(crate) struct SubscribeRequest<T> {
    pub(crate) tag: SubscriptionTag,
    pub(crate) sink: Box<dyn EventSink<T>>,
    pub(crate) options: SubscribeOptions,
    pub(crate) reply: Option<SubscribeReply>,
}

impl<T> SubscribeRequest<T> {
    /// Refuses the subscription of a stage that will not handle it. A sync subscriber
    /// learns it from the answer (its consumer stays up); an async one is told the
    /// producer went down with `stopped()`.
    pub(crate) fn refuse(self, stopped: impl FnOnce() -> ExitReason) {
        if self.reply.is_some() {
            self.reject(SubscribeError::ProducerNotAlive);
        } else {
            self.sink
                .send_cancel(self.tag, CancelReason::Down(stopped()));
        }
    }

    /// Rejects the subscription with `refusal`: the subscriber is told (and a sync one
    /// answered) as when a producer's hook rejects it.
    pub(crate) fn reject(self, refusal: SubscribeError) {
        let SubscribeRequest {
            tag, sink, reply, ..
        } = self;
        sink.send_cancel(tag, CancelReason::Rejected(Arc::new(refusal.clone())));
        answer(reply, Err(refusal));
    }
}

/// A request to a consumer to subscribe to `producer`; boxed as [`SubscribeRequest`].
pub(crate) struct SubscribeToRequest<T> {
    /// Chosen by the sender, so that it can cancel a subscription it gave up on.
    pub(crate) tag: SubscriptionTag,
    pub(crate) producer: Box<dyn ProducerPort<T>>,
    pub(crate) options: SubscribeOptions,
    pub(crate) reply: Option<SubscribeReply>,
}

/// A consumer, as its producer sees it: where to send events and cancellations.
pub(crate) trait EventSink<T>: Send + Sync {
    /// Sends events; if the consumer is gone, says how many were lost.
    fn send_events(&self, tag: SubscriptionTag, events: Parcel<T>) -> Result<(), usize>;
    /// Tells the consumer the subscription ended.
    fn send_cancel(&self, tag: SubscriptionTag, reason: CancelReason);
    /// The consumer's identity: the same for all its subscriptions.
    fn consumer_id(&self) -> StageId;
}

/// A producer, as its consumer sees it.
pub(crate) trait ProducerPort<T>: Send + Sync {
    /// Asks the producer to accept a subscription; gives the reply back if it is gone.
    /// A request the producer will not handle after all is refused (see
    /// [`SubscribeRequest::refuse`]).
    fn subscribe(
        &self,
        tag: SubscriptionTag,
        sink: Box<dyn EventSink<T>>,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    ) -> Result<(), Option<SubscribeReply>>;
    /// Asks for `demand` more events; `false` if the producer is gone.
    fn ask(&self, tag: SubscriptionTag, demand: usize) -> bool;
    /// Ends the subscription.
    fn cancel(&self, tag: SubscriptionTag, reason: CancelReason);
    /// The producer's identity.
    fn stage_id(&self) -> StageId;
}

/// Events on their way to one consumer: its own, or shared with other consumers until
/// each takes its copy (see [`Deliveries::push_to_each`](crate::dispatcher::Deliveries::push_to_each)).
pub(crate) enum Parcel<T> {
    Owned(Vec<T>),
    Shared(Arc<dyn SharedEvents<T>>),
}

impl<T> Parcel<T> {
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Parcel::Owned(events) => events,
            Parcel::Shared(shared) => shared.as_slice(),
        }
    }

    /// The consumer's own events: a shared batch is copied, unless no other consumer
    /// holds it any more.
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            Parcel::Owned(events) => events,
            Parcel::Shared(shared) => shared.take(),
        }
    }
}

/// A batch shared by several consumers. A trait object, so that a batch of events of
/// any type can travel in a mailbox: only events that can be shared across tasks and
/// copied (`Clone + Send + Sync`) implement it.
pub(crate) trait SharedEvents<T>: Send + Sync {
    fn as_slice(&self) -> &[T];
    /// The events, copied unless this was the last holder.
    fn take(self: Arc<Self>) -> Vec<T>;
}

impl<T: Clone + Send + Sync> SharedEvents<T> for Vec<T> {
    fn as_slice(&self) -> &[T] {
        self
    }

    fn take(self: Arc<Self>) -> Vec<T> {
        Arc::try_unwrap(self).unwrap_or_else(|shared| shared.as_slice().to_vec())
    }
}

/// Where a handle sends its envelopes: the stage's mailbox, or a view of another
/// stage's mailbox (a [`Delegate`](crate::Delegate)'s inner producer sees its wrapper
/// through one).
pub(crate) enum Address<K: StageKind> {
    Mailbox(mpsc::UnboundedSender<Envelope<K>>),
    Forwarded(Arc<dyn Forward<K>>),
}

/// A view of a mailbox of another type, translating what it can.
pub(crate) trait Forward<K: StageKind>: Send + Sync {
    /// Sends `envelope` translated; gives it back if it cannot be delivered.
    fn send(&self, envelope: Envelope<K>) -> Result<(), Envelope<K>>;
    fn is_closed(&self) -> bool;
    /// Completes once the mailbox behind the view has closed.
    fn closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<K: StageKind> Address<K> {
    // Inlined: one branch on the hot path of every send (the view is rare), and the
    // envelope is not moved through a call of its own.
    #[inline(always)]
    pub(crate) fn send(&self, envelope: Envelope<K>) -> Result<(), Envelope<K>> {
        match self {
            Address::Mailbox(sender) => sender.send(envelope).map_err(|error| error.0),
            Address::Forwarded(view) => view.send(envelope),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Address::Mailbox(sender) => sender.is_closed(),
            Address::Forwarded(view) => view.is_closed(),
        }
    }

    pub(crate) async fn closed(&self) {
        match self {
            Address::Mailbox(sender) => sender.closed().await,
            Address::Forwarded(view) => view.closed().await,
        }
    }
}

impl<K: StageKind> Clone for Address<K> {
    fn clone(&self) -> Self {
        match self {
            Address::Mailbox(sender) => Address::Mailbox(sender.clone()),
            Address::Forwarded(view) => Address::Forwarded(view.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::ProducerKind;
    use crate::source::{IterSource, SourceProducer};

    #[test]
    fn an_envelope_stays_small_so_that_every_message_copies_little() {
        // Every message is copied into the mailbox and out of it: the rare, large
        // requests (subscriptions) are boxed so that events and asks do not pay for them.
        // Events carry a tag and a `Vec`; a cancellation's reason is the largest inline.
        type Numbers = SourceProducer<IterSource<std::ops::Range<u64>>>;
        let size = std::mem::size_of::<Envelope<ProducerKind<Numbers>>>();
        assert!(size <= 48, "an envelope takes {size} bytes");
    }
}
