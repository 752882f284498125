//! What waits for the events emitted before it to go out, and the queue where it waits
//! once the buffer has let it go.

use std::collections::VecDeque;
use std::ops::Range;

use crate::dispatcher::Marker;
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

/// Items the buffer has let go, in order, each waiting for the dispatcher to give its
/// marker back (once the events it held when the item was let go have gone out); and
/// items ready ahead of everything.
pub(super) struct HeldQueue<M> {
    /// Just let go by the buffer, in order; [`HeldQueue::queue_released`] moves them
    /// to `due`.
    released: Vec<Held<M>>,
    /// Waiting for their markers, in the order the markers were made (their ids
    /// ascending).
    due: VecDeque<Waiting<M>>,
    /// Ready ahead of everything, events held included.
    immediate: Vec<Held<M>>,
    /// The id of the next marker.
    next_marker: u64,
}

struct Waiting<M> {
    marker: u64,
    item: Held<M>,
    /// Whether the dispatcher gave the marker back.
    back: bool,
}

impl<M> HeldQueue<M> {
    pub(super) fn new() -> Self {
        HeldQueue {
            released: Vec::new(),
            due: VecDeque::new(),
            immediate: Vec::new(),
            next_marker: 0,
        }
    }

    /// Where the buffer lets items go; [`HeldQueue::queue_released`] them after.
    pub(super) fn released(&mut self) -> &mut Vec<Held<M>> {
        &mut self.released
    }

    /// Queues what the buffer just let go, in order, each behind a new marker; returns
    /// the markers' ids, for the dispatcher to queue behind what it holds.
    pub(super) fn queue_released(&mut self) -> Range<u64> {
        let first = self.next_marker;
        for item in self.released.drain(..) {
            self.due.push_back(Waiting {
                marker: self.next_marker,
                item,
                back: false,
            });
            self.next_marker += 1;
        }
        first..self.next_marker
    }

    /// The dispatcher gave `marker` back. One whose item was made ready already (see
    /// [`HeldQueue::cancellations_now`]) is ignored.
    pub(super) fn marker_back(&mut self, marker: Marker) {
        if let Ok(index) = self
            .due
            .binary_search_by_key(&marker.id(), |waiting| waiting.marker)
        {
            self.due[index].back = true;
        }
    }

    /// Makes `item` ready at once, ahead of every event buffered or held.
    pub(super) fn ready_now(&mut self, item: Held<M>) {
        self.immediate.push(item);
    }

    /// What is ready, in order: items whose markers are back, up to the first still
    /// out (a marker given back early waits for those queued before it), then those
    /// made ready at once.
    pub(super) fn take_ready(&mut self) -> Vec<Held<M>> {
        let mut ready = Vec::new();
        while self.is_due() {
            if let Some(waiting) = self.due.pop_front() {
                ready.push(waiting.item);
            }
        }
        ready.append(&mut self.immediate);
        ready
    }

    /// Whether [`HeldQueue::take_ready`] would return something.
    pub(super) fn has_ready(&self) -> bool {
        !self.immediate.is_empty() || self.is_due()
    }

    fn is_due(&self) -> bool {
        self.due.front().is_some_and(|waiting| waiting.back)
    }

    /// Makes the upstream ends among the items waiting ready now, in order, followed by
    /// those `elsewhere` takes out of where they wait.
    pub(super) fn cancellations_now(&mut self, elsewhere: impl FnOnce(&mut Vec<Held<M>>)) {
        let due = std::mem::take(&mut self.due);
        let (cancelled, waiting): (VecDeque<_>, VecDeque<_>) = due
            .into_iter()
            .partition(|waiting| waiting.item.is_cancelled());
        self.due = waiting;
        self.immediate
            .extend(cancelled.into_iter().map(|waiting| waiting.item));
        elsewhere(&mut self.immediate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(queue: &mut HeldQueue<&'static str>, message: &'static str) -> Range<u64> {
        queue.released().push(Held::Info(message));
        queue.queue_released()
    }

    fn ready(queue: &mut HeldQueue<&'static str>) -> Vec<&'static str> {
        let ready = queue.take_ready().into_iter();
        ready
            .map(|held| match held {
                Held::Info(message) => message,
                _ => "cancellation",
            })
            .collect()
    }

    #[test]
    fn an_item_is_ready_when_its_marker_is_back_and_those_before_it_are() {
        let mut queue = HeldQueue::new();
        assert_eq!(info(&mut queue, "a"), 0..1);
        assert_eq!(info(&mut queue, "b"), 1..2);
        queue.marker_back(Marker::new(1));
        assert!(!queue.has_ready(), "b waits for a");
        queue.marker_back(Marker::new(0));
        assert!(queue.has_ready());
        assert_eq!(ready(&mut queue), ["a", "b"]);
        // Unknown or repeated markers change nothing.
        queue.marker_back(Marker::new(0));
        queue.marker_back(Marker::new(9));
        assert!(!queue.has_ready());
    }

    #[test]
    fn items_made_ready_at_once_follow_those_due() {
        let mut queue = HeldQueue::new();
        info(&mut queue, "due");
        queue.ready_now(Held::Info("now"));
        assert_eq!(ready(&mut queue), ["now"]);
        queue.ready_now(Held::Info("now again"));
        queue.marker_back(Marker::new(0));
        assert_eq!(ready(&mut queue), ["due", "now again"]);
    }

    #[test]
    fn cancellations_are_made_ready_and_their_markers_then_ignored() {
        let mut queue = HeldQueue::new();
        info(&mut queue, "first");
        let tag = SubscriptionTag::from_raw(1);
        queue.released().push(Held::Cancelled(
            tag,
            CancelReason::Down(crate::ExitReason::Normal),
        ));
        assert_eq!(queue.queue_released(), 1..2);
        info(&mut queue, "last");
        queue.cancellations_now(|into| into.push(Held::Info("from the buffer")));
        assert_eq!(ready(&mut queue), ["cancellation", "from the buffer"]);
        queue.marker_back(Marker::new(1));
        queue.marker_back(Marker::new(2));
        assert!(!queue.has_ready(), "last waits for first");
        queue.marker_back(Marker::new(0));
        assert_eq!(ready(&mut queue), ["first", "last"]);
    }
}
