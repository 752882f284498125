//! A consumer that records everything it sees.

mod hooks;
mod traps;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use gen_stage::{AskMode, ExitReason, ReplyTo};

use crate::gate::Gate;
use crate::record::Record;
use crate::watch::Watch;
use traps::{Sprung, Trap};

/// A consumer that records its batches, subscriptions, cancellations, starts and
/// exits in a shared [`Record`].
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
/// `handle_events`, both recording the batch in [`Record::trapped`] instead of
/// [`Record::batches`]; `stops_on` records the batch and asks the stage to stop with
/// the given reason. [`Request::Panic`] makes it panic whenever the test says.
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
/// assert_eq!(record.read(|r| r.trapped[0].1.clone()), vec![2, 3]);
/// assert_eq!(record.terminated(), Some(reason));
/// # Ok(())
/// # }
/// ```
///
/// # Supervised
///
/// A clone fills the same record, with the same traps and gates: hand one to a
/// `ChildSpec`, which starts a clone of it at each restart. [`named`] records each
/// start with the stage's handle, so that the test reaches every incarnation
/// ([`Watch::incarnations`]); [`ignores_start`], [`fails_to_start_from`] and
/// [`terminate_gated`] test how a supervisor starts and stops its children. Children
/// made with [`sharing`] fill one record, which keeps the order of their starts and
/// exits.
///
/// [`manual`]: CollectingConsumer::manual
/// [`gated`]: CollectingConsumer::gated
/// [`panics_on`]: CollectingConsumer::panics_on
/// [`fails_on`]: CollectingConsumer::fails_on
/// [`stops_on`]: CollectingConsumer::stops_on
/// [`named`]: CollectingConsumer::named
/// [`sharing`]: CollectingConsumer::sharing
/// [`ignores_start`]: CollectingConsumer::ignores_start
/// [`fails_to_start_from`]: CollectingConsumer::fails_to_start_from
/// [`terminate_gated`]: CollectingConsumer::terminate_gated
/// [`StageRef::ask`]: gen_stage::StageRef::ask
#[must_use]
pub struct CollectingConsumer<T: Send + 'static> {
    record: Watch<Record<T>>,
    /// Its name in the record; `None` records no starts.
    name: Option<&'static str>,
    ask_mode: AskMode,
    gate: Gate,
    terminate_gate: Gate,
    traps: Vec<Trap<T>>,
    ignores_start: bool,
    fails_to_start_from: Option<usize>,
    /// How many times this consumer and its clones started.
    started: Arc<AtomicUsize>,
}

impl<T: Send + 'static> fmt::Debug for CollectingConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectingConsumer")
            .field("name", &self.name)
            .field("ask_mode", &self.ask_mode)
            .field("traps", &self.traps.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Clone for CollectingConsumer<T> {
    /// Another consumer filling the same record, with the same settings, the same
    /// gates and the same count of starts.
    fn clone(&self) -> Self {
        self.record.update(|record| record.consumers += 1);
        CollectingConsumer {
            record: self.record.clone(),
            name: self.name,
            ask_mode: self.ask_mode,
            gate: self.gate.clone(),
            terminate_gate: self.terminate_gate.clone(),
            traps: self.traps.clone(),
            ignores_start: self.ignores_start,
            fails_to_start_from: self.fails_to_start_from,
            started: self.started.clone(),
        }
    }
}

impl<T: Send + 'static> Drop for CollectingConsumer<T> {
    /// Once the last consumer filling the record is gone (stopped, killed, or dropped
    /// with the `ChildSpec` that held it), waits on the record stop waiting.
    fn drop(&mut self) {
        self.record.update(|record| {
            record.consumers -= 1;
            record.gone = record.consumers == 0;
        });
    }
}

impl<T: Send + 'static> CollectingConsumer<T> {
    /// A consumer and the record it fills.
    pub fn new() -> (Self, Watch<Record<T>>) {
        let record = Watch::default();
        (Self::sharing(&record), record)
    }

    /// A consumer that fills `record`, alongside the consumers already filling it (and
    /// with none of their settings): [name](CollectingConsumer::named) each, to tell
    /// them apart.
    ///
    /// ```
    /// use gen_stage::ExitReason;
    /// use gen_stage_test::CollectingConsumer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let (first, record) = CollectingConsumer::<u64>::new();
    /// let second = CollectingConsumer::sharing(&record);
    /// let first = gen_stage::consumer(first.named("first")).start().await?;
    /// let second = gen_stage::consumer(second.named("second")).start().await?;
    /// second.stop(ExitReason::Shutdown).await?;
    /// first.stop(ExitReason::Normal).await?;
    /// let exits = record.read(|r| r.exits.clone());
    /// assert_eq!(exits, [("second", ExitReason::Shutdown), ("first", ExitReason::Normal)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sharing(record: &Watch<Record<T>>) -> Self {
        record.update(|record| {
            record.consumers += 1;
            record.gone = false;
        });
        CollectingConsumer {
            record: record.clone(),
            name: None,
            ask_mode: AskMode::Automatic,
            gate: Gate::opened(),
            terminate_gate: Gate::opened(),
            traps: Vec::new(),
            ignores_start: false,
            fails_to_start_from: None,
            started: Arc::default(),
        }
    }

    /// Names the consumer in the record: its exits are recorded under `name`, and so
    /// is each of its starts, with the stage's handle (see the example on
    /// [`Watch::incarnations`]). Unnamed, it records its exits under `""` and no
    /// starts.
    ///
    /// # Keeps its stage reachable
    ///
    /// The handle in the record counts as one user code holds: while the record
    /// lives, the stage does not stop as unreachable (see gen_stage's guide,
    /// "Unreachable pipelines stop"). That is what a supervisor's children want, as
    /// the supervisor keeps them running anyway; leave a consumer unnamed to test
    /// reachability.
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// The name it records under, if it was [named](CollectingConsumer::named): the
    /// id to give its `ChildSpec`.
    #[must_use]
    pub fn name(&self) -> Option<&'static str> {
        self.name
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

    /// Waits for a pass of `gate` at the end of `terminate`, once its exit is
    /// recorded: a stage slow to stop, for shutdown limits.
    ///
    /// ```
    /// use gen_stage::ExitReason;
    /// use gen_stage_test::{CollectingConsumer, Gate};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let gate = Gate::closed();
    /// let (consumer, record) = CollectingConsumer::<u64>::new();
    /// let consumer = gen_stage::consumer(consumer.terminate_gated(gate.clone()))
    ///     .start()
    ///     .await?;
    /// let stopping = tokio::spawn({
    ///     let consumer = consumer.clone();
    ///     async move { consumer.stop(ExitReason::Shutdown).await }
    /// });
    /// record.wait_until(|r| !r.exits.is_empty()).await;
    /// assert!(consumer.is_alive(), "still in terminate");
    /// gate.open(1);
    /// stopping.await??;
    /// assert!(!consumer.is_alive());
    /// # Ok(())
    /// # }
    /// ```
    pub fn terminate_gated(mut self, gate: Gate) -> Self {
        self.terminate_gate = gate;
        self
    }

    /// Makes `init` return `Init::Ignore`: the stage never runs, and its start fails
    /// with `StartError::Ignored` (a supervisor leaves such a child not running).
    ///
    /// ```
    /// use gen_stage::error::StartError;
    /// use gen_stage_test::CollectingConsumer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (consumer, record) = CollectingConsumer::<u64>::new();
    /// let started = gen_stage::consumer(consumer.named("idle").ignores_start()).start().await;
    /// assert!(matches!(started, Err(StartError::Ignored)));
    /// assert!(record.incarnations("idle").is_empty());
    /// # }
    /// ```
    pub fn ignores_start(mut self) -> Self {
        self.ignores_start = true;
        self
    }

    /// Makes `init` fail, with the error `fails to start`, once this consumer and its
    /// clones have started `starts` times: with 0 it never starts; with 1 it starts
    /// once, and a supervisor cannot restart it.
    ///
    /// ```
    /// use gen_stage::ExitReason;
    /// use gen_stage::error::StartError;
    /// use gen_stage_test::CollectingConsumer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let (consumer, _record) = CollectingConsumer::<u64>::new();
    /// let consumer = consumer.fails_to_start_from(1);
    /// gen_stage::consumer(consumer.clone()).start().await?;
    /// let again = gen_stage::consumer(consumer).start().await;
    /// let failed = ExitReason::error("fails to start");
    /// assert!(matches!(again, Err(StartError::Init(reason)) if reason == failed));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fails_to_start_from(mut self, starts: usize) -> Self {
        self.fails_to_start_from = Some(starts);
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
        trap: impl Fn(&T) -> bool + Send + Sync + 'static,
        reason: ExitReason,
    ) -> Self {
        let sprung = move |event: &T| trap(event).then(|| Sprung::Stop(reason.clone()));
        self.traps.push(Arc::new(sprung));
        self
    }
}

impl<T: fmt::Debug + Send + 'static> CollectingConsumer<T> {
    /// Panics in `handle_events`, with the message `panics on event {event:?}`, on a
    /// batch that holds an event matching `trap`; that batch is recorded in
    /// [`Record::trapped`]. The stage stops with [`ExitReason::Panic`] of that
    /// message.
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
    pub fn panics_on(mut self, trap: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        let sprung = move |event: &T| {
            trap(event).then(|| Sprung::Panic(format!("panics on event {event:?}")))
        };
        self.traps.push(Arc::new(sprung));
        self
    }

    /// Returns an error from `handle_events`, with the message `fails on event
    /// {event:?}`, on a batch that holds an event matching `trap`; that batch is
    /// recorded in [`Record::trapped`]. The stage stops with [`ExitReason::error`] of
    /// that message (see the example on [`CollectingConsumer`]).
    pub fn fails_on(mut self, trap: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        let sprung =
            move |event: &T| trap(event).then(|| Sprung::Fail(format!("fails on event {event:?}")));
        self.traps.push(Arc::new(sprung));
        self
    }
}

/// What a test asks of a [`CollectingConsumer`], by `call` or `cast`.
///
/// ```
/// # use gen_stage::ExitReason;
/// # use gen_stage_test::{CollectingConsumer, Request};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (consumer, _record) = CollectingConsumer::<u64>::new();
/// let consumer = gen_stage::consumer(consumer).start().await.unwrap();
/// consumer.call(Request::Ping).await.unwrap();
/// consumer.cast(Request::Panic).unwrap();
/// let reason = ExitReason::Panic("panics on request".into());
/// assert_eq!(consumer.stopped().await, reason);
/// # }
/// ```
#[derive(Debug)]
pub enum Request {
    /// Replies at once: once the reply is in, every message sent to the consumer
    /// before it has been handled.
    Ping(ReplyTo<()>),
    /// Panics in `handle_message`, with the message `panics on request`: a crash
    /// whenever the test wants one.
    Panic,
}
