//! Handles that do not keep a stage reachable.

use std::fmt;

use crate::handle::StageRef;
use crate::kind::StageKind;
use crate::subscription::StageId;

/// A handle to a stage that does not keep it running: what a stage keeps in its own
/// state to reach itself or its peers later.
///
/// A [`StageRef`] user code holds keeps the stage's pipeline reachable (see the crate
/// guide, "Unreachable pipelines stop"), and so does one kept in a stage's state: a
/// consumer that keeps its producer's handle, or a stage that keeps a clone of its
/// own, keeps their pipeline running after every other handle is gone. Keep a
/// `WeakStageRef` instead ([`StageRef::downgrade`]), and
/// [`upgrade`](WeakStageRef::upgrade) it when needed.
///
/// ```
/// use gen_stage::{BoxError, Consumer, ConsumerContext, SubscriptionTag, WeakStageRef, ConsumerRef};
///
/// /// A consumer that reminds itself, from a task of its own, to flush.
/// struct Flusher { me: Option<WeakStageRef<gen_stage::kind::ConsumerKind<Flusher>>> }
///
/// impl Consumer for Flusher {
///     type Event = u64;
///     type Message = ();
///
///     async fn init(&mut self, ctx: &mut ConsumerContext<'_, Self>) -> Result<gen_stage::Init, BoxError> {
///         self.me = Some(ctx.stage_ref().downgrade());
///         Ok(gen_stage::Init::Start)
///     }
///
///     async fn handle_events(&mut self, _events: Vec<u64>, _from: SubscriptionTag, _ctx: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
///         if let Some(me) = self.me.as_ref().and_then(WeakStageRef::upgrade) {
///             // `me` counts while it lives: drop it once the message is sent.
///             let _ = me.cast(());
///         }
///         Ok(())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let flusher: ConsumerRef<Flusher> = gen_stage::consumer(Flusher { me: None }).start().await?;
/// assert!(flusher.downgrade().upgrade().is_some());
/// # Ok(())
/// # }
/// ```
pub struct WeakStageRef<K: StageKind> {
    stage: StageRef<K>,
}

impl<K: StageKind> WeakStageRef<K> {
    pub(crate) fn new(stage: StageRef<K>) -> Self {
        WeakStageRef { stage }
    }

    /// A handle that counts, if the stage is still running.
    pub fn upgrade(&self) -> Option<StageRef<K>> {
        self.stage.is_alive().then(|| self.stage.clone())
    }

    /// The stage's identity.
    pub fn id(&self) -> StageId {
        self.stage.id()
    }
}

impl<K: StageKind> Clone for WeakStageRef<K> {
    fn clone(&self) -> Self {
        WeakStageRef {
            stage: self.stage.uncounted(),
        }
    }
}

impl<K: StageKind> fmt::Debug for WeakStageRef<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakStageRef")
            .field("id", &self.stage.id())
            .finish_non_exhaustive()
    }
}
