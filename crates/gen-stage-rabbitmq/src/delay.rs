//! Retries after a delay: a queue per delay, whose messages expire after it into the
//! consumed queue (a dead-letter route through the default exchange).
//!
//! A queue's messages expire in order only if they all share one time to live, so
//! each delay has its own queue, `<queue>.delay.<milliseconds>`. Delays are rounded
//! up to one of eight steps per doubling (at most 12.5 % later, never earlier), so
//! jittered backoffs share a few dozen queues rather than one each. An idle delay
//! queue deletes itself (`x-expires`); the source declares each again before its
//! lease could run out under the messages in it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable};

/// Delays up to this many milliseconds are kept exactly.
const EXACT_UP_TO_MS: u64 = 16;
/// How long an idle delay queue outlives the delay of its messages.
const IDLE_MARGIN: Duration = Duration::from_secs(60);

/// `after` rounded up to a delay queue's time to live, in milliseconds (at least 1).
pub(crate) fn rounded_ms(after: Duration) -> u64 {
    let ms = u64::try_from(after.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1);
    if ms <= EXACT_UP_TO_MS {
        return ms;
    }
    // Keep the top four bits: ms = m × 2^shift with m in 8..=16.
    let shift = (63 - ms.leading_zeros()) - 3;
    let step = 1u64 << shift;
    ms.div_ceil(step).saturating_mul(step)
}

/// The delay queue for `ms`.
pub(crate) fn queue_name(queue: &str, ms: u64) -> String {
    format!("{queue}.delay.{ms}")
}

/// How the delay queue for `ms` is declared: its messages live `ms`, then go to
/// `queue` through the default exchange; the queue is deleted when it has not been
/// declared for twice the delay and a minute (publishing does not count as a use:
/// [`Declared`] declares it again in time).
pub(crate) fn arguments(queue: &str, ms: u64) -> FieldTable {
    let ms_value = |ms: u64| AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(i64::MAX));
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), ms_value(ms));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
    arguments.insert("x-expires".into(), ms_value(lease(ms).as_millis() as u64));
    arguments
}

/// How long a delay queue lives unused after its declaration.
fn lease(ms: u64) -> Duration {
    Duration::from_millis(ms.saturating_mul(2)) + IDLE_MARGIN
}

/// The delay queues a connection declared, and when: one is declared again once half
/// its lease has passed, so that a message published to it always expires before the
/// queue could (its lease, twice its delay and a minute, then still has more than the
/// delay to run).
#[derive(Debug, Default)]
pub(crate) struct Declared(HashMap<u64, Instant>);

impl Declared {
    /// Whether the delay queue for `ms` needs declaring before a publish at `now`.
    pub(crate) fn needs(&self, ms: u64, now: Instant) -> bool {
        self.0
            .get(&ms)
            .is_none_or(|at| now.saturating_duration_since(*at) >= lease(ms) / 2)
    }

    /// The delay queue for `ms` was declared at `at`.
    pub(crate) fn declared(&mut self, ms: u64, at: Instant) {
        self.0.insert(ms, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_delays_are_exact() {
        assert_eq!(rounded_ms(Duration::ZERO), 1);
        assert_eq!(rounded_ms(Duration::from_micros(1)), 1);
        assert_eq!(rounded_ms(Duration::from_millis(16)), 16);
    }

    #[test]
    fn longer_delays_round_up_by_at_most_an_eighth() {
        for ms in [17u64, 100, 999, 1000, 1001, 30_000, 3_600_000, 86_400_123] {
            let rounded = rounded_ms(Duration::from_millis(ms));
            assert!(rounded >= ms, "{ms} rounded down to {rounded}");
            assert!(rounded * 8 <= ms * 9, "{ms} rounded up to {rounded}");
        }
        assert_eq!(rounded_ms(Duration::from_millis(1000)), 1024);
        assert_eq!(rounded_ms(Duration::from_millis(1024)), 1024);
        assert_eq!(rounded_ms(Duration::from_millis(1025)), 1152);
    }

    #[test]
    fn jittered_delays_share_few_queues() {
        let queues: std::collections::BTreeSet<u64> = (1000..2000)
            .map(|ms| rounded_ms(Duration::from_millis(ms)))
            .collect();
        assert!(queues.len() <= 9, "{queues:?}");
    }

    #[test]
    fn a_delay_queue_is_declared_again_before_its_lease_could_run_out() {
        let mut declared = Declared::default();
        let start = Instant::now();
        assert!(declared.needs(1000, start));
        declared.declared(1000, start);
        assert!(!declared.needs(1000, start + Duration::from_secs(30)));
        // Lease 62 s: declared again from 31 s on.
        assert!(declared.needs(1000, start + Duration::from_secs(31)));
        assert!(declared.needs(2000, start));
    }

    #[test]
    fn a_delay_queue_expires_into_the_queue() {
        let arguments = arguments("orders", 1024);
        let get = |name: &str| arguments.inner().get(name).cloned();
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(1024)));
        assert_eq!(
            get("x-dead-letter-routing-key"),
            Some(AMQPValue::LongString("orders".into()))
        );
        assert_eq!(get("x-expires"), Some(AMQPValue::LongLongInt(62_048)));
        assert_eq!(queue_name("orders", 1024), "orders.delay.1024");
    }
}
