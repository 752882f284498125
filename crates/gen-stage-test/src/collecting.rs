//! A consumer that records everything it sees.

use std::fmt;

use gen_stage::{
    AskMode, BoxError, CancelReason, Consumer, ConsumerContext, ExitReason, ReplyTo,
    SubscribeOptions, SubscriptionTag,
};

use crate::gate::Gate;
use crate::record::{Record, Watch};

/// A consumer that records its batches, subscriptions, cancellations and exit in a
/// shared [`Record`].
///
/// By default it uses automatic demand and handles batches at once. [`manual`] makes
/// its subscriptions manual (ask with [`StageRef::ask`]); [`gated`] makes each
/// `handle_events` wait for a pass of a [`Gate`] first, which holds the consumer busy
/// for as long as the test needs.
///
/// Traps make it fail on chosen events, to test what a failing consumer does to its
/// pipeline: [`panics_on`], [`fails_on`] and [`stops_on`] each take a predicate on an
/// event, checked on every batch (after the gate). The first trap that matches an
/// event of the batch springs: `panics_on` panics and `fails_on` returns an error from
/// `handle_events`, both without recording the batch; `stops_on` records the batch and
/// asks the stage to stop with the given reason.
///
/// ```
/// use gen_stage::{ExitReason, SubscribeOptions};
/// use gen_stage_test::CollectingConsumer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let producer = gen_stage::source::from_iter(0..10u64).start().await?;
/// let (consumer, record) = CollectingConsumer::new();
/// let consumer = consumer.fails_on(|&event| event == 3);
/// let consumer = gen_stage::consumer(consumer)
///     .subscribe_to(&producer, SubscribeOptions::new().max_demand(2).min_demand(0))
///     .start()
///     .await?;
/// let reason = ExitReason::error("fails on event 3");
/// assert_eq!(consumer.stopped().await, reason);
/// assert_eq!(record.events(), vec![0, 1]);
/// assert_eq!(record.read(|r| r.terminated.clone()), Some(reason));
/// # Ok(())
/// # }
/// ```
///
/// [`manual`]: CollectingConsumer::manual
/// [`gated`]: CollectingConsumer::gated
/// [`panics_on`]: CollectingConsumer::panics_on
/// [`fails_on`]: CollectingConsumer::fails_on
/// [`stops_on`]: CollectingConsumer::stops_on
/// [`StageRef::ask`]: gen_stage::StageRef::ask
#[must_use]
pub struct CollectingConsumer<T> {
    record: Watch<Record<T>>,
    ask_mode: AskMode,
    gate: Gate,
    traps: Vec<Trap<T>>,
}

/// What a trap does to the batch that holds a matching event.
enum Sprung {
    Panic(String),
    Fail(String),
    Stop(ExitReason),
}

/// Looks at one event: `Some` when the trap springs on it.
type Trap<T> = Box<dyn Fn(&T) -> Option<Sprung> + Send>;

impl<T> fmt::Debug for CollectingConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectingConsumer")
            .field("ask_mode", &self.ask_mode)
            .field("traps", &self.traps.len())
            .finish_non_exhaustive()
    }
}

impl<T> Drop for CollectingConsumer<T> {
    /// The stage is gone (stopped, or killed): waits on the record stop waiting.
    fn drop(&mut self) {
        self.record.update(|record| record.gone = true);
    }
}

impl<T: Send + 'static> CollectingConsumer<T> {
    /// A consumer and the record it fills.
    pub fn new() -> (Self, Watch<Record<T>>) {
        let record = Watch::default();
        let consumer = CollectingConsumer {
            record: record.clone(),
            ask_mode: AskMode::Automatic,
            gate: Gate::opened(),
            traps: Vec::new(),
        };
        (consumer, record)
    }

    /// Subscribes with manual demand.
    pub fn manual(mut self) -> Self {
        self.ask_mode = AskMode::Manual;
        self
    }

    /// Waits for a pass of `gate` before handling each batch.
    pub fn gated(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// Stops with `reason` on a batch that holds an event matching `trap`, once that
    /// batch is recorded (as if `handle_events` called `ctx.stop(reason)`).
    ///
    /// ```
    /// use gen_stage::{ExitReason, SubscribeOptions};
    /// use gen_stage_test::CollectingConsumer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let producer = gen_stage::source::from_iter(0..10u64).start().await?;
    /// let reason = ExitReason::custom_shutdown("enough");
    /// let (consumer, record) = CollectingConsumer::new();
    /// let consumer = consumer.stops_on(|&event| event == 4, reason.clone());
    /// let consumer = gen_stage::consumer(consumer)
    ///     .subscribe_to(&producer, SubscribeOptions::new().max_demand(5).min_demand(0))
    ///     .start()
    ///     .await?;
    /// assert_eq!(consumer.stopped().await, reason);
    /// assert_eq!(record.events(), vec![0, 1, 2, 3, 4]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stops_on(
        mut self,
        trap: impl Fn(&T) -> bool + Send + 'static,
        reason: ExitReason,
    ) -> Self {
        let sprung = move |event: &T| trap(event).then(|| Sprung::Stop(reason.clone()));
        self.traps.push(Box::new(sprung));
        self
    }
}

impl<T: fmt::Debug + Send + 'static> CollectingConsumer<T> {
    /// Panics in `handle_events`, with the message `panics on event {event:?}`, on a
    /// batch that holds an event matching `trap`; that batch is not recorded. The stage
    /// stops with [`ExitReason::Panic`] of that message.
    ///
    /// ```
    /// use gen_stage::{ExitReason, SubscribeOptions};
    /// use gen_stage_test::CollectingConsumer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let producer = gen_stage::source::from_iter(0..10u64).start().await?;
    /// let (consumer, _record) = CollectingConsumer::new();
    /// let consumer = gen_stage::consumer(consumer.panics_on(|&event| event == 7))
    ///     .subscribe_to(&producer, SubscribeOptions::new())
    ///     .start()
    ///     .await?;
    /// let reason = ExitReason::Panic("panics on event 7".into());
    /// assert_eq!(consumer.stopped().await, reason);
    /// # Ok(())
    /// # }
    /// ```
    pub fn panics_on(mut self, trap: impl Fn(&T) -> bool + Send + 'static) -> Self {
        let sprung = move |event: &T| {
            trap(event).then(|| Sprung::Panic(format!("panics on event {event:?}")))
        };
        self.traps.push(Box::new(sprung));
        self
    }

    /// Returns an error from `handle_events`, with the message `fails on event
    /// {event:?}`, on a batch that holds an event matching `trap`; that batch is not
    /// recorded. The stage stops with [`ExitReason::error`] of that message (see the
    /// example on [`CollectingConsumer`]).
    pub fn fails_on(mut self, trap: impl Fn(&T) -> bool + Send + 'static) -> Self {
        let sprung =
            move |event: &T| trap(event).then(|| Sprung::Fail(format!("fails on event {event:?}")));
        self.traps.push(Box::new(sprung));
        self
    }
}

/// A call a [`CollectingConsumer`] answers at once: once it returns, every message
/// sent to the consumer before it has been handled.
///
/// ```
/// # use gen_stage_test::{CollectingConsumer, Ping};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (consumer, _record) = CollectingConsumer::<u64>::new();
/// let consumer = gen_stage::consumer(consumer).start().await.unwrap();
/// consumer.call(Ping).await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Ping(pub ReplyTo<()>);

impl<T: Send + 'static> Consumer for CollectingConsumer<T> {
    type Event = T;
    type Message = Ping;

    async fn handle_message(
        &mut self,
        Ping(reply): Ping,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        reply.send(());
        Ok(())
    }

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        self.record.update(|record| record.subscriptions.push(tag));
        Ok(self.ask_mode)
    }

    async fn handle_events(
        &mut self,
        events: Vec<T>,
        from: SubscriptionTag,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.gate.pass().await;
        let sprung = events
            .iter()
            .find_map(|event| self.traps.iter().find_map(|trap| trap(event)));
        match sprung {
            Some(Sprung::Panic(message)) => panic!("{message}"),
            Some(Sprung::Fail(message)) => return Err(message.into()),
            Some(Sprung::Stop(reason)) => ctx.stop(reason),
            None => {}
        }
        self.record
            .update(|record| record.batches.push((from, events)));
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let reason = reason.clone();
        self.record
            .update(|record| record.cancels.push((tag, reason)));
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        let reason = reason.clone();
        self.record
            .update(|record| record.terminated = Some(reason));
    }
}
