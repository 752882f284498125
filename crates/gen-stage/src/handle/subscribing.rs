//! What a handle offers on a stage that receives: subscribing it to producers,
//! cancelling and asking, and the sink its producers send events to.

use std::num::NonZeroUsize;
use tokio::sync::oneshot;

use super::{DEFAULT_CALL_TIMEOUT, StageRef};
use crate::error::{NotAlive, SubscribeError};
use crate::exit::{CancelReason, ExitReason};
use crate::kind::ReceivesEvents;
use crate::options::SubscribeOptions;
use crate::subscription::{StageId, SubscriptionTag};
use crate::upstream::Upstream;
use crate::upstream::sealed::Ports;
use crate::wire::{
    ConsumerRequest, Envelope, EventSink, ForConsumer, Parcel, ProducerPort, SubscribeReply,
    SubscribeToRequest,
};

/// Cancels, when dropped, a subscription whose answer its caller did not wait for.
struct AbandonedSubscription<'a, K: ReceivesEvents> {
    consumer: &'a StageRef<K>,
    /// `None` once the answer came.
    tag: Option<SubscriptionTag>,
    reason: &'static str,
}

impl<K: ReceivesEvents> Drop for AbandonedSubscription<'_, K> {
    fn drop(&mut self) {
        if let Some(tag) = self.tag {
            let _ = self
                .consumer
                .send(Envelope::consumer_request(ConsumerRequest::Cancel {
                    tag,
                    reason: ExitReason::custom_shutdown(self.reason),
                }));
        }
    }
}

impl<K: ReceivesEvents> StageRef<K> {
    /// Subscribes this stage to `producer` and waits for the producer to accept.
    ///
    /// Only stages that receive events have this method: subscribing a producer to
    /// another stage does not compile.
    ///
    /// ```compile_fail,E0599
    /// use gen_stage::{BoxError, Producer, ProducerContext, ProducerRef, SubscribeOptions};
    ///
    /// struct Numbers;
    ///
    /// impl Producer for Numbers {
    ///     type Event = u64;
    ///     type Message = ();
    ///
    ///     async fn handle_demand(&mut self, _: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
    ///         Ok(Vec::new())
    ///     }
    /// }
    ///
    /// async fn wrong(a: ProducerRef<Numbers>, b: ProducerRef<Numbers>) {
    ///     a.subscribe_to(&b, SubscribeOptions::new()).await; // a producer has no input
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// Invalid options, a producer or consumer that is not alive, a rejection by the
    /// producer, or no answer within [`DEFAULT_CALL_TIMEOUT`]. A failed subscription
    /// never stops the consumer, unless its own `handle_producer_subscribed` hook failed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes (a `select!`, a timeout of your own)
    /// cancels the subscription, as a timeout does: it never goes live. A subscription
    /// the producer had already accepted then ends at once, and the consumer's
    /// `handle_cancel` sees it go.
    pub async fn subscribe_to(
        &self,
        producer: &impl Upstream<K::In>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, SubscribeError> {
        options.validate()?;
        self.subscribe_port(Ports::port(producer).into_inner(), options)
            .await
    }

    pub(crate) async fn subscribe_port(
        &self,
        producer: Box<dyn ProducerPort<K::In>>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, SubscribeError> {
        let (reply, receiver) = oneshot::channel();
        let tag = SubscriptionTag::next();
        self.request_subscription(tag, producer, options, Some(reply))
            .map_err(|_| SubscribeError::ConsumerNotAlive)?;
        // A subscription its caller gave up on (a timeout here, or the caller dropping
        // this future) must not go live later: the consumer cancels it once it gets
        // there (its mailbox is in order).
        let mut abandoned = AbandonedSubscription {
            consumer: self,
            tag: Some(tag),
            reason: "the caller stopped waiting for the subscription",
        };
        let outcome = match tokio::time::timeout(DEFAULT_CALL_TIMEOUT, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SubscribeError::ConsumerNotAlive),
            Err(_) => {
                abandoned.reason = "the subscription timed out";
                return Err(SubscribeError::Timeout);
            }
        };
        // Answered (accepted or refused): nothing to cancel.
        abandoned.tag = None;
        outcome
    }

    /// Subscribes this stage to `producer` without waiting for the outcome. A failure
    /// reaches the consumer's `handle_cancel` hook; a producer that is not alive then
    /// stops the consumer unless the subscription is temporary.
    ///
    /// # Errors
    ///
    /// Invalid options, or a consumer that is not alive.
    pub fn async_subscribe_to(
        &self,
        producer: &impl Upstream<K::In>,
        options: SubscribeOptions,
    ) -> Result<(), SubscribeError> {
        options.validate()?;
        self.request_subscription(
            SubscriptionTag::next(),
            Ports::port(producer).into_inner(),
            options,
            None,
        )
        .map_err(|_| SubscribeError::ConsumerNotAlive)
    }

    /// Sends the stage a request to subscribe to `producer` as `tag`.
    pub(crate) fn request_subscription(
        &self,
        tag: SubscriptionTag,
        producer: Box<dyn ProducerPort<K::In>>,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    ) -> Result<(), NotAlive> {
        // Joined from now: dropping the producer's last handle meanwhile does not stop it.
        crate::reachability::link(tag, self.id, producer.stage_id());
        self.send(Envelope::consumer_request(ConsumerRequest::SubscribeTo(
            Box::new(SubscribeToRequest {
                tag,
                producer,
                options,
                reply,
            }),
        )))
        .map_err(|_| NotAlive)
    }

    /// Cancels the subscription `tag` with `reason`, then subscribes again to
    /// `producer`. Unlike GenStage's resubscribe, the consumer never stops because of
    /// the cancellation it asked for.
    ///
    /// # Errors
    ///
    /// As for [`StageRef::subscribe_to`].
    ///
    /// # Cancel safety
    ///
    /// The cancellation is sent at once; dropping the future then cancels the new
    /// subscription, as for [`StageRef::subscribe_to`].
    pub async fn resubscribe(
        &self,
        tag: SubscriptionTag,
        reason: ExitReason,
        producer: &impl Upstream<K::In>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, SubscribeError> {
        options.validate()?;
        self.cancel(tag, reason)
            .map_err(|_| SubscribeError::ConsumerNotAlive)?;
        self.subscribe_to(producer, options).await
    }

    /// Cancels the subscription `tag`: the producer is told, `handle_cancel` runs with
    /// [`CancelReason::Cancelled`], and the consumer keeps running whatever the cancel
    /// mode (GenStage instead stops a permanent consumer that cancels).
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the consumer is not alive.
    pub fn cancel(&self, tag: SubscriptionTag, reason: ExitReason) -> Result<(), NotAlive> {
        self.send(Envelope::consumer_request(ConsumerRequest::Cancel {
            tag,
            reason,
        }))
        .map_err(|_| NotAlive)
    }

    /// Asks the producer of a manual subscription for `demand` more events. The events
    /// still go to this consumer, whoever calls `ask` (GenStage reroutes them to the
    /// caller).
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the consumer is not alive.
    pub fn ask(&self, tag: SubscriptionTag, demand: NonZeroUsize) -> Result<(), NotAlive> {
        self.send(Envelope::consumer_request(ConsumerRequest::Ask {
            tag,
            demand: demand.get(),
        }))
        .map_err(|_| NotAlive)
    }

    pub(crate) fn sink(&self) -> Box<dyn EventSink<K::In>> {
        Box::new(self.uncounted())
    }
}

impl<K: ReceivesEvents> EventSink<K::In> for StageRef<K> {
    fn send_events(&self, tag: SubscriptionTag, events: Parcel<K::In>) -> Result<(), usize> {
        self.send(Envelope::consumer(ForConsumer::Events { tag, events }))
            .map_err(|envelope| envelope.event_count())
    }

    fn send_cancel(&self, tag: SubscriptionTag, reason: CancelReason) {
        // A producer that failed: the consumer may stop at once, ahead of the events
        // still queued from it (if its cancel mode stops it).
        if let CancelReason::Down(exit) = &reason {
            if !exit.is_graceful() && !self.mailbox.is_closed() {
                self.life.urgent_cancel(tag, reason.clone());
            }
        }
        let _ = self.send(Envelope::consumer(ForConsumer::ProducerCancelled {
            tag,
            reason,
        }));
    }

    fn consumer_id(&self) -> StageId {
        self.id
    }
}
