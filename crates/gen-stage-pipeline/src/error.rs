//! Why a pipeline did not start.

use std::fmt;

/// Why [`PipelineBuilder::start`](crate::PipelineBuilder::start) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// An option has a value the pipeline cannot run with.
    InvalidOption {
        /// The option, as the builder names it (`processors.max_demand`,
        /// `batchers["db"].batch_size`).
        option: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A source's in-flight budget
    /// ([`SourceHealth::in_flight_budget`](crate::SourceHealth::in_flight_budget))
    /// is smaller than a batcher's batch: the batch could never fill, and every batch
    /// would wait out its timeout.
    BudgetTooSmall {
        /// The source, as its status names it.
        source: String,
        /// Its budget.
        budget: usize,
        /// The batcher whose batch it cannot fill.
        batcher: String,
        /// That batcher's batch size.
        batch_size: usize,
    },
    /// A stage did not start.
    Stage {
        /// Which (`producer 0`, `processor 3`, `batcher "db"`).
        stage: String,
        /// Why.
        error: gen_stage::error::StartError,
    },
}

impl StartError {
    pub(crate) fn invalid(option: impl Into<String>, problem: impl Into<String>) -> Self {
        StartError::InvalidOption {
            option: option.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::InvalidOption { option, problem } => {
                write!(f, "invalid pipeline option {option}: {problem}")
            }
            StartError::BudgetTooSmall {
                source,
                budget,
                batcher,
                batch_size,
            } => write!(
                f,
                "source {source} lets {budget} messages be in flight, fewer than one batch of \
                 batcher {batcher:?} ({batch_size}): raise the source's budget or lower the \
                 batch size"
            ),
            StartError::Stage { stage, error } => write!(f, "{stage} did not start: {error}"),
        }
    }
}

impl std::error::Error for StartError {}
