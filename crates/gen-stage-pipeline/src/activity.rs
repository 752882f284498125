//! What a stage did recently: messages and time in callbacks per second, for the last
//! few seconds, written by the stage alone and read by snapshots at any time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Seconds kept (the window is the last `WINDOW` whole seconds and the current one).
const BUCKETS: usize = 8;

/// Whole seconds before the current one that a snapshot's rates cover.
const WINDOW: u64 = 4;

/// One second's activity.
#[derive(Default)]
struct Bucket {
    /// Which second since the epoch it holds.
    second: AtomicU64,
    messages: AtomicU64,
    busy_nanos: AtomicU64,
}

/// A stage's recent activity. One writer (the stage); snapshots read it while the
/// stage runs, even while it is inside a callback.
pub(crate) struct Activity {
    epoch: Instant,
    buckets: [Bucket; BUCKETS],
    /// When the callback running now started (nanoseconds since the epoch, plus one),
    /// or 0 when none runs.
    busy_since: AtomicU64,
    /// Messages the stage holds now: in a callback, or in open batches.
    pub(crate) in_flight: AtomicU64,
}

/// What a snapshot reads of an [`Activity`].
pub(crate) struct Recent {
    pub(crate) messages_per_second: f64,
    pub(crate) busy: f64,
    pub(crate) in_flight: u64,
    pub(crate) window: Duration,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            buckets: Default::default(),
            busy_since: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Now, in nanoseconds since the epoch.
    fn now(&self) -> u64 {
        self.nanos(Instant::now())
    }

    /// A callback starts, holding `messages`; returns when it started (for
    /// [`Activity::end`]).
    pub(crate) fn begin(&self, messages: usize) -> u64 {
        let now = self.now();
        self.busy_since.store(now + 1, Ordering::Relaxed);
        self.in_flight.store(messages as u64, Ordering::Relaxed);
        now
    }

    /// The callback that started at `started` is done with `messages`.
    pub(crate) fn end(&self, started: u64, messages: usize) {
        let now = self.now();
        self.busy_since.store(0, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
        self.record(now, messages, now.saturating_sub(started));
    }

    /// Counts `messages` handled now, without time in a callback.
    pub(crate) fn count(&self, messages: usize) {
        self.record(self.now(), messages, 0);
    }

    /// Adds to the bucket of the second of `at` (nanoseconds since the epoch): a
    /// callback's whole time goes to the second it ended in.
    fn record(&self, at: u64, messages: usize, busy_nanos: u64) {
        let second = at / 1_000_000_000;
        let bucket = &self.buckets[(second % BUCKETS as u64) as usize];
        if bucket.second.load(Ordering::Relaxed) != second {
            bucket.messages.store(0, Ordering::Relaxed);
            bucket.busy_nanos.store(0, Ordering::Relaxed);
            bucket.second.store(second, Ordering::Relaxed);
        }
        // One writer, the stage: a load and a store, no locked add.
        let add = |counter: &AtomicU64, amount: u64| {
            counter.store(
                counter.load(Ordering::Relaxed).saturating_add(amount),
                Ordering::Relaxed,
            );
        };
        add(&bucket.messages, messages as u64);
        add(&bucket.busy_nanos, busy_nanos);
    }

    /// A new stage takes the place of one that stopped: nothing is in hand (the
    /// seconds counted so far stay).
    pub(crate) fn restart(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
    }

    /// The rates over the last few seconds, the callback running now included.
    pub(crate) fn recent(&self) -> Recent {
        let now = self.nanos(Instant::now());
        let current = now / 1_000_000_000;
        let first = current.saturating_sub(WINDOW);
        let (mut messages, mut busy) = (0u64, 0u64);
        for bucket in &self.buckets {
            let second = bucket.second.load(Ordering::Relaxed);
            if (first..=current).contains(&second) {
                messages += bucket.messages.load(Ordering::Relaxed);
                busy += bucket.busy_nanos.load(Ordering::Relaxed);
            }
        }
        let window_start = first * 1_000_000_000;
        let since = self.busy_since.load(Ordering::Relaxed);
        if since > 0 {
            busy += now.saturating_sub((since - 1).max(window_start));
        }
        let window = now.saturating_sub(window_start).max(1);
        Recent {
            messages_per_second: messages as f64 * 1e9 / window as f64,
            busy: (busy as f64 / window as f64).min(1.0),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            window: Duration::from_nanos(window),
        }
    }
}
