//! The bound on user messages (casts, calls, infos) queued in a stage's mailbox.
//!
//! Protocol traffic (events within demand, asks, subscriptions, stops) is bounded by
//! the demand protocol itself and never counted here. User messages come from code
//! the protocol does not pace: a loop of casts can queue without end. Every user
//! message is counted while it waits; the bounded ways in ([`StageRef::try_cast`],
//! [`StageRef::cast_when_room`], calls, [`StageRef::sync_info`]) refuse or wait when
//! the count has reached the capacity, the unbounded ones ([`StageRef::cast`],
//! [`StageRef::async_info`]) go in anyway.
//!
//! [`StageRef::try_cast`]: crate::StageRef::try_cast
//! [`StageRef::cast_when_room`]: crate::StageRef::cast_when_room
//! [`StageRef::sync_info`]: crate::StageRef::sync_info
//! [`StageRef::cast`]: crate::StageRef::cast
//! [`StageRef::async_info`]: crate::StageRef::async_info

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// How many user messages a stage's mailbox holds before the bounded ways in refuse
/// or wait, unless its builder says otherwise.
pub const DEFAULT_MESSAGE_CAPACITY: usize = 1024;

pub(crate) struct EntryBound {
    queued: AtomicUsize,
    capacity: usize,
    room: Notify,
}

impl EntryBound {
    pub(crate) fn new(capacity: usize) -> Self {
        EntryBound {
            queued: AtomicUsize::new(0),
            capacity,
            room: Notify::new(),
        }
    }

    /// User messages queued now.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Takes a place if there is room.
    pub(crate) fn try_reserve(&self) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < self.capacity).then_some(queued + 1)
            })
            .is_ok()
    }

    /// Takes a place, room or not.
    pub(crate) fn reserve_unbounded(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits for room, then takes a place.
    pub(crate) async fn reserve(&self) {
        loop {
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.try_reserve() {
                return;
            }
            notified.await;
        }
    }

    /// Gives a place back: the message was handled, or could not be sent.
    pub(crate) fn release(&self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        if before <= self.capacity {
            // There is room now: one waiter may take it (it tries again if another
            // sender was faster).
            self.room.notify_one();
        }
    }
}
