//! Options of subscriptions and producers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::OptionsError;
use crate::exit::CancelMode;

/// The default buffer size of a producer: how many events it keeps while no consumer
/// has demand for them.
pub const DEFAULT_BUFFER_SIZE: usize = 10_000;

/// How a consumer subscribes to a producer.
///
/// ```
/// use gen_stage::{CancelMode, SubscribeOptions};
///
/// let options = SubscribeOptions::new()
///     .max_demand(100)
///     .min_demand(80)
///     .cancel(CancelMode::Transient);
/// assert_eq!(options.max_demand_value(), 100);
/// assert_eq!(options.min_demand_value(), 80);
/// assert!(options.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SubscribeOptions {
    max_demand: usize,
    min_demand: Option<usize>,
    cancel: CancelMode,
    extensions: Extensions,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscribeOptions {
    /// The default `max_demand` of a subscription.
    pub const DEFAULT_MAX_DEMAND: usize = 1000;

    /// Options with the defaults: `max_demand` [`DEFAULT_MAX_DEMAND`](Self::DEFAULT_MAX_DEMAND)
    /// (1000), `min_demand` half of it, permanent.
    pub fn new() -> Self {
        SubscribeOptions {
            max_demand: Self::DEFAULT_MAX_DEMAND,
            min_demand: None,
            cancel: CancelMode::Permanent,
            extensions: Extensions::default(),
        }
    }

    /// The most events the consumer has asked for and not yet received (at least 1).
    pub fn max_demand(mut self, max_demand: usize) -> Self {
        self.max_demand = max_demand;
        self
    }

    /// With automatic demand, the consumer asks again once its pending demand falls to
    /// this level or below (must be below `max_demand`; default `max_demand / 2`).
    pub fn min_demand(mut self, min_demand: usize) -> Self {
        self.min_demand = Some(min_demand);
        self
    }

    /// What the consumer does when the producer ends the subscription.
    pub fn cancel(mut self, mode: CancelMode) -> Self {
        self.cancel = mode;
        self
    }

    /// Adds a typed option for the producer: its `handle_consumer_subscribed` hook and its
    /// dispatcher read it with [`SubscribeOptions::extension`]. One value per type.
    pub fn with<V: Any + Send + Sync>(mut self, value: V) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The value of type `V` given with [`SubscribeOptions::with`], if any.
    pub fn extension<V: Any + Send + Sync>(&self) -> Option<&V> {
        self.extensions.get::<V>()
    }

    /// The configured `max_demand`.
    pub fn max_demand_value(&self) -> usize {
        self.max_demand
    }

    /// The configured `min_demand`, or its default, `max_demand / 2`.
    pub fn min_demand_value(&self) -> usize {
        self.min_demand.unwrap_or(self.max_demand / 2)
    }

    /// The configured cancel mode.
    pub fn cancel_mode(&self) -> CancelMode {
        self.cancel
    }

    /// Checks the options: `max_demand` at least 1 and `min_demand` below it.
    ///
    /// # Errors
    ///
    /// The first rule broken, as an [`OptionsError`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.max_demand == 0 {
            return Err(OptionsError::MaxDemandZero);
        }
        let min = self.min_demand_value();
        if min >= self.max_demand {
            return Err(OptionsError::MinDemandNotBelowMax {
                min_demand: min,
                max_demand: self.max_demand,
            });
        }
        Ok(())
    }
}

/// Whether a producer passes demand to `handle_demand` as it comes, or holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DemandMode {
    /// Demand is served as it arrives (the default).
    #[default]
    Forward,
    /// Demand is recorded but not served, and emitted events are kept (within the
    /// buffer's size), until the mode is switched to `Forward`, which replays both in
    /// order; used to subscribe every consumer before the first event goes out.
    Accumulate,
}

/// Which events a full producer buffer keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BufferKeep {
    /// Keep the oldest events; new events that do not fit are discarded.
    First,
    /// Keep the newest events; the oldest are discarded to make room (the default).
    #[default]
    Last,
}

/// How many events a producer keeps while no consumer has demand for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BufferSize {
    /// At most this many events; `0` keeps none: events without demand are discarded.
    Bounded(usize),
    /// No limit: memory then grows with whatever the stage emits beyond demand.
    Unbounded,
}

/// [`DEFAULT_BUFFER_SIZE`] events, a producer's buffer unless its builder sets another.
impl Default for BufferSize {
    fn default() -> Self {
        BufferSize::Bounded(DEFAULT_BUFFER_SIZE)
    }
}

/// Typed values keyed by their type, carried by [`SubscribeOptions`].
#[derive(Clone, Default)]
pub(crate) struct Extensions {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Extensions {
    fn insert<V: Any + Send + Sync>(&mut self, value: V) {
        self.values.insert(TypeId::of::<V>(), Arc::new(value));
    }

    fn get<V: Any + Send + Sync>(&self) -> Option<&V> {
        self.values
            .get(&TypeId::of::<V>())
            .and_then(|value| value.downcast_ref::<V>())
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("count", &self.values.len())
            .finish()
    }
}
