//! What hooks can do besides returning: emit events, ask, cancel, stop.

use std::num::NonZeroUsize;

use crate::error::{OptionsError, UnknownSubscription};
use crate::exit::ExitReason;
use crate::handle::StageRef;
use crate::kind::{
    ConsumerKind, EmitsEvents, ProducerConsumerKind, ProducerKind, ReceivesEvents, StageKind,
};
use crate::options::{DemandMode, SubscribeOptions};
use crate::protocol::Envelope;
use crate::runtime::{ConsumerSide, ProducerSide};
use crate::subscription::{StageId, SubscriptionTag};

/// The stage's view of itself inside a hook.
///
/// Write it with the aliases [`ProducerContext`], [`ConsumerContext`] and
/// [`ProducerConsumerContext`]. Methods that emit exist only on stages that emit, and
/// methods that ask or cancel only on stages that receive.
pub struct Context<'a, K: StageKind> {
    pub(crate) producer: Option<&'a mut ProducerSide<K::Out, K::Message>>,
    pub(crate) consumer: Option<&'a mut ConsumerSide<K::In>>,
    pub(crate) control: &'a mut Control<K>,
}

/// The context of a [`Producer`](crate::Producer)'s hooks.
pub type ProducerContext<'a, S> = Context<'a, ProducerKind<S>>;
/// The context of a [`Consumer`](crate::Consumer)'s hooks.
pub type ConsumerContext<'a, S> = Context<'a, ConsumerKind<S>>;
/// The context of a [`ProducerConsumer`](crate::ProducerConsumer)'s hooks.
pub type ProducerConsumerContext<'a, S> = Context<'a, ProducerConsumerKind<S>>;

/// Stage-wide state the hooks can change.
pub(crate) struct Control<K: StageKind> {
    pub(crate) me: StageRef<K>,
    pub(crate) stop: Option<ExitReason>,
}

impl<K: StageKind> std::fmt::Debug for Context<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stage", &self.control.me.id())
            .finish_non_exhaustive()
    }
}

impl<K: StageKind> Context<'_, K> {
    /// Stops the stage with `reason` once the current hook returns. Events already
    /// emitted are dispatched first; events still in the buffer are dropped.
    pub fn stop(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }

    /// Whether [`Context::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.control.stop.is_some()
    }

    /// A handle to this stage, to give to others or to send it messages later.
    pub fn stage_ref(&self) -> &StageRef<K> {
        &self.control.me
    }

    /// This stage's identity.
    pub fn id(&self) -> StageId {
        self.control.me.id()
    }
}

impl<K: EmitsEvents> Context<'_, K> {
    fn producer(&mut self) -> &mut ProducerSide<K::Out, K::Message> {
        self.producer
            .as_deref_mut()
            .expect("stages that emit events always have a producer side")
    }

    /// Dispatches `events` now, to consumers with demand; the rest is buffered.
    /// Events reach consumers in the order they are emitted, and before any reply the
    /// hook sends afterwards.
    pub fn emit(&mut self, events: Vec<K::Out>) {
        self.producer().emit(events);
    }

    /// The current demand mode.
    pub fn demand_mode(&mut self) -> DemandMode {
        self.producer().demand_mode()
    }

    /// Switches the demand mode once the current hook returns (see
    /// [`StageRef::set_demand_mode`]).
    pub fn set_demand_mode(&mut self, mode: DemandMode) {
        let _ = self.control.me.send(Envelope::SetDemandMode(mode));
    }

    /// Events waiting in the buffer.
    pub fn buffered_count(&mut self) -> usize {
        self.producer().buffered_count()
    }

    /// How many consumers are subscribed.
    pub fn consumer_count(&mut self) -> usize {
        self.producer().consumer_count()
    }
}

impl<K: ReceivesEvents> Context<'_, K> {
    fn consumer(&mut self) -> &mut ConsumerSide<K::In> {
        self.consumer
            .as_deref_mut()
            .expect("stages that receive events always have a consumer side")
    }

    /// Asks the producer of a manual subscription for `demand` more events. Mixing it
    /// with automatic demand is allowed but makes the consumer's limits yours to keep.
    ///
    /// It works from `handle_producer_subscribed` too, for the subscription the hook
    /// is about: the demand goes out as soon as the subscription does (GenStage's
    /// `ask` in `handle_subscribe`).
    ///
    /// # Errors
    ///
    /// [`UnknownSubscription`] if `tag` is not one of this stage's subscriptions.
    pub fn ask(
        &mut self,
        tag: SubscriptionTag,
        demand: NonZeroUsize,
    ) -> Result<(), UnknownSubscription> {
        self.consumer().ask(tag, demand.get())
    }

    /// Cancels the subscription `tag` now: no more events from it are handled, the
    /// producer is told, and `handle_cancel` runs once the current hook returns. The
    /// stage keeps running whatever the cancel mode.
    ///
    /// # Errors
    ///
    /// [`UnknownSubscription`] if `tag` is not one of this stage's subscriptions.
    pub fn cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
    ) -> Result<(), UnknownSubscription> {
        self.consumer().cancel(tag, reason)
    }

    /// Subscribes this stage to `producer` once the current hook returns, and returns
    /// the subscription's tag. A producer that is not alive is then reported to
    /// `handle_cancel`, as for [`StageRef::async_subscribe_to`].
    ///
    /// # Errors
    ///
    /// [`OptionsError`] if the options are invalid: nothing is subscribed.
    pub fn subscribe_to<P>(
        &mut self,
        producer: &StageRef<P>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, OptionsError>
    where
        P: EmitsEvents<Out = K::In>,
    {
        options.validate()?;
        let tag = SubscriptionTag::next();
        // The stage is running this hook: its mailbox is open.
        let _ = self
            .control
            .me
            .request_subscription(tag, producer.port(), options, None);
        Ok(tag)
    }

    /// The tags of the subscriptions to producers.
    pub fn subscriptions(&mut self) -> Vec<SubscriptionTag> {
        self.consumer().tags()
    }
}
