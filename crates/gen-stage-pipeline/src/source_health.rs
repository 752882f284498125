//! What a source tells of its broker connection, for the pipeline's snapshot.

use std::time::Duration;

/// A source of messages that can say how its connection to its broker is doing: a
/// connector's queue or consumer. Register it with
/// [`PipelineBuilder::source_health`](crate::PipelineBuilder::source_health), and
/// [`Pipeline::snapshot`](crate::Pipeline::snapshot) reports it in
/// [`PipelineSnapshot::sources`](crate::PipelineSnapshot::sources).
///
/// ```
/// use gen_stage_pipeline::{SourceHealth, SourceStatus};
///
/// struct Always;
///
/// impl SourceHealth for Always {
///     fn status(&self) -> SourceStatus {
///         let mut status = SourceStatus::new("always");
///         status.connected = true;
///         status
///     }
/// }
/// assert!(Always.status().connected);
/// ```
pub trait SourceHealth: Send + Sync + 'static {
    /// The source's state now. Called by every snapshot: it must not wait.
    fn status(&self) -> SourceStatus;

    /// The most messages the source lets be in flight at once, if it has such a
    /// budget. [`PipelineBuilder::start`](crate::PipelineBuilder::start) fails with
    /// [`StartError::BudgetTooSmall`](crate::StartError::BudgetTooSmall) if it
    /// cannot fill one batch of a batcher. `None` (the default): no budget.
    fn in_flight_budget(&self) -> Option<usize> {
        None
    }
}

/// A shared source: keep an `Arc` of it to read it yourself too.
impl<S: SourceHealth> SourceHealth for std::sync::Arc<S> {
    fn status(&self) -> SourceStatus {
        (**self).status()
    }

    fn in_flight_budget(&self) -> Option<usize> {
        (**self).in_flight_budget()
    }
}

/// A source's connection and in-flight state, as its [`SourceHealth`] tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStatus {
    /// Which source: a queue, stream or consumer name.
    pub name: String,
    /// Whether the source's last call to its broker succeeded (and it is subscribed,
    /// where the broker has subscriptions).
    pub connected: bool,
    /// Failed connection attempts in a row; 0 once one succeeds.
    pub reconnect_attempt: u32,
    /// The last error, as text.
    pub last_error: Option<String>,
    /// How long the last fetch from the broker took.
    pub fetch_latency: Option<Duration>,
    /// Messages fetched and not yet settled with the broker.
    pub in_flight: usize,
    /// Outcomes the broker could no longer take (a delivery tag that died with its
    /// connection, a lease another consumer holds now): not applied.
    pub voided_acks: u64,
}

impl SourceStatus {
    /// A status for the source `name`, not connected, with nothing to report yet.
    pub fn new(name: impl Into<String>) -> Self {
        SourceStatus {
            name: name.into(),
            ..SourceStatus::default()
        }
    }
}
