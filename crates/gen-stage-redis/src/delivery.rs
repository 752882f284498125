//! An entry read and not yet settled: what says it is still this consumer's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::entry::EntryId;

/// An entry in flight: its id and the delivery count it was read with (together,
/// what the group's pending list must still show for an outcome to be this
/// consumer's), and when its lease last started.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The entry's id in the stream.
    pub(crate) id: EntryId,
    /// The group's delivery count when this consumer read or claimed it.
    pub(crate) count: u64,
    /// Which attempt this is, counting the entries a retry came from.
    pub(crate) attempt: u32,
    /// The id stable across retries: the first entry's.
    pub(crate) origin: EntryId,
    /// When the read or claim that delivered it was sent: the server's idle time for
    /// it started after this.
    read_at: Instant,
    /// When, after `read_at`, the last renewal that reached the server was sent (ms).
    renewed_after_ms: AtomicU64,
    /// A renewal found it no longer this consumer's.
    lost: AtomicBool,
    /// A renewal found it trimmed from the stream, and acked it.
    trimmed: AtomicBool,
}

impl Delivery {
    pub(crate) fn new(
        id: EntryId,
        count: u64,
        attempt: u32,
        origin: EntryId,
        read_at: Instant,
    ) -> Self {
        Delivery {
            id,
            count,
            attempt,
            origin,
            read_at,
            renewed_after_ms: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            trimmed: AtomicBool::new(false),
        }
    }

    /// How long, at `now`, since its lease last started at the server, at most.
    pub(crate) fn held_for(&self, now: Instant) -> Duration {
        let renewed = Duration::from_millis(self.renewed_after_ms.load(Ordering::Acquire));
        now.saturating_duration_since(self.read_at + renewed)
    }

    /// Whether an ack may go out unchecked at `now`, with the connection in hand:
    /// held for less than a quarter of its lease (no instance using the same lease
    /// can claim it for three quarters more, longer than an ack takes to land), and
    /// no renewal found it gone. Otherwise the outcome is checked against the
    /// pending list at the server.
    pub(crate) fn surely_held(&self, lease: Duration, now: Instant) -> bool {
        !self.lost.load(Ordering::Acquire) && self.held_for(now) < lease / 4
    }

    /// A renewal sent at `at` reached the server and found it this consumer's.
    pub(crate) fn renewed(&self, at: Instant) {
        let after = at.saturating_duration_since(self.read_at).as_millis();
        self.renewed_after_ms
            .fetch_max(u64::try_from(after).unwrap_or(u64::MAX), Ordering::AcqRel);
    }

    /// A renewal found it trimmed from the stream (and acked it).
    pub(crate) fn trim(&self) {
        self.trimmed.store(true, Ordering::Release);
    }

    /// Whether a renewal found it trimmed from the stream.
    pub(crate) fn was_trimmed(&self) -> bool {
        self.trimmed.load(Ordering::Acquire)
    }

    /// A renewal found it another consumer's; answers whether that is news.
    pub(crate) fn lose(&self) -> bool {
        !self.lost.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_surely_held_for_a_quarter_of_its_lease_from_its_last_renewal() {
        let lease = Duration::from_secs(20);
        let start = Instant::now();
        let id = EntryId::parse("1-0").expect("an entry id");
        let delivery = Delivery::new(id, 1, 1, id, start);
        assert!(delivery.surely_held(lease, start + Duration::from_secs(4)));
        assert!(!delivery.surely_held(lease, start + Duration::from_secs(5)));
        delivery.renewed(start + Duration::from_secs(4));
        assert!(delivery.surely_held(lease, start + Duration::from_secs(8)));
        // An older renewal does not move it back.
        delivery.renewed(start + Duration::from_secs(1));
        assert!(delivery.surely_held(lease, start + Duration::from_secs(8)));
        assert!(delivery.lose());
        assert!(!delivery.lose());
        assert!(!delivery.surely_held(lease, start + Duration::from_secs(4)));
    }
}
