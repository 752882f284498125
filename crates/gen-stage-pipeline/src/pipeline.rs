//! A running pipeline: its stages by layer, its counts, and its drain.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use gen_stage::kind::StageKind;
use gen_stage::stats::StageStats;
use gen_stage::{AnyProducer, ExitReason, StageRef};

use crate::activity::Activity;
use crate::keeper::Keeping;
use crate::snapshot::StageLayer;

use crate::handler::Handler;
use crate::rate_limit::{RateLimit, RateLimitState, RateLimiter};
use crate::report::PipelineReport;
use crate::settle::Settler;
use crate::topology::Pusher;

/// A stage of the pipeline, whatever its type: what a drain needs of it.
pub(crate) trait Drainable: Send + Sync {
    /// Drains the stage and waits until it stopped.
    fn drain(&self, timeout: Duration) -> BoxFuture<'_, ()>;
    /// Stops it at once: what it holds is dropped.
    fn kill(&self);
    /// Waits until it stopped.
    fn stopped(&self) -> BoxFuture<'_, ExitReason>;
    /// What it publishes about itself.
    fn stats(&self) -> StageStats;
    /// Whether its task still runs (a killed stage publishes no state).
    fn is_alive(&self) -> bool;
}

impl<T: Send + 'static> Drainable for AnyProducer<T> {
    fn drain(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.drain_and_stop(ExitReason::Shutdown, timeout).await;
        })
    }

    fn kill(&self) {
        AnyProducer::kill(self);
    }

    fn stopped(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(AnyProducer::stopped(self))
    }

    fn stats(&self) -> StageStats {
        AnyProducer::stats(self)
    }

    fn is_alive(&self) -> bool {
        AnyProducer::is_alive(self)
    }
}

impl<K: StageKind> Drainable for StageRef<K> {
    fn drain(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.drain_and_stop(ExitReason::Shutdown, timeout).await;
        })
    }

    fn kill(&self) {
        StageRef::kill(self);
    }

    fn stopped(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(StageRef::stopped(self))
    }

    fn stats(&self) -> StageStats {
        StageRef::stats(self)
    }

    fn is_alive(&self) -> bool {
        StageRef::is_alive(self)
    }
}

/// One place of the pipeline: its layer, name, the stage in it now (a producer that
/// failed is replaced) and its activity.
pub(crate) struct StageEntry {
    pub(crate) layer: StageLayer,
    pub(crate) name: String,
    pub(crate) stage: std::sync::Mutex<Arc<dyn Drainable>>,
    pub(crate) activity: Arc<Activity>,
}

/// A running pipeline of messages of type `T`: made by [`Pipeline::builder`].
///
/// Dropping it stops its stages without a drain: what they hold settles as the
/// pipeline's `on_drop` outcome. [`Pipeline::drain`] stops it gracefully.
pub struct Pipeline<T> {
    name: Arc<str>,
    settler: Arc<Settler>,
    /// Producers, processors, batchers, batch processors.
    layers: [Vec<Arc<StageEntry>>; 4],
    deadline_reached: std::sync::atomic::AtomicBool,
    /// One per producer stage, in order (replaced with the stage when it restarts).
    pub(crate) pushers: Vec<Arc<std::sync::Mutex<Arc<Pusher<T>>>>>,
    pub(crate) keeping: Arc<Keeping>,
    /// Closed when the pipeline is dropped: the producers' keepers end.
    _gone: tokio::sync::watch::Sender<()>,
    /// The next producer to push test messages to.
    pub(crate) next_push: std::sync::atomic::AtomicUsize,
    limiter: Option<RateLimiter>,
    /// Sources whose connection the snapshot reports.
    pub(crate) sources: Vec<Arc<dyn crate::SourceHealth>>,
    data: PhantomData<fn() -> T>,
}

/// [`Pipeline::set_rate_limit`] on a pipeline started without a rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRateLimit;

impl fmt::Display for NoRateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pipeline was started without a rate limit")
    }
}

impl std::error::Error for NoRateLimit {}

impl<T> fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("stages", &self.layers.iter().map(Vec::len).sum::<usize>())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts building a pipeline whose callbacks are `handler`'s.
    pub fn builder<H: Handler<Data = T>>(handler: H) -> crate::PipelineBuilder<H> {
        crate::PipelineBuilder::new(handler)
    }

    pub(crate) fn new(
        name: Arc<str>,
        settler: Arc<Settler>,
        layers: [Vec<Arc<StageEntry>>; 4],
        pushers: Vec<Arc<std::sync::Mutex<Arc<Pusher<T>>>>>,
        limiter: Option<RateLimiter>,
        keeping: Arc<Keeping>,
        gone: tokio::sync::watch::Sender<()>,
    ) -> Self {
        Pipeline {
            name,
            settler,
            layers,
            deadline_reached: std::sync::atomic::AtomicBool::new(false),
            pushers,
            keeping,
            _gone: gone,
            next_push: std::sync::atomic::AtomicUsize::new(0),
            limiter,
            sources: Vec::new(),
            data: PhantomData,
        }
    }

    /// The rate limit and its current window, if the pipeline has one.
    pub fn rate_limit(&self) -> Option<RateLimitState> {
        self.limiter.as_ref().map(RateLimiter::state)
    }

    /// Changes the rate limit; with `reset`, a new window starts now (otherwise the
    /// new limit applies from the current window on, counting what it already let
    /// through). Demand held back waits for the next window either way.
    ///
    /// # Errors
    ///
    /// [`NoRateLimit`] if the pipeline was started without one (its producers then
    /// do not consult a limiter at all).
    pub fn set_rate_limit(&self, limit: RateLimit, reset: bool) -> Result<(), NoRateLimit> {
        let limiter = self.limiter.as_ref().ok_or(NoRateLimit)?;
        limiter.set(limit, reset);
        Ok(())
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every stage, producers first.
    pub(crate) fn stages(&self) -> impl Iterator<Item = &StageEntry> {
        self.layers.iter().flatten().map(|entry| &**entry)
    }

    /// Why the pipeline stopped on its own: a producer failed more often than the
    /// restart budget allows ([`PipelineBuilder::max_restarts`](crate::PipelineBuilder::max_restarts)),
    /// or could not be started again. `None` while it runs.
    pub fn failure(&self) -> Option<ExitReason> {
        crate::sync::lock(&self.keeping.failure).clone()
    }

    /// Waits until the pipeline stops on its own ([`Pipeline::failure`]), and returns
    /// why. A pipeline that is drained never does: race it with your own shutdown.
    pub async fn failed(&self) -> ExitReason {
        loop {
            let woken = self.keeping.changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(reason) = self.failure() {
                return reason;
            }
            woken.await;
        }
    }

    /// What the pipeline has done with its messages so far. Outcomes are counted when
    /// the pipeline settles them, before their acknowledger is told.
    pub fn counts(&self) -> PipelineReport {
        let counts = &self.settler.counts;
        PipelineReport {
            taken_in: counts.taken_in.load(Ordering::Relaxed),
            settled: counts.settled(),
            dropped_handles: counts.dropped_handles.load(Ordering::Relaxed),
            ack_failures: counts.ack_failures(),
            deadline_reached: self.deadline_reached.load(Ordering::Relaxed),
        }
    }

    /// Stops every stage at once, without a drain: what they hold settles as the
    /// pipeline's `on_drop` (left for redelivery by default). Nothing is restarted
    /// after it.
    pub fn kill(&self) {
        self.keeping.draining.store(true, Ordering::SeqCst);
        for entry in self.stages() {
            entry.current().kill();
        }
        self.keeping.changed.notify_waiters();
    }

    /// Waits until every stage has stopped, after a drain, a [`kill`](Pipeline::kill)
    /// or a failure, and returns why: the [`failure`](Pipeline::failure) if there was
    /// one, [`ExitReason::Shutdown`] otherwise. A producer restarted meanwhile is
    /// waited for too.
    pub async fn stopped(&self) -> ExitReason {
        loop {
            let woken = self.keeping.changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let ending = self.keeping.draining.load(Ordering::SeqCst) || self.failure().is_some();
            if ending {
                let stages: Vec<Arc<dyn Drainable>> =
                    self.stages().map(StageEntry::current).collect();
                for stage in &stages {
                    stage.stopped().await;
                }
                if self.stages().all(|entry| !entry.current().is_alive()) {
                    return self.failure().unwrap_or(ExitReason::Shutdown);
                }
            } else {
                woken.await;
            }
        }
    }

    /// Stops the pipeline gracefully, within `deadline`, and reports what became of
    /// every message it took in.
    ///
    /// The producers stop taking messages in (a producer that fetches gives back what
    /// it fetched and did not emit); then each layer in turn handles what it holds and
    /// stops: processors, batchers (their partial batches are flushed), batch
    /// processors. Their outcomes are acknowledged, and the report comes once every
    /// acknowledger has been told. At the deadline, the stages still running are
    /// stopped at once: the callbacks they run are cancelled, and what they hold
    /// settles as the pipeline's `on_drop` outcome (left for redelivery by default).
    ///
    /// The report adds up: every message taken in is counted in exactly one outcome.
    pub async fn drain(&self, deadline: Duration) -> PipelineReport {
        let end = tokio::time::Instant::now() + deadline;
        // Nothing is restarted from now on.
        self.keeping.draining.store(true, Ordering::SeqCst);
        self.keeping.changed.notify_waiters();
        tracing::info!(pipeline = %self.name, ?deadline, "draining");
        for layer in &self.layers {
            let drains = layer.iter().map(|entry| async move {
                let stage = entry.current();
                let left = end.saturating_duration_since(tokio::time::Instant::now());
                if tokio::time::timeout_at(end, stage.drain(left))
                    .await
                    .is_err()
                {
                    stage.kill();
                    stage.stopped().await;
                    true
                } else {
                    false
                }
            });
            if futures::future::join_all(drains).await.contains(&true) {
                self.deadline_reached.store(true, Ordering::Relaxed);
            }
        }
        self.settler.flush().await;
        let report = self.counts();
        tracing::info!(pipeline = %self.name, %report, "drained");
        report
    }

    /// Listens for SIGTERM and Ctrl-C (SIGINT) from now on, and returns a future that,
    /// at the first of them, [drains](Pipeline::drain) within `deadline` and gives the
    /// report: what a service's `main` ends with. A signal that comes before the
    /// future is polled is not missed.
    ///
    /// ```no_run
    /// # async fn run(pipeline: gen_stage_pipeline::Pipeline<String>) -> std::io::Result<()> {
    /// let drained = pipeline.drain_on_shutdown_signal(std::time::Duration::from_secs(30))?;
    /// let report = drained.await;
    /// println!("{report}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The error of registering for the signals.
    pub fn drain_on_shutdown_signal(
        &self,
        deadline: Duration,
    ) -> std::io::Result<impl std::future::Future<Output = PipelineReport> + '_> {
        let signal = ShutdownSignal::listen()?;
        Ok(async move {
            signal.received().await;
            self.drain(deadline).await
        })
    }
}

/// SIGTERM and SIGINT, registered when made.
struct ShutdownSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignal {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignal {})
        }
    }

    async fn received(self) {
        #[cfg(unix)]
        {
            let ShutdownSignal {
                mut terminate,
                mut interrupt,
            } = self;
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            // Registered when first polled on this platform.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
