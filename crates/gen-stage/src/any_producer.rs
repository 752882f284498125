//! Handles typed by the events a stage emits, not by the stage: what a topology holds
//! when its producers are of different types.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::{CallError, NotAlive};
use crate::exit::ExitReason;
use crate::handle::StageRef;
use crate::kind::EmitsEvents;
use crate::options::DemandMode;
use crate::stats::StageStats;
use crate::subscription::StageId;
use crate::supervision::child::Supervised;
use crate::upstream::Upstream;
use crate::upstream::sealed::{Port, Ports};
use crate::wire::ProducerPort;

/// A handle to a stage that emits events of type `T` (a producer or a
/// producer-consumer), whatever the stage's own type: a topology holds producers of
/// different types in one collection, and consumers subscribe to them all alike.
///
/// It does what needs no knowledge of the stage's messages: subscribe to it (every
/// `subscribe_to` takes it, as it takes a [`StageRef`]), stop it, read its statistics.
/// Like a `StageRef`, it keeps the stage's pipeline reachable while it is held.
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::{AnyProducer, CancelMode, SubscribeOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// // Two producers of different types, both of numbers.
/// let small = gen_stage::source::from_iter(vec![1_u64, 2]).start().await?;
/// let large = futures::stream::iter(vec![100_u64, 200]);
/// let large = gen_stage::source::from_stream(large).start().await?;
/// let sources: Vec<AnyProducer<u64>> = vec![small.into(), large.into()];
///
/// // Temporary: the stream ends once both have ended, not with the first.
/// let options = || SubscribeOptions::new().cancel(CancelMode::Temporary);
/// let mut stream = gen_stage::stream::subscribe(&sources[0], options())?;
/// stream.subscribe_to(&sources[1], options())?;
/// let mut events: Vec<u64> = stream.collect().await;
/// events.sort_unstable();
/// assert_eq!(events, [1, 2, 100, 200]);
/// for source in &sources {
///     assert!(source.stopped().await.is_normal());
/// }
/// # Ok(())
/// # }
/// ```
pub struct AnyProducer<T> {
    stage: Box<dyn ErasedProducer<T>>,
}

impl<T: Send + 'static> AnyProducer<T> {
    /// The stage's identity.
    pub fn id(&self) -> StageId {
        self.stage.id()
    }

    /// Whether the stage is still running.
    pub fn is_alive(&self) -> bool {
        self.stage.is_alive()
    }

    /// The stage's statistics (see [`StageRef::stats`]).
    pub fn stats(&self) -> StageStats {
        self.stage.stats()
    }

    /// Stops the stage at once, without `terminate` (see [`StageRef::kill`]).
    pub fn kill(&self) {
        self.stage.kill();
    }

    /// Why the stage stopped; `None` while it runs (see [`StageRef::exit_reason`]).
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.stage.exit_reason()
    }

    /// Stops the stage with `reason` and waits for it (see [`StageRef::stop`]).
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    pub async fn stop(&self, reason: ExitReason) -> Result<(), NotAlive> {
        self.stage.stop(reason).await
    }

    /// Stops the stage with `reason`, bounded by `limit` (see [`StageRef::stop_within`]).
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    pub async fn stop_within(
        &self,
        reason: ExitReason,
        limit: Duration,
    ) -> Result<ExitReason, NotAlive> {
        self.stage.stop_within(reason, limit).await
    }

    /// Lets the stage finish what it holds, then stops it (see
    /// [`StageRef::drain_and_stop`]).
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    pub async fn drain_and_stop(
        &self,
        reason: ExitReason,
        timeout: Duration,
    ) -> Result<ExitReason, NotAlive> {
        self.stage.drain_and_stop(reason, timeout).await
    }

    /// Waits for the stage to stop; returns why (see [`StageRef::stopped`]).
    pub async fn stopped(&self) -> ExitReason {
        self.stage.stopped().await
    }

    /// Switches the stage's demand mode (see [`StageRef::set_demand_mode`]): a
    /// topology starts its producers accumulating, subscribes every consumer, then
    /// switches them all to forward, so that no producer finishes before the last
    /// consumer is there.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use gen_stage::{AnyProducer, DemandMode, SubscribeOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let source: AnyProducer<u32> = gen_stage::source::from_iter(0..4)
    ///     .demand_mode(DemandMode::Accumulate)
    ///     .start()
    ///     .await?
    ///     .into();
    /// let first = gen_stage::stream::subscribe(&source, SubscribeOptions::new())?;
    /// let second = gen_stage::stream::subscribe(&source, SubscribeOptions::new())?;
    /// // Both are subscribed before anything goes out.
    /// source.set_demand_mode(DemandMode::Forward)?;
    /// let mut all: Vec<u32> = futures::stream::select(first, second).collect().await;
    /// all.sort_unstable();
    /// assert_eq!(all, [0, 1, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the stage had already stopped.
    pub fn set_demand_mode(&self, mode: DemandMode) -> Result<(), NotAlive> {
        self.stage.set_demand_mode(mode)
    }

    /// Returns once the stage has dealt with everything sent to it before (see
    /// [`StageRef::barrier`]).
    ///
    /// # Errors
    ///
    /// As for [`StageRef::barrier`].
    pub async fn barrier(&self) -> Result<(), CallError> {
        self.stage.barrier().await
    }
}

impl<T> Clone for AnyProducer<T> {
    fn clone(&self) -> Self {
        AnyProducer {
            stage: self.stage.clone_box(),
        }
    }
}

impl<T> PartialEq for AnyProducer<T> {
    fn eq(&self, other: &Self) -> bool {
        self.stage.id() == other.stage.id()
    }
}

impl<T> Eq for AnyProducer<T> {}

impl<T> fmt::Debug for AnyProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyProducer")
            .field("id", &self.stage.id())
            .field("alive", &self.stage.is_alive())
            .finish()
    }
}

impl<K: EmitsEvents> From<StageRef<K>> for AnyProducer<K::Out> {
    fn from(stage: StageRef<K>) -> Self {
        AnyProducer {
            stage: Box::new(stage),
        }
    }
}

impl<K: EmitsEvents> From<&StageRef<K>> for AnyProducer<K::Out> {
    fn from(stage: &StageRef<K>) -> Self {
        AnyProducer::from(stage.clone())
    }
}

/// What an [`AnyProducer`] needs of the stage it holds, whatever its type.
trait ErasedProducer<T>: Send + Sync {
    fn id(&self) -> StageId;
    fn is_alive(&self) -> bool;
    fn stats(&self) -> StageStats;
    fn kill(&self);
    fn exit_reason(&self) -> Option<ExitReason>;
    fn stop(&self, reason: ExitReason) -> BoxFuture<'_, Result<(), NotAlive>>;
    fn stop_within(
        &self,
        reason: ExitReason,
        limit: Duration,
    ) -> BoxFuture<'_, Result<ExitReason, NotAlive>>;
    fn drain_and_stop(
        &self,
        reason: ExitReason,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<ExitReason, NotAlive>>;
    fn stopped(&self) -> BoxFuture<'_, ExitReason>;
    fn barrier(&self) -> BoxFuture<'_, Result<(), CallError>>;
    fn set_demand_mode(&self, mode: DemandMode) -> Result<(), NotAlive>;
    fn port(&self) -> Box<dyn ProducerPort<T>>;
    fn held_port(&self) -> Box<dyn ProducerPort<T>>;
    fn clone_box(&self) -> Box<dyn ErasedProducer<T>>;
    fn supervised(&self) -> &dyn Supervised;
}

impl<K: EmitsEvents> ErasedProducer<K::Out> for StageRef<K> {
    fn id(&self) -> StageId {
        StageRef::id(self)
    }

    fn is_alive(&self) -> bool {
        StageRef::is_alive(self)
    }

    fn stats(&self) -> StageStats {
        StageRef::stats(self)
    }

    fn kill(&self) {
        StageRef::kill(self);
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        StageRef::exit_reason(self)
    }

    fn stop(&self, reason: ExitReason) -> BoxFuture<'_, Result<(), NotAlive>> {
        Box::pin(StageRef::stop(self, reason))
    }

    fn stop_within(
        &self,
        reason: ExitReason,
        limit: Duration,
    ) -> BoxFuture<'_, Result<ExitReason, NotAlive>> {
        Box::pin(StageRef::stop_within(self, reason, limit))
    }

    fn drain_and_stop(
        &self,
        reason: ExitReason,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<ExitReason, NotAlive>> {
        Box::pin(StageRef::drain_and_stop(self, reason, timeout))
    }

    fn stopped(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(StageRef::stopped(self))
    }

    fn barrier(&self) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(StageRef::barrier(self))
    }

    fn set_demand_mode(&self, mode: DemandMode) -> Result<(), NotAlive> {
        StageRef::set_demand_mode(self, mode)
    }

    fn port(&self) -> Box<dyn ProducerPort<K::Out>> {
        StageRef::port(self)
    }

    fn held_port(&self) -> Box<dyn ProducerPort<K::Out>> {
        StageRef::held_port(self)
    }

    fn clone_box(&self) -> Box<dyn ErasedProducer<K::Out>> {
        Box::new(self.clone())
    }

    fn supervised(&self) -> &dyn Supervised {
        self
    }
}

/// A supervisor's child can be started as an `AnyProducer`: a topology keeps the
/// handle it is given, whatever the producer's type.
impl<T: Send + 'static> Supervised for AnyProducer<T> {
    fn stopped(&self) -> BoxFuture<'static, ExitReason> {
        self.stage.supervised().stopped()
    }

    fn request_stop(&self, reason: ExitReason) {
        self.stage.supervised().request_stop(reason);
    }

    fn abandon_work(&self) {
        self.stage.supervised().abandon_work();
    }

    fn kill(&self) {
        self.stage.supervised().kill();
    }
}

impl<T: Send + 'static> Upstream<T> for AnyProducer<T> {}

impl<T: Send + 'static> Ports<T> for AnyProducer<T> {
    fn port(&self) -> Port<T> {
        Port(self.stage.port())
    }

    fn held_port(&self) -> Port<T> {
        Port(self.stage.held_port())
    }
}
