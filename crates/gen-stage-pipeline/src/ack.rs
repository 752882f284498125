//! The obligation a message carries: its acknowledgement handle, the outcomes it can
//! end in, and the [`Acknowledger`] that tells the source.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::failure::{Failure, SharedError};
use crate::settle::Settler;
use crate::sync::lock;

/// Names a message to its acknowledger: a delivery tag, a stream sequence, a row id.
/// Tags need only be unique within one [`AckGroup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckTag(pub u64);

/// How a message ends. Every message taken into a pipeline ends in exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Handled: the source forgets it.
    Ack,
    /// Failed this time: the source delivers it again after `after`, counting the
    /// attempt.
    Retry {
        /// How long the source waits before it delivers the message again.
        after: Duration,
    },
    /// Failed for good: the source sends it to its dead-letter route, if it has one.
    Reject,
    /// The source must never deliver it again, and it goes nowhere.
    Terminate,
    /// Not handled (the pipeline drained before it, or its handle was dropped): left
    /// for the source to deliver again, as it would after a consumer it lost.
    Release,
}

impl Outcome {
    /// Whether the message was handled successfully.
    pub fn is_ack(self) -> bool {
        matches!(self, Outcome::Ack)
    }

    /// Its index among the kinds of outcome, for counters kept per kind.
    pub(crate) fn kind_index(self) -> usize {
        match self {
            Outcome::Ack => 0,
            Outcome::Retry { .. } => 1,
            Outcome::Reject => 2,
            Outcome::Terminate => 3,
            Outcome::Release => 4,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ack => f.write_str("ack"),
            Outcome::Retry { after } => write!(f, "retry after {after:?}"),
            Outcome::Reject => f.write_str("reject"),
            Outcome::Terminate => f.write_str("terminate"),
            Outcome::Release => f.write_str("release"),
        }
    }
}

/// One message's outcome, as its acknowledger receives it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settled {
    /// The message.
    pub tag: AckTag,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed, for an outcome other than [`Outcome::Ack`] that a failure caused
    /// (`None` for a message released unhandled).
    pub failure: Option<Failure>,
}

/// A failed acknowledgement: the source could not be told (its connection went down,
/// it refused the call). The pipeline counts it per outcome and goes on; the source's
/// own redelivery covers the messages.
#[derive(Clone, Debug)]
pub struct AckError(SharedError);

impl AckError {
    /// An error saying why the acknowledgement failed.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AckError(Arc::from(error.into()))
    }
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acknowledgement failed: {}", self.0)
    }
}

impl std::error::Error for AckError {}

/// Tells a source how its messages ended. A connector implements it once per
/// connection or consumer; the pipeline calls it with the outcomes of many messages
/// at once, in the order they were settled, from a task of its own (one call at a
/// time per pipeline), so a slow broker call never holds up a stage.
///
/// An error is counted per outcome in the pipeline's report and logged; it never
/// stops the pipeline, and the pipeline never retries it (a connection that went down
/// took its deliveries with it: the broker delivers them again).
///
/// # Example
///
/// An acknowledger that records what it is told:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use gen_stage_pipeline::{AckError, Acknowledger, Outcome, Settled};
///
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<(u64, Outcome)>>);
///
/// impl Acknowledger for Recorder {
///     async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
///         let mut seen = self.0.lock().map_err(|_| AckError::new("poisoned"))?;
///         seen.extend(settled.iter().map(|s| (s.tag.0, s.outcome)));
///         Ok(())
///     }
/// }
/// ```
pub trait Acknowledger: Send + Sync + 'static {
    /// Settles messages of this acknowledger: each [`Settled`] names one by its tag.
    fn ack(&self, settled: Vec<Settled>) -> impl Future<Output = Result<(), AckError>> + Send;
}

/// A shared acknowledger: keep an `Arc` of it to read its state.
impl<A: Acknowledger> Acknowledger for Arc<A> {
    fn ack(&self, settled: Vec<Settled>) -> impl Future<Output = Result<(), AckError>> + Send {
        (**self).ack(settled)
    }
}

/// [`Acknowledger`] behind a pointer.
trait ErasedAcknowledger: Send + Sync {
    fn ack_boxed(&self, settled: Vec<Settled>) -> BoxFuture<'_, Result<(), AckError>>;
}

impl<A: Acknowledger> ErasedAcknowledger for A {
    fn ack_boxed(&self, settled: Vec<Settled>) -> BoxFuture<'_, Result<(), AckError>> {
        Box::pin(self.ack(settled))
    }
}

/// An acknowledger shared by the messages it settles: a source makes one per
/// connection (or per consumer, per partition) and hands each message a
/// [`handle`](AckGroup::handle) of it. The pipeline groups settled messages by their
/// group and calls its acknowledger once per group.
pub struct AckGroup {
    acknowledger: Box<dyn ErasedAcknowledger>,
    /// The pipeline that took the group's messages in last: where its dropped
    /// handles are counted (a source outlives a pipeline that a supervisor restarts).
    settler: Mutex<Option<Arc<Settler>>>,
}

impl fmt::Debug for AckGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckGroup")
            .field("in_pipeline", &self.settler().is_some())
            .finish_non_exhaustive()
    }
}

impl AckGroup {
    /// A group whose messages `acknowledger` settles.
    pub fn new(acknowledger: impl Acknowledger) -> Arc<Self> {
        Arc::new(AckGroup {
            acknowledger: Box::new(acknowledger),
            settler: Mutex::new(None),
        })
    }

    /// The handle of the group's message `tag`: put it in the message.
    pub fn handle(self: &Arc<Self>, tag: AckTag) -> AckHandle {
        AckHandle {
            tag,
            group: Some(self.clone()),
        }
    }

    /// Calls the acknowledger.
    pub(crate) fn ack(&self, settled: Vec<Settled>) -> BoxFuture<'_, Result<(), AckError>> {
        self.acknowledger.ack_boxed(settled)
    }

    /// Binds the group to the pipeline its messages entered. A source that feeds two
    /// pipelines at once has its dropped handles counted in the one that took a
    /// message of it in last.
    pub(crate) fn bind(&self, settler: &Arc<Settler>) {
        let mut bound = lock(&self.settler);
        if !bound
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, settler))
        {
            *bound = Some(settler.clone());
        }
    }

    /// The pipeline the group is bound to, if any.
    fn settler(&self) -> Option<Arc<Settler>> {
        lock(&self.settler).clone()
    }
}

/// A message's acknowledgement handle: the obligation to settle it, exactly once.
///
/// It is a tag and a shared reference to its [`AckGroup`]: no allocation per message.
/// The pipeline settles it; a handle dropped without an outcome (its message was lost
/// to a panic, a cancelled callback, a full buffer) settles as the pipeline's
/// [`on_drop`](crate::PipelineBuilder::on_drop) outcome, [`Outcome::Release`] unless
/// configured, and is counted. A handle dropped before its message entered a pipeline
/// releases it to its acknowledger directly (on the current tokio runtime).
#[derive(Debug)]
pub struct AckHandle {
    tag: AckTag,
    /// `None` once settled, or for a message with nothing to settle.
    group: Option<Arc<AckGroup>>,
}

/// The tag of a handle whose outcome was already told ([`AckHandle::settle_now`]).
const TOLD: AckTag = AckTag(u64::MAX);

impl AckHandle {
    /// A handle with nothing to settle: for messages that no source waits on (tests,
    /// data made inside the pipeline).
    pub fn none() -> Self {
        AckHandle {
            tag: AckTag(0),
            group: None,
        }
    }

    /// The message's tag.
    pub fn tag(&self) -> AckTag {
        self.tag
    }

    /// Gives up the obligation without an outcome and returns the tag: for a source
    /// taking back a message it fetched and never handed to a pipeline (it then
    /// releases the message itself).
    pub fn into_tag(mut self) -> AckTag {
        self.group = None;
        self.tag
    }

    /// Takes the obligation out, to settle it.
    pub(crate) fn take(&mut self) -> Option<(Arc<AckGroup>, AckTag)> {
        self.group.take().map(|group| (group, self.tag))
    }

    /// Whether the outcome was already told ([`AckHandle::settle_now`]): the
    /// pipeline then neither tells nor counts it again.
    pub(crate) fn is_told(&self) -> bool {
        self.group.is_none() && self.tag == TOLD
    }

    /// Tells the outcome now, through the pipeline the message entered (where it is
    /// counted), or straight to the acknowledger for a message in none.
    pub(crate) fn settle_now(&mut self, outcome: Outcome) {
        let Some(group) = self.group.take() else {
            return;
        };
        let tag = std::mem::replace(&mut self.tag, TOLD);
        match group.settler() {
            Some(settler) => settler.settle_one(group.clone(), tag, outcome),
            None => tell_unbound(group, tag, outcome),
        }
    }

    /// The group, while the handle still has an obligation.
    pub(crate) fn group(&self) -> Option<&Arc<AckGroup>> {
        self.group.as_ref()
    }
}

impl Drop for AckHandle {
    // Inlined: every settled message drops a handle with nothing left to do.
    #[inline]
    fn drop(&mut self) {
        if self.group.is_some() {
            self.drop_unsettled();
        }
    }
}

impl AckHandle {
    /// A handle dropped with its obligation: settled as the pipeline's `on_drop`.
    #[cold]
    #[inline(never)]
    fn drop_unsettled(&mut self) {
        let Some(group) = self.group.take() else {
            return;
        };
        match group.settler() {
            Some(settler) => settler.dropped(group.clone(), self.tag),
            None => {
                tracing::debug!(tag = ?self.tag, "message dropped outside a pipeline: released");
                tell_unbound(group, self.tag, Outcome::Release);
            }
        }
    }
}

/// Tells the acknowledger of a message outside a pipeline its outcome at once, on the
/// current runtime (there is no pipeline to count it).
fn tell_unbound(group: Arc<AckGroup>, tag: AckTag, outcome: Outcome) {
    let settled = vec![Settled {
        tag,
        outcome,
        failure: None,
    }];
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(error) = group.ack(settled).await {
                    tracing::warn!(?tag, %outcome, %error, "telling the outcome of a message outside a pipeline failed");
                }
            });
        }
        Err(_) => tracing::error!(
            ?tag,
            "message dropped outside a pipeline and a tokio runtime: its source is not told"
        ),
    }
}
