//! The messages stages exchange, and the type-erased ports through which a producer
//! reaches its consumers and a consumer its producers.

use tokio::sync::oneshot;

use crate::error::SubscribeError;
use crate::exit::{CancelReason, ExitReason};
use crate::kind::StageKind;
use crate::options::{DemandMode, SubscribeOptions};
use crate::subscription::{StageId, SubscriptionTag};

/// Where a sync subscriber waits for the producer's answer.
pub(crate) type SubscribeReply = oneshot::Sender<Result<SubscriptionTag, SubscribeError>>;

/// Everything a stage's mailbox carries.
pub(crate) enum Envelope<K: StageKind> {
    // From producers, to the consumer side.
    Events {
        tag: SubscriptionTag,
        events: Vec<K::In>,
    },
    ProducerCancelled {
        tag: SubscriptionTag,
        reason: CancelReason,
    },
    // From consumers, to the producer side.
    Subscribe {
        tag: SubscriptionTag,
        sink: Box<dyn EventSink<K::Out>>,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    },
    Ask {
        tag: SubscriptionTag,
        demand: usize,
    },
    ConsumerCancelled {
        tag: SubscriptionTag,
        reason: CancelReason,
    },
    // From users.
    Message(K::Message),
    Info {
        message: K::Message,
        queued: Option<oneshot::Sender<()>>,
    },
    SubscribeTo {
        /// Chosen by the sender, so that it can cancel a subscription it gave up on.
        tag: SubscriptionTag,
        producer: Box<dyn ProducerPort<K::In>>,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    },
    Cancel {
        tag: SubscriptionTag,
        reason: ExitReason,
    },
    AskManual {
        tag: SubscriptionTag,
        demand: usize,
    },
    SetDemandMode(DemandMode),
    DemandModeQuery(oneshot::Sender<DemandMode>),
    BufferedQuery(oneshot::Sender<usize>),
    DemandSnapshot(oneshot::Sender<Vec<crate::stats::SubscriptionDemand>>),
    Stop(ExitReason),
}

/// A consumer, as its producer sees it: where to send events and cancellations.
pub(crate) trait EventSink<T>: Send + Sync {
    /// Sends events; gives them back if the consumer is gone.
    fn send_events(&self, tag: SubscriptionTag, events: Vec<T>) -> Result<(), Vec<T>>;
    /// Tells the consumer the subscription ended.
    fn send_cancel(&self, tag: SubscriptionTag, reason: CancelReason);
    /// The consumer's identity: the same for all its subscriptions.
    fn consumer_id(&self) -> StageId;
}

/// A producer, as its consumer sees it.
pub(crate) trait ProducerPort<T>: Send + Sync {
    /// Asks the producer to accept a subscription; `false` if it is gone.
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
}
