//! A limit on the messages a pipeline takes in per window of time, shared by all its
//! producers.

use crate::sync::lock;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// At most `allowed` messages per `interval`, across all of a pipeline's producers: a
/// fixed window, as Broadway's (the count starts again at each window, so up to twice
/// `allowed` can pass within one `interval` that straddles two windows).
///
/// While the limit binds, the producers pass no demand on to their sources: nothing is
/// fetched that would then have to wait.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_pipeline::RateLimit;
///
/// let limit = RateLimit::new(1000, Duration::from_secs(1));
/// assert_eq!(limit.allowed(), 1000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    allowed: u64,
    interval: Duration,
}

impl RateLimit {
    /// At most `allowed` messages each `interval`.
    pub fn new(allowed: u64, interval: Duration) -> Self {
        RateLimit { allowed, interval }
    }

    /// Messages allowed per window.
    pub fn allowed(&self) -> u64 {
        self.allowed
    }

    /// The window's length.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// What the limiter says of the current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateLimitState {
    /// The limit.
    pub limit: RateLimit,
    /// Messages still allowed in the current window.
    pub remaining: u64,
    /// How long until the window starts again.
    pub resets_in: Duration,
}

struct Window {
    limit: RateLimit,
    started: Instant,
    used: u64,
}

impl Window {
    /// Starts a new window if the current one is over.
    fn roll(&mut self, now: Instant) {
        if now >= self.started + self.limit.interval {
            let interval = self.limit.interval.as_nanos().max(1);
            let elapsed = (now - self.started).as_nanos();
            let windows = (elapsed / interval) as u32;
            self.started += self.limit.interval * windows;
            self.used = 0;
        }
    }
}

/// The limiter the producers of one pipeline share.
#[derive(Clone)]
pub(crate) struct RateLimiter(Arc<Mutex<Window>>);

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        RateLimiter(Arc::new(Mutex::new(Window {
            limit,
            started: Instant::now(),
            used: 0,
        })))
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        lock(&self.0)
    }

    /// Takes up to `wanted` messages from the current window. Returns how many were
    /// granted and, if fewer, when the next window starts.
    pub(crate) fn take(&self, wanted: u64) -> (u64, Option<Instant>) {
        let mut window = self.window();
        window.roll(Instant::now());
        let granted = wanted.min(window.limit.allowed.saturating_sub(window.used));
        window.used += granted;
        let next = (granted < wanted).then(|| window.started + window.limit.interval);
        (granted, next)
    }

    pub(crate) fn state(&self) -> RateLimitState {
        let mut window = self.window();
        let now = Instant::now();
        window.roll(now);
        RateLimitState {
            limit: window.limit,
            remaining: window.limit.allowed.saturating_sub(window.used),
            resets_in: (window.started + window.limit.interval).saturating_duration_since(now),
        }
    }

    /// Changes the limit; with `reset`, a new window starts now.
    pub(crate) fn set(&self, limit: RateLimit, reset: bool) {
        let mut window = self.window();
        window.limit = limit;
        if reset {
            window.started = Instant::now();
            window.used = 0;
        }
    }
}
