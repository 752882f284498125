//! One picture of a running pipeline: every stage's demand, buffer, messages in hand,
//! busy share and rate over the last few seconds, with the pipeline's counts and its
//! rate limit. What the demo, metrics and a dashboard read.

use std::time::Duration;

use gen_stage::stats::StageState;

use crate::pipeline::Pipeline;
use crate::rate_limit::RateLimitState;
use crate::report::PipelineReport;
use crate::source_health::SourceStatus;

/// The layers of a pipeline, in the order messages cross them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StageLayer {
    /// A producer stage: takes messages in.
    Producer = 0,
    /// Runs `prepare_messages` and `handle_message`.
    Processor = 1,
    /// Groups messages into batches.
    Batcher = 2,
    /// Runs `handle_batch`.
    BatchProcessor = 3,
}

/// One stage, as a [`PipelineSnapshot`] shows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StageSnapshot {
    /// Its layer.
    pub layer: StageLayer,
    /// Its name in the pipeline (`processor 2`, `batcher "db"`).
    pub name: String,
    /// Whether it runs, stops or stopped.
    pub state: StageState,
    /// Messages it asked of the stages before it and has not received.
    pub demand_asked: usize,
    /// Messages the stages after it asked of it and it has not sent.
    pub demand_owed: usize,
    /// Messages waiting in its buffer for demand.
    pub buffered: usize,
    /// Messages it holds now: in a callback, or in open batches.
    pub in_flight: u64,
    /// The share of the window it spent in callbacks, from 0 to 1 (Broadway's
    /// "workload").
    pub busy: f64,
    /// Messages it took in (producers), handled (processors and batch processors) or
    /// grouped (batchers) per second over the window.
    pub messages_per_second: f64,
}

/// The whole pipeline at one moment: made by [`Pipeline::snapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PipelineSnapshot {
    /// The pipeline's name.
    pub name: String,
    /// Its messages by outcome since it started, and its dropped handles.
    pub counts: PipelineReport,
    /// Its rate limit and the current window, if it has one.
    pub rate_limit: Option<RateLimitState>,
    /// Restarts since it started: of a producer that failed, or of the stages after
    /// the producers when one of them failed.
    pub restarts: u64,
    /// The time the rates and busy shares cover: the last few seconds (less just after
    /// the start).
    pub window: Duration,
    /// Every stage, producers first, in the order messages cross them.
    pub stages: Vec<StageSnapshot>,
    /// The connections of the sources registered with
    /// [`PipelineBuilder::source_health`](crate::PipelineBuilder::source_health), in
    /// the order they were.
    pub sources: Vec<SourceStatus>,
}

impl<T: Send + 'static> Pipeline<T> {
    /// The whole running topology at once. It reads what each stage publishes and
    /// waits for none of them: it returns while every stage is inside a callback.
    ///
    /// Rates and busy shares cover the last four whole seconds and the current one;
    /// a callback's time counts in the second it ended in, and the time of one running
    /// now up to now.
    pub fn snapshot(&self) -> PipelineSnapshot {
        let mut window = Duration::ZERO;
        let stages = self
            .stages()
            .map(|entry| {
                let stage = entry.current();
                let stats = stage.stats();
                // A killed stage publishes no state of its own.
                let state = if stage.is_alive() {
                    stats.state
                } else {
                    StageState::Stopped
                };
                let recent = entry.activity.recent();
                window = window.max(recent.window);
                StageSnapshot {
                    layer: entry.layer,
                    name: entry.name.clone(),
                    state,
                    demand_asked: stats.demand_in,
                    demand_owed: stats.demand_out,
                    buffered: stats.buffered,
                    in_flight: recent.in_flight,
                    busy: recent.busy,
                    messages_per_second: recent.messages_per_second,
                }
            })
            .collect();
        PipelineSnapshot {
            name: self.name().to_owned(),
            counts: self.counts(),
            rate_limit: self.rate_limit(),
            restarts: self
                .keeping
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            window,
            stages,
            sources: self.sources.iter().map(|source| source.status()).collect(),
        }
    }
}
