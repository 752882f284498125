//! How often a supervisor may restart before it gives up.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// At most `max_restarts` restarts within any `period`, as OTP's `max_restarts` and
/// `max_seconds`: the [`Supervisor`](super::supervisor::Supervisor)'s and the
/// [`ConsumerSupervisor`](super::consumer_supervisor::ConsumerSupervisor)'s limit,
/// for layers above the core that restart things of their own (a pipeline's
/// producers, a connector's connection). It follows tokio's clock.
///
/// ```
/// use std::time::Duration;
/// use gen_stage::supervision::RestartIntensity;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut intensity = RestartIntensity::new(2, Duration::from_secs(5));
/// assert!(intensity.allow_restart());
/// assert!(intensity.allow_restart());
/// assert!(!intensity.allow_restart(), "a third within 5 s: give up");
/// tokio::time::advance(Duration::from_secs(6)).await;
/// assert!(intensity.allow_restart(), "the earlier ones are forgotten");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RestartIntensity {
    max_restarts: usize,
    period: Duration,
    /// When the restarts within the last `period` happened, oldest first.
    restarts: VecDeque<Instant>,
}

impl RestartIntensity {
    /// No restart recorded yet.
    pub fn new(max_restarts: usize, period: Duration) -> Self {
        RestartIntensity {
            max_restarts,
            period,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart now; false once more than `max_restarts` were recorded within
    /// the last `period` (this one included): the supervisor gives up. Restarts older
    /// than `period` are forgotten, so the memory held is bounded by the restarts one
    /// period can hold.
    pub fn allow_restart(&mut self) -> bool {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|&at| now.duration_since(at) > self.period)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        self.restarts.len() <= self.max_restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn allows_max_restarts_within_a_period_and_refuses_the_next() {
        let mut intensity = RestartIntensity::new(3, PERIOD);
        for _ in 0..3 {
            assert!(intensity.allow_restart());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(!intensity.allow_restart(), "a fourth within 5 s");
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_older_than_the_period_are_forgotten() {
        let mut intensity = RestartIntensity::new(2, PERIOD);
        assert!(intensity.allow_restart());
        assert!(intensity.allow_restart());
        tokio::time::advance(PERIOD + Duration::from_millis(1)).await;
        assert!(
            intensity.allow_restart(),
            "the first two are out of the window"
        );
        assert!(intensity.allow_restart());
        assert!(!intensity.allow_restart());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_exactly_one_period_old_still_counts() {
        let mut intensity = RestartIntensity::new(1, PERIOD);
        assert!(intensity.allow_restart());
        tokio::time::advance(PERIOD).await;
        assert!(!intensity.allow_restart(), "the window includes its edge");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_restarts_allows_none() {
        let mut intensity = RestartIntensity::new(0, PERIOD);
        assert!(!intensity.allow_restart());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_restart_still_counts_against_the_window() {
        // As in OTP: the refused attempt is recorded too (the supervisor then stops).
        let mut intensity = RestartIntensity::new(1, PERIOD);
        assert!(intensity.allow_restart());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!intensity.allow_restart());
        tokio::time::advance(Duration::from_secs(3)).await;
        // The first is out of the window; the refused one, 3 s old, is not.
        assert!(!intensity.allow_restart());
    }
}
