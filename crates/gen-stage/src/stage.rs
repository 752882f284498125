//! The traits users implement: one per kind of stage.
//!
//! Every hook is an `async fn` with a default, except the one that defines the kind
//! (`handle_demand` or `handle_events`). A hook that returns `Err` stops its stage with
//! [`ExitReason::Error`]; a hook that panics stops it with [`ExitReason::Panic`]; to stop
//! without an error, call [`Context::stop`](crate::Context::stop).

use std::convert::Infallible;
use std::future::Future;

use crate::context::{ConsumerContext, ProducerConsumerContext, ProducerContext};
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::kind::{
    ConsumerKind, EmitsEvents, ProducerConsumerKind, ProducerKind, ReceivesEvents, StageKind,
};
use crate::options::SubscribeOptions;
use crate::subscription::{AskMode, SubscriptionTag};

/// What `init` decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Init {
    /// Run the stage (the default).
    #[default]
    Start,
    /// Do not run it: `start` returns [`StartError::Ignored`](crate::error::StartError::Ignored).
    Ignore,
}

/// A stage that emits events when consumers ask for them.
///
/// ```
/// use gen_stage::{BoxError, Producer, ProducerContext};
///
/// /// Emits 0, 1, 2, ... as fast as demand allows.
/// struct Counter(u64);
///
/// impl Producer for Counter {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_demand(
///         &mut self,
///         demand: usize,
///         _ctx: &mut ProducerContext<'_, Self>,
///     ) -> Result<Vec<u64>, BoxError> {
///         let events = (self.0..self.0 + demand as u64).collect();
///         self.0 += demand as u64;
///         Ok(events)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// use futures::StreamExt;
///
/// let counter = gen_stage::producer(Counter(0)).start().await?;
/// let events = gen_stage::stream::subscribe(&counter, Default::default())?;
/// let first: Vec<u64> = events.take(3).collect().await;
/// assert_eq!(first, vec![0, 1, 2]);
/// # Ok(())
/// # }
/// ```
///
/// Demand is cumulative: if `handle_demand` returns fewer events than asked, the stage
/// will not be asked again for the rest. Remember what is owed and emit it later with
/// [`ProducerContext::emit`] (from `handle_message`, for example).
pub trait Producer: Send + Sized + 'static {
    /// The events this stage emits.
    type Event: Send + 'static;
    /// The messages this stage takes through calls, casts and infos (often `()`).
    type Message: Send + 'static;

    /// Runs first, inside the stage's task, before anything else; `start` waits for it.
    fn init(
        &mut self,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> impl Future<Output = Result<Init, BoxError>> + Send {
        let _ = ctx;
        async { Ok(Init::Start) }
    }

    /// Consumers want `demand` more events (always at least 1, after the buffer was
    /// drained). Returns events to dispatch: any number, at any time.
    fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Event>, BoxError>> + Send;

    /// A consumer subscribed with `options`. Returning `Err` rejects the subscription
    /// (the subscriber receives the error); the producer keeps running.
    fn handle_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (tag, options, ctx);
        async { Ok(()) }
    }

    /// A consumer's subscription ended (it cancelled, or stopped).
    fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (tag, reason, ctx);
        async { Ok(()) }
    }

    /// A message sent with `call`, `cast` or an info. Events emitted here with
    /// [`ProducerContext::emit`] are dispatched at once, before a reply sent after them.
    fn handle_message(
        &mut self,
        message: Self::Message,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (message, ctx);
        async {
            tracing::warn!(
                "producer received a message but does not implement handle_message; dropped"
            );
            Ok(())
        }
    }

    /// The stage begins to drain ([`StageRef::drain_and_stop`](crate::StageRef::drain_and_stop)):
    /// from now on it produces nothing on demand, and it stops once its buffer has
    /// gone out. Runs once, before that wait: a producer that holds events of its own
    /// emits them here (they go out before the stage stops), one that fetches stops
    /// fetching and gives back what it holds (Broadway's `prepare_for_draining`).
    /// Returning `Err` stops the stage with the error.
    fn prepare_for_draining(
        &mut self,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// The buffer discarded `count` events. Return `false` to silence the default
    /// warning; the count is kept in the stage's statistics either way.
    fn handle_discarded(&mut self, count: usize) -> bool {
        let _ = count;
        true
    }

    /// The stage is stopping with `reason` (also after an error or a panic in a hook).
    fn terminate(&mut self, reason: &ExitReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}

/// A stage that receives events and asks for more as it handles them.
///
/// ```
/// use gen_stage::{BoxError, Consumer, ConsumerContext, SubscriptionTag};
///
/// struct Printer;
///
/// impl Consumer for Printer {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_events(
///         &mut self,
///         events: Vec<u64>,
///         _from: SubscriptionTag,
///         _ctx: &mut ConsumerContext<'_, Self>,
///     ) -> Result<(), BoxError> {
///         println!("{events:?}");
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let numbers = gen_stage::source::from_iter(0..10u64).start().await?;
/// let printer = gen_stage::consumer(Printer)
///     .subscribe_to(&numbers, Default::default())
///     .start()
///     .await?;
/// // The producer stops when its events are out; the permanent subscription stops
/// // the printer after it has printed them.
/// assert!(printer.stopped().await.is_normal());
/// # Ok(())
/// # }
/// ```
pub trait Consumer: Send + Sized + 'static {
    /// The events this stage receives.
    type Event: Send + 'static;
    /// The messages this stage takes through calls, casts and infos (often `()`).
    type Message: Send + 'static;

    /// Runs first, inside the stage's task, before the initial subscriptions.
    fn init(
        &mut self,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<Init, BoxError>> + Send {
        let _ = ctx;
        async { Ok(Init::Start) }
    }

    /// The stage is subscribing to a producer with `options`: choose automatic or
    /// manual demand. `Err` stops the stage.
    fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<AskMode, BoxError>> + Send {
        let _ = (tag, options, ctx);
        async { Ok(AskMode::Automatic) }
    }

    /// Events from the subscription `from`; with automatic demand, at most
    /// `max_demand - min_demand` at a time.
    fn handle_events(
        &mut self,
        events: Vec<Self::Event>,
        from: SubscriptionTag,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// A subscription ended. Afterwards the subscription's [`CancelMode`] decides
    /// whether the stage stops too (not when the stage cancelled it itself).
    ///
    /// [`CancelMode`]: crate::CancelMode
    fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (tag, reason, ctx);
        async { Ok(()) }
    }

    /// A message sent with `call`, `cast` or an info.
    fn handle_message(
        &mut self,
        message: Self::Message,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (message, ctx);
        async {
            tracing::warn!(
                "consumer received a message but does not implement handle_message; dropped"
            );
            Ok(())
        }
    }

    /// The stage is stopping with `reason`.
    fn terminate(&mut self, reason: &ExitReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}

/// A stage in the middle: it receives events, and emits the events its
/// `handle_events` returns. It asks upstream only as fast as its own consumers ask.
///
/// ```
/// use gen_stage::{BoxError, ProducerConsumer, ProducerConsumerContext, SubscriptionTag};
///
/// struct Doubler;
///
/// impl ProducerConsumer for Doubler {
///     type Input = u64;
///     type Output = u64;
///     type Message = ();
///
///     async fn handle_events(
///         &mut self,
///         events: Vec<u64>,
///         _from: SubscriptionTag,
///         _ctx: &mut ProducerConsumerContext<'_, Self>,
///     ) -> Result<Vec<u64>, BoxError> {
///         Ok(events.into_iter().map(|x| x * 2).collect())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// use futures::StreamExt;
///
/// let numbers = gen_stage::source::from_iter(1..=3u64).start().await?;
/// let doubler = gen_stage::producer_consumer(Doubler)
///     .subscribe_to(&numbers, Default::default())
///     .start()
///     .await?;
/// let events = gen_stage::stream::subscribe(&doubler, Default::default())?;
/// let doubled: Vec<u64> = events.collect().await;
/// assert_eq!(doubled, vec![2, 4, 6]);
/// # Ok(())
/// # }
/// ```
pub trait ProducerConsumer: Send + Sized + 'static {
    /// The events this stage receives.
    type Input: Send + 'static;
    /// The events this stage emits.
    type Output: Send + 'static;
    /// The messages this stage takes through calls, casts and infos (often `()`).
    type Message: Send + 'static;

    /// Runs first, inside the stage's task, before the initial subscriptions.
    fn init(
        &mut self,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<Init, BoxError>> + Send {
        let _ = ctx;
        async { Ok(Init::Start) }
    }

    /// The stage is subscribing to a producer: choose automatic or manual demand.
    /// `Err` stops the stage.
    fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<AskMode, BoxError>> + Send {
        let _ = (tag, options, ctx);
        async { Ok(AskMode::Automatic) }
    }

    /// A consumer subscribed to this stage. `Err` rejects the subscription.
    fn handle_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (tag, options, ctx);
        async { Ok(()) }
    }

    /// Events from the subscription `from`; returns the events to emit.
    fn handle_events(
        &mut self,
        events: Vec<Self::Input>,
        from: SubscriptionTag,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Output>, BoxError>> + Send;

    /// A subscription ended, on either side (the tag tells which).
    fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (tag, reason, ctx);
        async { Ok(()) }
    }

    /// A message sent with `call`, `cast` or an info.
    fn handle_message(
        &mut self,
        message: Self::Message,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (message, ctx);
        async {
            tracing::warn!(
                "producer-consumer received a message but does not implement handle_message; dropped"
            );
            Ok(())
        }
    }

    /// The buffer discarded `count` events. Return `false` to silence the warning.
    fn handle_discarded(&mut self, count: usize) -> bool {
        let _ = count;
        true
    }

    /// The stage is stopping with `reason`.
    fn terminate(&mut self, reason: &ExitReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}

impl<S: Producer> StageKind for ProducerKind<S> {
    type Stage = S;
    type In = Infallible;
    type Out = S::Event;
    type Message = S::Message;
}

impl<S: Consumer> StageKind for ConsumerKind<S> {
    type Stage = S;
    type In = S::Event;
    type Out = Infallible;
    type Message = S::Message;
}

impl<S: ProducerConsumer> StageKind for ProducerConsumerKind<S> {
    type Stage = S;
    type In = S::Input;
    type Out = S::Output;
    type Message = S::Message;
}

impl<S: Producer> EmitsEvents for ProducerKind<S> {}
impl<S: ProducerConsumer> EmitsEvents for ProducerConsumerKind<S> {}
impl<S: Consumer> ReceivesEvents for ConsumerKind<S> {}
impl<S: ProducerConsumer> ReceivesEvents for ProducerConsumerKind<S> {}
