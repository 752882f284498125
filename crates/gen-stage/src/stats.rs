//! What a stage reports about itself, read from its handle without disturbing it.
//!
//! - [`StageRef::stats`] returns a [`StageStats`]: counters of events received,
//!   emitted, discarded and left unhandled, what is buffered and queued, the demand in
//!   and out, and where the stage is in its life (a [`StageState`]). Reading them never
//!   waits for the stage: use them for dashboards and for tests that watch a counter.
//! - [`StageRef::demand_snapshot`] asks the stage for the demand pending on each of its
//!   subscriptions, one [`SubscriptionDemand`] each, on either [`Side`]: what it asked
//!   of its producers, and what its consumers asked of it.
//!
//! [`StageRef::stats`]: crate::StageRef::stats
//! [`StageRef::demand_snapshot`]: crate::StageRef::demand_snapshot

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Where a stage is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StageState {
    /// `init` and the initial subscriptions are running.
    Starting,
    /// Handling messages.
    Running,
    /// Running its `terminate` hook and telling its peers.
    Stopping,
    /// Gone.
    Stopped,
}

/// A snapshot of a stage's counters; see [`StageRef::stats`](crate::StageRef::stats).
///
/// The counters are updated once per batch with relaxed atomics, so reading them never
/// waits for the stage; a snapshot taken while the stage runs may mix values from
/// neighbouring instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageStats {
    /// Events received from producers.
    pub events_received: u64,
    /// Events sent to consumers.
    pub events_emitted: u64,
    /// Events discarded: by the buffer, or sent to consumers that had gone, or received
    /// for subscriptions the stage had cancelled.
    pub events_discarded: u64,
    /// Events received and never handed to a hook because the stage stopped first:
    /// queued in its mailbox, or in the rest of a delivery, when a stop overtook them
    /// (see [`StageRef::stop`](crate::StageRef::stop)).
    pub events_unhandled: u64,
    /// Deliveries received from producers: the messages that brought
    /// `events_received`, one batch each. `events_received / deliveries_received` is
    /// the mean batch a delivery brings.
    pub deliveries_received: u64,
    /// Asks sent to producers, automatic or by hand (from a hook's context, or with
    /// [`StageRef::ask`](crate::StageRef::ask)): one message each, whatever the demand
    /// it carries. With automatic demand a subscription asks once when it starts and
    /// once per batch of `max_demand - min_demand` events handled.
    pub asks_sent: u64,
    /// Events received beyond the automatic demand of their subscription (each such
    /// delivery is also logged as an error); counted in `events_received` too. Only a
    /// producer that breaks the protocol, or asks added by hand to an automatic
    /// subscription ([`StageRef::ask`](crate::StageRef::ask)), make it grow.
    pub events_in_excess: u64,
    /// Events waiting in the buffer.
    pub buffered: usize,
    /// Consumers subscribed to the stage.
    pub consumers: usize,
    /// Producers the stage is subscribed to.
    pub producers: usize,
    /// Events this stage has asked its producers for and not yet received.
    pub demand_in: usize,
    /// Events this stage's consumers have asked for and not yet been sent.
    pub demand_out: usize,
    /// User messages (casts, calls, infos) queued in the mailbox now: what the
    /// mailbox's capacity bounds.
    pub queued_messages: usize,
    /// Everything queued in the mailbox (events, protocol and user messages), as the
    /// stage last sampled it: every 64 messages it takes (reading it at every message
    /// cost the event path a cache miss). A trend, not an exact count; see
    /// `queued_messages` for the exact count of user messages.
    pub mailbox_len: usize,
    /// Where the stage is in its life.
    pub state: StageState,
}

/// Which side of a subscription a [`SubscriptionDemand`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// A subscription of this stage to a producer: `pending` is what this stage has
    /// asked for and not yet received.
    ToProducer,
    /// A consumer's subscription to this stage: `pending` is what the consumer has
    /// asked for and not yet been sent.
    FromConsumer,
}

/// The demand pending on one subscription; see
/// [`StageRef::demand_snapshot`](crate::StageRef::demand_snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionDemand {
    /// The subscription.
    pub tag: crate::SubscriptionTag,
    /// Which side of it this stage is on.
    pub side: Side,
    /// Events asked for and not yet delivered.
    pub pending: usize,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    received: AtomicU64,
    emitted: AtomicU64,
    discarded: AtomicU64,
    unhandled: AtomicU64,
    in_excess: AtomicU64,
    deliveries: AtomicU64,
    asks: AtomicU64,
    buffered: AtomicUsize,
    mailbox_len: AtomicUsize,
    consumers: AtomicUsize,
    producers: AtomicUsize,
    demand_in: AtomicUsize,
    demand_out: AtomicUsize,
    state: AtomicU8,
}

/// Adds `count` to a counter that only the stage's own task writes: a load and a
/// store, without the locked read-modify-write of `fetch_add` (readers on other
/// threads see one value or the next, as with `fetch_add`).
fn bump(counter: &AtomicU64, count: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(count),
        Ordering::Relaxed,
    );
}

impl StatsCell {
    /// A delivery of `count` events received. Only the stage's task calls it.
    pub(crate) fn add_delivery(&self, count: usize) {
        bump(&self.received, count as u64);
        bump(&self.deliveries, 1);
    }

    /// An ask sent to a producer. Only the stage's task calls it.
    pub(crate) fn add_ask(&self) {
        bump(&self.asks, 1);
    }

    /// Events sent to consumers. Only the stage's task calls it.
    pub(crate) fn add_emitted(&self, count: usize) {
        if count > 0 {
            bump(&self.emitted, count as u64);
        }
    }

    pub(crate) fn add_discarded(&self, count: usize) {
        if count > 0 {
            self.discarded.fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_unhandled(&self, count: usize) {
        if count > 0 {
            self.unhandled.fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_mailbox_len(&self, len: usize) {
        self.mailbox_len.store(len, Ordering::Relaxed);
    }

    pub(crate) fn add_in_excess(&self, count: usize) {
        self.in_excess.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_buffered(&self, count: usize) {
        self.buffered.store(count, Ordering::Relaxed);
    }

    pub(crate) fn set_consumers(&self, count: usize) {
        self.consumers.store(count, Ordering::Relaxed);
    }

    pub(crate) fn set_producers(&self, count: usize) {
        self.producers.store(count, Ordering::Relaxed);
    }

    pub(crate) fn set_demand_in(&self, demand: usize) {
        self.demand_in.store(demand, Ordering::Relaxed);
    }

    pub(crate) fn set_demand_out(&self, demand: usize) {
        self.demand_out.store(demand, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: StageState) {
        let code = match state {
            StageState::Starting => 0,
            StageState::Running => 1,
            StageState::Stopping => 2,
            StageState::Stopped => 3,
        };
        self.state.store(code, Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> StageStats {
        let state = match self.state.load(Ordering::Acquire) {
            0 => StageState::Starting,
            1 => StageState::Running,
            2 => StageState::Stopping,
            _ => StageState::Stopped,
        };
        StageStats {
            events_received: self.received.load(Ordering::Relaxed),
            events_emitted: self.emitted.load(Ordering::Relaxed),
            events_discarded: self.discarded.load(Ordering::Relaxed),
            events_unhandled: self.unhandled.load(Ordering::Relaxed),
            events_in_excess: self.in_excess.load(Ordering::Relaxed),
            deliveries_received: self.deliveries.load(Ordering::Relaxed),
            asks_sent: self.asks.load(Ordering::Relaxed),
            buffered: self.buffered.load(Ordering::Relaxed),
            consumers: self.consumers.load(Ordering::Relaxed),
            producers: self.producers.load(Ordering::Relaxed),
            demand_in: self.demand_in.load(Ordering::Relaxed),
            demand_out: self.demand_out.load(Ordering::Relaxed),
            queued_messages: 0,
            mailbox_len: self.mailbox_len.load(Ordering::Relaxed),
            state,
        }
    }
}
