//! The demo's source of jobs, which measures how long it waits for demand.
//!
//! The source makes jobs far faster than the workers run them, so it spends most of
//! its time with no demand to serve: held back by back-pressure. The share of its
//! time it waits shows how much.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gen_stage::source::Source;

use super::pipeline::Job;

/// The jobs, pulled by a [`gen_stage::source::SourceProducer`] for the demand it has.
pub(crate) struct JobSource {
    jobs: Box<dyn Iterator<Item = Job> + Send>,
    wait: SourceWait,
}

impl JobSource {
    /// A source of `jobs` that records its waits in `wait`.
    pub(crate) fn new(jobs: impl Iterator<Item = Job> + Send + 'static, wait: SourceWait) -> Self {
        JobSource {
            jobs: Box::new(jobs),
            wait,
        }
    }
}

impl Source for JobSource {
    type Item = Job;

    /// The producer pulls only when it has demand, for all of it: the source waits
    /// from the end of one pull that served every job asked to the start of the next.
    async fn pull(&mut self, count: usize) -> (Vec<Job>, bool) {
        self.wait.clock().demand(Instant::now());
        let jobs: Vec<Job> = self.jobs.by_ref().take(count).collect();
        let exhausted = jobs.len() < count;
        let mut clock = self.wait.clock();
        if exhausted {
            clock.end(Instant::now());
        } else {
            clock.served(Instant::now());
        }
        (jobs, exhausted)
    }
}

/// The source's wait clock, shared with the view that reads it.
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceWait(Arc<Mutex<WaitClock>>);

impl SourceWait {
    /// The share of its time the source has waited for demand, from its first demand
    /// to now (or to its end); `None` before any demand.
    pub(crate) fn fraction(&self) -> Option<f64> {
        self.clock().fraction(Instant::now())
    }

    fn clock(&self) -> MutexGuard<'_, WaitClock> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Time spent with no demand, out of the time since the first demand.
#[derive(Debug, Default)]
struct WaitClock {
    started: Option<Instant>,
    /// Since when the source has had no demand, if it has none now.
    idle_since: Option<Instant>,
    waited: Duration,
    ended: Option<Instant>,
}

impl WaitClock {
    /// Demand arrived at `at`: a wait, if one was running, ends.
    fn demand(&mut self, at: Instant) {
        self.started.get_or_insert(at);
        if let Some(since) = self.idle_since.take() {
            self.waited += at.saturating_duration_since(since);
        }
    }

    /// Every job asked for was served at `at`: a wait begins.
    fn served(&mut self, at: Instant) {
        self.idle_since = Some(at);
    }

    /// The jobs ran out at `at`: the clock stops.
    fn end(&mut self, at: Instant) {
        self.demand(at);
        self.ended = Some(at);
    }

    fn fraction(&self, now: Instant) -> Option<f64> {
        let started = self.started?;
        let end = self.ended.unwrap_or(now);
        let waiting = self
            .idle_since
            .map_or(Duration::ZERO, |since| end.saturating_duration_since(since));
        let total = end.saturating_duration_since(started);
        if total.is_zero() {
            return Some(0.0);
        }
        Some(((self.waited + waiting).as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn assert_near(fraction: Option<f64>, expected: f64) {
        let fraction = fraction.expect("measured");
        assert!(
            (fraction - expected).abs() < 1e-9,
            "{fraction} != {expected}"
        );
    }

    #[test]
    fn nothing_is_measured_before_the_first_demand() {
        assert_eq!(WaitClock::default().fraction(Instant::now()), None);
    }

    #[test]
    fn the_waits_between_pulls_count_and_the_pulls_do_not() {
        let t = Instant::now();
        let mut clock = WaitClock::default();
        clock.demand(t);
        clock.served(t + ms(10)); // 10 ms pulling
        clock.demand(t + ms(40)); // 30 ms waiting
        clock.served(t + ms(50));
        assert_near(clock.fraction(t + ms(50)), 0.6);
        // A wait still running counts up to now.
        assert_near(clock.fraction(t + ms(100)), 0.8);
    }

    #[test]
    fn the_clock_stops_when_the_jobs_run_out() {
        let t = Instant::now();
        let mut clock = WaitClock::default();
        clock.demand(t);
        clock.served(t + ms(10));
        clock.end(t + ms(40));
        assert_near(clock.fraction(t + ms(40)), 0.75);
        assert_near(clock.fraction(t + ms(4000)), 0.75);
    }
}
