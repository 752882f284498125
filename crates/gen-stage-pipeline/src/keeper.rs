//! Keeps a pipeline running: a producer that fails is restarted alone, from its
//! factory, and every processor subscribes to the new one; a processor, batcher or
//! batch processor that fails is restarted with every stage after the producers
//! ([`DownstreamKeeper`](crate::downstream_keeper::DownstreamKeeper)). Past the restart
//! budget, which they share, the pipeline stops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A processor of the first layer, and how it subscribes to a producer.
pub(crate) type FirstProcessor<T> = (Arc<dyn Subscriber<T>>, SubscribeOptions);

/// What every producer's keeper shares with the pipeline.
pub(crate) struct Keeping {
    /// Set when the pipeline drains: nothing is restarted any more.
    pub(crate) draining: AtomicBool,
    /// Why the pipeline stopped on its own, if it did.
    pub(crate) failure: Mutex<Option<ExitReason>>,
    /// Woken when the pipeline fails, drains, is killed, or a producer was replaced.
    pub(crate) changed: tokio::sync::Notify,
    pub(crate) budget: Mutex<RestartIntensity>,
    /// Restarts so far, of a producer or of the stages after the producers.
    pub(crate) restarts: AtomicU64,
}

impl Keeping {
    /// Whether a keeper is to restart what stopped for `reason`: not while the
    /// pipeline drains or after it failed, nor for a stage that ended gracefully.
    pub(crate) fn restarts_after(&self, reason: &ExitReason) -> bool {
        !(self.draining.load(Ordering::SeqCst)
            || reason.is_graceful()
            || lock(&self.failure).is_some())
    }

    /// Stops every stage of `layers`, the pipeline having failed for `reason`: what
    /// they hold settles as the pipeline's `on_drop`.
    pub(crate) fn fail(&self, reason: ExitReason, layers: &[Vec<Arc<StageEntry>>]) {
        lock(&self.failure).get_or_insert(reason);
        for entry in layers.iter().flatten() {
            entry.current().kill();
        }
        self.changed.notify_waiters();
    }
}

/// The stages that others subscribe to now, shared by the keepers.
pub(crate) struct Wiring<T> {
    /// The producer stages, in order.
    pub(crate) producers: Mutex<Vec<AnyProducer<Message<T>>>>,
    /// The first layer's processors, and how each subscribes to a producer.
    pub(crate) subscribers: Mutex<Vec<FirstProcessor<T>>>,
    /// Held by a keeper while it restarts stages: one restart at a time, so that every
    /// processor takes from every producer.
    pub(crate) restarting: tokio::sync::Mutex<()>,
}

/// What one producer's keeper needs to start it again.
pub(crate) struct ProducerKeeper<T> {
    pub(crate) factory: Arc<dyn StartProducer<T>>,
    pub(crate) settler: Arc<Settler>,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) sharing: Sharing<T>,
    pub(crate) activity: Arc<Activity>,
    /// The producer's place among the producers.
    pub(crate) index: usize,
    pub(crate) wiring: Arc<Wiring<T>>,
    /// The pipeline's entry for the producer, and its pusher.
    pub(crate) entry: Arc<StageEntry>,
    pub(crate) pusher: Arc<Mutex<Arc<Pusher<T>>>>,
    pub(crate) keeping: Arc<Keeping>,
    /// Every stage by layer, to stop them all when the budget is spent.
    pub(crate) all: [Vec<Arc<StageEntry>>; 4],
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
            if !self.keeping.restarts_after(&reason) {
                return;
            }
            if !lock(&self.keeping.budget).allow_restart() {
                tracing::error!(producer = %self.entry.name, %reason, "too many restarts: the pipeline stops");
                self.keeping.fail(reason, &self.all);
                return;
            }
            tracing::warn!(producer = %self.entry.name, %reason, "producer failed: restarting it");
            if let Err(error) = self.restart().await {
                tracing::error!(producer = %self.entry.name, %error, "producer did not restart: the pipeline stops");
                self.keeping.fail(reason, &self.all);
                return;
            }
        }
    }

    async fn restart(&self) -> Result<(), String> {
        let _one_at_a_time = self.wiring.restarting.lock().await;
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
        let processors = lock(&self.wiring.subscribers).clone();
        for (processor, options) in &processors {
            // A processor that is gone has stopped the pipeline, or is restarted.
            if let Err(error) = processor.subscribe_to(&stage, options.clone()).await {
                tracing::warn!(producer = %self.entry.name, %error, "a processor did not resubscribe");
            }
        }
        lock(&self.wiring.producers)[self.index] = stage.clone();
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
        self.keeping.restarts.fetch_add(1, Ordering::Relaxed);
        self.keeping.changed.notify_waiters();
        Ok(())
    }
}

impl StageEntry {
    /// The stage in this place now.
    pub(crate) fn current(&self) -> Arc<dyn Drainable> {
        lock(&self.stage).clone()
    }

    pub(crate) fn replace(&self, stage: Arc<dyn Drainable>) {
        *lock(&self.stage) = stage;
    }
}
