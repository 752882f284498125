//! Starting a pipeline's stages: its producers (each made by a factory, wrapped in
//! an entry stage), then its processors, batchers and batch processors, each
//! subscribed to the layer before it. What starts is kept by layer, with a name and
//! the activity a snapshot reads.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use gen_stage::dispatcher::{Partition, PartitionDispatcher};
use gen_stage::kind::{ReceivesEvents, StageKind};
use gen_stage::{AnyProducer, CancelMode, DemandMode, Producer, StageRef, SubscribeOptions};

use crate::activity::Activity;
use crate::batch::Batch;
use crate::error::StartError;
use crate::handler::Handler;
use crate::keeper::{FirstProcessor, Keeping, ProducerKeeper, Wiring};
use crate::message::Message;
use crate::options::{BatcherOptions, ProcessorOptions};
use crate::pipeline::{Drainable, StageEntry};
use crate::rate_limit::RateLimiter;
use crate::settle::Settler;
use crate::snapshot::StageLayer;
use crate::stages::{
    BatchProcessor, Batcher, Entry, EntryMessage, LastProcessor, Processor, Route, Shared,
    Transform,
};

/// Hands messages to a running producer stage, beside its producer.
pub(crate) type Pusher<T> = Box<dyn Fn(Vec<Message<T>>) -> bool + Send + Sync>;

/// A started producer stage: its handle, and how to push messages into it.
pub(crate) type StartedProducer<T> = (AnyProducer<Message<T>>, Pusher<T>);

/// A message's partition key, for `partition_by`.
pub(crate) type PartitionKey<T> = Arc<dyn Fn(&Message<T>) -> u64 + Send + Sync>;

/// How a producer stage shares its messages among the processors: by partition (the
/// key, and how many processors), or to whoever asks most.
pub(crate) type Sharing<T> = Option<(PartitionKey<T>, usize)>;

/// Starts one producer stage of a pipeline.
pub(crate) trait StartProducer<T>: Send + Sync {
    fn start(
        &self,
        settler: Arc<Settler>,
        limiter: Option<RateLimiter>,
        sharing: Sharing<T>,
        activity: Arc<Activity>,
    ) -> BoxFuture<'static, Result<StartedProducer<T>, gen_stage::error::StartError>>;
}

/// A producer made by `make`, its events turned into messages by `transform`.
pub(crate) struct ProducerFactory<M, F> {
    pub(crate) make: Arc<M>,
    pub(crate) transform: Arc<F>,
}

impl<M, P, F, T> StartProducer<T> for ProducerFactory<M, F>
where
    M: Fn() -> P + Send + Sync + 'static,
    P: Producer,
    F: Transform<P::Event, T>,
    T: Send + 'static,
{
    fn start(
        &self,
        settler: Arc<Settler>,
        limiter: Option<RateLimiter>,
        sharing: Sharing<T>,
        activity: Arc<Activity>,
    ) -> BoxFuture<'static, Result<StartedProducer<T>, gen_stage::error::StartError>> {
        let entry = Entry::new(
            (self.make)(),
            self.transform.clone(),
            settler,
            limiter,
            activity,
        );
        // Nothing goes out before every processor has subscribed (see `start`).
        let mut builder = gen_stage::producer(entry).demand_mode(DemandMode::Accumulate);
        if let Some((key, partitions)) = sharing {
            builder = builder.dispatcher(by_key(key, partitions));
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

/// Partitions messages among `partitions` consumers by `key`.
fn by_key<T: Send + 'static>(
    key: PartitionKey<T>,
    partitions: usize,
) -> PartitionDispatcher<Message<T>, usize> {
    let count = partitions as u64;
    PartitionDispatcher::by_count(partitions, move |message| (key(message) % count) as usize)
}

/// The stages started so far: the handles later layers subscribe to, every stage by
/// layer, and what the producers' keepers need.
pub(crate) struct Started<T> {
    producers: Vec<AnyProducer<Message<T>>>,
    pub(crate) pushers: Vec<Arc<Mutex<Arc<Pusher<T>>>>>,
    processors: Vec<AnyProducer<Message<T>>>,
    /// Producers, processors, batchers, batch processors.
    pub(crate) layers: [Vec<Arc<StageEntry>>; 4],
    /// Each processor, and how it subscribes to a producer.
    pub(crate) subscribers: Vec<FirstProcessor<T>>,
    /// Each producer's sharing among the processors.
    pub(crate) sharing: Sharing<T>,
}

impl<T> Default for Started<T> {
    fn default() -> Self {
        Started {
            producers: Vec::new(),
            pushers: Vec::new(),
            processors: Vec::new(),
            layers: Default::default(),
            subscribers: Vec::new(),
            sharing: None,
        }
    }
}

impl<T: Send + 'static> Started<T> {
    /// Lets the producers send (they start accumulating demand).
    pub(crate) fn release_producers(&self) {
        for producer in &self.producers {
            let _ = producer.set_demand_mode(DemandMode::Forward);
        }
    }

    /// Adds a processor of `layer`; one of the first layer is resubscribed, with
    /// `upstream`, to a producer that restarts.
    fn add_processor<K>(
        &mut self,
        layer: usize,
        name: String,
        stage: StageRef<K>,
        upstream: SubscribeOptions,
        activity: Arc<Activity>,
    ) where
        K: ReceivesEvents + StageKind<In = Message<T>>,
    {
        if layer == 0 {
            self.subscribers.push((Arc::new(stage.clone()), upstream));
        }
        self.add(StageLayer::Processor, name, stage, activity);
    }

    fn add(
        &mut self,
        layer: StageLayer,
        name: String,
        stage: impl Drainable + 'static,
        activity: Arc<Activity>,
    ) {
        self.layers[layer as usize].push(Arc::new(StageEntry {
            layer,
            name,
            stage: Mutex::new(Arc::new(stage)),
            activity,
        }));
    }

    /// The stages others subscribe to now, for the keepers.
    pub(crate) fn wiring(&self) -> Arc<Wiring<T>> {
        Arc::new(Wiring {
            producers: Mutex::new(self.producers.clone()),
            subscribers: Mutex::new(self.subscribers.clone()),
            restarting: tokio::sync::Mutex::new(()),
        })
    }

    /// The keepers of the producers made by `factories`.
    pub(crate) fn keepers(
        &self,
        factories: &[Arc<dyn StartProducer<T>>],
        settler: &Arc<Settler>,
        limiter: Option<&RateLimiter>,
        keeping: &Arc<Keeping>,
        wiring: &Arc<Wiring<T>>,
    ) -> Vec<ProducerKeeper<T>> {
        factories
            .iter()
            .zip(&self.layers[StageLayer::Producer as usize])
            .zip(&self.pushers)
            .enumerate()
            .map(|(index, ((factory, entry), pusher))| ProducerKeeper {
                factory: factory.clone(),
                settler: settler.clone(),
                limiter: limiter.cloned(),
                sharing: self.sharing.clone(),
                activity: entry.activity.clone(),
                index,
                wiring: wiring.clone(),
                entry: entry.clone(),
                pusher: pusher.clone(),
                keeping: keeping.clone(),
                all: self.layers.clone(),
            })
            .collect()
    }
}

/// What the stages after the producers are made of: enough to start them again.
pub(crate) struct Downstream<H: Handler> {
    pub(crate) shared: Shared<H>,
    pub(crate) partition_by: Option<PartitionKey<H::Data>>,
    /// Each layer of processors.
    pub(crate) layers: Vec<ProcessorOptions>,
    pub(crate) batchers: Vec<(String, BatcherOptions)>,
}

/// Starts every stage, in order, into `started` (which keeps those started if one
/// fails, for the caller to stop).
pub(crate) async fn start_stages<H: Handler>(
    downstream: &Downstream<H>,
    limiter: Option<&RateLimiter>,
    producers: &[Arc<dyn StartProducer<H::Data>>],
    started: &mut Started<H::Data>,
) -> Result<(), StartError> {
    let shared = &downstream.shared;
    for (index, producer) in producers.iter().enumerate() {
        let name = format!("producer {index}");
        let activity = Arc::new(Activity::new());
        let sharing = downstream
            .partition_by
            .clone()
            .map(|key| (key, downstream.layers[0].concurrency));
        started.sharing = sharing.clone();
        let (stage, push) = producer
            .start(
                shared.settler.clone(),
                limiter.cloned(),
                sharing,
                activity.clone(),
            )
            .await
            .map_err(failed(&name))?;
        started.producers.push(stage.clone());
        started.pushers.push(Arc::new(Mutex::new(Arc::new(push))));
        started.add(StageLayer::Producer, name, stage, activity);
    }
    let sources = started.producers.clone();
    downstream.start(&sources, started, None).await
}

/// The error of a stage that did not start.
fn failed(stage: &str) -> impl FnOnce(gen_stage::error::StartError) -> StartError {
    let stage = stage.to_owned();
    move |error| StartError::Stage { stage, error }
}

impl<H: Handler> Downstream<H> {
    /// Starts the processors, batchers and batch processors, the first layer
    /// subscribed to `sources`, into `started`. With `activities`, each stage counts
    /// its activity where the stage in its place before it did (a restart).
    pub(crate) async fn start(
        &self,
        sources: &[AnyProducer<Message<H::Data>>],
        started: &mut Started<H::Data>,
        activities: Option<&[Vec<Arc<StageEntry>>; 4]>,
    ) -> Result<(), StartError> {
        let activity = |layer: StageLayer, index: usize| match activities {
            Some(layers) => {
                let activity = layers[layer as usize][index].activity.clone();
                activity.restart();
                activity
            }
            None => Arc::new(Activity::new()),
        };
        let Downstream {
            shared,
            partition_by,
            layers,
            batchers,
        } = self;
        let names: Arc<[Arc<str>]> = batchers
            .iter()
            .map(|(name, _)| Arc::from(name.as_str()))
            .collect();
        let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
        // The stages each layer of processors takes from: the producers, then the
        // layer before.
        let mut sources = sources.to_vec();
        for (layer, options) in layers.iter().enumerate() {
            let last = layer + 1 == layers.len();
            let mut upstream = temporary.clone().max_demand(options.max_demand);
            if let Some(min) = options.min_demand {
                upstream = upstream.min_demand(min);
            }
            let mut stages = Vec::new();
            for index in 0..options.concurrency {
                let name = if layer == 0 {
                    format!("processor {index}")
                } else {
                    format!("processor {index} of layer {layer}")
                };
                let activity = activity(
                    StageLayer::Processor,
                    started.layers[StageLayer::Processor as usize].len(),
                );
                let processor = Processor::new(
                    shared.clone(),
                    (layer, index),
                    if last {
                        Route::Batchers(names.clone())
                    } else {
                        Route::NextLayer
                    },
                    options.timeout,
                    activity.clone(),
                );
                // The layer before partitions its messages among this one's processors.
                let upstream = if partition_by.is_some() {
                    upstream.clone().with(Partition(index))
                } else {
                    upstream.clone()
                };
                if last && names.is_empty() {
                    let mut builder = gen_stage::consumer(LastProcessor(processor));
                    for source in &sources {
                        builder = builder.subscribe_to(source, upstream.clone());
                    }
                    let stage = builder.start().await.map_err(failed(&name))?;
                    started.add_processor(layer, name, stage, upstream, activity);
                    continue;
                }
                let mut builder = gen_stage::producer_consumer(processor);
                if !last {
                    if let Some(key) = &partition_by {
                        let next = layers[layer + 1].concurrency;
                        builder = builder.dispatcher(by_key(key.clone(), next));
                    }
                } else if names.len() > 1 {
                    builder = builder.dispatcher(PartitionDispatcher::by_count(
                        names.len(),
                        |message: &Message<H::Data>| message.batcher_index as usize,
                    ));
                }
                for source in &sources {
                    builder = builder.subscribe_to(source, upstream.clone());
                }
                let stage = builder.start().await.map_err(failed(&name))?;
                stages.push(AnyProducer::from(&stage));
                started.add_processor(layer, name, stage, upstream, activity);
            }
            sources = stages;
        }
        started.processors = sources;
        for (index, (name, options)) in batchers.iter().enumerate() {
            let batcher_activity = activity(StageLayer::Batcher, index);
            let batcher = Batcher::new(
                names[index].clone(),
                options,
                partition_by.clone(),
                batcher_activity.clone(),
            );
            let mut builder = gen_stage::producer_consumer(batcher);
            // With partition_by, each batch goes to the batch processor of its partition.
            let partitioned = partition_by.is_some() && options.concurrency > 1;
            if partitioned {
                builder = builder.dispatcher(PartitionDispatcher::by_count(
                    options.concurrency,
                    |batch: &Batch<H::Data>| batch.partition as usize,
                ));
            }
            // By default enough for a processor's whole delivery, which then does not
            // wait (copied in and out) in the processor's buffer.
            let last_layer = layers.last().map_or(0, |layer| layer.max_demand);
            let mut from_processors = temporary.clone().max_demand(
                options
                    .max_demand
                    .unwrap_or(options.batch_size.max(last_layer)),
            );
            if names.len() > 1 {
                from_processors = from_processors.with(Partition(index));
            }
            for processor in &started.processors {
                builder = builder.subscribe_to(processor, from_processors.clone());
            }
            let stage_name = format!("batcher {name:?}");
            let batcher = builder.start().await.map_err(failed(&stage_name))?;
            // One batch at a time for each batch processor.
            let one_batch = temporary.clone().max_demand(1).min_demand(0);
            for slot in 0..options.concurrency {
                let processor_name = format!("batch processor {slot} of {name:?}");
                let activity = activity(
                    StageLayer::BatchProcessor,
                    started.layers[StageLayer::BatchProcessor as usize].len(),
                );
                let batch_processor =
                    BatchProcessor::new(shared.clone(), options.timeout, activity.clone());
                let one_batch = if partitioned {
                    one_batch.clone().with(Partition(slot))
                } else {
                    one_batch.clone()
                };
                let stage = gen_stage::consumer(batch_processor)
                    .subscribe_to(&batcher, one_batch)
                    .start()
                    .await
                    .map_err(failed(&processor_name))?;
                started.add(StageLayer::BatchProcessor, processor_name, stage, activity);
            }
            let batcher: AnyProducer<Batch<H::Data>> = batcher.into();
            started.add(StageLayer::Batcher, stage_name, batcher, batcher_activity);
        }
        Ok(())
    }
}
