//! The pipeline's demand as its producers see it: how much the processors may ask
//! at most, and how much they have asked and not yet received. A connector sizes its
//! prefetch (a broker's in-flight window) by it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::pipeline::StageEntry;

#[derive(Default)]
struct Shared {
    budget: OnceLock<usize>,
    /// The first layer of processors, once started.
    processors: OnceLock<Vec<Arc<StageEntry>>>,
}

/// What the processors ask of the producers, for a producer to size what it fetches
/// ahead ([`PipelineBuilder::producer_with_demand`](crate::PipelineBuilder::producer_with_demand)).
///
/// - [`budget`](DemandView::budget): the most messages the first layer of processors
///   can have asked at once of one producer: each processor's `max_demand`, added
///   up. A broker's prefetch (RabbitMQ's `basic_qos`, NATS's `max_ack_pending`) of
///   at least this keeps every processor busy; more only waits in the producer.
/// - [`outstanding`](DemandView::outstanding): what they have asked and not yet
///   received now, over all producers (0 before the pipeline has started).
#[derive(Clone, Default)]
pub struct DemandView(Arc<Shared>);

impl fmt::Debug for DemandView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemandView")
            .field("budget", &self.budget())
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

impl DemandView {
    /// The most messages the processors can have asked of one producer at once (0
    /// before the pipeline starts).
    pub fn budget(&self) -> usize {
        self.0.budget.get().copied().unwrap_or(0)
    }

    /// The messages the processors have asked of the producers and not received.
    pub fn outstanding(&self) -> usize {
        self.0.processors.get().map_or(0, |processors| {
            processors
                .iter()
                .map(|entry| entry.current().stats().demand_in)
                .sum()
        })
    }

    pub(crate) fn set_budget(&self, budget: usize) {
        let _ = self.0.budget.set(budget);
    }

    pub(crate) fn set_processors(&self, processors: Vec<Arc<StageEntry>>) {
        let _ = self.0.processors.set(processors);
    }
}
