//! What a pipeline reports: its messages counted by outcome, and the report of a drain.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages counted by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OutcomeCounts {
    /// [`Outcome::Ack`](crate::Outcome::Ack).
    pub acked: u64,
    /// [`Outcome::Retry`](crate::Outcome::Retry).
    pub retried: u64,
    /// [`Outcome::Reject`](crate::Outcome::Reject).
    pub rejected: u64,
    /// [`Outcome::Terminate`](crate::Outcome::Terminate).
    pub terminated: u64,
    /// [`Outcome::Release`](crate::Outcome::Release): left for redelivery.
    pub released: u64,
}

impl OutcomeCounts {
    pub(crate) fn read(counters: &[AtomicU64; 5]) -> Self {
        let read = |index: usize| counters[index].load(Ordering::Relaxed);
        OutcomeCounts {
            acked: read(0),
            retried: read(1),
            rejected: read(2),
            terminated: read(3),
            released: read(4),
        }
    }

    /// Failed: retried, rejected or terminated.
    pub fn failed(&self) -> u64 {
        self.retried + self.rejected + self.terminated
    }

    /// Every message counted.
    pub fn total(&self) -> u64 {
        self.acked + self.failed() + self.released
    }
}

/// What a pipeline did with the messages it took in: returned by
/// [`Pipeline::drain`](crate::Pipeline::drain), and read at any time with
/// [`Pipeline::counts`](crate::Pipeline::counts).
///
/// After a drain, every message taken in has ended in exactly one outcome:
/// `settled.total() == taken_in`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// Messages that entered the pipeline from its producers.
    pub taken_in: u64,
    /// Messages settled, by outcome (failed messages as the retry policy or
    /// `handle_failed` decided; messages never handled as released).
    pub settled: OutcomeCounts,
    /// Handles dropped without an outcome (a panic, a cancelled callback, a drain's
    /// deadline): counted in `settled` too, under the pipeline's `on_drop` outcome.
    pub dropped_handles: u64,
    /// Messages whose acknowledgement failed, by the outcome they were to be told.
    pub ack_failures: OutcomeCounts,
    /// Whether a drain reached its deadline and cancelled work still running.
    pub deadline_reached: bool,
}

impl PipelineReport {
    /// Messages taken in and not yet settled.
    pub fn in_flight(&self) -> u64 {
        self.taken_in.saturating_sub(self.settled.total())
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settled;
        write!(
            f,
            "{} taken in: {} acked, {} failed ({} to retry, {} rejected, {} terminated), {} left for redelivery",
            self.taken_in,
            s.acked,
            s.failed(),
            s.retried,
            s.rejected,
            s.terminated,
            s.released
        )?;
        if self.dropped_handles > 0 {
            write!(f, "; {} handles dropped", self.dropped_handles)?;
        }
        let failures = self.ack_failures.total();
        if failures > 0 {
            write!(f, "; {failures} acknowledgements failed")?;
        }
        if self.deadline_reached {
            f.write_str("; the deadline cut work short")?;
        }
        Ok(())
    }
}
