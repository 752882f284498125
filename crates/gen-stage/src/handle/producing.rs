//! What a handle offers on a stage that emits: its demand mode and buffer, and the
//! port its consumers subscribe through.

use super::{DEFAULT_CALL_TIMEOUT, StageRef};
use crate::error::{CallError, NotAlive};
use crate::exit::CancelReason;
use crate::kind::EmitsEvents;
use crate::options::{DemandMode, SubscribeOptions};
use crate::subscription::{StageId, SubscriptionTag};
use crate::upstream::Upstream;
use crate::upstream::sealed::{Port, Ports};
use crate::wire::{
    Envelope, EventSink, ForProducer, ProducerPort, ProducerRequest, SubscribeReply,
    SubscribeRequest,
};

impl<K: EmitsEvents> StageRef<K> {
    /// The producer's demand mode.
    ///
    /// # Errors
    ///
    /// [`CallError::NotAlive`] if the stage is not alive; [`CallError::Timeout`] if it
    /// did not answer within [`DEFAULT_CALL_TIMEOUT`].
    pub async fn demand_mode(&self) -> Result<DemandMode, CallError> {
        self.query(
            |reply| Envelope::producer_request(ProducerRequest::DemandModeQuery(reply)),
            DEFAULT_CALL_TIMEOUT,
        )
        .await
    }

    /// Switches the demand mode. Switching to [`DemandMode::Forward`] serves the demand
    /// accumulated so far, in the order it came.
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage is not alive.
    pub fn set_demand_mode(&self, mode: DemandMode) -> Result<(), NotAlive> {
        self.send(Envelope::producer_request(ProducerRequest::SetDemandMode(
            mode,
        )))
        .map_err(|_| NotAlive)
    }

    /// How many events wait in the stage's buffer (info messages not counted).
    ///
    /// # Errors
    ///
    /// [`CallError::NotAlive`] if the stage is not alive; [`CallError::Timeout`] if it
    /// did not answer within [`DEFAULT_CALL_TIMEOUT`].
    pub async fn estimate_buffered_count(&self) -> Result<usize, CallError> {
        self.query(
            |reply| Envelope::producer_request(ProducerRequest::BufferedQuery(reply)),
            DEFAULT_CALL_TIMEOUT,
        )
        .await
    }

    /// A port for a consumer's table: it does not keep this stage reachable.
    pub(crate) fn port(&self) -> Box<dyn ProducerPort<K::Out>> {
        Box::new(self.uncounted())
    }

    /// A port for user code (a stream): it keeps this stage reachable.
    pub(crate) fn held_port(&self) -> Box<dyn ProducerPort<K::Out>> {
        Box::new(self.clone())
    }
}

impl<K: EmitsEvents> Upstream<K::Out> for StageRef<K> {}

impl<K: EmitsEvents> Ports<K::Out> for StageRef<K> {
    fn port(&self) -> Port<K::Out> {
        Port(StageRef::port(self))
    }

    fn held_port(&self) -> Port<K::Out> {
        Port(StageRef::held_port(self))
    }
}

impl<K: EmitsEvents> ProducerPort<K::Out> for StageRef<K> {
    fn subscribe(
        &self,
        tag: SubscriptionTag,
        sink: Box<dyn EventSink<K::Out>>,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    ) -> Result<(), Option<SubscribeReply>> {
        let request = SubscribeRequest {
            tag,
            sink,
            options,
            reply,
        };
        self.post(request, |request| {
            Envelope::producer(ForProducer::Subscribe(Box::new(request)))
        })
        .map_err(|request| request.reply)
    }

    fn ask(&self, tag: SubscriptionTag, demand: usize) -> bool {
        self.send(Envelope::producer(ForProducer::Ask { tag, demand }))
            .is_ok()
    }

    fn cancel(&self, tag: SubscriptionTag, reason: CancelReason) {
        let _ = self.send(Envelope::producer(ForProducer::ConsumerCancelled {
            tag,
            reason,
        }));
    }

    fn stage_id(&self) -> StageId {
        self.id
    }
}
