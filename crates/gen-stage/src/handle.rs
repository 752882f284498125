//! Handles to running stages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::error::{CallError, NotAlive};
use crate::exit::ExitReason;
use crate::exit_watch::ExitWatch;
use crate::kind::{ConsumerKind, ProducerConsumerKind, ProducerKind, StageKind};
use crate::lifecycle::Lifecycle;
use crate::stats::{StageStats, StatsCell};
use crate::subscription::StageId;
use crate::wire::{Address, Envelope, ForStage, Forward};

mod messages;
mod producing;
mod subscribing;

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

    #[inline(always)]
    pub(crate) fn send(&self, envelope: Envelope<K>) -> Result<(), Envelope<K>> {
        self.mailbox.send(envelope)
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
            envelope.dispose(&self.stats, &self.life, || ExitReason::NotAlive);
        }
        Ok(())
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

    /// The stage's identity.
    pub fn id(&self) -> StageId {
        self.id
    }

    /// Whether the stage is still running.
    pub fn is_alive(&self) -> bool {
        !self.mailbox.is_closed()
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
