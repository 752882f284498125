//! The stage-wide state a stage's loop keeps for its hooks: its handle, a stop asked,
//! a drain in progress, its timers.

use std::time::Duration;

use crate::context::StageControl;
use crate::exit::ExitReason;
use crate::handle::StageRef;
use crate::kind::StageKind;
use crate::timers::{Fired, TimerRef, Timers};

/// Stage-wide state the hooks can change.
pub(crate) struct Control<K: StageKind> {
    pub(crate) me: StageRef<K>,
    pub(crate) stop: Option<ExitReason>,
    /// The reason to stop with once drained, while the stage drains.
    pub(crate) draining: Option<ExitReason>,
    /// When a drain ends as a stop does. Its timer wakes an idle loop; this is read
    /// between the batches of a delivery.
    drain_deadline: Option<tokio::time::Instant>,
    pub(crate) timers: Timers<K::Message>,
}

impl<K: StageKind> Control<K> {
    pub(crate) fn new(me: StageRef<K>) -> Self {
        Control {
            me,
            stop: None,
            draining: None,
            drain_deadline: None,
            timers: Timers::default(),
        }
    }

    /// Records a stop (the first reason wins).
    pub(crate) fn stop_with(&mut self, reason: ExitReason) {
        self.stop.get_or_insert(reason);
    }

    /// Starts a drain that stops with `reason`, and sets its deadline.
    pub(crate) fn start_drain(&mut self, reason: ExitReason, deadline: tokio::time::Instant) {
        if self.draining.is_none() {
            self.draining = Some(reason);
            self.drain_deadline = Some(deadline);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = self.timers.add(left, Fired::DrainDeadline);
        }
    }

    /// Ends a drain whose time is up as a stop.
    pub(crate) fn check_drain_deadline(&mut self) {
        if self
            .drain_deadline
            .is_some_and(|deadline| tokio::time::Instant::now() >= deadline)
        {
            let reason = self.draining.clone().unwrap_or(ExitReason::Shutdown);
            self.stop_with(reason);
        }
    }
}

impl<K: StageKind> StageControl<K> for Control<K> {
    fn me(&self) -> &StageRef<K> {
        &self.me
    }

    fn stop(&mut self, reason: ExitReason) {
        self.stop = Some(reason);
    }

    fn is_stopping(&self) -> bool {
        self.stop.is_some()
    }

    fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    fn send_after(&mut self, delay: Duration, message: K::Message) -> TimerRef {
        self.timers.add(delay, Fired::Message(message))
    }

    fn cancel_timer(&mut self, timer: TimerRef) -> bool {
        self.timers.cancel(timer)
    }

    fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}
