//! What hooks can do besides returning: emit events, ask, cancel, stop.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::{OptionsError, UnknownSubscription};
use crate::exit::ExitReason;
use crate::handle::StageRef;
use crate::kind::{
    ConsumerKind, EmitsEvents, ProducerConsumerKind, ProducerKind, ReceivesEvents, StageKind,
};
use crate::options::{DemandMode, SubscribeOptions};
use crate::subscription::{StageId, SubscriptionTag};
use crate::timers::TimerRef;
use crate::upstream::Upstream;
use crate::upstream::sealed::Ports;
use crate::wire::{Envelope, ProducerPort, ProducerRequest};

/// The stage's view of itself inside a hook.
///
/// Write it with the aliases [`ProducerContext`], [`ConsumerContext`] and
/// [`ProducerConsumerContext`]. Methods that emit exist only on stages that emit, and
/// methods that ask or cancel only on stages that receive.
pub struct Context<'a, K: StageKind> {
    control: &'a mut dyn StageControl<K>,
    outlet: &'a mut dyn Outlet<K::Out>,
    inlet: &'a mut dyn Inlet<K::In>,
}

/// The context of a [`Producer`](crate::Producer)'s hooks.
pub type ProducerContext<'a, S> = Context<'a, ProducerKind<S>>;
/// The context of a [`Consumer`](crate::Consumer)'s hooks.
pub type ConsumerContext<'a, S> = Context<'a, ConsumerKind<S>>;
/// The context of a [`ProducerConsumer`](crate::ProducerConsumer)'s hooks.
pub type ProducerConsumerContext<'a, S> = Context<'a, ProducerConsumerKind<S>>;

/// What a context does to the stage as a whole. The stage's loop implements it on its
/// own state; a [`Delegate`](crate::Delegate) implements it over its wrapper's.
pub(crate) trait StageControl<K: StageKind>: Send {
    /// The stage's handle, as its hooks see it.
    fn me(&self) -> &StageRef<K>;
    /// Records a stop asked by a hook (the last reason asked wins).
    fn stop(&mut self, reason: ExitReason);
    fn is_stopping(&self) -> bool;
    fn is_draining(&self) -> bool;
    fn send_after(&mut self, delay: Duration, message: K::Message) -> TimerRef;
    fn cancel_timer(&mut self, timer: TimerRef) -> bool;
    fn pending_timers(&self) -> usize;
}

/// Where a context's emitted events go: the stage's producer side, or a delegate's
/// collection.
pub(crate) trait Outlet<T>: Downstream {
    fn emit(&mut self, events: Vec<T>);
    /// The rest of the outlet, whatever its events' type.
    fn downstream(&mut self) -> &mut dyn Downstream;
}

/// What a stage that emits knows and decides about its consumers.
pub(crate) trait Downstream: Send {
    fn demand_mode(&self) -> DemandMode;
    fn buffered_count(&self) -> usize;
    fn consumer_count(&self) -> usize;
    fn consumers(&self) -> Vec<SubscriptionTag>;
    /// Cancels consumer `tag` now, or once the events buffered now have gone out.
    fn cancel_consumer(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
        after_buffered: bool,
    ) -> Result<(), UnknownSubscription>;
}

/// The subscriptions a context asks and cancels: the stage's consumer side.
pub(crate) trait Inlet<T>: Send {
    fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> Result<(), UnknownSubscription>;
    fn cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
    ) -> Result<(), UnknownSubscription>;
    fn tags(&self) -> Vec<SubscriptionTag>;
}

/// The outlet of a stage that emits nothing: a consumer's (its events are
/// `Infallible`, so nothing can reach it).
pub(crate) struct NoOutlet;

impl Outlet<Infallible> for NoOutlet {
    fn emit(&mut self, events: Vec<Infallible>) {
        match events.into_iter().next() {
            None => {}
            Some(never) => match never {},
        }
    }

    fn downstream(&mut self) -> &mut dyn Downstream {
        self
    }
}

impl Downstream for NoOutlet {
    fn demand_mode(&self) -> DemandMode {
        DemandMode::Forward
    }

    fn buffered_count(&self) -> usize {
        0
    }

    fn consumer_count(&self) -> usize {
        0
    }

    fn consumers(&self) -> Vec<SubscriptionTag> {
        Vec::new()
    }

    fn cancel_consumer(
        &mut self,
        tag: SubscriptionTag,
        _: ExitReason,
        _: bool,
    ) -> Result<(), UnknownSubscription> {
        Err(UnknownSubscription(tag))
    }
}

/// The inlet of a stage that receives nothing: a producer's. It has no
/// subscriptions.
pub(crate) struct NoInlet;

impl Inlet<Infallible> for NoInlet {
    fn ask(&mut self, tag: SubscriptionTag, _: usize) -> Result<(), UnknownSubscription> {
        Err(UnknownSubscription(tag))
    }

    fn cancel(&mut self, tag: SubscriptionTag, _: ExitReason) -> Result<(), UnknownSubscription> {
        Err(UnknownSubscription(tag))
    }

    fn tags(&self) -> Vec<SubscriptionTag> {
        Vec::new()
    }
}

impl<K: StageKind> std::fmt::Debug for Context<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stage", &self.control.me().id())
            .finish_non_exhaustive()
    }
}

impl<'a, K: StageKind> Context<'a, K> {
    /// A context over the stage's halves.
    pub(crate) fn new(
        control: &'a mut dyn StageControl<K>,
        outlet: &'a mut dyn Outlet<K::Out>,
        inlet: &'a mut dyn Inlet<K::In>,
    ) -> Self {
        Context {
            control,
            outlet,
            inlet,
        }
    }

    /// The stage-wide half and what the stage knows of its consumers, for a delegate
    /// to build its inner context on.
    pub(crate) fn halves_mut(&mut self) -> (&mut dyn StageControl<K>, &mut dyn Downstream) {
        (&mut *self.control, self.outlet.downstream())
    }

    /// Stops the stage with `reason` once the current hook returns. Events already
    /// emitted are dispatched first; events still in the buffer are dropped.
    pub fn stop(&mut self, reason: ExitReason) {
        self.control.stop(reason);
    }

    /// Whether [`Context::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.control.is_stopping()
    }

    /// Whether the stage drains (see [`StageRef::drain_and_stop`]): it has cancelled its
    /// subscriptions, produces nothing more on demand, and stops once what it holds has
    /// gone out. A producer that fetches on its own uses it to stop fetching and give
    /// back what it fetched instead of emitting it.
    pub fn is_draining(&self) -> bool {
        self.control.is_draining()
    }

    /// A handle to this stage, to give to others or to send it messages later.
    pub fn stage_ref(&self) -> &StageRef<K> {
        self.control.me()
    }

    /// This stage's identity.
    pub fn id(&self) -> StageId {
        self.control.me().id()
    }

    /// Sends `message` to this stage's own `handle_message` after `delay`: the
    /// stage's timer, for rate limits, batch timeouts and retries. Returns the timer,
    /// to cancel it with [`Context::cancel_timer`].
    ///
    /// Timers belong to the stage: they cost no task each (thousands are fine), none
    /// fires after the stage has stopped, and a restarted stage starts with none. They
    /// follow tokio's clock, so `tokio::time::pause` drives them in tests. A due
    /// timer's message is handled between two messages of the mailbox, ahead of them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gen_stage::{BoxError, Consumer, ConsumerContext, SubscriptionTag};
    ///
    /// /// Counts events, and reports the count every second.
    /// struct Meter { count: u64 }
    ///
    /// enum Tick { Report }
    ///
    /// impl Consumer for Meter {
    ///     type Event = u64;
    ///     type Message = Tick;
    ///
    ///     async fn init(&mut self, ctx: &mut ConsumerContext<'_, Self>) -> Result<gen_stage::Init, BoxError> {
    ///         let _first = ctx.send_after(Duration::from_secs(1), Tick::Report);
    ///         Ok(gen_stage::Init::Start)
    ///     }
    ///
    ///     async fn handle_events(&mut self, events: Vec<u64>, _from: SubscriptionTag, _ctx: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
    ///         self.count += events.len() as u64;
    ///         Ok(())
    ///     }
    ///
    ///     async fn handle_message(&mut self, tick: Tick, ctx: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
    ///         match tick {
    ///             Tick::Report => {
    ///                 println!("{} events", self.count);
    ///                 let _next = ctx.send_after(Duration::from_secs(1), Tick::Report);
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// # let meter = gen_stage::consumer(Meter { count: 0 }).start().await?;
    /// # tokio::time::sleep(Duration::from_millis(2500)).await;
    /// # meter.stop(gen_stage::ExitReason::Normal).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_after(&mut self, delay: Duration, message: K::Message) -> TimerRef {
        self.control.send_after(delay, message)
    }

    /// Cancels a timer set by [`Context::send_after`]: its message is never handled,
    /// even if it was already due. Returns false if the timer had already fired (its
    /// message was handled, or is being handled now) or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerRef) -> bool {
        self.control.cancel_timer(timer)
    }

    /// Timers set and not yet fired or cancelled.
    pub fn pending_timers(&self) -> usize {
        self.control.pending_timers()
    }
}

impl<K: EmitsEvents> Context<'_, K> {
    /// Dispatches `events` now, to consumers with demand; the rest is buffered.
    /// Events reach consumers in the order they are emitted, and before any reply the
    /// hook sends afterwards.
    pub fn emit(&mut self, events: Vec<K::Out>) {
        self.outlet.emit(events);
    }

    /// The current demand mode.
    pub fn demand_mode(&self) -> DemandMode {
        self.outlet.demand_mode()
    }

    /// Switches the demand mode once the current hook returns (see
    /// [`StageRef::set_demand_mode`]).
    pub fn set_demand_mode(&mut self, mode: DemandMode) {
        let _ = self
            .control
            .me()
            .send(Envelope::producer_request(ProducerRequest::SetDemandMode(
                mode,
            )));
    }

    /// Events waiting in the buffer.
    pub fn buffered_count(&self) -> usize {
        self.outlet.buffered_count()
    }

    /// How many consumers are subscribed.
    pub fn consumer_count(&self) -> usize {
        self.outlet.consumer_count()
    }

    /// The subscriptions of the consumers subscribed now, as this stage's
    /// `handle_consumer_subscribed` saw them.
    pub fn consumers(&self) -> Vec<SubscriptionTag> {
        self.outlet.consumers()
    }

    /// Cancels consumer `tag`'s subscription now: no event goes to it any more (what
    /// the buffer holds goes to the others), it receives the cancellation after the
    /// events already sent to it, and this stage's `handle_cancel` runs once the
    /// current hook returns. The consumer's [`CancelMode`](crate::CancelMode) decides
    /// whether it stops.
    ///
    /// # Errors
    ///
    /// [`UnknownSubscription`] if `tag` is not a consumer of this stage.
    pub fn cancel_consumer(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
    ) -> Result<(), UnknownSubscription> {
        self.outlet.cancel_consumer(tag, reason, false)
    }

    /// Cancels consumer `tag`'s subscription once every event emitted before this
    /// call has gone out (those the buffer or the dispatcher hold included), as an
    /// info message waits for them: how a draining stage lets each consumer take what
    /// was meant for it, then lets it go (Broadway's drain). Until then the consumer
    /// is served as before; if it leaves first, nothing more happens. As with an info
    /// message, events emitted after this call may go out in the same dispatch as
    /// the last ones before it: a drain stops emitting first (see
    /// [`DemandMode::Accumulate`]).
    ///
    /// ```
    /// use gen_stage::{BoxError, ExitReason, Producer, ProducerContext};
    ///
    /// /// Emits what it is sent; `Finish` lets every consumer go once served.
    /// struct Relay;
    ///
    /// enum Command { Send(Vec<u32>), Finish }
    ///
    /// impl Producer for Relay {
    ///     type Event = u32;
    ///     type Message = Command;
    ///
    ///     async fn handle_demand(&mut self, _demand: usize, _ctx: &mut ProducerContext<'_, Self>) -> Result<Vec<u32>, BoxError> {
    ///         Ok(Vec::new())
    ///     }
    ///
    ///     async fn handle_message(&mut self, command: Command, ctx: &mut ProducerContext<'_, Self>) -> Result<(), BoxError> {
    ///         match command {
    ///             Command::Send(events) => ctx.emit(events),
    ///             Command::Finish => {
    ///                 for tag in ctx.consumers() {
    ///                     ctx.cancel_consumer_after_buffered(tag, ExitReason::Normal)?;
    ///                 }
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// use futures::StreamExt;
    ///
    /// let relay = gen_stage::producer(Relay).start().await?;
    /// // A stream subscribes when first polled.
    /// let mut stream = gen_stage::stream::subscribe(&relay, Default::default())?;
    /// relay.cast(Command::Send(vec![1, 2, 3]))?;
    /// assert_eq!(stream.next().await, Some(1));
    /// relay.cast(Command::Send(vec![4, 5]))?;
    /// relay.cast(Command::Finish)?;
    /// // The stream ends once it has had everything sent before `Finish`.
    /// let rest: Vec<u32> = stream.collect().await;
    /// assert_eq!(rest, [2, 3, 4, 5]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`UnknownSubscription`] if `tag` is not a consumer of this stage.
    pub fn cancel_consumer_after_buffered(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
    ) -> Result<(), UnknownSubscription> {
        self.outlet.cancel_consumer(tag, reason, true)
    }
}

impl<K: ReceivesEvents> Context<'_, K> {
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
        self.inlet.ask(tag, demand.get())
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
        self.inlet.cancel(tag, reason)
    }

    /// Subscribes this stage to `producer` once the current hook returns, and returns
    /// the subscription's tag. A producer that is not alive is then reported to
    /// `handle_cancel`, as for [`StageRef::async_subscribe_to`].
    ///
    /// # Errors
    ///
    /// [`OptionsError`] if the options are invalid: nothing is subscribed.
    pub fn subscribe_to(
        &mut self,
        producer: &impl Upstream<K::In>,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, OptionsError> {
        options.validate()?;
        Ok(self.subscribe_port(Ports::port(producer).into_inner(), options))
    }

    /// Subscribes to the producer behind `producer` once the current hook returns
    /// (the options are valid); returns the subscription's tag.
    pub(crate) fn subscribe_port(
        &mut self,
        producer: Box<dyn ProducerPort<K::In>>,
        options: SubscribeOptions,
    ) -> SubscriptionTag {
        let tag = SubscriptionTag::next();
        // The stage is running this hook: its mailbox is open.
        let _ = self
            .control
            .me()
            .request_subscription(tag, producer, options, None);
        tag
    }

    /// The tags of the subscriptions to producers.
    pub fn subscriptions(&self) -> Vec<SubscriptionTag> {
        self.inlet.tags()
    }
}
