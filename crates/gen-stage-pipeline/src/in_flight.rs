//! A connector's messages in flight: fetched and not yet settled with the broker,
//! bounded by a budget every producer of one source shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ack::AckTag;
use crate::sync::lock;

/// The messages a connector fetched and has not settled yet, each under a tag of
/// its own, bounded by a budget shared by every producer of one source: a fetch
/// [reserves](InFlight::try_reserve) budget before it asks the broker, asks for no
/// more than it was granted, and [admits](Reservation::admit) what came; the
/// acknowledger [settles](InFlight::settle) each message by its tag, which frees its
/// budget for the next fetch.
///
/// `E` is what the connector needs to settle a message with its broker later (a
/// reply subject, a delivery tag, a row id and its attempt).
///
/// ```
/// use std::sync::Arc;
/// use gen_stage_pipeline::InFlight;
///
/// let in_flight: Arc<InFlight<&str>> = InFlight::new(2);
/// let mut reservation = in_flight.try_reserve(10).expect("budget is free");
/// assert_eq!(reservation.granted(), 2); // the budget, not the 10 asked for
/// let first = reservation.admit("a").expect("within the grant");
/// drop(reservation); // the unused rest of the grant is free again
/// assert_eq!(in_flight.len(), 1);
/// assert_eq!(in_flight.available(), 1);
/// assert_eq!(in_flight.settle(first), Some("a"));
/// assert_eq!(in_flight.settle(first), None); // settled once only
/// assert_eq!(in_flight.available(), 2);
/// ```
pub struct InFlight<E> {
    budget: usize,
    ledger: Mutex<Ledger<E>>,
    /// Woken when budget frees: a message settles, a grant is released.
    freed: Notify,
}

struct Ledger<E> {
    entries: HashMap<u64, E>,
    /// Budget granted to fetches under way, not yet admitted or released.
    reserved: usize,
    next_tag: u64,
}

impl<E> std::fmt::Debug for InFlight<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ledger = lock(&self.ledger);
        f.debug_struct("InFlight")
            .field("budget", &self.budget)
            .field("in_flight", &ledger.entries.len())
            .field("reserved", &ledger.reserved)
            .finish()
    }
}

impl<E> InFlight<E> {
    /// An empty ledger for at most `budget` messages in flight.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(InFlight {
            budget,
            ledger: Mutex::new(Ledger {
                entries: HashMap::new(),
                reserved: 0,
                next_tag: 0,
            }),
            freed: Notify::new(),
        })
    }

    /// The most messages in flight at once.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Messages admitted and not yet settled.
    pub fn len(&self) -> usize {
        lock(&self.ledger).entries.len()
    }

    /// Whether no message is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Budget neither in flight nor granted to a fetch under way.
    pub fn available(&self) -> usize {
        let ledger = lock(&self.ledger);
        self.budget
            .saturating_sub(ledger.entries.len() + ledger.reserved)
    }

    /// Grants up to `max` messages of the budget that is free, or `None` if none is.
    /// The grant is held until the [`Reservation`] admits messages or is dropped.
    pub fn try_reserve(self: &Arc<Self>, max: usize) -> Option<Reservation<E>> {
        let mut ledger = lock(&self.ledger);
        let free = self
            .budget
            .saturating_sub(ledger.entries.len() + ledger.reserved);
        let granted = free.min(max);
        if granted == 0 {
            return None;
        }
        ledger.reserved += granted;
        Some(Reservation {
            in_flight: self.clone(),
            granted,
        })
    }

    /// Waits until some budget is free (at once if some is). Cancel-safe: use it in
    /// a `select!` beside the connector's other reasons to wake.
    pub async fn budget_freed(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.available() > 0 {
                return;
            }
            freed.await;
        }
    }

    /// Takes the message `tag` out of flight and returns what was admitted with it,
    /// or `None` if it is not in flight (settled already, or never admitted).
    pub fn settle(&self, tag: AckTag) -> Option<E> {
        let entry = lock(&self.ledger).entries.remove(&tag.0);
        if entry.is_some() {
            self.freed.notify_waiters();
        }
        entry
    }

    /// Settles each of `tags` under one lock: what [`settle`](Self::settle) returns
    /// for each, in order.
    pub fn settle_all(&self, tags: impl IntoIterator<Item = AckTag>) -> Vec<Option<E>> {
        let settled: Vec<Option<E>> = {
            let mut ledger = lock(&self.ledger);
            tags.into_iter()
                .map(|tag| ledger.entries.remove(&tag.0))
                .collect()
        };
        if settled.iter().any(Option::is_some) {
            self.freed.notify_waiters();
        }
        settled
    }

    /// Calls `visit` with each message in flight, under the ledger's lock (keep it
    /// short: copy out what a lease renewal needs).
    pub fn for_each(&self, mut visit: impl FnMut(AckTag, &E)) {
        let ledger = lock(&self.ledger);
        for (&tag, entry) in &ledger.entries {
            visit(AckTag(tag), entry);
        }
    }
}

/// Budget granted to one fetch: admit what the broker delivered, at most
/// [`granted`](Reservation::granted) messages; dropping it frees what was not used.
pub struct Reservation<E> {
    in_flight: Arc<InFlight<E>>,
    granted: usize,
}

impl<E> std::fmt::Debug for Reservation<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("granted", &self.granted)
            .finish()
    }
}

impl<E> Reservation<E> {
    /// How many messages this grant may still admit: ask the broker for no more.
    pub fn granted(&self) -> usize {
        self.granted
    }

    /// Puts one delivered message in flight under a new tag, in place of one unit
    /// of the grant; gives the entry back if the grant is used up (the broker sent
    /// more than was asked for: release that message).
    pub fn admit(&mut self, entry: E) -> Result<AckTag, E> {
        if self.granted == 0 {
            return Err(entry);
        }
        let mut ledger = lock(&self.in_flight.ledger);
        let tag = ledger.next_tag;
        ledger.next_tag += 1;
        ledger.reserved -= 1;
        ledger.entries.insert(tag, entry);
        self.granted -= 1;
        Ok(AckTag(tag))
    }
}

impl<E> Drop for Reservation<E> {
    fn drop(&mut self) {
        if self.granted > 0 {
            lock(&self.in_flight.ledger).reserved -= self.granted;
            self.in_flight.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_never_exceed_the_budget_across_reservations() {
        let in_flight: Arc<InFlight<()>> = InFlight::new(5);
        let first = in_flight.try_reserve(3).expect("free");
        let second = in_flight.try_reserve(3).expect("free");
        assert_eq!((first.granted(), second.granted()), (3, 2));
        assert!(in_flight.try_reserve(1).is_none());
        drop(first);
        assert_eq!(in_flight.available(), 3);
    }

    #[test]
    fn a_grant_used_up_gives_the_entry_back() {
        let in_flight = InFlight::new(1);
        let mut reservation = in_flight.try_reserve(4).expect("free");
        let tag = reservation.admit(1).expect("granted");
        assert_eq!(reservation.admit(2), Err(2));
        drop(reservation);
        assert_eq!(in_flight.len(), 1);
        assert_eq!(in_flight.settle_all([tag, AckTag(99)]), [Some(1), None]);
        assert_eq!(in_flight.available(), 1);
    }

    #[test]
    fn tags_are_unique_across_fetches() {
        let in_flight = InFlight::new(4);
        let mut tags = Vec::new();
        for _ in 0..2 {
            let mut reservation = in_flight.try_reserve(2).expect("free");
            tags.push(reservation.admit(()).expect("granted"));
            tags.push(reservation.admit(()).expect("granted"));
            in_flight.settle(tags[tags.len() - 1]);
        }
        let mut unique = tags.clone();
        unique.dedup();
        assert_eq!(unique.len(), 4);
        let mut seen = Vec::new();
        in_flight.for_each(|tag, ()| seen.push(tag));
        seen.sort();
        assert_eq!(seen, [tags[0], tags[2]]);
    }

    #[tokio::test]
    async fn a_waiting_fetch_wakes_when_a_message_settles() {
        let in_flight = InFlight::new(1);
        let mut reservation = in_flight.try_reserve(1).expect("free");
        let tag = reservation.admit(()).expect("granted");
        drop(reservation);
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.budget_freed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        in_flight.settle(tag);
        waiting.await.expect("woken");
    }
}
