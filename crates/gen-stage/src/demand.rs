//! Consumer-side automatic demand: how incoming events are cut into batches and when
//! demand is asked again (GenStage's `split_batches`).

/// The automatic demand state of one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AutoDemand {
    /// Demand asked and not yet received.
    pending: usize,
    min: usize,
    max: usize,
}

/// One batch of events for `handle_events` and the demand to ask once it is handled.
pub(crate) struct Batch<T> {
    pub(crate) events: Vec<T>,
    pub(crate) ask_after: usize,
}

impl AutoDemand {
    /// A subscription that has just asked `max`.
    pub(crate) fn new(min: usize, max: usize) -> Self {
        debug_assert!(min < max);
        AutoDemand {
            pending: max,
            min,
            max,
        }
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Cuts `events` into batches of at most `max - min` events. Each batch says how
    /// much to ask after it is handled: after the batch that brings pending demand to
    /// `min` or below, the subscription is topped back up to `max`.
    ///
    /// Returns the batches and how many events exceeded the demand (0 unless the
    /// producer broke the protocol). A delivery that is one batch, the usual case,
    /// allocates nothing.
    ///
    /// Inlined, with the usual case handled here: its result is then not moved out of
    /// a call (callgrind, `credit_md1`: 20 instructions less per round trip).
    #[inline(always)]
    pub(crate) fn split<T>(&mut self, events: Vec<T>) -> (Batches<T>, usize) {
        if events.len() <= self.max - self.min {
            let mut excess = 0;
            let mut asked = self.pending;
            let ask_after = self.account(events.len(), &mut asked, &mut excess);
            return (Batches::one(events, ask_after), excess);
        }
        self.split_many(events)
    }

    /// [`Self::split`] for a delivery larger than one batch.
    fn split_many<T>(&mut self, mut events: Vec<T>) -> (Batches<T>, usize) {
        let step = self.max - self.min;
        let count = events.len();
        let mut excess = 0;
        // What was asked before this delivery, without the top-ups it triggers.
        let mut asked = self.pending;
        let mut asks = Vec::with_capacity(count.div_ceil(step));
        let mut remaining = count;
        while remaining > 0 {
            let size = remaining.min(step);
            remaining -= size;
            asks.push((size, self.account(size, &mut asked, &mut excess)));
        }
        // Cut from the back so that every event moves at most once.
        let mut batches = Vec::with_capacity(asks.len());
        for (index, &(size, ask_after)) in asks.iter().enumerate().rev() {
            // The first batch keeps the delivery's own allocation.
            let batch = if index == 0 {
                std::mem::take(&mut events)
            } else {
                events.split_off(events.len() - size)
            };
            batches.push(Batch {
                events: batch,
                ask_after,
            });
        }
        batches.reverse();
        (Batches::Many(batches.into_iter()), excess)
    }

    /// Accounts for a batch of `size` events; returns the ask that follows it.
    fn account(&mut self, size: usize, asked: &mut usize, excess: &mut usize) -> usize {
        let received = if size > *asked {
            *excess += size - *asked;
            std::mem::take(asked)
        } else {
            *asked -= size;
            size
        };
        let left = self.pending - received;
        if left <= self.min {
            self.pending = self.max;
            self.max - left
        } else {
            self.pending = left;
            0
        }
    }
}

/// The batches of one delivery, in order.
pub(crate) enum Batches<T> {
    One(Option<Batch<T>>),
    Many(std::vec::IntoIter<Batch<T>>),
}

impl<T> Batches<T> {
    /// A delivery that is one batch, followed by an ask of `ask_after` (0 with manual
    /// demand).
    pub(crate) fn one(events: Vec<T>, ask_after: usize) -> Self {
        Batches::One(Some(Batch { events, ask_after }))
    }
}

impl<T> ExactSizeIterator for Batches<T> {}

impl<T> Iterator for Batches<T> {
    type Item = Batch<T>;

    fn next(&mut self) -> Option<Batch<T>> {
        match self {
            Batches::One(batch) => batch.take(),
            Batches::Many(batches) => batches.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Batches::One(batch) => {
                let count = usize::from(batch.is_some());
                (count, Some(count))
            }
            Batches::Many(batches) => batches.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(demand: &mut AutoDemand, range: std::ops::Range<u32>) -> Vec<(u32, u32, usize)> {
        let (batches, excess) = demand.split(range.collect());
        assert_eq!(excess, 0);
        batches
            .into_iter()
            .map(|b| (b.events[0], *b.events.last().unwrap(), b.ask_after))
            .collect()
    }

    #[test]
    fn defaults_split_a_full_delivery_in_two_halves() {
        let mut demand = AutoDemand::new(500, 1000);
        // Each half brings pending demand to min (500), so each is followed by an ask.
        assert_eq!(
            shape(&mut demand, 0..1000),
            vec![(0, 499, 500), (500, 999, 500)]
        );
        assert_eq!(demand.pending(), 1000);
    }

    #[test]
    fn max_100_min_80_asks_after_every_batch_of_20() {
        let mut demand = AutoDemand::new(80, 100);
        let batches = shape(&mut demand, 0..100);
        assert_eq!(batches.len(), 5);
        assert!(batches.iter().all(|&(_, _, ask)| ask == 20));
    }

    #[test]
    fn max_100_min_20_follows_genstage() {
        let mut demand = AutoDemand::new(20, 100);
        assert_eq!(shape(&mut demand, 0..100), vec![(0, 79, 80), (80, 99, 0)]);
        assert_eq!(shape(&mut demand, 100..180), vec![(100, 179, 100)]);
        assert_eq!(
            shape(&mut demand, 180..280),
            vec![(180, 259, 80), (260, 279, 0)]
        );
    }

    #[test]
    fn max_1_min_0_asks_once_per_event() {
        let mut demand = AutoDemand::new(0, 1);
        assert_eq!(shape(&mut demand, 0..1), vec![(0, 0, 1)]);
    }

    #[test]
    fn small_deliveries_ask_after_the_batch_that_crosses_min() {
        // max 1000, min 750, deliveries of 100: the third brings pending demand to 700,
        // so 300 are asked after it, topping the subscription back up to 1000.
        let mut demand = AutoDemand::new(750, 1000);
        assert_eq!(shape(&mut demand, 0..100), vec![(0, 99, 0)]);
        assert_eq!(shape(&mut demand, 100..200), vec![(100, 199, 0)]);
        assert_eq!(shape(&mut demand, 200..300), vec![(200, 299, 300)]);
        assert_eq!(demand.pending(), 1000);
    }

    #[test]
    fn batches_know_how_many_are_left() {
        let mut one = Batches::one(vec![1], 0);
        assert_eq!(one.size_hint(), (1, Some(1)));
        one.next();
        assert_eq!(one.size_hint(), (0, Some(0)));
        let (mut many, _) = AutoDemand::new(0, 2).split(vec![1, 2, 3]);
        assert_eq!(many.size_hint(), (2, Some(2)));
        many.next();
        assert_eq!(many.size_hint(), (1, Some(1)));
    }

    #[test]
    fn excess_is_reported() {
        let mut demand = AutoDemand::new(0, 2);
        let (batches, excess) = demand.split(vec![1, 2, 3]);
        assert_eq!(excess, 1);
        assert_eq!(batches.map(|b| b.events.len()).sum::<usize>(), 3);
    }

    #[test]
    fn a_partial_over_delivery_counts_only_the_events_beyond_demand() {
        let mut demand = AutoDemand::new(0, 10);
        assert_eq!(shape(&mut demand, 0..6), vec![(0, 5, 0)]);
        // 4 asked, 7 received in one batch: 3 in excess, and the subscription is topped
        // back up to max.
        let (batches, excess) = demand.split((6..13).collect::<Vec<u32>>());
        assert_eq!(excess, 3);
        let batches: Vec<_> = batches.map(|b| (b.events.len(), b.ask_after)).collect();
        assert_eq!(batches, vec![(7, 10)]);
        assert_eq!(demand.pending(), 10);
    }

    #[test]
    fn the_excess_of_a_delivery_cut_in_batches_is_counted_once() {
        let mut demand = AutoDemand::new(2, 4);
        assert_eq!(shape(&mut demand, 0..1), vec![(0, 0, 0)]);
        // 3 asked, 7 received in batches of 2: the 4 beyond the 3 are in excess.
        let (batches, excess) = demand.split((1..8).collect::<Vec<u32>>());
        assert_eq!(excess, 4);
        assert_eq!(
            batches.map(|b| b.events.len()).collect::<Vec<_>>(),
            vec![2, 2, 2, 1]
        );
    }
}
