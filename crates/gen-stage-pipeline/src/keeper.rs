//! Keeps a pipeline's producers running: one that fails is restarted alone, from its
//! factory, and every processor subscribes to the new one. Past the restart budget,
//! the pipeline stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use gen_stage::error::SubscribeError;
use gen_stage::kind::{ReceivesEvents, StageKind};
use gen_stage::supervision::RestartIntensity;
use gen_stage::{AnyProducer, DemandMode, ExitReason, StageRef, SubscribeOptions};
use tokio::sync::watch;

use crate::activity::Activity;
use crate::message::Message;
use crate::pipeline::{Drainable, StageEntry};
use crate::rate_limit::RateLimiter;
use crate::settle::Settler;
use crate::sync::lock;
use crate::topology::{Pusher, Sharing, StartProducer};

/// A stage that subscribes to producers of messages, whatever its type.
pub(crate) trait Subscriber<T>: Send + Sync {
    fn subscribe_to<'a>(
        &'a self,
        producer: &'a AnyProducer<Message<T>>,
        options: SubscribeOptions,
    ) -> BoxFuture<'a, Result<(), SubscribeError>>;
}

impl<T, K> Subscriber<T> for StageRef<K>
where
    T: Send + 'static,
    K: ReceivesEvents + StageKind<In = Message<T>>,
{
    fn subscribe_to<'a>(
        &'a self,
        producer: &'a AnyProducer<Message<T>>,
        options: SubscribeOptions,
    ) -> BoxFuture<'a, Result<(), SubscribeError>> {
        Box::pin(async move {
            StageRef::subscribe_to(self, producer, options).await?;
            Ok(())
        })
    }
}

/// What every producer's keeper shares with the pipeline.
pub(crate) struct Keeping {
    /// Set when the pipeline drains: nothing is restarted any more.
    pub(crate) draining: AtomicBool,
    /// Why the pipeline stopped on its own, if it did.
    pub(crate) failure: Mutex<Option<ExitReason>>,
    /// Woken when the pipeline fails, drains, is killed, or a producer was replaced.
    pub(crate) changed: tokio::sync::Notify,
    pub(crate) budget: Mutex<RestartIntensity>,
}

/// What one producer's keeper needs to start it again.
pub(crate) struct ProducerKeeper<T> {
    pub(crate) factory: Arc<dyn StartProducer<T>>,
    pub(crate) settler: Arc<Settler>,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) sharing: Sharing<T>,
    pub(crate) activity: Arc<Activity>,
    /// The processors, and how each subscribes to a producer.
    pub(crate) processors: Vec<(Arc<dyn Subscriber<T>>, SubscribeOptions)>,
    /// The pipeline's entry for the producer, and its pusher.
    pub(crate) entry: Arc<StageEntry>,
    pub(crate) pusher: Arc<Mutex<Arc<Pusher<T>>>>,
    pub(crate) keeping: Arc<Keeping>,
    /// Every stage, to stop them all when the budget is spent.
    pub(crate) all: Vec<Arc<StageEntry>>,
}

impl<T: Send + 'static> ProducerKeeper<T> {
    /// Watches the producer until the pipeline drains or goes away (`gone` closes).
    pub(crate) async fn run(self, mut gone: watch::Receiver<()>) {
        loop {
            let current = self.entry.current();
            let reason = tokio::select! {
                reason = current.stopped() => reason,
                _ = gone.changed() => return,
            };
            if self.keeping.draining.load(Ordering::SeqCst) || reason.is_graceful() {
                return;
            }
            if !lock(&self.keeping.budget).allow_restart() {
                tracing::error!(producer = %self.entry.name, %reason, "too many restarts: the pipeline stops");
                self.fail(reason);
                return;
            }
            tracing::warn!(producer = %self.entry.name, %reason, "producer failed: restarting it");
            if let Err(error) = self.restart().await {
                tracing::error!(producer = %self.entry.name, %error, "producer did not restart: the pipeline stops");
                self.fail(reason);
                return;
            }
        }
    }

    async fn restart(&self) -> Result<(), String> {
        let (stage, push) = self
            .factory
            .start(
                self.settler.clone(),
                self.limiter.clone(),
                self.sharing.clone(),
                self.activity.clone(),
            )
            .await
            .map_err(|error| error.to_string())?;
        for (processor, options) in &self.processors {
            // A processor that is gone has stopped the pipeline, or is restarted.
            if let Err(error) = processor.subscribe_to(&stage, options.clone()).await {
                tracing::warn!(producer = %self.entry.name, %error, "a processor did not resubscribe");
            }
        }
        // In place before the drain flag is read: a drain that began meanwhile either
        // finds the new stage, or is seen here and the new stage (which has let
        // nothing out: it accumulates) is stopped.
        let stage = Arc::new(stage);
        self.entry.replace(stage.clone());
        *lock(&self.pusher) = Arc::new(push);
        if self.keeping.draining.load(Ordering::SeqCst) {
            stage.kill();
        } else {
            let _ = stage.set_demand_mode(DemandMode::Forward);
        }
        self.keeping.changed.notify_waiters();
        Ok(())
    }

    /// Stops every stage: what they hold settles as the pipeline's `on_drop`.
    fn fail(&self, reason: ExitReason) {
        lock(&self.keeping.failure).get_or_insert(reason);
        for entry in &self.all {
            entry.current().kill();
        }
        self.keeping.changed.notify_waiters();
    }
}

impl StageEntry {
    /// The stage in this place now.
    pub(crate) fn current(&self) -> Arc<dyn Drainable> {
        lock(&self.stage).clone()
    }

    fn replace(&self, stage: Arc<dyn Drainable>) {
        *lock(&self.stage) = stage;
    }
}
