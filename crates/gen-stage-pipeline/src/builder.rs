//! The pipeline's builder: its producers, processors and batchers, validated and
//! started as stages.

use std::sync::Arc;

use futures::future::BoxFuture;
use gen_stage::dispatcher::{Partition, PartitionDispatcher};
use gen_stage::{AnyProducer, CancelMode, DemandMode, Producer, SubscribeOptions};

use crate::ack::Outcome;
use crate::error::StartError;
use crate::failure::RetryPolicy;
use crate::handler::Handler;
use crate::message::Message;
use crate::options::{BatcherOptions, ProcessorOptions};
use crate::pipeline::{Layer, Pipeline};
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::settle::Settler;
use crate::stages::{
    BatchProcessor, Batcher, Entry, EntryMessage, LastProcessor, Processor, Shared, Transform,
};

/// Hands messages to a running producer stage, beside its producer.
pub(crate) type Pusher<T> = Box<dyn Fn(Vec<Message<T>>) -> bool + Send + Sync>;

/// A started producer stage: its handle, and how to push messages into it.
type StartedProducer<T> = (AnyProducer<Message<T>>, Pusher<T>);

/// A message's partition key, for `partition_by`.
type PartitionKey<T> = Arc<dyn Fn(&Message<T>) -> u64 + Send + Sync>;

/// How a producer stage shares its messages among the processors: by partition (the
/// key, and how many processors), or to whoever asks most.
type Sharing<T> = Option<(PartitionKey<T>, usize)>;

/// Starts one producer stage of a pipeline.
trait StartProducer<T>: Send + Sync {
    fn start(
        &self,
        settler: Arc<Settler>,
        limiter: Option<RateLimiter>,
        sharing: Sharing<T>,
    ) -> BoxFuture<'static, Result<StartedProducer<T>, gen_stage::error::StartError>>;
}

/// A producer made by `make`, its events turned into messages by `transform`.
struct ProducerFactory<M, F> {
    make: Arc<M>,
    transform: Transform<F>,
}

impl<M, P, F, T> StartProducer<T> for ProducerFactory<M, F>
where
    M: Fn() -> P + Send + Sync + 'static,
    P: Producer,
    F: Fn(P::Event) -> Message<T> + Send + Sync + 'static,
    T: Send + 'static,
{
    fn start(
        &self,
        settler: Arc<Settler>,
        limiter: Option<RateLimiter>,
        sharing: Sharing<T>,
    ) -> BoxFuture<'static, Result<StartedProducer<T>, gen_stage::error::StartError>> {
        let entry = Entry::new((self.make)(), self.transform.clone(), settler, limiter);
        // Nothing goes out before every processor has subscribed (see `start`).
        let mut builder = gen_stage::producer(entry).demand_mode(DemandMode::Accumulate);
        if let Some((key, partitions)) = sharing {
            let count = partitions as u64;
            builder = builder
                .dispatcher(PartitionDispatcher::by_count(partitions, move |message| {
                    (key(message) % count) as usize
                }));
        }
        Box::pin(async move {
            let stage = builder.start().await?;
            let typed = stage.clone();
            let push: Pusher<T> =
                Box::new(move |messages| typed.cast(EntryMessage::Push(messages)).is_ok());
            Ok((stage.into(), push))
        })
    }
}

/// A producer's messages, as they are.
fn as_they_are<T>(message: Message<T>) -> Message<T> {
    message
}

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
    producers: Vec<Box<dyn StartProducer<H::Data>>>,
    processors: ProcessorOptions,
    batchers: Vec<(String, BatcherOptions)>,
    retry: RetryPolicy,
    on_drop: Outcome,
    rate_limit: Option<RateLimit>,
    partition_by: Option<PartitionKey<H::Data>>,
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
            processors: ProcessorOptions::default(),
            batchers: Vec::new(),
            retry: RetryPolicy::default(),
            on_drop: Outcome::Release,
            rate_limit: None,
            partition_by: None,
        }
    }

    /// The pipeline's name, in logs, spans and reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a producer of messages; `make` makes it when the pipeline starts. Add as
    /// many as you like: processors take from all of them.
    pub fn producer<P>(self, make: impl Fn() -> P + Send + Sync + 'static) -> Self
    where
        P: Producer<Event = Message<H::Data>>,
    {
        self.producer_with(make, as_they_are)
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
        self.producers.push(Box::new(ProducerFactory {
            make: Arc::new(make),
            transform: Arc::new(transform),
        }));
        self
    }

    /// How the processors run ([`ProcessorOptions`]'s defaults otherwise).
    pub fn processors(mut self, options: ProcessorOptions) -> Self {
        self.processors = options;
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
    /// The order holds from each producer through the processors, and on to a
    /// batcher's batches; a message that fails and is retried comes back later, behind
    /// messages of its key that came after it.
    pub fn partition_by(
        mut self,
        key: impl Fn(&Message<H::Data>) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.partition_by = Some(Arc::new(key));
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
        let processors = &self.processors;
        if processors.concurrency == 0 {
            return Err(StartError::invalid(
                "processors.concurrency",
                "must be at least 1",
            ));
        }
        check_demand("processors", processors.max_demand, processors.min_demand)?;
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
        let mut started = Started::default();
        let result = start_stages(
            &shared,
            limiter.as_ref(),
            self.partition_by.clone(),
            &self.producers,
            &self.processors,
            &self.batchers,
            &mut started,
        )
        .await;
        if result.is_ok() {
            // Every stage is subscribed: the producers may now let messages out (a
            // finite one could otherwise end before the last processor subscribed).
            for producer in &started.producers {
                let _ = producer.set_demand_mode(DemandMode::Forward);
            }
        }
        match result {
            Ok(()) => {
                let pushers = std::mem::take(&mut started.pushers);
                let layers = started.into_layers();
                Ok(Pipeline::new(name, settler, layers, pushers, limiter))
            }
            Err(error) => {
                for stage in started.into_layers().iter().flatten() {
                    stage.kill();
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

/// The stages started so far, by layer.
struct Started<T> {
    producers: Vec<AnyProducer<Message<T>>>,
    pushers: Vec<Pusher<T>>,
    processors: Vec<AnyProducer<Message<T>>>,
    /// Processors without batchers: consumers.
    last_processors: Layer,
    batchers: Vec<AnyProducer<crate::batch::Batch<T>>>,
    batch_processors: Layer,
}

impl<T> Default for Started<T> {
    fn default() -> Self {
        Started {
            producers: Vec::new(),
            pushers: Vec::new(),
            processors: Vec::new(),
            last_processors: Vec::new(),
            batchers: Vec::new(),
            batch_processors: Vec::new(),
        }
    }
}

impl<T: Send + 'static> Started<T> {
    fn into_layers(self) -> Vec<Layer> {
        fn erase<T: Send + 'static>(stages: Vec<AnyProducer<T>>) -> Layer {
            stages
                .into_iter()
                .map(|stage| Box::new(stage) as _)
                .collect()
        }
        let mut processors = erase(self.processors);
        processors.extend(self.last_processors);
        vec![
            erase(self.producers),
            processors,
            erase(self.batchers),
            self.batch_processors,
        ]
    }
}

async fn start_stages<H: Handler>(
    shared: &Shared<H>,
    limiter: Option<&RateLimiter>,
    partition_by: Option<PartitionKey<H::Data>>,
    producers: &[Box<dyn StartProducer<H::Data>>],
    processors: &ProcessorOptions,
    batchers: &[(String, BatcherOptions)],
    started: &mut Started<H::Data>,
) -> Result<(), StartError> {
    let failed = |stage: String| move |error| StartError::Stage { stage, error };
    for (index, producer) in producers.iter().enumerate() {
        let sharing = partition_by
            .clone()
            .map(|key| (key, processors.concurrency));
        let (stage, push) = producer
            .start(shared.settler.clone(), limiter.cloned(), sharing)
            .await
            .map_err(failed(format!("producer {index}")))?;
        started.producers.push(stage);
        started.pushers.push(push);
    }
    let names: Arc<[Arc<str>]> = batchers
        .iter()
        .map(|(name, _)| Arc::from(name.as_str()))
        .collect();
    let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
    let mut upstream = temporary.clone().max_demand(processors.max_demand);
    if let Some(min) = processors.min_demand {
        upstream = upstream.min_demand(min);
    }
    for index in 0..processors.concurrency {
        let processor = Processor::new(shared.clone(), index, names.clone(), processors.timeout);
        let failed_processor = failed(format!("processor {index}"));
        let upstream = if partition_by.is_some() {
            upstream.clone().with(Partition(index))
        } else {
            upstream.clone()
        };
        if names.is_empty() {
            let mut builder = gen_stage::consumer(LastProcessor(processor));
            for producer in &started.producers {
                builder = builder.subscribe_to(producer, upstream.clone());
            }
            let stage = builder.start().await.map_err(failed_processor)?;
            started.last_processors.push(Box::new(stage));
            continue;
        }
        let mut builder = gen_stage::producer_consumer(processor);
        if names.len() > 1 {
            builder = builder.dispatcher(PartitionDispatcher::by_count(
                names.len(),
                |message: &Message<H::Data>| message.batcher_index as usize,
            ));
        }
        for producer in &started.producers {
            builder = builder.subscribe_to(producer, upstream.clone());
        }
        let stage = builder
            .start()
            .await
            .map_err(failed(format!("processor {index}")))?;
        started.processors.push(stage.into());
    }
    for (index, (name, options)) in batchers.iter().enumerate() {
        let batcher = Batcher::new(names[index].clone(), options);
        let mut builder = gen_stage::producer_consumer(batcher);
        let mut from_processors = temporary
            .clone()
            .max_demand(options.max_demand.unwrap_or(options.batch_size));
        if names.len() > 1 {
            from_processors = from_processors.with(Partition(index));
        }
        for processor in &started.processors {
            builder = builder.subscribe_to(processor, from_processors.clone());
        }
        let batcher = builder
            .start()
            .await
            .map_err(failed(format!("batcher {name:?}")))?;
        // One batch at a time for each batch processor.
        let one_batch = temporary.clone().max_demand(1).min_demand(0);
        for slot in 0..options.concurrency {
            let stage = gen_stage::consumer(BatchProcessor::new(shared.clone(), options.timeout))
                .subscribe_to(&batcher, one_batch.clone())
                .start()
                .await
                .map_err(failed(format!("batch processor {slot} of {name:?}")))?;
            started.batch_processors.push(Box::new(stage));
        }
        started.batchers.push(batcher.into());
    }
    Ok(())
}
