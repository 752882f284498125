//! Keeps the stages after the producers running: when a processor, a batcher or a
//! batch processor fails, every one of them is stopped and started again, subscribed
//! to the producers, as Broadway restarts its processors with the batchers after them.
//! What the stopped stages held was never acknowledged: it settles as the pipeline's
//! `on_drop` outcome (left for redelivery by default), never as a success.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::select_all;
use tokio::sync::watch;

use crate::error::StartError;
use crate::handler::Handler;
use crate::keeper::{Keeping, Wiring};
use crate::pipeline::{Drainable, StageEntry};
use crate::snapshot::StageLayer;
use crate::sync::lock;
use crate::topology::{Downstream, Started};

pub(crate) struct DownstreamKeeper<H: Handler> {
    pub(crate) downstream: Downstream<H>,
    pub(crate) wiring: Arc<Wiring<H::Data>>,
    /// Every stage by layer, producers first: the places new stages take.
    pub(crate) layers: [Vec<Arc<StageEntry>>; 4],
    pub(crate) keeping: Arc<Keeping>,
}

impl<H: Handler> DownstreamKeeper<H> {
    /// Watches the stages after the producers until the pipeline drains, fails, or
    /// goes away (`gone` closes).
    pub(crate) async fn run(self, mut gone: watch::Receiver<()>) {
        loop {
            let watched: Vec<(&StageEntry, Arc<dyn Drainable>)> = self
                .after_producers()
                .map(|entry| (entry, entry.current()))
                .collect();
            if watched.is_empty() {
                return;
            }
            let stops = select_all(watched.iter().map(|(_, stage)| stage.stopped()));
            let (reason, index) = tokio::select! {
                (reason, index, _) = stops => (reason, index),
                _ = gone.changed() => return,
            };
            if !self.keeping.restarts_after(&reason) {
                return;
            }
            let name = &watched[index].0.name;
            if !lock(&self.keeping.budget).allow_restart() {
                tracing::error!(stage = %name, %reason, "too many restarts: the pipeline stops");
                self.keeping.fail(reason, &self.layers);
                return;
            }
            tracing::warn!(stage = %name, %reason, "stage failed: restarting the stages after the producers");
            drop(watched);
            if let Err(error) = self.restart().await {
                // A drain that began meanwhile stops the producers the new stages
                // subscribe to: that is the drain, not a failure.
                if self.keeping.draining.load(Ordering::SeqCst) {
                    return;
                }
                tracing::error!(%error, "the stages after the producers did not restart: the pipeline stops");
                self.keeping.fail(reason, &self.layers);
                return;
            }
        }
    }

    /// The processors, batchers and batch processors, in the order they start.
    fn after_producers(&self) -> impl Iterator<Item = &StageEntry> {
        self.layers[StageLayer::Processor as usize..]
            .iter()
            .flatten()
            .map(|entry| &**entry)
    }

    /// Stops every stage after the producers and starts them again in their places.
    async fn restart(&self) -> Result<(), StartError> {
        let _one_at_a_time = self.wiring.restarting.lock().await;
        let old: Vec<Arc<dyn Drainable>> =
            self.after_producers().map(StageEntry::current).collect();
        for stage in &old {
            stage.kill();
        }
        for stage in &old {
            stage.stopped().await;
        }
        let sources = lock(&self.wiring.producers).clone();
        let mut started = Started::default();
        let result = self
            .downstream
            .start(&sources, &mut started, Some(&self.layers))
            .await;
        if let Err(error) = result {
            for entry in started.layers.iter().flatten() {
                entry.current().kill();
            }
            return Err(error);
        }
        // The same places, in the same order: each new stage takes its place.
        for (places, new) in self.layers.iter().zip(&started.layers).skip(1) {
            for (place, new) in places.iter().zip(new) {
                place.replace(new.current());
            }
        }
        *lock(&self.wiring.subscribers) = started.subscribers.clone();
        // A drain that began meanwhile finds the new stages, or is seen here.
        if self.keeping.draining.load(Ordering::SeqCst) {
            for entry in self.after_producers() {
                entry.current().kill();
            }
        }
        self.keeping.restarts.fetch_add(1, Ordering::Relaxed);
        self.keeping.changed.notify_waiters();
        Ok(())
    }
}
