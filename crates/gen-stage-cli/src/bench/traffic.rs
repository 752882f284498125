//! What a run's consumer exchanged with its producer: the events, the deliveries that
//! brought them and the asks it sent. Both sides of a row must ask and deliver as
//! often per event, or the faster one may just be asking less.

use std::time::Duration;

/// A run's time and, where the scenario counts it, its traffic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Measured {
    pub(crate) elapsed: Duration,
    pub(crate) traffic: Option<Traffic>,
}

impl Measured {
    pub(crate) fn with_traffic(elapsed: Duration, traffic: Traffic) -> Self {
        Measured {
            elapsed,
            traffic: Some(traffic),
        }
    }
}

impl From<Duration> for Measured {
    fn from(elapsed: Duration) -> Self {
        Measured {
            elapsed,
            traffic: None,
        }
    }
}

/// Counts seen by one consumer: events received, deliveries (messages of events)
/// received and asks (messages of demand) sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) events: u64,
    pub(crate) deliveries: u64,
    pub(crate) asks: u64,
}

impl Traffic {
    /// The sum of two runs' counts.
    pub(crate) fn add(self, other: Traffic) -> Traffic {
        Traffic {
            events: self.events + other.events,
            deliveries: self.deliveries + other.deliveries,
            asks: self.asks + other.asks,
        }
    }

    /// Deliveries and asks per 1000 events.
    pub(crate) fn per_thousand(&self) -> (f64, f64) {
        let events = self.events.max(1) as f64;
        (
            self.deliveries as f64 * 1000.0 / events,
            self.asks as f64 * 1000.0 / events,
        )
    }
}

/// Whether two rates agree within 1 %.
pub(crate) fn agree(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.01 * a.max(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_thousand_events_and_agree_within_one_percent() {
        let traffic = Traffic {
            events: 2000,
            deliveries: 4,
            asks: 5,
        };
        assert_eq!(traffic.per_thousand(), (2.0, 2.5));
        assert_eq!(traffic.add(traffic).per_thousand(), (2.0, 2.5));
        assert!(agree(100.0, 100.9));
        assert!(!agree(100.0, 101.5));
    }
}
