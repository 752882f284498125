//! A pipeline as the child of a user's supervisor: stopping it is a drain, bounded by
//! the child's shutdown time, and its stages get the immediate stop only after that.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use gen_stage::ExitReason;
use gen_stage::supervision::{ChildSpec, Restart, Shutdown, Supervised};

use crate::builder::PipelineBuilder;
use crate::handler::Handler;
use crate::pipeline::Pipeline;
use crate::sync::lock;

/// How long a drain may take when a supervisor stops a pipeline and its own shutdown
/// is not what bounds it (the supervisor's [`Shutdown::Graceful`] time cuts it
/// short).
const UNBOUNDED_DRAIN: Duration = Duration::from_secs(365 * 24 * 3600);

/// The pipeline a supervisor runs now: set at each (re)start, for the code that
/// sends test messages, reads snapshots, or changes the rate limit.
pub struct PipelineSlot<T>(Arc<Mutex<Option<Arc<Pipeline<T>>>>>);

impl<T> Clone for PipelineSlot<T> {
    fn clone(&self) -> Self {
        PipelineSlot(self.0.clone())
    }
}

impl<T> Default for PipelineSlot<T> {
    fn default() -> Self {
        PipelineSlot(Arc::new(Mutex::new(None)))
    }
}

impl<T> fmt::Debug for PipelineSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineSlot")
            .field("running", &lock(&self.0).is_some())
            .finish()
    }
}

impl<T> PipelineSlot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pipeline started last, if one was.
    pub fn get(&self) -> Option<Arc<Pipeline<T>>> {
        lock(&self.0).clone()
    }
}

/// A running pipeline, as a supervisor holds it.
struct PipelineChild<T>(Arc<Pipeline<T>>);

impl<T: Send + 'static> Supervised for PipelineChild<T> {
    fn stopped(&self) -> BoxFuture<'static, ExitReason> {
        let pipeline = self.0.clone();
        Box::pin(async move { pipeline.stopped().await })
    }

    /// A drain, on a task of its own: the supervisor bounds it with its shutdown.
    fn request_stop(&self, _reason: ExitReason) {
        let pipeline = self.0.clone();
        tokio::spawn(async move {
            pipeline.drain(UNBOUNDED_DRAIN).await;
        });
    }

    /// The shutdown's time is up: the stages stop at once, and what they hold
    /// settles as the pipeline's `on_drop`.
    fn abandon_work(&self) {
        self.0.kill();
    }

    fn kill(&self) {
        self.0.kill();
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// A child for a [`Supervisor`](gen_stage::supervision::Supervisor): `build` makes
    /// the pipeline's builder at each (re)start, and `slot` holds the pipeline running
    /// now. Stopping the child drains the pipeline, bounded by the child's shutdown
    /// (`Shutdown::Graceful(30 s)` by default, as Broadway's `shutdown`): when that
    /// time is up, the stages stop at once. A pipeline that fails (past its restart
    /// budget) stops, and the supervisor restarts it (`Restart::Permanent`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use gen_stage::BoxError;
    /// use gen_stage::supervision::Supervisor;
    /// use gen_stage_pipeline::{Handler, MemoryQueue, Message, Pipeline, PipelineSlot, ProcessorContext};
    ///
    /// struct Accept;
    ///
    /// impl Handler for Accept {
    ///     type Data = u64;
    ///
    ///     async fn handle_message(&self, _: &mut Message<u64>, _: &ProcessorContext) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let queue = MemoryQueue::new();
    /// queue.extend(0..10_u64);
    /// let slot = PipelineSlot::new();
    /// let source = queue.clone();
    /// let child = Pipeline::child_spec("orders", slot.clone(), move || {
    ///     let source = source.clone();
    ///     Pipeline::builder(Accept).producer(move || source.producer())
    /// });
    /// let supervisor = Supervisor::new().child(child).start().await?;
    /// queue.settled().await;
    /// // Stopping the supervisor drains the pipeline.
    /// supervisor.stop(gen_stage::ExitReason::Shutdown).await?;
    /// let report = slot.get().expect("started").counts();
    /// assert_eq!(report.settled.acked, 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn child_spec<H, F>(id: impl Into<String>, slot: PipelineSlot<T>, build: F) -> ChildSpec
    where
        H: Handler<Data = T>,
        F: Fn() -> PipelineBuilder<H> + Send + Sync + 'static,
    {
        ChildSpec::new(id, move || {
            let builder = build();
            let slot = slot.clone();
            async move {
                let pipeline = builder.start().await.map_err(|error| {
                    gen_stage::error::StartError::Init(ExitReason::error(error))
                })?;
                let pipeline = Arc::new(pipeline);
                *lock(&slot.0) = Some(pipeline.clone());
                Ok(PipelineChild(pipeline))
            }
        })
        .restart(Restart::Permanent)
        .shutdown(Shutdown::Graceful(Duration::from_secs(30)))
    }
}
