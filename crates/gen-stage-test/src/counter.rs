//! A producer of consecutive numbers.

use gen_stage::{BoxError, ExitReason, Producer, ProducerContext};

use crate::watch::Recorded;

/// Emits `start, start + 1, ...` exactly as demanded, optionally up to a limit (then
/// it stops normally once its last events are dispatched). Records every demand it
/// is asked for. Without a limit it counts up to `u64::MAX - 1`, then emits nothing.
#[derive(Debug)]
#[must_use]
pub struct Counter {
    next: u64,
    limit: Option<u64>,
    /// The limit was reached and the stop is on its way.
    stopping: bool,
    demands: Recorded<usize>,
}

/// Sent by a [`Counter`] to itself when it reaches its limit.
#[derive(Debug)]
pub struct LimitReached;

impl Counter {
    /// Counts from `start`, without end.
    pub fn new(start: u64) -> Self {
        Counter {
            next: start,
            limit: None,
            stopping: false,
            demands: Recorded::default(),
        }
    }

    /// Stops after emitting the numbers below `limit`.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The counter and the record of the demands it is asked for.
    pub fn recorded(self) -> (Self, Recorded<usize>) {
        let demands = self.demands.clone();
        (self, demands)
    }
}

impl Producer for Counter {
    type Event = u64;
    type Message = LimitReached;

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        self.demands.push(demand);
        // Saturating: a counter that reaches `u64::MAX` has nothing more to give.
        let end = self.next.saturating_add(demand as u64);
        let end = self.limit.map_or(end, |limit| end.min(limit));
        let events: Vec<u64> = (self.next..end).collect();
        self.next = end;
        if !self.stopping && self.limit == Some(end) {
            self.stopping = true;
            ctx.emit(events);
            let _ = ctx.stage_ref().async_info(LimitReached);
            return Ok(Vec::new());
        }
        Ok(events)
    }

    async fn handle_message(
        &mut self,
        _: LimitReached,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        ctx.stop(ExitReason::Normal);
        Ok(())
    }
}
