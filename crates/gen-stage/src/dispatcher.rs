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
//!
//! # Holding events
//!
//! A dispatcher may keep events itself rather than leave them to the stage's buffer
//! (the [`PartitionDispatcher`] holds each partition's events until its consumer asks).
//! It then says how many it holds ([`Dispatcher::held`]), and keeps the stage's
//! [`Marker`]s in line with them: for each info message (or cancellation) that must
//! wait for the events emitted before it, the stage hands the dispatcher a marker with
//! [`Dispatcher::queue_marker`], and handles the message once the dispatcher gives the
//! marker back with [`Deliveries::release`], when every event it held then has gone
//! out. This is GenStage's `info/2`. A dispatcher that holds nothing keeps the default,
//! which gives the marker back at once.
//!
//! A dispatcher for one consumer that holds what the consumer has not asked for yet:
//!
//! ```
//! use std::collections::VecDeque;
//!
//! use gen_stage::dispatcher::{Deliveries, Dispatcher, Marker, Subscriber};
//! use gen_stage::{BoxError, SubscriptionTag};
//!
//! #[derive(Debug, Default)]
//! struct HoldForOne<T> {
//!     /// `(tag, demand)` of the consumer, if one is subscribed.
//!     consumer: Option<(SubscriptionTag, usize)>,
//!     held: VecDeque<T>,
//!     /// Events that have left `held`, ever.
//!     sent: usize,
//!     /// Each marker with the value of `sent` once the events held before it are out.
//!     markers: VecDeque<(usize, Marker)>,
//! }
//!
//! impl<T> HoldForOne<T> {
//!     /// Sends what the consumer can take, then gives back the markers now due.
//!     fn flush(&mut self, deliveries: &mut Deliveries<T>) {
//!         if let Some((tag, demand)) = &mut self.consumer {
//!             let count = (*demand).min(self.held.len());
//!             *demand -= count;
//!             self.sent += count;
//!             deliveries.push(*tag, self.held.drain(..count).collect());
//!         }
//!         while self.markers.front().is_some_and(|&(due, _)| due <= self.sent) {
//!             if let Some((_, marker)) = self.markers.pop_front() {
//!                 deliveries.release(marker);
//!             }
//!         }
//!     }
//! }
//!
//! impl<T: Send + 'static> Dispatcher<T> for HoldForOne<T> {
//!     fn subscribe(&mut self, subscriber: &Subscriber<'_>, _: &mut Deliveries<T>) -> Result<usize, BoxError> {
//!         if self.consumer.is_some() {
//!             return Err("one consumer at a time".into());
//!         }
//!         self.consumer = Some((subscriber.tag, 0));
//!         Ok(0)
//!     }
//!
//!     fn cancel(&mut self, _: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
//!         self.consumer = None; // what is held waits for the next consumer
//!         0
//!     }
//!
//!     fn ask(&mut self, _: SubscriptionTag, demand: usize, deliveries: &mut Deliveries<T>) -> usize {
//!         if let Some((_, wanted)) = &mut self.consumer {
//!             *wanted += demand;
//!         }
//!         let before = self.held.len();
//!         self.flush(deliveries);
//!         demand - (before - self.held.len()) // what the held events did not serve
//!     }
//!
//!     fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
//!         self.held.extend(events); // a real one would bound this
//!         self.flush(deliveries);
//!         Vec::new()
//!     }
//!
//!     fn queue_marker(&mut self, marker: Marker, deliveries: &mut Deliveries<T>) {
//!         self.markers.push_back((self.sent + self.held.len(), marker));
//!         self.flush(deliveries); // nothing held: back at once
//!     }
//!
//!     fn held(&self) -> usize {
//!         self.held.len()
//!     }
//! }
//!
//! let mut dispatcher = HoldForOne::default();
//! let options = gen_stage::SubscribeOptions::new();
//! let tag = SubscriptionTag::from_raw(1);
//! let subscriber = Subscriber::new(tag, gen_stage::StageId::from_raw(1), &options);
//! let mut out = Deliveries::new();
//! dispatcher.subscribe(&subscriber, &mut out).unwrap();
//! assert!(dispatcher.dispatch(vec![1, 2, 3], &mut out).is_empty());
//! assert_eq!(Dispatcher::<u32>::held(&dispatcher), 3);
//! assert_eq!(dispatcher.ask(tag, 5, &mut out), 2, "3 of the 5 were held");
//! let sent: Vec<_> = out.drain().collect();
//! assert_eq!(sent, [(tag, vec![1, 2, 3])]);
//! ```

mod broadcast;
mod chosen;
mod deliveries;
mod demand;
mod marker;
mod partition;

pub use broadcast::{BroadcastDispatcher, BroadcastError, Selector};
pub(crate) use chosen::ChosenDispatcher;
pub use deliveries::Deliveries;
pub use demand::DemandDispatcher;
pub use marker::Marker;
pub use partition::{Partition, PartitionDispatcher, PartitionError};

use crate::exit::BoxError;
use crate::options::SubscribeOptions;
use crate::subscription::{StageId, SubscriptionTag};

/// Decides which consumer receives which events, and how much to ask upstream: the
/// producer stage calls it when a consumer subscribes, asks or cancels, and when events
/// are to be sent.
///
/// Four methods are required; a simple dispatcher writes only those (see the
/// [module docs](self) for one to paste). [`dispatch_buffered`](Self::dispatch_buffered)
/// matters to a dispatcher that counts arrivals against the demand it asked upstream;
/// [`queue_marker`](Self::queue_marker) and [`held`](Self::held) to one that holds
/// events itself.
///
/// All methods are synchronous and must not block. Each writes what it decides beyond
/// its return value to `deliveries`: events to send (for example events it held for a
/// consumer that now asks), upstream demand or discards it makes, markers it gives back.
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
    ///
    /// The upstream demand that `ask`, `cancel` and `subscribe` return is what
    /// consumers lack, not counting the stage's buffer: the stage serves it from the
    /// buffer first and asks the stage's source only for the rest.
    fn ask(&mut self, tag: SubscriptionTag, demand: usize, deliveries: &mut Deliveries<T>)
    -> usize;

    /// Hands out `events`: pushes `(tag, batch)` pairs to `deliveries` and returns the
    /// events nobody could take (the stage buffers them, in order).
    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T>;

    /// Hands out events that were left over by an earlier `dispatch` and kept in the
    /// stage's buffer, now that consumers asked for more. They already arrived once, so
    /// a dispatcher that counts arrivals against the demand it asked upstream must not
    /// count them again; by default they are dispatched like new events.
    fn dispatch_buffered(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        self.dispatch(events, deliveries)
    }

    /// Queues `marker` behind every event the dispatcher holds now, to give it back
    /// with [`Deliveries::release`] once they have all gone out (sent, or dropped), in
    /// the order the markers came. The stage queues one for each info message (and
    /// cancellation) that waits for the events emitted before it, and handles it when
    /// the marker comes back: GenStage's `info/2`. By default the marker is given back
    /// at once, which is right for a dispatcher that holds nothing.
    fn queue_marker(&mut self, marker: Marker, deliveries: &mut Deliveries<T>) {
        deliveries.release(marker);
    }

    /// Events the dispatcher holds itself (not counting the stage's buffer); shown in
    /// the stage's statistics as buffered, and waited for by a draining stage. The
    /// statistics read it after a call that records something in its [`Deliveries`]
    /// (a batch, a discard, upstream demand, a marker), after `dispatch` and after
    /// `cancel`: events it lets go must leave as one of those.
    fn held(&self) -> usize {
        0
    }

    /// The stage has handled every message in its mailbox and is about to wait for
    /// more. A dispatcher that held events back while
    /// [`Deliveries::more_mail_waiting`] was true sends them now (as far as demand
    /// allows): nothing may stay held back for want of a next message. By default
    /// nothing is held back and nothing happens.
    fn idle(&mut self, deliveries: &mut Deliveries<T>) {
        let _ = deliveries;
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

    #[test]
    fn by_default_a_marker_comes_back_at_once_and_nothing_is_held() {
        let mut dispatcher = DemandDispatcher::new();
        let mut out = Deliveries::<u32>::new();
        dispatcher.queue_marker(Marker::new(3), &mut out);
        let released: Vec<u64> = out.take_released().map(|m| m.id()).collect();
        assert_eq!(released, [3]);
        assert_eq!(Dispatcher::<u32>::held(&dispatcher), 0);
    }
}
