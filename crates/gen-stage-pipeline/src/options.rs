//! The settings of a pipeline's processors and batchers.

use std::time::Duration;

/// How the processors run: how many, and how much each asks of the producers.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_pipeline::ProcessorOptions;
///
/// let processors = ProcessorOptions::new()
///     .concurrency(4)
///     .max_demand(50)
///     .timeout(Duration::from_secs(30));
/// assert_eq!(processors.concurrency_value(), 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorOptions {
    pub(crate) concurrency: usize,
    pub(crate) max_demand: usize,
    pub(crate) min_demand: Option<usize>,
    pub(crate) timeout: Option<Duration>,
}

impl Default for ProcessorOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        ProcessorOptions {
            concurrency: cores * 2,
            max_demand: 10,
            min_demand: None,
            timeout: None,
        }
    }
}

impl ProcessorOptions {
    /// The defaults: twice as many processors as the machine has cores (as
    /// Broadway), each asking 10 messages at a time and asking again at 5.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many processors run at once (at least 1).
    pub fn concurrency(mut self, processors: usize) -> Self {
        self.concurrency = processors;
        self
    }

    /// How many messages a processor asks of each producer at most (default 10).
    pub fn max_demand(mut self, demand: usize) -> Self {
        self.max_demand = demand;
        self
    }

    /// Below how many outstanding messages a processor asks again (default half of
    /// `max_demand`).
    pub fn min_demand(mut self, demand: usize) -> Self {
        self.min_demand = Some(demand);
        self
    }

    /// Fails a message whose `handle_message` (or a delivery whose
    /// `prepare_messages`) runs longer than `limit`, with
    /// [`Failure::Timeout`](crate::Failure::Timeout). None by default.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The number of processors.
    pub fn concurrency_value(&self) -> usize {
        self.concurrency
    }
}

/// How one batcher groups messages, and how many batch processors handle its
/// batches.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_pipeline::BatcherOptions;
///
/// let batcher = BatcherOptions::new().batch_size(500).batch_timeout(Duration::from_millis(200));
/// assert_eq!(batcher.batch_size_value(), 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatcherOptions {
    pub(crate) batch_size: usize,
    pub(crate) batch_timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) max_demand: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_open_keys: usize,
}

impl Default for BatcherOptions {
    fn default() -> Self {
        BatcherOptions {
            batch_size: 100,
            batch_timeout: Duration::from_secs(1),
            concurrency: 1,
            max_demand: None,
            timeout: None,
            max_open_keys: 10_000,
        }
    }
}

impl BatcherOptions {
    /// The defaults: batches of 100, closed 1 s after their first message at the
    /// latest, one batch processor, at most 10 000 batch keys open.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most messages in a batch (at least 1); with weights
    /// ([`Message::set_batch_weight`](crate::Message::set_batch_weight)), the most
    /// weight.
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// How long a batch waits for more messages after its first, at most (more than
    /// zero).
    pub fn batch_timeout(mut self, timeout: Duration) -> Self {
        self.batch_timeout = timeout;
        self
    }

    /// How many batch processors handle this batcher's batches at once.
    pub fn concurrency(mut self, processors: usize) -> Self {
        self.concurrency = processors;
        self
    }

    /// How many messages the batcher asks of each processor at most. By default the
    /// larger of `batch_size` and the (last layer's) processors' `max_demand`: a
    /// processor's whole delivery then goes straight on to the batcher, without
    /// waiting in the processor's buffer (Broadway's default is `batch_size`).
    pub fn max_demand(mut self, demand: usize) -> Self {
        self.max_demand = Some(demand);
        self
    }

    /// Cancels a `handle_batch` that runs longer than `limit`: its messages fail with
    /// [`Failure::Timeout`](crate::Failure::Timeout). None by default.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// How many batch keys may have a batch open at once (at least 1): at the bound,
    /// a message of a new key first closes the batch of the key open the longest
    /// ([`BatchTrigger::KeyLimit`](crate::BatchTrigger::KeyLimit)), so that a stream
    /// of ever new keys cannot grow the batcher without end.
    pub fn max_open_keys(mut self, keys: usize) -> Self {
        self.max_open_keys = keys;
        self
    }

    /// The most messages in a batch.
    pub fn batch_size_value(&self) -> usize {
        self.batch_size
    }
}
