//! What waits for the events emitted before it to go out, and the queue where it waits
//! once the buffer has let it go.

use std::collections::VecDeque;

use crate::dispatcher::{Dispatcher, HeldMark};
use crate::exit::CancelReason;
use crate::subscription::SubscriptionTag;

/// Something that waits for the events buffered before it to go out.
pub(crate) enum Held<M> {
    /// An info message for `handle_message`.
    Info(M),
    /// A producer-consumer's upstream subscription ended: handled once the output
    /// that came before it has been delivered, so a finishing pipeline loses nothing
    /// (a graceful end with consumers to deliver to; otherwise handled at once).
    Cancelled(SubscriptionTag, CancelReason),
    /// The stage cancels one of its consumers, once the events buffered before this
    /// have gone out.
    CancelConsumer(SubscriptionTag, CancelReason),
    /// The stage cancelled one of its consumers: its `handle_cancel` runs, and the
    /// demand upstream the cancellation freed is produced.
    ConsumerRemoved(SubscriptionTag, CancelReason, usize),
}

impl<M> Held<M> {
    /// Whether this is an upstream end (see [`HeldQueue::cancellations_now`]).
    pub(super) fn is_cancelled(&self) -> bool {
        matches!(self, Held::Cancelled(..))
    }
}

/// Items the buffer has let go, in order, each waiting for the events the dispatcher
/// held when it was let go; and items ready ahead of everything.
pub(super) struct HeldQueue<M> {
    /// Just let go by the buffer, in order; [`HeldQueue::mark`] moves them to `due`.
    released: Vec<Held<M>>,
    /// Each with a mark of the events the dispatcher held when it was let go: it is
    /// ready once those have gone out.
    due: VecDeque<(HeldMark, Held<M>)>,
    /// Ready ahead of everything, events held included.
    immediate: Vec<Held<M>>,
}

impl<M> HeldQueue<M> {
    pub(super) fn new() -> Self {
        HeldQueue {
            released: Vec::new(),
            due: VecDeque::new(),
            immediate: Vec::new(),
        }
    }

    /// Where the buffer lets items go; [`HeldQueue::mark`] them after.
    pub(super) fn released(&mut self) -> &mut Vec<Held<M>> {
        &mut self.released
    }

    /// Marks what the buffer just let go with what `dispatcher` holds now (the events
    /// emitted before it that a partition dispatcher may still hold).
    pub(super) fn mark<T: 'static>(&mut self, dispatcher: &dyn Dispatcher<T>) {
        if self.released.is_empty() {
            return;
        }
        let mark = dispatcher.held_mark();
        for item in self.released.drain(..) {
            self.due.push_back((mark.clone(), item));
        }
    }

    /// Makes `item` ready at once, ahead of every event buffered or held.
    pub(super) fn ready_now(&mut self, item: Held<M>) {
        self.immediate.push(item);
    }

    /// What is ready, in order: items due whose events held before them have gone out,
    /// then those made ready at once.
    pub(super) fn take_ready<T: 'static>(
        &mut self,
        dispatcher: &dyn Dispatcher<T>,
    ) -> Vec<Held<M>> {
        let mut ready = Vec::new();
        while self.is_due(dispatcher) {
            if let Some((_, item)) = self.due.pop_front() {
                ready.push(item);
            }
        }
        ready.append(&mut self.immediate);
        ready
    }

    /// Whether [`HeldQueue::take_ready`] would return something.
    pub(super) fn has_ready<T: 'static>(&self, dispatcher: &dyn Dispatcher<T>) -> bool {
        !self.immediate.is_empty() || self.is_due(dispatcher)
    }

    fn is_due<T: 'static>(&self, dispatcher: &dyn Dispatcher<T>) -> bool {
        self.due
            .front()
            .is_some_and(|(mark, _)| dispatcher.released_since(mark))
    }

    /// Makes the upstream ends among the items due ready now, in order, followed by
    /// those `elsewhere` takes out of where they wait.
    pub(super) fn cancellations_now(&mut self, elsewhere: impl FnOnce(&mut Vec<Held<M>>)) {
        let due = std::mem::take(&mut self.due);
        let (cancelled, waiting): (VecDeque<_>, VecDeque<_>) =
            due.into_iter().partition(|(_, held)| held.is_cancelled());
        self.due = waiting;
        self.immediate
            .extend(cancelled.into_iter().map(|(_, held)| held));
        elsewhere(&mut self.immediate);
    }
}
