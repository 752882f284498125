//! How long a connector waits before reconnecting: exponential, jittered, capped.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The wait before each reconnection attempt: `base` doubled with each attempt in a
/// row, capped at `cap`, and jittered (the wait is drawn between half of that and all
/// of it), so that many instances cut off at once do not come back at once.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_pipeline::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// let third = backoff.delay(3);
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// assert!(backoff.delay(50) <= Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling, capped at 30 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Waits from `base` (the first attempt) up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The longest wait before attempt `attempt` (from 1): `base` doubled for each
    /// attempt after the first, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The wait before attempt `attempt` (from 1): between half the
    /// [`ceiling`](Self::ceiling) and all of it, drawn anew each call.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let drawn = if spread == 0 {
            0
        } else {
            random() % (spread + 1)
        };
        half + Duration::from_nanos(drawn)
    }
}

/// A random number from the standard library's per-process hash keys (no generator
/// crate for one jitter per reconnection).
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9E37_79B9_7F4A_7C15);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u64> = (1..=6)
            .map(|attempt| backoff.ceiling(attempt).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_jittered_between_half_the_ceiling_and_the_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(4)).collect();
        assert!(
            delays
                .iter()
                .all(|&d| d >= Duration::from_millis(400) && d <= Duration::from_millis(800))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "drawn, not fixed: {} distinct",
            distinct.len()
        );
    }

    #[test]
    fn a_zero_base_never_waits() {
        let backoff = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(backoff.delay(7), Duration::ZERO);
    }
}
