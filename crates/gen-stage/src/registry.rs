//! Names for stages, so that a stage restarted under a supervisor is found again.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::any_producer::AnyProducer;
use crate::context::Context;
use crate::error::{NameTaken, SubscribeError};
use crate::handle::StageRef;
use crate::kind::{EmitsEvents, ReceivesEvents, StageKind};
use crate::options::SubscribeOptions;
use crate::subscription::{StageId, SubscriptionTag};
use crate::upstream::sealed::Ports;
use crate::wire::ProducerPort;

/// Makes the registry entry through which a stage that emits is subscribed to by name.
pub(crate) type ProducerEntryMaker<K> = fn(&StageRef<K>) -> Box<dyn Any + Send + Sync>;

struct Entry {
    id: StageId,
    /// The `StageRef<K>`, for typed lookups.
    stage: Box<dyn Any + Send + Sync>,
    /// For stages that emit: a `PortMaker<Out>`, to subscribe by event type.
    producer: Option<Box<dyn Any + Send + Sync>>,
    alive: Box<dyn Fn() -> bool + Send + Sync>,
}

/// A set of named stages.
///
/// Register a stage with the builders' `name` method; look it up by name with its
/// kind ([`Registry::lookup`]), or subscribe to it by name with the builders'
/// `subscribe_to_name`: the name is resolved when the subscription is made, so a
/// consumer restarted after its producer finds the new producer.
///
/// A name belongs to one running stage at a time; it is freed when the stage stops.
/// Registries are values, not global state: give each pipeline (or each test) its own.
///
/// ```
/// use gen_stage::{BoxError, Producer, ProducerContext, ProducerRef, Registry};
///
/// /// 0, 1, 2, ... on demand.
/// struct Counter(u64);
///
/// impl Producer for Counter {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_demand(&mut self, demand: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
///         let events = (self.0..self.0 + demand as u64).collect();
///         self.0 += demand as u64;
///         Ok(events)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let registry = Registry::new();
/// let counter = gen_stage::producer(Counter(0)).name(&registry, "counter").start().await?;
/// // The lookup names the stage's type: a name registered to another kind of stage is
/// // not found.
/// let found: ProducerRef<Counter> = registry.lookup("counter").expect("registered");
/// assert_eq!(found.id(), counter.id());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        f.debug_struct("Registry")
            .field("names", &entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A registry as a stage that registered in it holds it: it does not keep the
/// registry (and so the stages it names) alive.
pub(crate) struct WeakRegistry(Weak<Mutex<HashMap<String, Entry>>>);

impl WeakRegistry {
    /// Frees `name` if `id` still holds it, if the registry is still there.
    pub(crate) fn unregister(&self, name: &str, id: StageId) {
        if let Some(entries) = self.0.upgrade() {
            Registry { entries }.unregister(name, id);
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.entries))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // The map is never left half-updated, so a poisoned lock is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `stage` under `name`. A name held by a stage that has stopped is
    /// taken over.
    ///
    /// # Errors
    ///
    /// [`NameTaken`] if a running stage holds the name.
    pub(crate) fn register<K: StageKind>(
        &self,
        name: &str,
        stage: &StageRef<K>,
        producer: Option<Box<dyn Any + Send + Sync>>,
    ) -> Result<(), NameTaken> {
        let mut entries = self.lock();
        if entries.get(name).is_some_and(|entry| (entry.alive)()) {
            return Err(NameTaken(name.to_owned()));
        }
        let alive = stage.clone();
        entries.insert(
            name.to_owned(),
            Entry {
                id: stage.id(),
                stage: Box::new(stage.clone()),
                producer,
                alive: Box::new(move || alive.is_alive()),
            },
        );
        Ok(())
    }

    /// Frees `name` if `id` still holds it.
    pub(crate) fn unregister(&self, name: &str, id: StageId) {
        let mut entries = self.lock();
        if entries.get(name).is_some_and(|entry| entry.id == id) {
            entries.remove(name);
        }
    }

    /// The running stage registered under `name`, if it is of kind `K`.
    pub fn lookup<K: StageKind>(&self, name: &str) -> Option<StageRef<K>> {
        let entries = self.lock();
        let entry = entries.get(name).filter(|entry| (entry.alive)())?;
        entry.stage.downcast_ref::<StageRef<K>>().cloned()
    }

    /// Whether a running stage holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|entry| (entry.alive)())
    }

    /// The names held by running stages, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, entry)| (entry.alive)())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The stage registered as `name`, if it is running and emits events of type
    /// `T`, as an event-typed handle: no need to name the stage's own type.
    ///
    /// ```
    /// use gen_stage::{AnyProducer, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let registry = Registry::new();
    /// let numbers = gen_stage::source::from_iter(0_u64..).name(&registry, "numbers");
    /// let _numbers = numbers.start().await?;
    /// let numbers: AnyProducer<u64> = registry.lookup_producer("numbers").expect("registered");
    /// assert!(numbers.is_alive());
    /// assert!(registry.lookup_producer::<String>("numbers").is_none(), "it emits u64");
    /// # Ok(())
    /// # }
    /// ```
    pub fn lookup_producer<T: Send + 'static>(&self, name: &str) -> Option<AnyProducer<T>> {
        let entries = self.lock();
        let entry = entries.get(name).filter(|entry| (entry.alive)())?;
        entry
            .producer
            .as_ref()?
            .downcast_ref::<AnyProducer<T>>()
            .cloned()
    }

    /// A port to the producer registered as `name`, for a subscription.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::NotRegistered`] if no running stage emitting `T` holds it.
    pub(crate) fn producer_port<T: Send + 'static>(
        &self,
        name: &str,
    ) -> Result<Box<dyn ProducerPort<T>>, SubscribeError> {
        let producer = self
            .lookup_producer::<T>(name)
            .ok_or_else(|| SubscribeError::NotRegistered(name.to_owned()))?;
        Ok(Ports::port(&producer).into_inner())
    }
}

/// What to register for a stage that emits events: its event-typed handle.
pub(crate) fn producer_entry<K: EmitsEvents>(stage: &StageRef<K>) -> Box<dyn Any + Send + Sync> {
    Box::new(AnyProducer::from(stage))
}

/// Subscribing by name: a consumer's handle resolves a producer in a registry.
impl<K: ReceivesEvents> StageRef<K> {
    /// Subscribes this stage to the stage registered as `name` in `registry`, resolved
    /// now, and waits for it to accept.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::NotRegistered`] if no running stage emitting this stage's
    /// events holds the name; otherwise as for [`StageRef::subscribe_to`].
    ///
    /// # Cancel safety
    ///
    /// As for [`StageRef::subscribe_to`].
    pub async fn subscribe_to_name(
        &self,
        registry: &Registry,
        name: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, SubscribeError> {
        options.validate()?;
        let producer = registry.producer_port(name)?;
        self.subscribe_port(producer, options).await
    }
}

/// Subscribing by name from a hook: the stage resolves a producer in a registry.
impl<K: ReceivesEvents> Context<'_, K> {
    /// Subscribes this stage to the stage registered as `name` in `registry` (resolved
    /// now) once the current hook returns, and returns the subscription's tag. As for
    /// [`Context::subscribe_to`], a producer that stops before it accepts is reported
    /// to `handle_cancel`.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::NotRegistered`] if no running stage emitting this stage's
    /// events holds the name, [`SubscribeError::InvalidOptions`] if the options are
    /// invalid: nothing is subscribed.
    pub fn subscribe_to_name(
        &mut self,
        registry: &Registry,
        name: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriptionTag, SubscribeError> {
        options.validate()?;
        let producer = registry.producer_port(name)?;
        Ok(self.subscribe_port(producer, options))
    }
}
