//! The pipeline's builder: its producers, processors and batchers, validated and
//! started as stages.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gen_stage::Producer;
use gen_stage::supervision::RestartIntensity;

use crate::ack::Outcome;
use crate::demand_view::DemandView;
use crate::downstream_keeper::DownstreamKeeper;
use crate::error::StartError;
use crate::failure::RetryPolicy;
use crate::handler::Handler;
use crate::keeper::Keeping;
use crate::message::Message;
use crate::options::{BatcherOptions, ProcessorOptions};
use crate::pipeline::Pipeline;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::settle::Settler;
use crate::snapshot::StageLayer;
use crate::source_health::SourceHealth;
use crate::stages::Shared;
use crate::stages::{AsTheyAre, MapWith};
use crate::topology::{
    Downstream, PartitionKey, ProducerFactory, StartProducer, Started, start_stages,
};

/// Builds a pipeline: producers of messages, processors that handle each message, and
/// named batchers whose batches batch processors handle. Options are checked by
/// [`start`](PipelineBuilder::start), each error naming its option.
///
/// ```text
/// [producer]...  ->  [processor] x concurrency  ->  [batcher "db"]  ->  [batch processor] x concurrency
///                                               ->  [batcher "log"] ->  ...
/// ```
///
/// Every processor subscribes to every producer; every batcher to every processor
/// (a processor sends each message to the batcher it was routed to); a batcher's
/// batch processors share its batches.
#[must_use]
pub struct PipelineBuilder<H: Handler> {
    name: String,
    handler: H,
    producers: Vec<Arc<dyn StartProducer<H::Data>>>,
    /// The processors' layers: the first takes from the producers.
    processors: Vec<ProcessorOptions>,
    batchers: Vec<(String, BatcherOptions)>,
    retry: RetryPolicy,
    on_drop: Outcome,
    rate_limit: Option<RateLimit>,
    partition_by: Option<PartitionKey<H::Data>>,
    /// Restarts allowed, and in what time.
    max_restarts: (u32, Duration),
    /// What the producers made by `producer_with_demand` read.
    demand: DemandView,
    /// Sources whose connection the snapshot reports.
    sources: Vec<Arc<dyn SourceHealth>>,
}

impl<H: Handler> std::fmt::Debug for PipelineBuilder<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("producers", &self.producers.len())
            .field("processors", &self.processors)
            .field("batchers", &self.batchers)
            .field("retry", &self.retry)
            .field("on_drop", &self.on_drop)
            .field("rate_limit", &self.rate_limit)
            .field("partitioned", &self.partition_by.is_some())
            .field("max_restarts", &self.max_restarts)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> PipelineBuilder<H> {
    /// A pipeline whose callbacks are `handler`'s.
    pub fn new(handler: H) -> Self {
        PipelineBuilder {
            name: "pipeline".to_owned(),
            handler,
            producers: Vec::new(),
            processors: vec![ProcessorOptions::default()],
            batchers: Vec::new(),
            retry: RetryPolicy::default(),
            on_drop: Outcome::Release,
            rate_limit: None,
            partition_by: None,
            max_restarts: (3, Duration::from_secs(5)),
            demand: DemandView::default(),
            sources: Vec::new(),
        }
    }

    /// The pipeline's name, in logs, spans and reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a producer of messages; `make` makes it when the pipeline starts. Add as
    /// many as you like: processors take from all of them.
    pub fn producer<P>(mut self, make: impl Fn() -> P + Send + Sync + 'static) -> Self
    where
        P: Producer<Event = Message<H::Data>>,
    {
        self.producers.push(Arc::new(ProducerFactory {
            make: Arc::new(make),
            transform: Arc::new(AsTheyAre),
        }));
        self
    }

    /// Adds a producer of anything, whose events `transform` turns into messages (a
    /// broker's deliveries decoded, for example).
    pub fn producer_with<P>(
        mut self,
        make: impl Fn() -> P + Send + Sync + 'static,
        transform: impl Fn(P::Event) -> Message<H::Data> + Send + Sync + 'static,
    ) -> Self
    where
        P: Producer,
    {
        self.producers.push(Arc::new(ProducerFactory {
            make: Arc::new(make),
            transform: Arc::new(MapWith(transform)),
        }));
        self
    }

    /// Adds a producer of messages that reads the pipeline's demand ([`DemandView`]):
    /// `make` gets the view, to size what the producer fetches ahead (a broker's
    /// prefetch) by what the processors ask.
    pub fn producer_with_demand<P>(
        self,
        make: impl Fn(&DemandView) -> P + Send + Sync + 'static,
    ) -> Self
    where
        P: Producer<Event = Message<H::Data>>,
    {
        let demand = self.demand.clone();
        self.producer(move || make(&demand))
    }

    /// Reports `source`'s connection in every [`Pipeline::snapshot`]
    /// ([`PipelineSnapshot::sources`](crate::PipelineSnapshot::sources)): a
    /// connector's queue or consumer, registered once however many producers it
    /// makes.
    pub fn source_health(mut self, source: impl SourceHealth) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// How the processors run ([`ProcessorOptions`]'s defaults otherwise): those of
    /// the first layer, which takes from the producers.
    pub fn processors(mut self, options: ProcessorOptions) -> Self {
        self.processors[0] = options;
        self
    }

    /// Adds a layer of processors after the last: each message goes through
    /// `handle_message` once per layer ([`ProcessorContext::layer`](crate::ProcessorContext::layer)
    /// says which), each layer with its own concurrency and demand (download in one,
    /// parse in the next). A message that fails in a layer goes no further and is
    /// never acked; one that succeeds is acked only after the last layer (and its
    /// batch, if it has one). Batchers take from the last layer; `partition_by` holds
    /// across layers.
    pub fn then_processors(mut self, options: ProcessorOptions) -> Self {
        self.processors.push(options);
        self
    }

    /// Adds a batcher named `name`, to which `handle_message` routes messages with
    /// [`Message::put_batcher`].
    pub fn batcher(mut self, name: impl Into<String>, options: BatcherOptions) -> Self {
        self.batchers.push((name.into(), options));
        self
    }

    /// What becomes of failed messages ([`RetryPolicy`]'s defaults otherwise).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sends the messages of one key to one processor, always the same: the messages
    /// of a key are handled in the order their producer emitted them, one at a time,
    /// while the processors handle different keys at once. `key` returns a message's
    /// key (a hash of an account id, say); the processor is `key % concurrency`.
    ///
    /// The order holds from each producer through the processors (every layer), into
    /// a batcher's batches, and through its batch processors (a batcher with more
    /// than one keeps each partition's batches apart, for the batch processor of that
    /// partition); a message that fails and is retried comes back later, behind
    /// messages of its key that came after it.
    pub fn partition_by(
        mut self,
        key: impl Fn(&Message<H::Data>) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.partition_by = Some(Arc::new(key));
        self
    }

    /// How often stages may fail and be restarted: at most `restarts` in `within`
    /// (3 in 5 s by default, as Broadway), counting every restart of the pipeline.
    ///
    /// - A producer that fails (its stage stops for a reason that is not graceful) is
    ///   started again alone, from its factory, and every processor subscribes to it.
    /// - A processor, batcher or batch processor that fails (a panic outside the
    ///   callbacks, such as in a `Drop` of the data) stops every stage after the
    ///   producers, and they all start again, subscribed to the producers: as
    ///   Broadway restarts its processors with the batchers after them.
    ///
    /// What a failed or stopped stage held was never acknowledged: it settles as
    /// `on_drop`, left for redelivery by default. One more failure within the window
    /// stops the whole pipeline ([`Pipeline::failure`] says why).
    /// [`PipelineSnapshot::restarts`](crate::PipelineSnapshot::restarts) counts them.
    pub fn max_restarts(mut self, restarts: u32, within: Duration) -> Self {
        self.max_restarts = (restarts, within);
        self
    }

    /// Takes in at most `limit.allowed()` messages per `limit.interval()`, across all
    /// producers ([`RateLimit`] says how); change it at run time with
    /// [`Pipeline::set_rate_limit`]. No limit by default.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The outcome of a message whose handle was dropped without one: a panic, a
    /// cancelled callback, a drain's deadline. [`Outcome::Release`] by default (left
    /// for redelivery); it cannot be [`Outcome::Ack`].
    pub fn on_drop(mut self, outcome: Outcome) -> Self {
        self.on_drop = outcome;
        self
    }

    fn validate(&self) -> Result<(), StartError> {
        if self.producers.is_empty() {
            return Err(StartError::invalid(
                "producer",
                "a pipeline needs at least one",
            ));
        }
        if self.on_drop.is_ack() {
            return Err(StartError::invalid(
                "on_drop",
                "a message dropped unhandled cannot count as a success",
            ));
        }
        if let Some(limit) = self.rate_limit {
            if limit.allowed() == 0 {
                return Err(StartError::invalid(
                    "rate_limit.allowed",
                    "must be at least 1",
                ));
            }
            if limit.interval().is_zero() {
                return Err(StartError::invalid(
                    "rate_limit.interval",
                    "must be more than zero",
                ));
            }
        }
        for (layer, processors) in self.processors.iter().enumerate() {
            let stage = if layer == 0 {
                "processors".to_owned()
            } else {
                format!("processors[{layer}]")
            };
            if processors.concurrency == 0 {
                return Err(StartError::invalid(
                    format!("{stage}.concurrency"),
                    "must be at least 1",
                ));
            }
            check_demand(&stage, processors.max_demand, processors.min_demand)?;
        }
        for (index, (name, options)) in self.batchers.iter().enumerate() {
            let option = |field: &str| format!("batchers[{name:?}].{field}");
            if name.is_empty() {
                return Err(StartError::invalid(
                    format!("batchers[{index}]"),
                    "the name is empty",
                ));
            }
            if self.batchers[..index]
                .iter()
                .any(|(other, _)| other == name)
            {
                return Err(StartError::invalid(
                    option("name"),
                    "two batchers have this name",
                ));
            }
            if options.batch_size == 0 {
                return Err(StartError::invalid(
                    option("batch_size"),
                    "must be at least 1",
                ));
            }
            if options.batch_timeout.is_zero() {
                return Err(StartError::invalid(
                    option("batch_timeout"),
                    "must be more than zero",
                ));
            }
            if options.concurrency == 0 {
                return Err(StartError::invalid(
                    option("concurrency"),
                    "must be at least 1",
                ));
            }
            if options.max_open_keys == 0 {
                return Err(StartError::invalid(
                    option("max_open_keys"),
                    "must be at least 1",
                ));
            }
            if options.max_demand == Some(0) {
                return Err(StartError::invalid(
                    option("max_demand"),
                    "must be at least 1",
                ));
            }
        }
        self.check_budgets()
    }

    /// Every source's in-flight budget fills a batch of every batcher.
    fn check_budgets(&self) -> Result<(), StartError> {
        for source in &self.sources {
            let Some(budget) = source.in_flight_budget() else {
                continue;
            };
            let largest = self
                .batchers
                .iter()
                .max_by_key(|(_, options)| options.batch_size);
            let (batcher, batch_size) = match largest {
                Some((name, options)) => (name.as_str(), options.batch_size),
                None => ("", 1),
            };
            if budget < batch_size {
                return Err(StartError::BudgetTooSmall {
                    source: source.status().name,
                    budget,
                    batcher: batcher.to_owned(),
                    batch_size,
                });
            }
        }
        Ok(())
    }

    /// Checks the options, then starts every stage on the current tokio runtime
    /// (with its time driver), producers first.
    ///
    /// # Errors
    ///
    /// [`StartError::InvalidOption`] naming the first option found wrong, or
    /// [`StartError::Stage`] if a stage did not start (those started are stopped).
    pub async fn start(self) -> Result<Pipeline<H::Data>, StartError> {
        self.validate()?;
        if self.retry.loops() {
            tracing::warn!(
                pipeline = %self.name,
                "the retry policy redelivers a failing message at once and for ever: set max_attempts or a delay"
            );
        }
        let name: Arc<str> = Arc::from(self.name.as_str());
        let settler = Settler::start(name.clone(), self.on_drop);
        let shared = Shared {
            handler: Arc::new(self.handler),
            settler: settler.clone(),
            policy: self.retry,
            pipeline: name.clone(),
        };
        let limiter = self.rate_limit.map(RateLimiter::new);
        let first = &self.processors[0];
        self.demand
            .set_budget(first.concurrency.saturating_mul(first.max_demand));
        let downstream = Downstream {
            shared,
            partition_by: self.partition_by.clone(),
            layers: self.processors.clone(),
            batchers: self.batchers.clone(),
        };
        let mut started = Started::default();
        let result =
            start_stages(&downstream, limiter.as_ref(), &self.producers, &mut started).await;
        match result {
            Ok(()) => {
                // Every stage is subscribed: the producers may now let messages out (a
                // finite one could otherwise end before the last processor subscribed).
                started.release_producers();
                let first_layer = started.layers[StageLayer::Processor as usize]
                    .iter()
                    .take(self.processors[0].concurrency)
                    .cloned()
                    .collect();
                self.demand.set_processors(first_layer);
                let (restarts, within) = self.max_restarts;
                let keeping = Arc::new(Keeping {
                    draining: AtomicBool::new(false),
                    failure: Mutex::new(None),
                    changed: tokio::sync::Notify::new(),
                    budget: Mutex::new(RestartIntensity::new(restarts as usize, within)),
                    restarts: AtomicU64::new(0),
                });
                let (gone, watched) = tokio::sync::watch::channel(());
                let wiring = started.wiring();
                let keepers = started.keepers(
                    &self.producers,
                    &settler,
                    limiter.as_ref(),
                    &keeping,
                    &wiring,
                );
                for keeper in keepers {
                    tokio::spawn(keeper.run(watched.clone()));
                }
                let keeper = DownstreamKeeper {
                    downstream,
                    wiring,
                    layers: started.layers.clone(),
                    keeping: keeping.clone(),
                };
                tokio::spawn(keeper.run(watched.clone()));
                let Started {
                    pushers, layers, ..
                } = started;
                let mut pipeline =
                    Pipeline::new(name, settler, layers, pushers, limiter, keeping, gone);
                pipeline.sources = self.sources;
                Ok(pipeline)
            }
            Err(error) => {
                for stage in started.layers.iter().flatten() {
                    stage.current().kill();
                }
                Err(error)
            }
        }
    }
}

/// Checks a `max_demand` and `min_demand` pair.
fn check_demand(stage: &str, max: usize, min: Option<usize>) -> Result<(), StartError> {
    if max == 0 {
        return Err(StartError::invalid(
            format!("{stage}.max_demand"),
            "must be at least 1",
        ));
    }
    if min.is_some_and(|min| min >= max) {
        return Err(StartError::invalid(
            format!("{stage}.min_demand"),
            format!("must be below max_demand ({max})"),
        ));
    }
    Ok(())
}
