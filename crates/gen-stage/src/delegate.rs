//! Running another producer's hooks inside a stage: how a wrapper adds behaviour
//! (acknowledgement, rate limits, draining) around a user's producer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::context::{Context, Downstream, NoInlet, Outlet, StageControl};
use crate::error::{SubscribeError, UnknownSubscription};
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::handle::StageRef;
use crate::kind::{EmitsEvents, ProducerKind, StageKind};
use crate::options::{DemandMode, SubscribeOptions};
use crate::stage::{Init, Producer};
use crate::subscription::SubscriptionTag;
use crate::timers::TimerRef;
use crate::wire::{Address, Envelope, ForProducer, ForStage, Forward};

/// A producer whose hooks another stage runs: the wrapper calls the delegate's hooks
/// from its own, with its own context, and decides what becomes of the events they
/// produce.
///
/// Inside the inner producer's hooks, its context is a view of the wrapper:
/// - the events it emits (and those `handle_demand` returns) are given back to the
///   wrapper by each call, in the order they were produced;
/// - [`Context::send_after`] and messages sent through its
///   [`stage_ref`](Context::stage_ref) reach the wrapper, turned into the wrapper's
///   message type by the `wrap` function given to [`Delegate::new`]: the wrapper
///   passes them back with [`Delegate::handle_message`];
/// - [`Context::stop`] stops the wrapper, and `demand_mode`, `buffered_count` and
///   `consumer_count` read the wrapper's.
///
/// The inner producer's handle cannot be subscribed to (a subscription through it is
/// refused as if the stage had stopped): consumers subscribe to the wrapper.
///
/// # Example
///
/// A wrapper that doubles the events of any producer of numbers, and counts them:
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::kind::ProducerKind;
/// use gen_stage::{BoxError, Delegate, ExitReason, Init, Producer, ProducerContext};
///
/// struct Doubled<P: Producer<Event = u64>> {
///     inner: Delegate<P, ProducerKind<Doubled<P>>>,
///     seen: usize,
/// }
///
/// impl<P: Producer<Event = u64>> Producer for Doubled<P> {
///     type Event = u64;
///     // A wrapper with messages of its own would use an enum with a variant for the
///     // inner producer's.
///     type Message = P::Message;
///
///     async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
///         let (init, events) = self.inner.init(ctx).await?;
///         ctx.emit(self.double(events));
///         Ok(init)
///     }
///
///     async fn handle_demand(&mut self, demand: usize, ctx: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
///         let events = self.inner.handle_demand(demand, ctx).await?;
///         Ok(self.double(events))
///     }
///
///     async fn handle_message(&mut self, message: P::Message, ctx: &mut ProducerContext<'_, Self>) -> Result<(), BoxError> {
///         let events = self.inner.handle_message(message, ctx).await?;
///         ctx.emit(self.double(events));
///         Ok(())
///     }
///
///     async fn terminate(&mut self, reason: &ExitReason) {
///         self.inner.terminate(reason).await;
///     }
/// }
///
/// impl<P: Producer<Event = u64>> Doubled<P> {
///     fn double(&mut self, events: Vec<u64>) -> Vec<u64> {
///         self.seen += events.len();
///         events.into_iter().map(|n| n * 2).collect()
///     }
/// }
///
/// /// The user's producer: 1, 2, 3, ...
/// struct Numbers { next: u64 }
///
/// impl Producer for Numbers {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_demand(&mut self, demand: usize, _ctx: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
///         let events: Vec<u64> = (self.next..).take(demand).collect();
///         self.next += events.len() as u64;
///         Ok(events)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let doubled = Doubled { inner: Delegate::new(Numbers { next: 1 }, |message| message), seen: 0 };
/// let stage = gen_stage::producer(doubled).start().await?;
/// let events = gen_stage::stream::subscribe(&stage, Default::default())?;
/// let events: Vec<u64> = events.take(3).collect().await;
/// assert_eq!(events, [2, 4, 6]);
/// # Ok(())
/// # }
/// ```
pub struct Delegate<P: Producer, K: StageKind> {
    producer: P,
    wrap: fn(P::Message) -> K::Message,
    /// The inner producer's handle: a view of the wrapper, made at the first hook.
    view: Option<StageRef<ProducerKind<P>>>,
    /// What the inner producer emitted during the hook in progress, or during a hook
    /// that failed.
    emitted: Vec<P::Event>,
}

impl<P: Producer, K: StageKind> fmt::Debug for Delegate<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delegate")
            .field("emitted", &self.emitted.len())
            .finish_non_exhaustive()
    }
}

impl<P: Producer, K: EmitsEvents> Delegate<P, K> {
    /// Wraps `producer`. Its messages (its timers', and those sent to its handle)
    /// reach the wrapper as `wrap(message)`.
    pub fn new(producer: P, wrap: fn(P::Message) -> K::Message) -> Self {
        Delegate {
            producer,
            wrap,
            view: None,
            emitted: Vec::new(),
        }
    }

    /// The inner producer.
    pub fn get_ref(&self) -> &P {
        &self.producer
    }

    /// The inner producer, to change.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.producer
    }

    /// Gives the inner producer back.
    pub fn into_inner(self) -> P {
        self.producer
    }

    /// What the inner producer emitted during a hook that then failed: those events
    /// are kept here, not dropped, for the wrapper to decide about.
    pub fn take_emitted(&mut self) -> Vec<P::Event> {
        std::mem::take(&mut self.emitted)
    }

    /// Runs the inner producer's `init`; returns its decision and what it emitted.
    ///
    /// # Errors
    ///
    /// The inner hook's error (what it emitted is kept: [`Delegate::take_emitted`]).
    pub async fn init(
        &mut self,
        ctx: &mut Context<'_, K>,
    ) -> Result<(Init, Vec<P::Event>), BoxError> {
        let mut inner = self.inner(ctx);
        let (producer, mut inner_ctx) = inner.parts();
        let init = producer.init(&mut inner_ctx).await?;
        Ok((init, self.take_emitted()))
    }

    /// Runs the inner producer's `handle_demand`; returns what it emitted, then what
    /// it returned.
    ///
    /// # Errors
    ///
    /// The inner hook's error (what it emitted is kept: [`Delegate::take_emitted`]).
    pub async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut Context<'_, K>,
    ) -> Result<Vec<P::Event>, BoxError> {
        let mut inner = self.inner(ctx);
        let (producer, mut inner_ctx) = inner.parts();
        let returned = producer.handle_demand(demand, &mut inner_ctx).await?;
        let mut events = self.take_emitted();
        if events.is_empty() {
            return Ok(returned);
        }
        events.extend(returned);
        Ok(events)
    }

    /// Runs the inner producer's `handle_consumer_subscribed`; returns what it
    /// emitted.
    ///
    /// # Errors
    ///
    /// The inner hook's error (what it emitted is kept: [`Delegate::take_emitted`]).
    pub async fn handle_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut Context<'_, K>,
    ) -> Result<Vec<P::Event>, BoxError> {
        let mut inner = self.inner(ctx);
        let (producer, mut inner_ctx) = inner.parts();
        producer
            .handle_consumer_subscribed(tag, options, &mut inner_ctx)
            .await?;
        Ok(self.take_emitted())
    }

    /// Runs the inner producer's `handle_cancel`; returns what it emitted.
    ///
    /// # Errors
    ///
    /// The inner hook's error (what it emitted is kept: [`Delegate::take_emitted`]).
    pub async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        ctx: &mut Context<'_, K>,
    ) -> Result<Vec<P::Event>, BoxError> {
        let mut inner = self.inner(ctx);
        let (producer, mut inner_ctx) = inner.parts();
        producer.handle_cancel(tag, reason, &mut inner_ctx).await?;
        Ok(self.take_emitted())
    }

    /// Runs the inner producer's `handle_message` with one of its messages (unwrapped
    /// by the wrapper); returns what it emitted.
    ///
    /// # Errors
    ///
    /// The inner hook's error (what it emitted is kept: [`Delegate::take_emitted`]).
    pub async fn handle_message(
        &mut self,
        message: P::Message,
        ctx: &mut Context<'_, K>,
    ) -> Result<Vec<P::Event>, BoxError> {
        let mut inner = self.inner(ctx);
        let (producer, mut inner_ctx) = inner.parts();
        producer.handle_message(message, &mut inner_ctx).await?;
        Ok(self.take_emitted())
    }

    /// Runs the inner producer's `prepare_for_draining`; returns what it emitted.
    ///
    /// # Errors
    ///
    /// The inner hook's error (what it emitted is kept: [`Delegate::take_emitted`]).
    pub async fn prepare_for_draining(
        &mut self,
        ctx: &mut Context<'_, K>,
    ) -> Result<Vec<P::Event>, BoxError> {
        let mut inner = self.inner(ctx);
        let (producer, mut inner_ctx) = inner.parts();
        producer.prepare_for_draining(&mut inner_ctx).await?;
        Ok(self.take_emitted())
    }

    /// Runs the inner producer's `handle_discarded`.
    pub fn handle_discarded(&mut self, count: usize) -> bool {
        self.producer.handle_discarded(count)
    }

    /// Runs the inner producer's `terminate`.
    pub async fn terminate(&mut self, reason: &ExitReason) {
        self.producer.terminate(reason).await;
    }

    /// The inner producer and the halves of its context, over the wrapper's.
    fn inner<'a>(&'a mut self, ctx: &'a mut Context<'_, K>) -> Inner<'a, P, K> {
        let wrap = self.wrap;
        let view = self.view.get_or_insert_with(|| {
            ctx.stage_ref()
                .view(|outer| Arc::new(Through { outer, wrap }))
        });
        let (control, downstream) = ctx.halves_mut();
        Inner {
            producer: &mut self.producer,
            control: InnerControl {
                outer: control,
                view,
                wrap,
            },
            outlet: Collected {
                events: &mut self.emitted,
                outer: downstream,
            },
            inlet: NoInlet,
        }
    }
}

/// A delegate's producer with the halves of its context, for one hook.
struct Inner<'a, P: Producer, K: StageKind> {
    producer: &'a mut P,
    control: InnerControl<'a, P, K>,
    outlet: Collected<'a, P::Event>,
    inlet: NoInlet,
}

impl<P: Producer, K: StageKind> Inner<'_, P, K> {
    fn parts(&mut self) -> (&mut P, Context<'_, ProducerKind<P>>) {
        let context = Context::new(&mut self.control, &mut self.outlet, &mut self.inlet);
        (&mut *self.producer, context)
    }
}

/// The inner producer's stage-wide half: the wrapper's, with messages wrapped.
struct InnerControl<'a, P: Producer, K: StageKind> {
    outer: &'a mut dyn StageControl<K>,
    view: &'a StageRef<ProducerKind<P>>,
    wrap: fn(P::Message) -> K::Message,
}

impl<P: Producer, K: StageKind> StageControl<ProducerKind<P>> for InnerControl<'_, P, K> {
    fn me(&self) -> &StageRef<ProducerKind<P>> {
        self.view
    }

    fn stop(&mut self, reason: ExitReason) {
        self.outer.stop(reason);
    }

    fn is_stopping(&self) -> bool {
        self.outer.is_stopping()
    }

    fn is_draining(&self) -> bool {
        self.outer.is_draining()
    }

    fn send_after(&mut self, delay: Duration, message: P::Message) -> TimerRef {
        self.outer.send_after(delay, (self.wrap)(message))
    }

    fn cancel_timer(&mut self, timer: TimerRef) -> bool {
        self.outer.cancel_timer(timer)
    }

    fn pending_timers(&self) -> usize {
        self.outer.pending_timers()
    }
}

/// The inner producer's outlet: its events are collected for the wrapper; what it
/// reads and decides about consumers is the wrapper's.
struct Collected<'a, T> {
    events: &'a mut Vec<T>,
    outer: &'a mut dyn Downstream,
}

impl<T: Send> Outlet<T> for Collected<'_, T> {
    fn emit(&mut self, mut events: Vec<T>) {
        if self.events.is_empty() {
            *self.events = events;
        } else {
            self.events.append(&mut events);
        }
    }

    fn downstream(&mut self) -> &mut dyn Downstream {
        self
    }
}

impl<T: Send> Downstream for Collected<'_, T> {
    fn demand_mode(&self) -> DemandMode {
        self.outer.demand_mode()
    }

    fn buffered_count(&self) -> usize {
        self.outer.buffered_count() + self.events.len()
    }

    fn consumer_count(&self) -> usize {
        self.outer.consumer_count()
    }

    fn consumers(&self) -> Vec<SubscriptionTag> {
        self.outer.consumers()
    }

    fn cancel_consumer(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
        after_buffered: bool,
    ) -> Result<(), UnknownSubscription> {
        self.outer.cancel_consumer(tag, reason, after_buffered)
    }
}

/// The inner producer's mailbox: the wrapper's, with its messages wrapped.
struct Through<P: Producer, K: EmitsEvents> {
    outer: Address<K>,
    wrap: fn(P::Message) -> K::Message,
}

impl<P: Producer, K: EmitsEvents> Forward<ProducerKind<P>> for Through<P, K> {
    fn send(&self, envelope: Envelope<ProducerKind<P>>) -> Result<(), Envelope<ProducerKind<P>>> {
        let translated = match envelope {
            Envelope::Stage(mail) => Envelope::Stage(match mail {
                ForStage::Message(message) => ForStage::Message((self.wrap)(message)),
                ForStage::Info { message, queued } => ForStage::Info {
                    message: (self.wrap)(message),
                    queued,
                },
                ForStage::DemandSnapshot(reply) => ForStage::DemandSnapshot(reply),
                ForStage::Stop(reason) => ForStage::Stop(reason),
                ForStage::Wake => ForStage::Wake,
                ForStage::Barrier(reached) => ForStage::Barrier(reached),
                ForStage::CheckReachable => ForStage::CheckReachable,
            }),
            Envelope::Producer(ForProducer::Request(request), ()) => {
                Envelope::producer_request(request)
            }
            // Subscriptions are the wrapper's: through the inner producer's handle
            // none is made (and so none is asked or cancelled).
            Envelope::Producer(ForProducer::Subscribe(request), ()) => {
                request.reject(SubscribeError::DelegatedProducer);
                return Ok(());
            }
            refused @ Envelope::Producer(..) => return Err(refused),
        };
        // Should the wrapper stop between its handle's check and now, the mail is lost
        // as it would be in its mailbox (it holds no subscription: those are refused).
        let _ = self.outer.send(translated);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.outer.is_closed()
    }

    fn closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.outer.closed())
    }
}
