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
//! [`BroadcastDispatcher`] sends every event to every consumer, and
//! [`PartitionDispatcher`] sends each event to the consumers of its partition.
//!
//! # Writing a dispatcher
//!
//! A dispatcher that deals whole batches to its consumers in turn, skipping those
//! without enough demand:
//!
//! ```
//! use gen_stage::dispatcher::{Deliveries, Dispatcher, Subscriber};
//! use gen_stage::{BoxError, SubscriptionTag};
//!
//! #[derive(Debug, Default)]
//! struct RoundRobin {
//!     /// `(tag, demand)` in turn order.
//!     consumers: Vec<(SubscriptionTag, usize)>,
//!     next: usize,
//! }
//!
//! impl<T: Send + 'static> Dispatcher<T> for RoundRobin {
//!     fn subscribe(&mut self, subscriber: &Subscriber<'_>, _: &mut Deliveries<T>) -> Result<usize, BoxError> {
//!         self.consumers.push((subscriber.tag, 0));
//!         Ok(0)
//!     }
//!
//!     fn cancel(&mut self, tag: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
//!         self.consumers.retain(|(t, _)| *t != tag);
//!         0 // demand it had stays asked upstream: others will take those events
//!     }
//!
//!     fn ask(&mut self, tag: SubscriptionTag, demand: usize, _: &mut Deliveries<T>) -> usize {
//!         if let Some(entry) = self.consumers.iter_mut().find(|(t, _)| *t == tag) {
//!             entry.1 += demand;
//!         }
//!         demand
//!     }
//!
//!     fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
//!         for _ in 0..self.consumers.len() {
//!             let turn = self.next % self.consumers.len();
//!             self.next += 1;
//!             let (tag, demand) = &mut self.consumers[turn];
//!             if *demand >= events.len() {
//!                 *demand -= events.len();
//!                 deliveries.push(*tag, events);
//!                 return Vec::new();
//!             }
//!         }
//!         events // nobody can take them all: the stage buffers them
//!     }
//! }
//!
//! // A dispatcher is a plain state machine: test it without any stage.
//! let mut dispatcher = RoundRobin::default();
//! let options = gen_stage::SubscribeOptions::new();
//! let mut out = Deliveries::new();
//! let (a, b) = (SubscriptionTag::from_raw(1), SubscriptionTag::from_raw(2));
//! for (tag, stage) in [(a, 1), (b, 2)] {
//!     let subscriber = Subscriber::new(tag, gen_stage::StageId::from_raw(stage), &options);
//!     dispatcher.subscribe(&subscriber, &mut out).unwrap();
//!     dispatcher.ask(tag, 10, &mut out);
//! }
//! assert!(dispatcher.dispatch(vec![1, 2], &mut out).is_empty());
//! assert!(dispatcher.dispatch(vec![3], &mut out).is_empty());
//! let sent: Vec<_> = out.drain().collect();
//! assert_eq!(sent, [(a, vec![1, 2]), (b, vec![3])]);
//! ```
//!
//! Whatever a dispatcher does, the stage never lets a consumer receive more than it
//! asked for: a delivery beyond a consumer's outstanding demand is cut, the excess is
//! buffered, and an error is logged.

mod broadcast;
mod deliveries;
mod demand;
mod partition;

pub use broadcast::{BroadcastDispatcher, BroadcastError, Selector};
pub use deliveries::Deliveries;
pub use demand::DemandDispatcher;
pub use partition::{Partition, PartitionDispatcher, PartitionError};

use crate::exit::BoxError;
use crate::options::SubscribeOptions;
use crate::subscription::{StageId, SubscriptionTag};

/// Decides which consumer receives which events, and how much to ask upstream.
///
/// All methods are synchronous and must not block. Each may send events through
/// `deliveries` (for example events it held for a consumer that now asks), and may
/// record there upstream demand or discards it creates. See the [module docs](self).
pub trait Dispatcher<T>: Send + 'static {
    /// A consumer subscribed. Returns the upstream demand this creates (usually 0:
    /// demand comes with asks), or an error that refuses the subscription; the
    /// subscriber receives the error and the stage keeps running.
    ///
    /// # Errors
    ///
    /// Whatever makes the subscription unacceptable to this dispatcher (a missing
    /// option, a duplicate subscriber...).
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        deliveries: &mut Deliveries<T>,
    ) -> Result<usize, BoxError>;

    /// A consumer's subscription ended. Returns upstream demand this releases. Only
    /// called for subscriptions that `subscribe` accepted.
    fn cancel(&mut self, tag: SubscriptionTag, deliveries: &mut Deliveries<T>) -> usize;

    /// A consumer asked for `demand` more events. Returns the upstream demand.
    fn ask(&mut self, tag: SubscriptionTag, demand: usize, deliveries: &mut Deliveries<T>)
    -> usize;

    /// Hands out `events`: pushes `(tag, batch)` pairs to `deliveries` and returns the
    /// events nobody could take (the stage buffers them, in order).
    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T>;

    /// Hands out events that were left over by an earlier `dispatch` and kept in the
    /// stage's buffer, now that consumers asked for more. They already arrived once, so
    /// a dispatcher that counts arrivals against the demand it asked upstream must not
    /// count them again; by default they are dispatched like new events.
    ///
    /// The upstream demand that `ask`, `cancel` and `subscribe` return is what
    /// consumers lack, not counting the stage's buffer: the stage serves it from the
    /// buffer first and asks the stage's source only for the rest.
    fn dispatch_buffered(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        self.dispatch(events, deliveries)
    }

    /// Events the dispatcher holds itself (not counting the stage's buffer); shown in
    /// the stage's statistics as buffered.
    fn held(&self) -> usize {
        0
    }

    /// A mark of the events the dispatcher holds now, for
    /// [`Dispatcher::released_since`]. The stage takes one when an info message
    /// becomes due (every event emitted before it has been dispatched), and hands the
    /// message to `handle_message` once the events held then have gone out. The
    /// default marks nothing.
    fn held_mark(&self) -> HeldMark {
        HeldMark::default()
    }

    /// Whether every event held when `mark` was taken has gone out (sent, or dropped).
    /// The default waits until the dispatcher holds nothing at all, which is right but
    /// may wait for events held after the mark too; a dispatcher that holds events
    /// should say exactly.
    fn released_since(&self, mark: &HeldMark) -> bool {
        let _ = mark;
        self.held() == 0
    }
}

/// What a dispatcher held at one moment, as positions it defines (for example, per
/// queue, how many events will have left it once those held now have); see
/// [`Dispatcher::held_mark`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldMark(Vec<u64>);

impl HeldMark {
    /// A mark made of `positions`.
    pub fn new(positions: Vec<u64>) -> Self {
        HeldMark(positions)
    }

    /// The positions the mark was made of.
    pub fn positions(&self) -> &[u64] {
        &self.0
    }
}

/// A consumer subscribing, as a dispatcher sees it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Subscriber<'a> {
    /// The subscription.
    pub tag: SubscriptionTag,
    /// The consumer: the same for every subscription it makes.
    pub consumer: StageId,
    /// The options it subscribed with (including typed extensions such as a
    /// [`Partition`] or a [`Selector`]).
    pub options: &'a SubscribeOptions,
}

impl<'a> Subscriber<'a> {
    /// A subscriber, for testing dispatchers outside a stage.
    pub fn new(tag: SubscriptionTag, consumer: StageId, options: &'a SubscribeOptions) -> Self {
        Subscriber {
            tag,
            consumer,
            options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dispatcher that holds `held` events and keeps the default marks.
    struct Holding {
        held: usize,
    }

    impl Dispatcher<u32> for Holding {
        fn subscribe(
            &mut self,
            _: &Subscriber<'_>,
            _: &mut Deliveries<u32>,
        ) -> Result<usize, BoxError> {
            Ok(0)
        }

        fn cancel(&mut self, _: SubscriptionTag, _: &mut Deliveries<u32>) -> usize {
            0
        }

        fn ask(&mut self, _: SubscriptionTag, demand: usize, _: &mut Deliveries<u32>) -> usize {
            demand
        }

        fn dispatch(&mut self, events: Vec<u32>, _: &mut Deliveries<u32>) -> Vec<u32> {
            events
        }

        fn held(&self) -> usize {
            self.held
        }
    }

    #[test]
    fn by_default_a_mark_is_released_once_nothing_is_held() {
        let mut dispatcher = Holding { held: 2 };
        let mark = dispatcher.held_mark();
        assert_eq!(mark, HeldMark::default());
        assert!(!dispatcher.released_since(&mark));
        dispatcher.held = 0;
        assert!(dispatcher.released_since(&mark));
    }

    #[test]
    fn a_mark_gives_back_its_positions() {
        assert_eq!(HeldMark::new(vec![3, 5]).positions(), [3, 5]);
        assert_eq!(HeldMark::default().positions(), [] as [u64; 0]);
    }

    #[test]
    fn a_dispatcher_holds_nothing_by_default() {
        let dispatcher = DemandDispatcher::new();
        assert_eq!(Dispatcher::<u32>::held(&dispatcher), 0);
        assert!(Dispatcher::<u32>::released_since(
            &dispatcher,
            &HeldMark::default()
        ));
    }
}
