//! The producer buffer: events that have no demand yet, and the info messages queued
//! behind them.

use std::collections::VecDeque;

use crate::options::{BufferKeep, BufferSize};

/// Events waiting for demand, in order, with info messages pinned between them.
///
/// An info message is released once every event buffered before it has left the buffer
/// (taken for dispatch or discarded).
#[derive(Debug)]
pub(crate) struct Buffer<T, M> {
    events: VecDeque<T>,
    size: BufferSize,
    keep: BufferKeep,
    /// `(position, message)`: released once `removed >= position`.
    infos: VecDeque<(u64, M)>,
    /// Events ever appended.
    added: u64,
    /// Events ever removed from the front (taken or discarded).
    removed: u64,
}

impl<T, M> Buffer<T, M> {
    pub(crate) fn new(size: BufferSize, keep: BufferKeep) -> Self {
        Buffer {
            events: VecDeque::new(),
            size,
            keep,
            infos: VecDeque::new(),
            added: 0,
            removed: 0,
        }
    }

    /// Events currently buffered.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Appends events, discarding per the size and keep rules. Info messages whose
    /// events were all discarded are moved to `released`. Returns how many events were
    /// discarded.
    pub(crate) fn store(&mut self, mut incoming: Vec<T>, released: &mut Vec<M>) -> usize {
        let capacity = match self.size {
            BufferSize::Unbounded => {
                self.added += incoming.len() as u64;
                self.events.extend(incoming);
                return 0;
            }
            BufferSize::Bounded(capacity) => capacity,
        };
        let total = self.events.len() + incoming.len();
        if total <= capacity {
            self.added += incoming.len() as u64;
            self.events.extend(incoming);
            return 0;
        }
        let discarded = total - capacity;
        match self.keep {
            BufferKeep::First => {
                incoming.truncate(incoming.len() - discarded);
                self.added += incoming.len() as u64;
                self.events.extend(incoming);
            }
            BufferKeep::Last => {
                let from_buffer = discarded.min(self.events.len());
                self.events.drain(..from_buffer);
                let from_incoming = discarded - from_buffer;
                self.added += incoming.len() as u64;
                self.removed += discarded as u64;
                self.events.extend(incoming.drain(from_incoming..));
                self.release_due(released);
            }
        }
        discarded
    }

    /// Queues an info message behind the buffered events, or gives it back when nothing
    /// is buffered (it can be delivered at once).
    pub(crate) fn store_info(&mut self, message: M) -> Option<M> {
        if self.events.is_empty() {
            return Some(message);
        }
        self.infos.push_back((self.added, message));
        None
    }

    /// Takes up to `max` events from the front, stopping at the next info message.
    /// Call [`Buffer::release_due`] once the events are dispatched (and any leftovers put
    /// back) to collect the info messages that are now due.
    pub(crate) fn take(&mut self, max: usize) -> Vec<T> {
        let until_info = match self.infos.front() {
            Some(&(position, _)) => (position - self.removed) as usize,
            None => self.events.len(),
        };
        let count = max.min(until_info).min(self.events.len());
        let taken: Vec<T> = self.events.drain(..count).collect();
        self.removed += count as u64;
        taken
    }

    /// Takes out the info messages that `pick` picks, in order, whatever is buffered
    /// before them.
    pub(crate) fn take_infos_where(&mut self, pick: impl Fn(&M) -> bool, into: &mut Vec<M>) {
        let infos = std::mem::take(&mut self.infos);
        for (position, message) in infos {
            if pick(&message) {
                into.push(message);
            } else {
                self.infos.push_back((position, message));
            }
        }
    }

    /// Puts events that could not be dispatched back at the front, in order.
    pub(crate) fn put_back(&mut self, events: Vec<T>) {
        self.removed -= events.len() as u64;
        for event in events.into_iter().rev() {
            self.events.push_front(event);
        }
    }

    /// Moves the info messages whose events have all left the buffer to `released`.
    pub(crate) fn release_due(&mut self, released: &mut Vec<M>) {
        while let Some(&(position, _)) = self.infos.front() {
            if position > self.removed {
                break;
            }
            if let Some((_, message)) = self.infos.pop_front() {
                released.push(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(
        b: &mut Buffer<char, &'static str>,
        max: usize,
        released: &mut Vec<&'static str>,
    ) -> Vec<char> {
        let taken = b.take(max);
        b.release_due(released);
        taken
    }

    fn buffer(size: usize, keep: BufferKeep) -> Buffer<char, &'static str> {
        Buffer::new(BufferSize::Bounded(size), keep)
    }

    #[test]
    fn keep_first_discards_new_events() {
        let mut b = buffer(5, BufferKeep::First);
        let mut released = Vec::new();
        assert_eq!(b.store("abcde".chars().collect(), &mut released), 0);
        assert_eq!(b.store("fgh".chars().collect(), &mut released), 3);
        assert_eq!(b.len(), 5);
        assert_eq!(take(&mut b, 4, &mut released), vec!['a', 'b', 'c', 'd']);
        assert_eq!(b.len(), 1);
        assert_eq!(take(&mut b, 4, &mut released), vec!['e']);
    }

    #[test]
    fn keep_last_discards_old_events() {
        let mut b = buffer(5, BufferKeep::Last);
        let mut released = Vec::new();
        b.store("abcde".chars().collect(), &mut released);
        assert_eq!(b.store("fgh".chars().collect(), &mut released), 3);
        assert_eq!(take(&mut b, 4, &mut released), vec!['d', 'e', 'f', 'g']);
        assert_eq!(take(&mut b, 4, &mut released), vec!['h']);
    }

    #[test]
    fn keep_last_with_more_new_events_than_capacity_keeps_the_newest() {
        let mut b = buffer(2, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a'], &mut released);
        assert_eq!(b.store("bcd".chars().collect(), &mut released), 2);
        assert_eq!(take(&mut b, 10, &mut released), vec!['c', 'd']);
    }

    #[test]
    fn size_zero_keeps_nothing() {
        let mut b = buffer(0, BufferKeep::Last);
        let mut released = Vec::new();
        assert_eq!(b.store(vec!['a', 'b'], &mut released), 2);
        assert_eq!(b.len(), 0);
        let mut b = buffer(0, BufferKeep::First);
        assert_eq!(b.store(vec!['a', 'b'], &mut released), 2);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn infos_are_released_after_the_events_before_them() {
        let mut b = buffer(10, BufferKeep::Last);
        let mut released = Vec::new();
        assert_eq!(b.store_info("now"), Some("now"));
        b.store(vec!['a', 'b'], &mut released);
        assert_eq!(b.store_info("one"), None);
        assert_eq!(b.store_info("two"), None);
        b.store(vec!['c'], &mut released);
        assert_eq!(take(&mut b, 1, &mut released), vec!['a']);
        assert!(released.is_empty());
        // A take stops at the info, even with more demand.
        assert_eq!(take(&mut b, 5, &mut released), vec!['b']);
        assert_eq!(released, vec!["one", "two"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['c']);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn an_info_is_released_when_its_events_are_discarded() {
        let mut b = buffer(2, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a'], &mut released);
        b.store_info("after a");
        b.store(vec!['b', 'c'], &mut released);
        assert_eq!(released, vec!["after a"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['b', 'c']);
    }

    #[test]
    fn an_info_after_a_keep_first_overflow_follows_the_last_kept_event() {
        let mut b = buffer(3, BufferKeep::First);
        let mut released = Vec::new();
        b.store(vec!['a', 'b'], &mut released);
        // 'd' and 'e' do not fit: the info follows 'c', the last event kept.
        assert_eq!(b.store("cde".chars().collect(), &mut released), 2);
        assert_eq!(b.store_info("after c"), None);
        assert_eq!(take(&mut b, 2, &mut released), vec!['a', 'b']);
        assert!(released.is_empty(), "'c' is still buffered");
        b.store(vec!['f'], &mut released);
        assert_eq!(take(&mut b, 5, &mut released), vec!['c']);
        assert_eq!(released, vec!["after c"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['f']);
    }

    #[test]
    fn an_info_after_a_keep_last_eviction_follows_the_newest_event() {
        let mut b = buffer(3, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a', 'b'], &mut released);
        assert_eq!(b.store("cde".chars().collect(), &mut released), 2);
        assert_eq!(b.store_info("after e"), None);
        // 'f' evicts 'c'; the info still waits for 'd' and 'e'.
        assert_eq!(b.store(vec!['f'], &mut released), 1);
        assert!(released.is_empty());
        assert_eq!(take(&mut b, 5, &mut released), vec!['d', 'e']);
        assert_eq!(released, vec!["after e"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['f']);
    }

    #[test]
    fn an_info_after_new_events_were_evicted_follows_the_newest_event() {
        let mut b = buffer(2, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a'], &mut released);
        // 'a' and 'b', the oldest of the new events, make room.
        assert_eq!(b.store("bcd".chars().collect(), &mut released), 2);
        assert_eq!(b.store_info("after d"), None);
        assert_eq!(b.store(vec!['e'], &mut released), 1);
        assert!(released.is_empty());
        assert_eq!(take(&mut b, 5, &mut released), vec!['d']);
        assert_eq!(released, vec!["after d"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['e']);
    }

    #[test]
    fn an_unbounded_buffer_releases_infos_after_their_events() {
        let mut b: Buffer<char, &'static str> =
            Buffer::new(BufferSize::Unbounded, BufferKeep::Last);
        let mut released = Vec::new();
        assert_eq!(b.store(vec!['a', 'b'], &mut released), 0);
        assert_eq!(b.store_info("after b"), None);
        assert_eq!(b.store(vec!['c'], &mut released), 0);
        assert_eq!(take(&mut b, 5, &mut released), vec!['a', 'b']);
        assert_eq!(released, vec!["after b"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['c']);
    }

    #[test]
    fn infos_taken_out_by_pick_leave_the_others_in_place() {
        let mut b = buffer(10, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a'], &mut released);
        b.store_info("keep 1");
        b.store_info("pick 1");
        b.store(vec!['b'], &mut released);
        b.store_info("pick 2");
        b.store_info("keep 2");
        let mut picked = Vec::new();
        b.take_infos_where(|info| info.starts_with("pick"), &mut picked);
        assert_eq!(picked, vec!["pick 1", "pick 2"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['a']);
        assert_eq!(released, vec!["keep 1"]);
        assert_eq!(take(&mut b, 5, &mut released), vec!['b']);
        assert_eq!(released, vec!["keep 1", "keep 2"]);
    }

    #[test]
    fn put_back_restores_order_and_positions() {
        let mut b = buffer(10, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a', 'b', 'c'], &mut released);
        b.store_info("end");
        let taken = b.take(3);
        b.put_back(taken[1..].to_vec());
        b.release_due(&mut released);
        assert!(
            released.is_empty(),
            "the info waits for the events put back"
        );
        assert_eq!(take(&mut b, 5, &mut released), vec!['b', 'c']);
        assert_eq!(released, vec!["end"]);
    }

    #[test]
    fn putting_back_one_event_or_none_keeps_the_info_waiting_for_it() {
        let mut b = buffer(10, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a', 'b', 'c'], &mut released);
        b.store_info("end");
        let mut taken = b.take(3);
        b.put_back(taken.split_off(2));
        b.put_back(Vec::new());
        b.release_due(&mut released);
        assert!(released.is_empty(), "the info waits for 'c'");
        assert_eq!(take(&mut b, 5, &mut released), vec!['c']);
        assert_eq!(released, vec!["end"]);
    }
}
