//! Starting stages: one builder per kind, and the settings of a producer's buffer.
//!
//! [`producer`], [`consumer`] and [`producer_consumer`] (also at the crate's root)
//! take your stage and return its builder: a [`ProducerBuilder`], [`ConsumerBuilder`]
//! or [`ProducerConsumerBuilder`], three names of one [`Builder`] type. Set options,
//! then `start` spawns the stage on the current tokio runtime and returns its handle
//! once `init` and the subscriptions given to `subscribe_to` have succeeded.
//!
//! Options exist only where they apply, checked by the compiler: a dispatcher and a
//! buffer for stages that emit, subscriptions for stages that receive; a name in a
//! [`Registry`] and the mailbox's capacity for every stage.
//!
//! | setting | default | set with |
//! | --- | --- | --- |
//! | events kept without demand | [`DEFAULT_BUFFER_SIZE`] for producers, unbounded for producer-consumers | [`Builder::buffer_size`], [`Builder::unbounded_buffer`] |
//! | which events a full buffer keeps | [`BufferKeep::Last`] | [`Builder::buffer_keep`] |
//! | user messages the mailbox holds | [`DEFAULT_MESSAGE_CAPACITY`] | [`Builder::message_capacity`] |
//!
//! ```
//! # use gen_stage::{BoxError, Producer, ProducerContext};
//! use gen_stage::builder::{BufferKeep, DEFAULT_BUFFER_SIZE};
//!
//! # struct Ticks;
//! # impl Producer for Ticks {
//! #     type Event = u64;
//! #     type Message = ();
//! #     async fn handle_demand(&mut self, _: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
//! #         Ok(Vec::new())
//! #     }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Keeps the first events when no consumer keeps up, and twice as many as by default.
//! let ticks = gen_stage::producer(Ticks)
//!     .buffer_size(2 * DEFAULT_BUFFER_SIZE)
//!     .buffer_keep(BufferKeep::First)
//!     .start()
//!     .await?;
//! assert!(ticks.is_alive());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

pub use crate::entry_bound::DEFAULT_MESSAGE_CAPACITY;
use crate::options::BufferSize;
pub use crate::options::{BufferKeep, DEFAULT_BUFFER_SIZE};

use crate::dispatcher::{ChosenDispatcher, DemandDispatcher, Dispatcher};
use crate::error::StartError;
use crate::handle::{ConsumerRef, ProducerConsumerRef, ProducerRef, StageRef};
use crate::kind::{
    ConsumerKind, EmitsEvents, ProducerConsumerKind, ProducerKind, ReceivesEvents, StageKind,
};
use crate::options::{DemandMode, SubscribeOptions};
use crate::registry::{ProducerEntryMaker, Registry, producer_entry};
use crate::runtime::control::Control;
use crate::runtime::{
    self, ConsumerRuntime, Naming, ProducerConsumerRuntime, ProducerRuntime, ProducerSide, Target,
};
use crate::stage::{Consumer, Producer, ProducerConsumer};
use crate::stats::StatsCell;
use crate::upstream::Upstream;
use crate::upstream::sealed::Ports;

/// Starts building a [`Producer`] stage.
///
/// ```
/// # use gen_stage::{BoxError, Producer, ProducerContext};
/// use gen_stage::builder::BufferKeep;
///
/// # struct Counter(u64);
/// # impl Producer for Counter {
/// #     type Event = u64;
/// #     type Message = ();
/// #     async fn handle_demand(&mut self, n: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
/// #         Ok((self.0..self.0 + n as u64).collect())
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::error::StartError> {
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
    Builder::new(stage, BufferSize::default())
}

/// Starts building a [`Consumer`] stage.
pub fn consumer<S: Consumer>(stage: S) -> ConsumerBuilder<S> {
    Builder::new(stage, BufferSize::Bounded(0))
}

/// Starts building a [`ProducerConsumer`] stage. Its buffer is unbounded by default,
/// as in GenStage: it only holds what `handle_events` returned beyond demand.
pub fn producer_consumer<S: ProducerConsumer>(stage: S) -> ProducerConsumerBuilder<S> {
    Builder::new(stage, BufferSize::Unbounded)
}

/// Builds a stage of kind `K`: write it [`ProducerBuilder`], [`ConsumerBuilder`] or
/// [`ProducerConsumerBuilder`]. Options about emitting exist only for stages that emit,
/// and subscriptions only for stages that receive.
#[must_use = "a builder does nothing until started"]
pub struct Builder<K: StageKind> {
    stage: K::Stage,
    dispatcher: ChosenDispatcher<K::Out>,
    buffer_size: BufferSize,
    buffer_keep: BufferKeep,
    demand_mode: DemandMode,
    subscriptions: Vec<runtime::InitialSubscription<K::In>>,
    name: Option<(Registry, String)>,
    message_capacity: usize,
}

/// Builds a producer stage; see [`producer`].
pub type ProducerBuilder<S> = Builder<ProducerKind<S>>;
/// Builds a consumer stage; see [`consumer`].
pub type ConsumerBuilder<S> = Builder<ConsumerKind<S>>;
/// Builds a producer-consumer stage; see [`producer_consumer`].
pub type ProducerConsumerBuilder<S> = Builder<ProducerConsumerKind<S>>;

impl<K: StageKind> Builder<K> {
    /// The stage to start, for the crate's own builders to set its options.
    pub(crate) fn stage_mut(&mut self) -> &mut K::Stage {
        &mut self.stage
    }

    fn new(stage: K::Stage, buffer_size: BufferSize) -> Self {
        Builder {
            stage,
            dispatcher: ChosenDispatcher::Demand(DemandDispatcher::new()),
            buffer_size,
            buffer_keep: BufferKeep::Last,
            demand_mode: DemandMode::Forward,
            subscriptions: Vec::new(),
            name: None,
            message_capacity: DEFAULT_MESSAGE_CAPACITY,
        }
    }

    /// How many user messages (casts, calls, infos) the stage's mailbox holds before
    /// [`StageRef::try_cast`] refuses and [`StageRef::cast_when_room`], calls and
    /// [`StageRef::sync_info`] wait; [`DEFAULT_MESSAGE_CAPACITY`] by default. Events,
    /// asks and subscriptions are paced by demand and never count; [`StageRef::cast`]
    /// and [`StageRef::async_info`] count but never wait. At least 1.
    pub fn message_capacity(mut self, capacity: usize) -> Self {
        self.message_capacity = capacity.max(1);
        self
    }

    /// Registers the stage under `name` in `registry` while it runs.
    pub fn name(mut self, registry: &Registry, name: &str) -> Self {
        self.name = Some((registry.clone(), name.to_owned()));
        self
    }

    fn naming(&mut self, producer: Option<ProducerEntryMaker<K>>) -> Option<Naming<K>> {
        self.name.take().map(|(registry, name)| Naming {
            registry,
            name,
            producer,
        })
    }

    fn output<M>(&mut self, stats: &Arc<StatsCell>) -> ProducerSide<K::Out, M> {
        let dispatcher = std::mem::replace(
            &mut self.dispatcher,
            ChosenDispatcher::Demand(DemandDispatcher::new()),
        );
        ProducerSide::new(
            dispatcher,
            self.buffer_size,
            self.buffer_keep,
            self.demand_mode,
            stats.clone(),
        )
    }

    fn validate(&self) -> Result<(), StartError> {
        for (_, options) in &self.subscriptions {
            options.validate()?;
        }
        Ok(())
    }
}

fn control<K: StageKind>(me: StageRef<K>) -> Control<K> {
    Control::new(me)
}

impl<K: EmitsEvents> Builder<K> {
    /// The dispatcher (default: [`DemandDispatcher`]).
    pub fn dispatcher(mut self, dispatcher: impl Dispatcher<K::Out>) -> Self {
        self.dispatcher = ChosenDispatcher::new(dispatcher);
        self
    }

    /// Keeps at most `size` events without demand (0 keeps none). The default is
    /// 10,000 for producers and unbounded for producer-consumers.
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.buffer_size = BufferSize::Bounded(size);
        self
    }

    /// Keeps every event without demand: memory then depends on what the stage emits.
    pub fn unbounded_buffer(mut self) -> Self {
        self.buffer_size = BufferSize::Unbounded;
        self
    }

    /// Which events a full buffer keeps (default [`BufferKeep::Last`]).
    pub fn buffer_keep(mut self, keep: BufferKeep) -> Self {
        self.buffer_keep = keep;
        self
    }

    /// The demand mode to start in (default [`DemandMode::Forward`]).
    pub fn demand_mode(mut self, mode: DemandMode) -> Self {
        self.demand_mode = mode;
        self
    }
}

impl<K: ReceivesEvents> Builder<K> {
    /// Subscribes to `producer` when the stage starts; `start` fails if it cannot.
    pub fn subscribe_to(
        mut self,
        producer: &impl Upstream<K::In>,
        options: SubscribeOptions,
    ) -> Self {
        self.subscriptions.push((
            Target::Port(
                Ports::port(producer).into_inner(),
                Box::new(Ports::held_port(producer).into_inner()),
            ),
            options,
        ));
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
}

impl<S: Producer> Builder<ProducerKind<S>> {
    /// Spawns the stage on the current tokio runtime and waits for its `init` hook.
    ///
    /// # Errors
    ///
    /// [`StartError`] if the name is taken, or `init` failed or ignored the start.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the start completes kills the stage: none is left
    /// running that nobody holds.
    pub async fn start(mut self) -> Result<ProducerRef<S>, StartError> {
        let stats = Arc::default();
        let side = self.output(&stats);
        let naming = self.naming(Some(producer_entry::<ProducerKind<S>>));
        let stage = self.stage;
        runtime::start(stats, naming, self.message_capacity, move |me| {
            ProducerRuntime::new(stage, side, control(me))
        })
        .await
    }
}

impl<S: Consumer> Builder<ConsumerKind<S>> {
    /// Spawns the stage, runs its `init` hook and makes its subscriptions.
    ///
    /// # Errors
    ///
    /// [`StartError`] if an option is invalid, the name is taken, `init` failed or
    /// ignored the start, or a subscription could not be made.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the start completes kills the stage, and with it the
    /// subscriptions it made.
    pub async fn start(mut self) -> Result<ConsumerRef<S>, StartError> {
        self.validate()?;
        let naming = self.naming(None);
        let (stage, subscriptions) = (self.stage, self.subscriptions);
        runtime::start(Arc::default(), naming, self.message_capacity, move |me| {
            ConsumerRuntime::new(stage, control(me), subscriptions)
        })
        .await
    }
}

impl<S: ProducerConsumer> Builder<ProducerConsumerKind<S>> {
    /// Spawns the stage, runs its `init` hook and makes its subscriptions.
    ///
    /// # Errors
    ///
    /// As for [`ConsumerBuilder::start`](Builder::start).
    ///
    /// # Cancel safety
    ///
    /// As for [`ConsumerBuilder::start`](Builder::start).
    pub async fn start(mut self) -> Result<ProducerConsumerRef<S>, StartError> {
        self.validate()?;
        let stats = Arc::default();
        let side = self.output(&stats);
        let naming = self.naming(Some(producer_entry::<ProducerConsumerKind<S>>));
        let (stage, subscriptions) = (self.stage, self.subscriptions);
        runtime::start(stats, naming, self.message_capacity, move |me| {
            ProducerConsumerRuntime::new(stage, side, control(me), subscriptions)
        })
        .await
    }
}

impl<K: StageKind> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("buffer_size", &self.buffer_size)
            .field("buffer_keep", &self.buffer_keep)
            .field("demand_mode", &self.demand_mode)
            .field("subscriptions", &self.subscriptions.len())
            .field("name", &self.name.as_ref().map(|(_, name)| name))
            .finish_non_exhaustive()
    }
}
