//! Timers that belong to a stage: "send me this message after a delay".
//!
//! A stage keeps its pending timers in a heap ordered by deadline, and one tokio
//! sleep for the earliest: thousands of timers cost an entry each, no task. The loop
//! takes a due timer's message between two mailbox messages and hands it to
//! `handle_message`; a timer cancelled before that is never handled, even if it was
//! already due. Timers go with the stage: none outlives it or survives a restart.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A pending timer of a stage, returned by
/// [`Context::send_after`](crate::Context::send_after); give it to
/// [`Context::cancel_timer`](crate::Context::cancel_timer) to cancel it.
///
/// It names one timer of one stage: it is small, `Copy`, and means nothing to other
/// stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a timer can only be cancelled through its TimerRef"]
pub struct TimerRef(u64);

/// What fires: a user's message, or the deadline of a drain.
pub(crate) enum Fired<M> {
    Message(M),
    DrainDeadline,
}

pub(crate) struct Timers<M> {
    /// Pending timers by number; a cancelled one is removed here and skipped in
    /// `deadlines` when its turn comes.
    pending: HashMap<u64, Fired<M>>,
    /// Deadlines, earliest first; equal deadlines fire in the order they were set.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next: u64,
    /// Set to the earliest deadline while timers are pending.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The timer `sleep` is set for, while it is pending: as long as it stays the
    /// earliest, a poll only polls the sleep (a stage polls its timers on every turn
    /// of its loop).
    armed: Option<u64>,
}

impl<M> Default for Timers<M> {
    fn default() -> Self {
        Timers {
            pending: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next: 0,
            sleep: None,
            armed: None,
        }
    }
}

impl<M> fmt::Debug for Timers<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<M> Timers<M> {
    /// Sets a timer that fires `message` after `delay`.
    pub(crate) fn add(&mut self, delay: Duration, message: Fired<M>) -> TimerRef {
        let number = self.next;
        self.next += 1;
        let deadline = Instant::now().checked_add(delay).unwrap_or_else(far_future);
        self.pending.insert(number, message);
        self.deadlines.push(Reverse((deadline, number)));
        TimerRef(number)
    }

    /// Cancels a timer; false if it had fired or was cancelled already.
    pub(crate) fn cancel(&mut self, timer: TimerRef) -> bool {
        let cancelled = self.pending.remove(&timer.0).is_some();
        if self.armed == Some(timer.0) {
            self.armed = None;
        }
        if self.pending.is_empty() {
            self.deadlines.clear();
            self.sleep = None;
        } else if self.deadlines.len() > 2 * self.pending.len() + 64 {
            // Cancelled timers leave their deadline behind: a timeout re-armed per
            // event would pile them up. Keep the heap within twice what is pending.
            let pending = &self.pending;
            self.deadlines
                .retain(|Reverse((_, number))| pending.contains_key(number));
        }
        cancelled
    }

    /// Timers still pending.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The message of the earliest timer that is due, once one is.
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Fired<M>> {
        if let (Some(armed), Some(sleep)) = (self.armed, &mut self.sleep) {
            let earliest = self.deadlines.peek().map(|Reverse((_, number))| *number);
            if earliest == Some(armed) && sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.armed = None;
        loop {
            let Some(&Reverse((deadline, number))) = self.deadlines.peek() else {
                self.sleep = None;
                return Poll::Pending;
            };
            if !self.pending.contains_key(&number) {
                self.deadlines.pop();
                continue;
            }
            if deadline <= Instant::now() {
                self.deadlines.pop();
                if let Some(message) = self.pending.remove(&number) {
                    return Poll::Ready(message);
                }
                continue;
            }
            let sleep = match &mut self.sleep {
                Some(sleep) => {
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                None => self
                    .sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => {
                    self.armed = Some(number);
                    return Poll::Pending;
                }
            }
        }
    }

    /// Waits for the earliest due timer.
    pub(crate) async fn next_due(&mut self) -> Fired<M> {
        std::future::poll_fn(|cx| self.poll_due(cx)).await
    }
}

/// A deadline beyond any delay a stage will see (tokio's own "far future").
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(message: Fired<u32>) -> u32 {
        match message {
            Fired::Message(message) => message,
            Fired::DrainDeadline => u32::MAX,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_by_deadline_and_in_order_of_setting_on_ties() {
        let mut timers = Timers::default();
        let _ = timers.add(Duration::from_millis(30), Fired::Message(3));
        let _ = timers.add(Duration::from_millis(10), Fired::Message(1));
        let _ = timers.add(Duration::from_millis(10), Fired::Message(2));
        let start = Instant::now();
        let mut order = Vec::new();
        while !timers.is_empty() {
            order.push(fired(timers.next_due().await));
        }
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(start.elapsed(), Duration::from_millis(30));
    }

    /// Polls the timers once, as a stage's loop does on each turn.
    async fn poll_once(timers: &mut Timers<u32>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(timers.poll_due(cx).is_pending())).await
    }

    #[tokio::test(start_paused = true)]
    async fn timers_set_or_cancelled_while_one_is_armed_are_seen() {
        let mut timers = Timers::default();
        let start = Instant::now();
        let first = timers.add(Duration::from_millis(30), Fired::Message(1));
        assert!(
            poll_once(&mut timers).await,
            "nothing is due: the sleep is armed"
        );
        // An earlier timer set while the first is armed fires first, at its time.
        let _ = timers.add(Duration::from_millis(10), Fired::Message(2));
        assert_eq!(fired(timers.next_due().await), 2);
        assert_eq!(start.elapsed(), Duration::from_millis(10));
        // The armed timer, cancelled, never fires; the one after it does.
        assert!(poll_once(&mut timers).await);
        assert!(timers.cancel(first));
        let _ = timers.add(Duration::from_millis(40), Fired::Message(3));
        assert_eq!(fired(timers.next_due().await), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert!(timers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_timer_never_fires_even_when_already_due() {
        let mut timers = Timers::default();
        let first = timers.add(Duration::from_millis(10), Fired::Message(1));
        let _ = timers.add(Duration::from_millis(20), Fired::Message(2));
        tokio::time::advance(Duration::from_millis(15)).await;
        assert!(timers.cancel(first), "pending, though due");
        assert!(!timers.cancel(first), "cancelled once");
        assert_eq!(fired(timers.next_due().await), 2);
        assert!(timers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_timers_do_not_pile_up_in_the_heap() {
        let mut timers = Timers::<u32>::default();
        let _periodic = timers.add(Duration::from_secs(1), Fired::Message(0));
        for i in 0..100_000 {
            let timeout = timers.add(Duration::from_secs(3600), Fired::Message(i));
            assert!(timers.cancel(timeout));
        }
        assert_eq!(timers.len(), 1);
        assert!(
            timers.deadlines.len() < 1000,
            "{} heap entries for 1 pending timer",
            timers.deadlines.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn many_timers_are_entries_not_tasks() {
        let before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let mut timers = Timers::default();
        for delay in 0..5000u32 {
            let _ = timers.add(
                Duration::from_millis(u64::from(delay)),
                Fired::Message(delay),
            );
        }
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            before
        );
        let mut last = None;
        while !timers.is_empty() {
            let next = fired(timers.next_due().await);
            assert!(last < Some(next));
            last = Some(next);
        }
        assert_eq!(last, Some(4999));
    }
}
