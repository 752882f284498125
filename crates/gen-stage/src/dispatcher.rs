//! Dispatchers decide which consumer gets which events.
//!
//! A dispatcher is a plain synchronous state machine: the producer stage calls it when a
//! consumer subscribes, asks, or cancels, and when events are to be sent. It owns the
//! per-consumer demand and answers with the *upstream demand*: how many more events the
//! stage should produce. It has no tasks or channels; the stage does the sending, and
//! the stage (not the dispatcher) guarantees that no consumer ever receives more than it
//! asked for: a delivery beyond a consumer's demand is cut and the excess is buffered.
//!
//! [`DemandDispatcher`] (the default) sends each batch to the consumer with the most
//! pending demand.
//!
//! # Writing a dispatcher
//!
//! ```
//! use gen_stage::dispatcher::{Deliveries, Dispatcher};
//! use gen_stage::{BoxError, SubscribeOptions, SubscriptionTag};
//!
//! /// Sends every batch to the first subscriber that has demand for all of it.
//! #[derive(Debug, Default)]
//! struct FirstFit {
//!     demands: Vec<(SubscriptionTag, usize)>,
//! }
//!
//! impl<T: Send + 'static> Dispatcher<T> for FirstFit {
//!     fn subscribe(&mut self, tag: SubscriptionTag, _: &SubscribeOptions) -> Result<usize, BoxError> {
//!         self.demands.push((tag, 0));
//!         Ok(0)
//!     }
//!     fn cancel(&mut self, tag: SubscriptionTag) -> usize {
//!         self.demands.retain(|(t, _)| *t != tag);
//!         0
//!     }
//!     fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> usize {
//!         if let Some(entry) = self.demands.iter_mut().find(|(t, _)| *t == tag) {
//!             entry.1 += demand;
//!         }
//!         demand
//!     }
//!     fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
//!         match self.demands.iter_mut().find(|(_, d)| *d >= events.len()) {
//!             Some((tag, demand)) => {
//!                 *demand -= events.len();
//!                 deliveries.push(*tag, events);
//!                 Vec::new()
//!             }
//!             None => events, // leftovers: the stage buffers them
//!         }
//!     }
//! }
//!
//! let mut dispatcher = FirstFit::default();
//! let (a, b) = (SubscriptionTag::from_raw(1), SubscriptionTag::from_raw(2));
//! Dispatcher::<u32>::subscribe(&mut dispatcher, a, &SubscribeOptions::new()).unwrap();
//! Dispatcher::<u32>::subscribe(&mut dispatcher, b, &SubscribeOptions::new()).unwrap();
//! Dispatcher::<u32>::ask(&mut dispatcher, a, 1);
//! Dispatcher::<u32>::ask(&mut dispatcher, b, 5);
//! let mut deliveries = Deliveries::new();
//! let leftovers = dispatcher.dispatch(vec![1, 2, 3], &mut deliveries);
//! assert!(leftovers.is_empty());
//! assert_eq!(deliveries.as_slice(), &[(b, vec![1, 2, 3])]);
//! ```

mod demand;

pub use demand::DemandDispatcher;

use std::fmt;

use crate::exit::BoxError;
use crate::options::SubscribeOptions;
use crate::subscription::SubscriptionTag;

/// Decides which consumer receives which events, and how much to ask upstream.
///
/// All methods are synchronous and must not block. See the [module docs](self).
pub trait Dispatcher<T>: Send + 'static {
    /// A consumer subscribed with `options`. Returns the upstream demand this creates
    /// (usually 0: demand comes with asks), or an error that rejects the subscription;
    /// the error is handed to the subscriber.
    ///
    /// # Errors
    ///
    /// Whatever makes the subscription unacceptable to this dispatcher (a missing
    /// option, a duplicate subscriber...).
    fn subscribe(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> Result<usize, BoxError>;

    /// A consumer's subscription ended. Returns upstream demand this releases.
    fn cancel(&mut self, tag: SubscriptionTag) -> usize;

    /// A consumer asked for `demand` more events. Returns the upstream demand.
    fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> usize;

    /// Hands out `events`: pushes `(tag, batch)` pairs to `deliveries` and returns the
    /// events nobody could take (the stage buffers them, in order).
    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T>;
}

/// The batches a dispatcher hands out in one [`Dispatcher::dispatch`] call.
pub struct Deliveries<T> {
    batches: Vec<(SubscriptionTag, Vec<T>)>,
}

impl<T> Deliveries<T> {
    /// No deliveries.
    pub fn new() -> Self {
        Deliveries {
            batches: Vec::new(),
        }
    }

    /// Sends `events` to the consumer of `tag`. Empty batches are ignored.
    pub fn push(&mut self, tag: SubscriptionTag, events: Vec<T>) {
        if !events.is_empty() {
            self.batches.push((tag, events));
        }
    }

    /// The batches pushed so far.
    pub fn as_slice(&self) -> &[(SubscriptionTag, Vec<T>)] {
        &self.batches
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub(crate) fn reverse_from(&mut self, first: usize) {
        self.batches[first..].reverse();
    }

    /// Takes the batches out, leaving the allocation for reuse.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (SubscriptionTag, Vec<T>)> {
        self.batches.drain(..)
    }
}

impl<T> Default for Deliveries<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Deliveries<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.batches.iter().map(|(tag, events)| (tag, events.len())))
            .finish()
    }
}
