//! The producer buffer: events that have no demand yet, the info messages queued
//! behind them, and what an accumulating producer stashes until it forwards again; and
//! [`Bound`], the one rule by which whatever holds events for later keeps them within
//! a size.

use std::collections::VecDeque;

use crate::options::{BufferKeep, BufferSize};

/// How many events a holder keeps, and which go when more arrive than fit: the rule of
/// the producer buffer, of an accumulating producer's stash (counted with the buffer)
/// and of the events a partition dispatcher holds for each partition.
///
/// Keeping the first, the newcomers that do not fit are refused; keeping the last, the
/// oldest make room for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    size: BufferSize,
    keep: BufferKeep,
}

/// What a [`Bound`] drops, counted from one end of the events held, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Everything fits.
    None,
    /// The oldest this many go ([`BufferKeep::Last`]).
    Oldest(usize),
    /// The newest this many go ([`BufferKeep::First`]): never more than just arrived.
    Newest(usize),
}

impl Bound {
    pub(crate) fn new(size: BufferSize, keep: BufferKeep) -> Self {
        Bound { size, keep }
    }

    /// What goes when `incoming` events join `held` ones.
    pub(crate) fn overflow(self, held: usize, incoming: usize) -> Overflow {
        let BufferSize::Bounded(capacity) = self.size else {
            return Overflow::None;
        };
        let excess = held.saturating_add(incoming).saturating_sub(capacity);
        match self.keep {
            _ if excess == 0 => Overflow::None,
            BufferKeep::First => Overflow::Newest(excess.min(incoming)),
            BufferKeep::Last => Overflow::Oldest(excess),
        }
    }
}

impl Overflow {
    /// How many events go.
    pub(crate) fn count(self) -> usize {
        match self {
            Overflow::None => 0,
            Overflow::Oldest(count) | Overflow::Newest(count) => count,
        }
    }

    /// Drops what goes from `events`, oldest first.
    fn apply<T>(self, events: &mut VecDeque<T>) {
        match self {
            Overflow::None => {}
            Overflow::Oldest(count) => drop(events.drain(..count.min(events.len()))),
            Overflow::Newest(count) => events.truncate(events.len().saturating_sub(count)),
        }
    }
}

/// What an accumulating producer keeps until it forwards again, in order.
#[derive(Debug)]
pub(crate) enum Stashed<T, M> {
    Demand(usize),
    Events(Vec<T>),
    /// An info message, held behind the events stashed before it as behind buffered
    /// ones.
    Info(M),
}

/// Events waiting for demand, in order, with info messages pinned between them, and
/// the stash of an accumulating producer.
///
/// An info message is released once every event buffered before it has left the buffer
/// (taken for dispatch or discarded). Events stashed are never older than those
/// buffered: the buffer goes out first, and [`Bound`] counts both.
#[derive(Debug)]
pub(crate) struct Buffer<T, M> {
    events: VecDeque<T>,
    bound: Bound,
    /// `(position, message)`: released once `removed >= position`.
    infos: VecDeque<(u64, M)>,
    /// Events ever appended.
    added: u64,
    /// Events ever removed from the front (taken or discarded).
    removed: u64,
    stash: VecDeque<Stashed<T, M>>,
    /// Events in `stash`.
    stashed: usize,
}

impl<T, M> Buffer<T, M> {
    pub(crate) fn new(size: BufferSize, keep: BufferKeep) -> Self {
        Buffer {
            events: VecDeque::new(),
            bound: Bound::new(size, keep),
            infos: VecDeque::new(),
            added: 0,
            removed: 0,
            stash: VecDeque::new(),
            stashed: 0,
        }
    }

    /// Events currently buffered (not counting the stash).
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Events currently stashed.
    pub(crate) fn stashed(&self) -> usize {
        self.stashed
    }

    /// Appends events, discarding per the bound. Info messages whose events were all
    /// discarded are moved to `released`. Returns how many events were discarded.
    pub(crate) fn store(&mut self, incoming: Vec<T>, released: &mut Vec<M>) -> usize {
        let overflow = self.bound.overflow(self.events.len(), incoming.len());
        self.added += incoming.len() as u64;
        if self.events.is_empty() {
            // The batch becomes the buffer, allocation and all: nothing is copied.
            self.events = VecDeque::from(incoming);
        } else {
            // Copied in one move (the standard library extends from a `Vec` in bulk).
            self.events.extend(incoming);
        }
        match overflow {
            Overflow::None => {}
            Overflow::Oldest(count) => self.drop_oldest(count, released),
            Overflow::Newest(count) => {
                overflow.apply(&mut self.events);
                self.added -= count as u64;
            }
        }
        overflow.count()
    }

    /// Drops the oldest `count` buffered events, releasing the info messages behind them.
    fn drop_oldest(&mut self, count: usize, released: &mut Vec<M>) {
        let count = count.min(self.events.len());
        Overflow::Oldest(count).apply(&mut self.events);
        self.removed += count as u64;
        self.release_due(released);
    }

    /// Keeps events emitted while accumulating, behind everything stashed, within the
    /// bound (counting the buffer): keeping the last, the buffer's oldest go first, then
    /// the stash's, then the newcomers'. Info messages whose events were all discarded
    /// are moved to `released`. Returns how many events were discarded.
    pub(crate) fn stash(&mut self, mut incoming: Vec<T>, released: &mut Vec<M>) -> usize {
        let overflow = self
            .bound
            .overflow(self.events.len() + self.stashed, incoming.len());
        match overflow {
            Overflow::None => {}
            Overflow::Newest(count) => incoming.truncate(incoming.len() - count),
            Overflow::Oldest(count) => {
                let from_buffer = count.min(self.events.len());
                self.drop_oldest(from_buffer, released);
                let mut left = count - from_buffer;
                for item in &mut self.stash {
                    if left == 0 {
                        break;
                    }
                    if let Stashed::Events(old) = item {
                        let cut = left.min(old.len());
                        old.drain(..cut);
                        self.stashed -= cut;
                        left -= cut;
                    }
                }
                incoming.drain(..left.min(incoming.len()));
            }
        }
        if !incoming.is_empty() {
            self.stashed += incoming.len();
            self.stash.push_back(Stashed::Events(incoming));
        }
        overflow.count()
    }

    /// Stashes upstream demand, in order with the events stashed.
    pub(crate) fn stash_demand(&mut self, demand: usize) {
        if demand > 0 {
            self.stash.push_back(Stashed::Demand(demand));
        }
    }

    /// Takes the stash out, in order, for the stage to replay.
    pub(crate) fn take_stash(&mut self) -> VecDeque<Stashed<T, M>> {
        self.stashed = 0;
        std::mem::take(&mut self.stash)
    }

    /// Queues an info message behind everything buffered or stashed, or gives it back
    /// when nothing is (it can be delivered at once).
    pub(crate) fn store_info(&mut self, message: M) -> Option<M> {
        // Events emitted while accumulating are stashed, not buffered: the info waits
        // in the stash behind them, and is replayed in order when forwarding again.
        let behind_stash = self
            .stash
            .iter()
            .any(|stashed| !matches!(stashed, Stashed::Demand(_)));
        if behind_stash {
            self.stash.push_back(Stashed::Info(message));
            return None;
        }
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
        self.removed += count as u64;
        // Events move in bulk, never one at a time, unless a few are taken from the
        // front of many.
        if count == self.events.len() {
            // All of them: the buffer's allocation leaves with them.
            Vec::from(std::mem::take(&mut self.events))
        } else if count >= self.events.len() / 2 {
            // Most of them: the rest is copied out into an allocation of its own.
            let rest = self.events.split_off(count);
            Vec::from(std::mem::replace(&mut self.events, rest))
        } else {
            self.events.drain(..count).collect()
        }
    }

    /// Takes out the info messages that `pick` picks, in order, whatever is buffered or
    /// stashed before them.
    pub(crate) fn take_infos_where(&mut self, pick: impl Fn(&M) -> bool, into: &mut Vec<M>) {
        let infos = std::mem::take(&mut self.infos);
        for (position, message) in infos {
            if pick(&message) {
                into.push(message);
            } else {
                self.infos.push_back((position, message));
            }
        }
        let stash = std::mem::take(&mut self.stash);
        for stashed in stash {
            match stashed {
                Stashed::Info(message) if pick(&message) => into.push(message),
                other => self.stash.push_back(other),
            }
        }
    }

    /// Puts events that could not be dispatched back at the front, in order.
    pub(crate) fn put_back(&mut self, events: Vec<T>) {
        self.removed -= events.len() as u64;
        if events.len() > self.events.len() {
            // The larger part keeps its place: the buffer's events join the ones put
            // back, in one move.
            let mut front = VecDeque::from(events);
            front.append(&mut self.events);
            self.events = front;
        } else {
            for event in events.into_iter().rev() {
                self.events.push_front(event);
            }
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
    fn a_batch_stored_and_taken_whole_keeps_its_allocation() {
        let mut b = Buffer::<u32, &str>::new(BufferSize::Bounded(100), BufferKeep::Last);
        let batch: Vec<u32> = (0..10).collect();
        let address = batch.as_ptr();
        assert_eq!(b.store(batch, &mut Vec::new()), 0);
        let taken = b.take(10);
        assert_eq!(taken, (0..10).collect::<Vec<_>>());
        assert_eq!(taken.as_ptr(), address, "not copied in or out");
    }

    #[test]
    fn most_of_the_buffer_taken_leaves_with_its_allocation_the_rest_stays_in_order() {
        let mut b = Buffer::<u32, &str>::new(BufferSize::Bounded(100), BufferKeep::Last);
        let batch: Vec<u32> = (0..10).collect();
        let address = batch.as_ptr();
        b.store(batch, &mut Vec::new());
        let taken = b.take(7);
        assert_eq!(
            (taken.as_slice(), taken.as_ptr()),
            ([0, 1, 2, 3, 4, 5, 6].as_slice(), address)
        );
        assert_eq!(b.take(1), [7], "a few from the front of more");
        assert_eq!(b.take(5), [8, 9]);
    }

    #[test]
    fn events_put_back_go_in_front_in_order_whichever_part_is_larger() {
        let mut b = Buffer::<u32, &str>::new(BufferSize::Bounded(100), BufferKeep::Last);
        b.store((0..10).collect(), &mut Vec::new());
        let taken = b.take(8);
        // More put back than is left: the buffer's two events join them.
        b.put_back(taken[3..].to_vec());
        assert_eq!(b.take(3), [3, 4, 5]);
        // Fewer put back than is left.
        b.put_back(vec![5]);
        assert_eq!(b.take(100), [5, 6, 7, 8, 9]);
        assert_eq!(b.len(), 0);
        // Into an empty buffer, then after more events.
        b.put_back(vec![1, 2]);
        b.store(vec![3], &mut Vec::new());
        assert_eq!(b.take(100), [1, 2, 3]);
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

    fn stashed_events(b: &mut Buffer<char, &'static str>) -> Vec<char> {
        let mut events = Vec::new();
        for item in b.take_stash() {
            if let Stashed::Events(stashed) = item {
                events.extend(stashed);
            }
        }
        events
    }

    #[test]
    fn a_bound_refuses_newcomers_keeping_the_first_and_drops_the_oldest_keeping_the_last() {
        let first = Bound::new(BufferSize::Bounded(5), BufferKeep::First);
        let last = Bound::new(BufferSize::Bounded(5), BufferKeep::Last);
        assert_eq!(first.overflow(3, 2), Overflow::None);
        assert_eq!(first.overflow(4, 3), Overflow::Newest(2));
        // Over the bound already: only newcomers are refused.
        assert_eq!(first.overflow(7, 1), Overflow::Newest(1));
        assert_eq!(last.overflow(4, 3), Overflow::Oldest(2));
        assert_eq!(last.overflow(7, 1), Overflow::Oldest(3));
        let unbounded = Bound::new(BufferSize::Unbounded, BufferKeep::Last);
        assert_eq!(unbounded.overflow(usize::MAX, 1), Overflow::None);
        assert_eq!(Overflow::Oldest(2).count() + Overflow::None.count(), 2);
    }

    #[test]
    fn the_stash_counts_the_buffer_and_keeping_the_last_drops_the_buffer_first() {
        let mut b = buffer(4, BufferKeep::Last);
        let mut released = Vec::new();
        b.store(vec!['a', 'b'], &mut released);
        b.store_info("after b");
        assert_eq!(b.stash(vec!['c'], &mut released), 0);
        b.stash_demand(2);
        // Two too many: 'a' and 'b' go, and the info behind them is released.
        assert_eq!(b.stash(vec!['d', 'e', 'f'], &mut released), 2);
        assert_eq!(released, vec!["after b"]);
        assert_eq!((b.len(), b.stashed()), (0, 4));
        // Then the stash's oldest, then the newcomers' oldest.
        assert_eq!(b.stash(vec!['g', 'h', 'i', 'j', 'k'], &mut released), 5);
        assert_eq!(b.stashed(), 4);
        assert_eq!(stashed_events(&mut b), vec!['h', 'i', 'j', 'k']);
        assert_eq!(b.stashed(), 0);
    }

    #[test]
    fn the_stash_keeping_the_first_refuses_newcomers_only() {
        let mut b = buffer(3, BufferKeep::First);
        let mut released = Vec::new();
        b.store(vec!['a'], &mut released);
        assert_eq!(b.stash(vec!['b', 'c', 'd'], &mut released), 1);
        assert_eq!(b.stash(vec!['e'], &mut released), 1);
        assert_eq!(b.len(), 1);
        assert_eq!(stashed_events(&mut b), vec!['b', 'c']);
    }

    #[test]
    fn an_info_waits_behind_stashed_events_not_behind_stashed_demand() {
        let mut b = buffer(10, BufferKeep::Last);
        let mut released = Vec::new();
        b.stash_demand(3);
        b.stash_demand(0);
        assert_eq!(b.store_info("first"), Some("first"), "nothing to wait for");
        b.stash(vec!['a'], &mut released);
        assert_eq!(b.store_info("after a"), None);
        let mut picked = Vec::new();
        b.take_infos_where(|_| true, &mut picked);
        assert_eq!(picked, vec!["after a"]);
        let stash: Vec<_> = b.take_stash().into_iter().collect();
        assert!(matches!(
            &stash[..],
            [Stashed::Demand(3), Stashed::Events(events)] if events == &['a']
        ));
    }
}
