//! The events a partition holds for its consumers, kept in the batches they arrived in.

use std::collections::VecDeque;

use crate::buffer::Overflow;

/// A queue of events that holds them in the batches they arrived in. Events join in
/// whole batches and leave in whole batches wherever a batch fits what is taken, so
/// that holding an event costs no copy of it: a queue of single events copied each
/// event in, and again out. Only a batch cut at the edge of what is taken has part of
/// it copied.
#[derive(Debug)]
pub(super) struct BatchQueue<T> {
    batches: VecDeque<Vec<T>>,
    /// Events in all the batches.
    len: usize,
}

impl<T> Default for BatchQueue<T> {
    fn default() -> Self {
        BatchQueue {
            batches: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> BatchQueue<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `batch` behind the events already queued.
    pub(super) fn push(&mut self, batch: Vec<T>) {
        if !batch.is_empty() {
            self.len += batch.len();
            self.batches.push_back(batch);
        }
    }

    /// Takes the `count` oldest events (all of them if fewer are queued), in order, as
    /// one batch. A batch that holds exactly what is taken leaves as it is.
    pub(super) fn take_front(&mut self, count: usize) -> Vec<T> {
        let count = count.min(self.len);
        let mut taken = Vec::new();
        while taken.len() < count {
            let Some(mut front) = self.batches.pop_front() else {
                break;
            };
            let wanted = count - taken.len();
            if front.len() > wanted {
                // Cut: the smaller part is copied into an allocation of its own, the
                // larger stays in the batch's (moved down when the front is cut off).
                let rest = if wanted * 2 >= front.len() {
                    front.split_off(wanted)
                } else {
                    let head: Vec<T> = front.drain(..wanted).collect();
                    std::mem::replace(&mut front, head)
                };
                self.batches.push_front(rest);
            }
            if taken.is_empty() {
                taken = front;
                // More batches to join: room for all of them at once, so that the
                // joins move each event once (growing by doubling moved them again).
                taken.reserve_exact(count - taken.len());
            } else {
                taken.append(&mut front);
            }
        }
        self.len -= taken.len();
        taken
    }

    /// Drops what `overflow` says goes, from the front (oldest) or the back (newest).
    pub(super) fn drop_overflow(&mut self, overflow: Overflow) {
        match overflow {
            Overflow::None => {}
            Overflow::Oldest(count) => drop(self.take_front(count)),
            Overflow::Newest(count) => {
                let mut left = count.min(self.len);
                self.len -= left;
                while left > 0 {
                    let Some(back) = self.batches.back_mut() else {
                        break;
                    };
                    if back.len() <= left {
                        left -= back.len();
                        self.batches.pop_back();
                    } else {
                        back.truncate(back.len() - left);
                        left = 0;
                    }
                }
            }
        }
    }

    /// Every event queued, oldest first (for tests).
    #[cfg(test)]
    pub(super) fn events(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.batches.iter().flatten().cloned().collect()
    }
}

impl<T> From<Vec<T>> for BatchQueue<T> {
    fn from(batch: Vec<T>) -> Self {
        let mut queue = BatchQueue::default();
        queue.push(batch);
        queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(batches: &[&[u32]]) -> BatchQueue<u32> {
        let mut queue = BatchQueue::default();
        for batch in batches {
            queue.push(batch.to_vec());
        }
        queue
    }

    #[test]
    fn a_batch_taken_whole_leaves_with_its_own_allocation() {
        let mut queue = BatchQueue::default();
        let batch = vec![1, 2, 3];
        let address = batch.as_ptr();
        queue.push(batch);
        queue.push(vec![4]);
        let taken = queue.take_front(3);
        assert_eq!(taken, [1, 2, 3]);
        assert_eq!(taken.as_ptr(), address, "not copied");
        assert_eq!((queue.len(), queue.events()), (1, vec![4]));
    }

    #[test]
    fn taking_cuts_a_batch_at_the_edge_and_joins_batches_in_order() {
        let mut queue = queue(&[&[1, 2, 3, 4], &[5, 6], &[7, 8, 9]]);
        assert_eq!(queue.take_front(3), [1, 2, 3], "most of a batch");
        assert_eq!(queue.take_front(1), [4], "what was left of it");
        assert_eq!(queue.take_front(1), [5], "a little of a batch");
        assert_eq!(queue.take_front(3), [6, 7, 8], "across two batches");
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.take_front(5), [9], "no more than is queued");
        assert!(queue.is_empty());
        assert_eq!(queue.take_front(2), Vec::<u32>::new());
    }

    #[test]
    fn batches_joined_into_one_delivery_take_one_allocation_of_its_size() {
        let mut queue = queue(&[&[1, 2], &[3, 4], &[5, 6], &[7]]);
        let taken = queue.take_front(7);
        assert_eq!(taken, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(taken.capacity(), 7, "grown once, to the delivery's size");
    }

    #[test]
    fn overflow_drops_the_oldest_or_the_newest_across_batches() {
        let mut oldest = queue(&[&[1, 2], &[3, 4, 5], &[6]]);
        oldest.drop_overflow(Overflow::Oldest(3));
        assert_eq!((oldest.len(), oldest.events()), (3, vec![4, 5, 6]));

        let mut newest = queue(&[&[1, 2], &[3, 4, 5], &[6]]);
        newest.drop_overflow(Overflow::Newest(3));
        assert_eq!((newest.len(), newest.events()), (3, vec![1, 2, 3]));
        newest.drop_overflow(Overflow::Newest(10));
        assert!(newest.is_empty() && newest.events().is_empty());

        let mut none = queue(&[&[1]]);
        none.drop_overflow(Overflow::None);
        assert_eq!(none.events(), [1]);
    }

    #[test]
    fn empty_batches_are_not_queued() {
        let mut queue = queue(&[&[], &[1], &[]]);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.take_front(1), [1]);
        assert!(queue.batches.is_empty());
    }
}
