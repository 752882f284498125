//! Starting stages: one builder per kind.

use std::fmt;
use std::sync::Arc;

use crate::context::Control;
use crate::dispatcher::{DemandDispatcher, Dispatcher};
use crate::error::StartError;
use crate::handle::{ConsumerRef, ProducerConsumerRef, ProducerRef, StageRef};
use crate::kind::{ConsumerKind, EmitsEvents, ProducerConsumerKind, ProducerKind, StageKind};
use crate::options::{BufferKeep, BufferSize, DEFAULT_BUFFER_SIZE, DemandMode, SubscribeOptions};
use crate::registry::{PortEntryMaker, Registry, port_maker};
use crate::runtime::{
    self, ConsumerRuntime, Naming, ProducerConsumerRuntime, ProducerRuntime, ProducerSide, Target,
};
use crate::stage::{Consumer, Producer, ProducerConsumer};
use crate::stats::StatsCell;

/// Starts building a [`Producer`] stage.
///
/// ```
/// # use gen_stage::{BoxError, BufferKeep, Producer, ProducerContext};
/// # struct Counter(u64);
/// # impl Producer for Counter {
/// #     type Event = u64;
/// #     type Message = ();
/// #     async fn handle_demand(&mut self, n: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
/// #         Ok((self.0..self.0 + n as u64).collect())
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::StartError> {
/// let producer = gen_stage::producer(Counter(0))
///     .buffer_size(500)
///     .buffer_keep(BufferKeep::First)
///     .start()
///     .await?;
/// assert!(producer.is_alive());
/// # Ok(())
/// # }
/// ```
pub fn producer<S: Producer>(stage: S) -> ProducerBuilder<S> {
    ProducerBuilder {
        stage,
        output: Output::new(BufferSize::Bounded(DEFAULT_BUFFER_SIZE)),
        naming: None,
    }
}

/// Starts building a [`Consumer`] stage.
pub fn consumer<S: Consumer>(stage: S) -> ConsumerBuilder<S> {
    ConsumerBuilder {
        stage,
        subscriptions: Vec::new(),
        naming: None,
    }
}

/// Starts building a [`ProducerConsumer`] stage. Its buffer is unbounded by default,
/// as in GenStage: it only holds what `handle_events` returned beyond demand.
pub fn producer_consumer<S: ProducerConsumer>(stage: S) -> ProducerConsumerBuilder<S> {
    ProducerConsumerBuilder {
        stage,
        output: Output::new(BufferSize::Unbounded),
        subscriptions: Vec::new(),
        naming: None,
    }
}

/// The options of a stage's producer side.
struct Output<T> {
    dispatcher: Box<dyn Dispatcher<T>>,
    buffer_size: BufferSize,
    buffer_keep: BufferKeep,
    demand_mode: DemandMode,
}

impl<T: Send + 'static> Output<T> {
    fn new(buffer_size: BufferSize) -> Self {
        Output {
            dispatcher: Box::new(DemandDispatcher::new()),
            buffer_size,
            buffer_keep: BufferKeep::Last,
            demand_mode: DemandMode::Forward,
        }
    }

    fn into_side<M>(self, stats: &Arc<StatsCell>) -> ProducerSide<T, M> {
        ProducerSide::new(
            self.dispatcher,
            self.buffer_size,
            self.buffer_keep,
            self.demand_mode,
            stats.clone(),
        )
    }
}

type Subscriptions<T> = Vec<runtime::InitialSubscription<T>>;

fn validate<T>(subscriptions: &Subscriptions<T>) -> Result<(), StartError> {
    for (_, options) in subscriptions {
        options.validate()?;
    }
    Ok(())
}

fn control<K: StageKind>(me: StageRef<K>) -> Control<K> {
    Control { me, stop: None }
}

fn naming<K: StageKind>(
    registry: &Registry,
    name: &str,
    port: Option<PortEntryMaker<K>>,
) -> Naming<K> {
    Naming {
        registry: registry.clone(),
        name: name.to_owned(),
        port,
    }
}

/// Builds a producer stage; see [`producer`].
#[must_use = "a builder does nothing until started"]
pub struct ProducerBuilder<S: Producer> {
    stage: S,
    output: Output<S::Event>,
    naming: Option<Naming<ProducerKind<S>>>,
}

impl<S: Producer> ProducerBuilder<S> {
    /// The dispatcher (default: [`DemandDispatcher`]).
    pub fn dispatcher(mut self, dispatcher: impl Dispatcher<S::Event>) -> Self {
        self.output.dispatcher = Box::new(dispatcher);
        self
    }

    /// Keeps at most `size` events without demand (default 10,000; 0 keeps none).
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.output.buffer_size = BufferSize::Bounded(size);
        self
    }

    /// Keeps every event without demand: memory then depends on what the stage emits.
    pub fn unbounded_buffer(mut self) -> Self {
        self.output.buffer_size = BufferSize::Unbounded;
        self
    }

    /// Which events a full buffer keeps (default [`BufferKeep::Last`]).
    pub fn buffer_keep(mut self, keep: BufferKeep) -> Self {
        self.output.buffer_keep = keep;
        self
    }

    /// The demand mode to start in (default [`DemandMode::Forward`]).
    pub fn demand_mode(mut self, mode: DemandMode) -> Self {
        self.output.demand_mode = mode;
        self
    }

    /// Registers the stage under `name` in `registry` while it runs.
    pub fn name(mut self, registry: &Registry, name: &str) -> Self {
        self.naming = Some(naming(registry, name, Some(port_maker::<ProducerKind<S>>)));
        self
    }

    /// Spawns the stage on the current tokio runtime and waits for its `init` hook.
    ///
    /// # Errors
    ///
    /// [`StartError`] if the name is taken, or `init` failed or ignored the start.
    pub async fn start(self) -> Result<ProducerRef<S>, StartError> {
        let stats = Arc::default();
        let side = self.output.into_side(&stats);
        let stage = self.stage;
        runtime::start(stats, self.naming, move |me| {
            ProducerRuntime::new(stage, side, control(me))
        })
        .await
    }
}

/// Builds a consumer stage; see [`consumer`].
#[must_use = "a builder does nothing until started"]
pub struct ConsumerBuilder<S: Consumer> {
    stage: S,
    subscriptions: Subscriptions<S::Event>,
    naming: Option<Naming<ConsumerKind<S>>>,
}

impl<S: Consumer> ConsumerBuilder<S> {
    /// Subscribes to `producer` when the stage starts; `start` fails if it cannot.
    pub fn subscribe_to<P>(mut self, producer: &StageRef<P>, options: SubscribeOptions) -> Self
    where
        P: EmitsEvents<Out = S::Event>,
    {
        self.subscriptions
            .push((Target::Port(producer.port()), options));
        self
    }

    /// Subscribes to the stage registered as `name` when the stage starts (each time
    /// it starts, so a restarted consumer finds a restarted producer).
    pub fn subscribe_to_name(
        mut self,
        registry: &Registry,
        name: &str,
        options: SubscribeOptions,
    ) -> Self {
        self.subscriptions
            .push((Target::Name(registry.clone(), name.to_owned()), options));
        self
    }

    /// Registers the stage under `name` in `registry` while it runs.
    pub fn name(mut self, registry: &Registry, name: &str) -> Self {
        self.naming = Some(naming(registry, name, None));
        self
    }

    /// Spawns the stage, runs its `init` hook and makes its subscriptions.
    ///
    /// # Errors
    ///
    /// [`StartError`] if an option is invalid, the name is taken, `init` failed or
    /// ignored the start, or a subscription could not be made.
    pub async fn start(self) -> Result<ConsumerRef<S>, StartError> {
        validate(&self.subscriptions)?;
        let (stage, subscriptions) = (self.stage, self.subscriptions);
        runtime::start(Arc::default(), self.naming, move |me| {
            ConsumerRuntime::new(stage, control(me), subscriptions)
        })
        .await
    }
}

/// Builds a producer-consumer stage; see [`producer_consumer`].
#[must_use = "a builder does nothing until started"]
pub struct ProducerConsumerBuilder<S: ProducerConsumer> {
    stage: S,
    output: Output<S::Output>,
    subscriptions: Subscriptions<S::Input>,
    naming: Option<Naming<ProducerConsumerKind<S>>>,
}

impl<S: ProducerConsumer> ProducerConsumerBuilder<S> {
    /// The dispatcher (default: [`DemandDispatcher`]).
    pub fn dispatcher(mut self, dispatcher: impl Dispatcher<S::Output>) -> Self {
        self.output.dispatcher = Box::new(dispatcher);
        self
    }

    /// Keeps at most `size` events without demand (default: unbounded).
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.output.buffer_size = BufferSize::Bounded(size);
        self
    }

    /// Which events a full buffer keeps (default [`BufferKeep::Last`]).
    pub fn buffer_keep(mut self, keep: BufferKeep) -> Self {
        self.output.buffer_keep = keep;
        self
    }

    /// The demand mode to start in (default [`DemandMode::Forward`]).
    pub fn demand_mode(mut self, mode: DemandMode) -> Self {
        self.output.demand_mode = mode;
        self
    }

    /// Subscribes to `producer` when the stage starts; `start` fails if it cannot.
    pub fn subscribe_to<P>(mut self, producer: &StageRef<P>, options: SubscribeOptions) -> Self
    where
        P: EmitsEvents<Out = S::Input>,
    {
        self.subscriptions
            .push((Target::Port(producer.port()), options));
        self
    }

    /// Subscribes to the stage registered as `name` when the stage starts.
    pub fn subscribe_to_name(
        mut self,
        registry: &Registry,
        name: &str,
        options: SubscribeOptions,
    ) -> Self {
        self.subscriptions
            .push((Target::Name(registry.clone(), name.to_owned()), options));
        self
    }

    /// Registers the stage under `name` in `registry` while it runs.
    pub fn name(mut self, registry: &Registry, name: &str) -> Self {
        self.naming = Some(naming(
            registry,
            name,
            Some(port_maker::<ProducerConsumerKind<S>>),
        ));
        self
    }

    /// Spawns the stage, runs its `init` hook and makes its subscriptions.
    ///
    /// # Errors
    ///
    /// As for [`ConsumerBuilder::start`].
    pub async fn start(self) -> Result<ProducerConsumerRef<S>, StartError> {
        validate(&self.subscriptions)?;
        let stats = Arc::default();
        let side = self.output.into_side(&stats);
        let (stage, subscriptions) = (self.stage, self.subscriptions);
        runtime::start(stats, self.naming, move |me| {
            ProducerConsumerRuntime::new(stage, side, control(me), subscriptions)
        })
        .await
    }
}

impl<S: Producer> fmt::Debug for ProducerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerBuilder").finish_non_exhaustive()
    }
}

impl<S: Consumer> fmt::Debug for ConsumerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("subscriptions", &self.subscriptions.len())
            .finish_non_exhaustive()
    }
}

impl<S: ProducerConsumer> fmt::Debug for ProducerConsumerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConsumerBuilder")
            .field("subscriptions", &self.subscriptions.len())
            .finish_non_exhaustive()
    }
}
