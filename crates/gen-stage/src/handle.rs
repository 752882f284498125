//! Handles to running stages.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::error::{CallError, NotAlive, SendError, SubscribeError, SyncInfoError, TryCastError};
use crate::exit::{CancelReason, ExitReason};
use crate::exit_watch::ExitWatch;
use crate::kind::{
    ConsumerKind, EmitsEvents, ProducerConsumerKind, ProducerKind, ReceivesEvents, StageKind,
};
use crate::lifecycle::Lifecycle;
use crate::options::{DemandMode, SubscribeOptions};
use crate::reply::ReplyTo;
use crate::stats::{StageStats, StatsCell};
use crate::subscription::{StageId, SubscriptionTag};
use crate::upstream::Upstream;
use crate::upstream::sealed::{Port, Ports};
use crate::wire::{
    Address, ConsumerRequest, Envelope, EventSink, ForConsumer, ForProducer, ForStage, Forward,
    Parcel, ProducerPort, ProducerRequest, SubscribeReply, SubscribeRequest, SubscribeToRequest,
};

/// How long [`StageRef::call`] and [`StageRef::subscribe_to`] wait by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to a running stage: cheap to clone, typed by the stage's kind.
///
/// Write it with the aliases [`ProducerRef`], [`ConsumerRef`] and
/// [`ProducerConsumerRef`]. A stage runs while user code can reach it or a stage
/// joined to it by subscriptions: once every handle of such a set is gone (and no
/// registry, supervisor or stream reaches it), the set stops with
/// [`ExitReason::Unreachable`]. Stop it yourself with [`StageRef::stop`], or let its
/// subscriptions end it.
pub struct StageRef<K: StageKind> {
    id: StageId,
    mailbox: Address<K>,
    exit: ExitWatch,
    stats: Arc<StatsCell>,
    life: Arc<Lifecycle>,
    /// Whether this handle is user code's, counted to keep its pipeline running (see
    /// [`crate::reachability`]); the stage's own and its peers' are not.
    counted: bool,
}

/// A handle to a [`Producer`](crate::Producer) stage.
pub type ProducerRef<S> = StageRef<ProducerKind<S>>;
/// A handle to a [`Consumer`](crate::Consumer) stage.
pub type ConsumerRef<S> = StageRef<ConsumerKind<S>>;
/// A handle to a [`ProducerConsumer`](crate::ProducerConsumer) stage.
pub type ProducerConsumerRef<S> = StageRef<ProducerConsumerKind<S>>;

/// A clone is a handle of its own: it keeps the stage's pipeline reachable while it
/// lives (whatever the handle it was cloned from).
impl<K: StageKind> Clone for StageRef<K> {
    fn clone(&self) -> Self {
        let mut clone = self.uncounted();
        clone.counted = true;
        self.life.add_handle();
        clone
    }
}

impl<K: StageKind> Drop for StageRef<K> {
    fn drop(&mut self) {
        if self.counted && self.life.remove_handle() {
            crate::reachability::last_handle_dropped(self.id);
        }
    }
}

/// Handles are equal when they name the same stage. To key a map by stage, key it
/// by [`StageRef::id`].
impl<K: StageKind> PartialEq for StageRef<K> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<K: StageKind> Eq for StageRef<K> {}

impl<K: StageKind> fmt::Debug for StageRef<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageRef")
            .field("id", &self.id)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl<K: StageKind> StageRef<K> {
    pub(crate) fn new(
        mailbox: Address<K>,
        exit: ExitWatch,
        stats: Arc<StatsCell>,
        life: Arc<Lifecycle>,
    ) -> Self {
        StageRef {
            id: StageId::next(),
            mailbox,
            exit,
            stats,
            life,
            counted: false,
        }
    }

    /// A handle that does not keep the stage's pipeline running: for a stage's own
    /// state (see [`WeakStageRef`](crate::WeakStageRef)).
    pub fn downgrade(&self) -> crate::WeakStageRef<K> {
        crate::WeakStageRef::new(self.uncounted())
    }

    /// A handle that does not keep the stage reachable: the stage's own, and those in
    /// its peers' tables.
    pub(crate) fn uncounted(&self) -> Self {
        StageRef {
            id: self.id,
            mailbox: self.mailbox.clone(),
            exit: self.exit.clone(),
            stats: self.stats.clone(),
            life: self.life.clone(),
            counted: false,
        }
    }

    /// An uncounted handle of another type on this very stage, whose envelopes go
    /// through `forward` (built on this handle's mailbox): a delegate's view.
    pub(crate) fn view<J: StageKind>(
        &self,
        forward: impl FnOnce(Address<K>) -> Arc<dyn Forward<J>>,
    ) -> StageRef<J> {
        StageRef {
            id: self.id,
            mailbox: Address::Forwarded(forward(self.mailbox.clone())),
            exit: self.exit.clone(),
            stats: self.stats.clone(),
            life: self.life.clone(),
            counted: false,
        }
    }

    pub(crate) fn set_abort(&self, abort: AbortHandle) {
        self.life.set_abort(abort);
    }

    pub(crate) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.life
    }

    /// Aborts the stage's task at its next await point, without running its
    /// `terminate` hook: its peers see it stop with [`ExitReason::Killed`]. Prefer
    /// [`StageRef::stop`]; supervisors kill only what does not stop in time.
    pub fn kill(&self) {
        self.life.kill();
    }

    pub(crate) fn stats_cell(&self) -> &Arc<StatsCell> {
        &self.stats
    }

    /// The stage's live counters, read without messaging the stage.
    pub fn stats(&self) -> StageStats {
        let mut stats = self.stats.snapshot();
        stats.queued_messages = self.life.entry.len();
        stats
    }

    pub(crate) fn send(&self, envelope: Envelope<K>) -> Result<(), Envelope<K>> {
        self.mailbox.send(envelope)
    }

    /// The stage's identity.
    pub fn id(&self) -> StageId {
        self.id
    }

    /// Whether the stage is still running.
    pub fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
    }

    /// Sends a message to the stage's `handle_message` without waiting, whatever the
    /// number of messages already queued: **unbounded**. A loop of casts at a stage
    /// slower than the loop grows its mailbox without end; where the sender can wait,
    /// use [`StageRef::cast_when_room`], and where it cannot, [`StageRef::try_cast`].
    ///
    /// # Errors
    ///
    /// The message is given back if the stage is not alive.
    pub fn cast(&self, message: K::Message) -> Result<(), SendError<K::Message>> {
        self.life.entry.reserve_unbounded();
        self.send_message(message).map_err(SendError)
    }

    /// Sends a message to the stage's `handle_message` if its mailbox has room: fewer
    /// user messages (casts, calls, infos) queued than the capacity set on its
    /// builder ([`DEFAULT_MESSAGE_CAPACITY`](crate::builder::DEFAULT_MESSAGE_CAPACITY) by
    /// default). Never waits.
    ///
    /// ```
    /// # use gen_stage::error::TryCastError;
    /// # use gen_stage::{BoxError, Consumer, ConsumerContext, SubscriptionTag};
    /// struct Log;
    ///
    /// impl Consumer for Log {
    ///     type Event = ();
    ///     type Message = String;
    /// #   async fn handle_events(&mut self, _: Vec<()>, _: SubscriptionTag, _: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> { Ok(()) }
    ///     async fn handle_message(&mut self, line: String, _ctx: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
    ///         println!("{line}");
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let log = gen_stage::consumer(Log).message_capacity(2).start().await?;
    /// // Nothing runs the stage between these lines (one thread, no await): the
    /// // third line finds the mailbox full and comes back.
    /// log.try_cast("one".to_owned())?;
    /// log.try_cast("two".to_owned())?;
    /// match log.try_cast("three".to_owned()) {
    ///     Err(TryCastError::Full(line)) => assert_eq!(line, "three"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The message is given back: [`TryCastError::Full`] if the mailbox has no room,
    /// [`TryCastError::NotAlive`] if the stage is not alive.
    pub fn try_cast(&self, message: K::Message) -> Result<(), TryCastError<K::Message>> {
        if !self.life.entry.try_reserve() {
            return Err(if self.is_alive() {
                TryCastError::Full(message)
            } else {
                TryCastError::NotAlive(message)
            });
        }
        self.send_message(message).map_err(TryCastError::NotAlive)
    }

    /// Sends a message to the stage's `handle_message` once its mailbox has room (see
    /// [`StageRef::try_cast`]): a fast sender is paced by the stage.
    ///
    /// # Errors
    ///
    /// The message is given back if the stage is not alive, or stops while the
    /// sender waits.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops the message unsent (if it was
    /// waiting for room) or leaves it sent.
    pub async fn cast_when_room(&self, message: K::Message) -> Result<(), SendError<K::Message>> {
        tokio::select! {
            () = self.life.entry.reserve() => {}
            () = self.mailbox.closed() => return Err(SendError(message)),
        }
        self.send_message(message).map_err(SendError)
    }

    /// Sends a user message whose place in the bound is taken; gives it back (and the
    /// place) if the stage is not alive.
    fn send_message(&self, message: K::Message) -> Result<(), K::Message> {
        self.send_message_of(message, |message| message)
    }

    /// Casts the message `build` makes of `payload`; gives `payload` back if the stage
    /// is not alive.
    pub(crate) fn cast_of<P>(
        &self,
        payload: P,
        build: impl FnOnce(P) -> K::Message,
    ) -> Result<(), P> {
        self.life.entry.reserve_unbounded();
        self.send_message_of(payload, build)
    }

    /// Sends the message `build` makes of `payload`, its place in the bound taken;
    /// gives `payload` back (and the place) if the stage is not alive.
    fn send_message_of<P>(&self, payload: P, build: impl FnOnce(P) -> K::Message) -> Result<(), P> {
        self.post(payload, |payload| {
            Envelope::Stage(ForStage::Message(build(payload)))
        })
        .inspect_err(|_| self.life.entry.release())
    }

    /// Sends what `wrap` makes of `payload`, or gives `payload` back if the stage's
    /// mailbox is closed. Mail that loses the race with the closing, or that a view
    /// does not take, is disposed of as a stopped stage disposes of its mailbox.
    pub(crate) fn post<P>(&self, payload: P, wrap: impl FnOnce(P) -> Envelope<K>) -> Result<(), P> {
        if self.mailbox.is_closed() {
            return Err(payload);
        }
        if let Err(envelope) = self.mailbox.send(wrap(payload)) {
            if envelope.is_user_message() {
                self.life.entry.release();
            }
            self.stats.add_unhandled(envelope.event_count());
            envelope.refuse(|| {
                self.life
                    .stopping()
                    .cloned()
                    .unwrap_or(ExitReason::NotAlive)
            });
        }
        Ok(())
    }

    /// Sends a request built around a [`ReplyTo`] and waits up to
    /// [`DEFAULT_CALL_TIMEOUT`] for the reply.
    ///
    /// The message type usually has a variant holding the reply handle, so the variant's
    /// constructor is the argument:
    ///
    /// ```
    /// # use gen_stage::{BoxError, Producer, ProducerContext, ReplyTo};
    /// enum Request {
    ///     Count(ReplyTo<u64>),
    /// }
    /// # struct Counter(u64);
    /// # impl Producer for Counter {
    /// #     type Event = u64;
    /// #     type Message = Request;
    /// #     async fn handle_demand(&mut self, _: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> { Ok(vec![]) }
    /// #     async fn handle_message(&mut self, message: Request, _: &mut ProducerContext<'_, Self>) -> Result<(), BoxError> {
    /// #         match message { Request::Count(reply) => reply.send(self.0) }
    /// #         Ok(())
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let counter = gen_stage::producer(Counter(7)).start().await.unwrap();
    /// let count = counter.call(Request::Count).await.unwrap();
    /// assert_eq!(count, 7);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] if no reply came in time; [`CallError::NotAlive`] if the
    /// stage is not alive or dropped the reply handle without replying.
    ///
    /// # Cancel safety
    ///
    /// The request is sent at once: dropping the future only stops the wait. The
    /// stage still handles the request, and its reply goes nowhere.
    pub async fn call<R: Send + 'static>(
        &self,
        request: impl FnOnce(ReplyTo<R>) -> K::Message,
    ) -> Result<R, CallError> {
        self.call_timeout(request, DEFAULT_CALL_TIMEOUT).await
    }

    /// [`StageRef::call`] with a given timeout.
    ///
    /// # Errors
    ///
    /// As for [`StageRef::call`].
    pub async fn call_timeout<R: Send + 'static>(
        &self,
        request: impl FnOnce(ReplyTo<R>) -> K::Message,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // A call is a user message: it waits for room in the mailbox, within its
        // timeout.
        tokio::select! {
            biased;
            () = self.mailbox.closed() => return Err(CallError::NotAlive),
            reserved = tokio::time::timeout_at(deadline, self.life.entry.reserve()) => {
                reserved.map_err(|_| CallError::Timeout)?;
            }
        }
        let (reply, receiver) = ReplyTo::for_stage(self.life.clone());
        self.send_message(request(reply))
            .map_err(|_| CallError::NotAlive)?;
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(self.gone_error()),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Why a call got no reply from a stage that dropped it: the reason the stage
    /// stops, if it does.
    fn gone_error(&self) -> CallError {
        match self.life.stopping() {
            Some(reason) => CallError::Stopped(reason.clone()),
            None => CallError::NotAlive,
        }
    }

    /// Sends the envelope `make` builds around a reply handle, and waits up to
    /// `timeout` for the reply.
    async fn query<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Envelope<K>,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let (sender, receiver) = oneshot::channel();
        self.send(make(sender)).map_err(|_| CallError::NotAlive)?;
        wait_reply(receiver, timeout).await
    }

    /// Sends a message that reaches `handle_message` only after every event the stage
    /// had buffered before it has been dispatched; returns once it is queued.
    ///
    /// On a consumer, or a producer with nothing buffered, it is handled right away.
    ///
    /// # Errors
    ///
    /// [`SyncInfoError::NotAlive`], with the message, if the stage is not alive;
    /// [`SyncInfoError::Timeout`] if it did not take the message in within
    /// [`DEFAULT_CALL_TIMEOUT`] (it is busy in a hook; it still has the message).
    ///
    /// # Cancel safety
    ///
    /// The message is sent at once: dropping the future only stops the wait.
    pub async fn sync_info(&self, message: K::Message) -> Result<(), SyncInfoError<K::Message>> {
        let deadline = tokio::time::Instant::now() + DEFAULT_CALL_TIMEOUT;
        // A user message: it waits for room in the mailbox, within the timeout.
        tokio::select! {
            biased;
            () = self.mailbox.closed() => return Err(SyncInfoError::NotAlive(message)),
            reserved = tokio::time::timeout_at(deadline, self.life.entry.reserve()) => {
                if reserved.is_err() {
                    return Err(SyncInfoError::Timeout);
                }
            }
        }
        let (queued, receiver) = oneshot::channel();
        self.send_info(message, Some(queued))
            .map_err(SyncInfoError::NotAlive)?;
        // The stage acknowledges as soon as the info is queued; if it stops first the
        // message still reached it.
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(_) => Ok(()),
            Err(_) => Err(SyncInfoError::Timeout),
        }
    }

    /// Like [`StageRef::sync_info`], without waiting.
    ///
    /// # Errors
    ///
    /// The message is given back if the stage is not alive.
    pub fn async_info(&self, message: K::Message) -> Result<(), SendError<K::Message>> {
        self.life.entry.reserve_unbounded();
        self.send_info(message, None).map_err(SendError)
    }

    /// Sends an info whose place in the bound is taken; gives it back (and the place)
    /// if the stage is not alive.
    fn send_info(
        &self,
        message: K::Message,
        queued: Option<oneshot::Sender<()>>,
    ) -> Result<(), K::Message> {
        self.post(message, |message| {
            Envelope::Stage(ForStage::Info { message, queued })
        })
        .inspect_err(|_| self.life.entry.release())
    }

    /// Stops the stage with `reason` and waits until it has stopped: its `terminate`
    /// hook ran (its peers are told right after).
    ///
    /// The stop overtakes the mailbox: the stage finishes the batch (or message) in
    /// hand, then stops; events still queued are not handled, and are counted in
    /// [`StageStats::events_unhandled`]. A producer's events already sent to its
    /// consumers are theirs to handle. To let a consumer handle what was delivered to
    /// it first, use [`StageRef::drain_and_stop`].
    ///
    /// Not from the stage's own hooks: the stage would wait for itself. A hook stops
    /// its stage by returning an error or with its context's `stop`; the same goes
    /// for [`StageRef::call`] on the stage itself, which would time out.
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    ///
    /// # Cancel safety
    ///
    /// The stop is sent at once: dropping the future only stops the wait.
    pub async fn stop(&self, reason: ExitReason) -> Result<(), NotAlive> {
        self.request_stop(reason).map_err(|_| NotAlive)?;
        self.stopped().await;
        Ok(())
    }

    /// Like [`StageRef::stop`], bounded: if the stage has not stopped within `limit`
    /// (a hook that does not return), the hook's future is dropped and `terminate`
    /// runs with [`ExitReason::ShutdownTimedOut`]; if `terminate` too outlasts
    /// `limit`, the stage is killed. Returns the reason the stage stopped with.
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    ///
    /// # Cancel safety
    ///
    /// The stop is sent at once: dropping the future stops the wait and the bound.
    pub async fn stop_within(
        &self,
        reason: ExitReason,
        limit: Duration,
    ) -> Result<ExitReason, NotAlive> {
        self.request_stop(reason).map_err(|_| NotAlive)?;
        Ok(self.finish_stop_within(limit).await)
    }

    /// Waits `limit` for a stop asked for, then abandons the work in hand, then kills.
    pub(crate) async fn finish_stop_within(&self, limit: Duration) -> ExitReason {
        if let Ok(reason) = tokio::time::timeout(limit, self.stopped()).await {
            return reason;
        }
        self.life.abandon();
        if let Ok(reason) = tokio::time::timeout(limit, self.stopped()).await {
            return reason;
        }
        self.kill();
        self.stopped().await
    }

    /// Asks the stage to stop before it handles anything more.
    pub(crate) fn request_stop(&self, reason: ExitReason) -> Result<(), NotAlive> {
        self.life.request_stop(reason.clone());
        // Wakes the loop if it waits for mail; it sees the request first.
        self.send(Envelope::Stage(ForStage::Stop(reason)))
            .map_err(|_| NotAlive)
    }

    /// Stops the stage once it has handled what was delivered to it, within
    /// `timeout`, and waits until it has stopped; returns the reason it stopped with.
    ///
    /// A stage that receives events first cancels its subscriptions (its producers
    /// send nothing more, and `handle_cancel` runs for each once everything it sent
    /// has been handled). A stage that emits stops producing (`handle_demand` is no
    /// longer called) and stops once its buffer has gone out to its consumers, or no
    /// consumer is left. Then the stage stops with `reason`, and its consumers learn
    /// it after the events it sent. If that has not happened within `timeout`, the
    /// drain ends as [`StageRef::stop`] does: what is still queued is not handled.
    ///
    /// Draining a pipeline's producers this way lets every stage downstream finish
    /// its work: a finite pipeline winds down, delivering everything (with `reason`
    /// [`ExitReason::Normal`]).
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    ///
    /// # Cancel safety
    ///
    /// The request is sent at once: dropping the future only stops the wait (the
    /// drain still ends within `timeout`).
    pub async fn drain_and_stop(
        &self,
        reason: ExitReason,
        timeout: Duration,
    ) -> Result<ExitReason, NotAlive> {
        self.life.request_drain(reason.clone(), timeout);
        self.send(Envelope::Stage(ForStage::Wake))
            .map_err(|_| NotAlive)?;
        Ok(self.stopped().await)
    }

    /// Returns once the stage has dealt with everything sent to it before this call:
    /// events, asks, subscriptions and messages queued in its mailbox. A consumer has
    /// handled the events queued before (a producer-consumer may still hold some for
    /// want of demand downstream); a producer has answered the asks (and emitted). For
    /// tests and drains, instead of polling [`StageRef::demand_snapshot`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// use gen_stage::SubscribeOptions;
    ///
    /// let numbers = gen_stage::source::from_iter(0_u32..).start().await?;
    /// let options = SubscribeOptions::new().max_demand(10);
    /// let mut stream = gen_stage::stream::subscribe(&numbers, options)?;
    /// assert_eq!(futures::StreamExt::next(&mut stream).await, Some(0));
    /// numbers.barrier().await?;
    /// // The stream's ask (10 events) has been answered.
    /// assert_eq!(numbers.stats().events_emitted, 10);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError::NotAlive`] if the stage stopped first, [`CallError::Timeout`] after
    /// [`DEFAULT_CALL_TIMEOUT`].
    pub async fn barrier(&self) -> Result<(), CallError> {
        self.query(
            |reached| Envelope::Stage(ForStage::Barrier(reached)),
            DEFAULT_CALL_TIMEOUT,
        )
        .await
    }

    /// The demand pending on each of the stage's subscriptions, both sides, sorted by
    /// tag: a snapshot the stage answers between two messages (the totals are in
    /// [`StageRef::stats`], which does not wait for the stage).
    ///
    /// # Errors
    ///
    /// [`CallError::NotAlive`] if the stage is not alive; [`CallError::Timeout`] if it
    /// did not answer within [`DEFAULT_CALL_TIMEOUT`] (it is busy in a hook).
    pub async fn demand_snapshot(
        &self,
    ) -> Result<Vec<crate::stats::SubscriptionDemand>, CallError> {
        let mut demands = self
            .query(
                |reply| Envelope::Stage(ForStage::DemandSnapshot(reply)),
                DEFAULT_CALL_TIMEOUT,
            )
            .await?;
        demands.sort_by_key(|demand| demand.tag);
        Ok(demands)
    }

    /// Waits until the stage has stopped, and returns why.
    pub async fn stopped(&self) -> ExitReason {
        self.exit.stopped().await
    }

    /// The reason the stage stopped, or `None` while it runs.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        // A killed stage publishes nothing: its task is gone with the sender.
        self.exit.reason()
    }
}

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

/// Waits up to `timeout` for a reply: [`CallError::NotAlive`] if the stage dropped the
/// reply handle (it stopped, or would not reply).
pub(crate) async fn wait_reply<R>(
    receiver: oneshot::Receiver<R>,
    timeout: Duration,
) -> Result<R, CallError> {
    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Err(CallError::NotAlive),
        Err(_) => Err(CallError::Timeout),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::ProducerKind;

    struct Nothing;

    impl crate::Producer for Nothing {
        type Event = ();
        type Message = ();

        async fn handle_demand(
            &mut self,
            _: usize,
            _: &mut crate::ProducerContext<'_, Self>,
        ) -> Result<Vec<()>, crate::BoxError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_kill_asked_before_the_task_is_known_is_carried_out_when_it_is() {
        let (mailbox, _receiver) = tokio::sync::mpsc::unbounded_channel();
        let (_exit, exit) = crate::exit_watch::channel();
        let life = Arc::new(Lifecycle::new(1));
        let stage = StageRef::<ProducerKind<Nothing>>::new(
            Address::Mailbox(mailbox),
            exit,
            Arc::default(),
            life,
        );
        // Found by name while it starts: killed before its task is spawned.
        stage.kill();
        let task = tokio::spawn(std::future::pending::<()>());
        stage.set_abort(task.abort_handle());
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
