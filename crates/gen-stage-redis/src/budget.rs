//! The budget as the server sees it: entries read and not yet known to be settled
//! there. The pipeline's own count lets an entry go as its outcome is sent; this one
//! only once the server has answered, so a read never brings the consumer's pending
//! entries above the budget, even for the round trip of an outcome.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct ServerBudget {
    budget: usize,
    outstanding: AtomicUsize,
    freed: Notify,
}

impl ServerBudget {
    pub(crate) fn new(budget: usize) -> Self {
        ServerBudget {
            budget,
            outstanding: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Takes up to `max` of what is free, waiting until some is.
    pub(crate) async fn take(&self, max: usize) -> usize {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(taken) = self.try_take(max) {
                return taken;
            }
            freed.await;
        }
    }

    fn try_take(&self, max: usize) -> Option<usize> {
        let budget = self.budget;
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |outstanding| {
                let free = budget.saturating_sub(outstanding);
                (free > 0 && max > 0).then(|| outstanding + free.min(max))
            })
            .ok()
            .map(|before| budget.saturating_sub(before).min(max))
    }

    /// `entries` are settled at the server, or were never read.
    pub(crate) fn give(&self, entries: usize) {
        if entries == 0 {
            return;
        }
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |outstanding| {
                Some(outstanding.saturating_sub(entries))
            });
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_free_and_waits_until_some_is_given_back() {
        let budget = std::sync::Arc::new(ServerBudget::new(10));
        assert_eq!(budget.take(4).await, 4);
        assert_eq!(budget.take(20).await, 6);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(5).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        budget.give(3);
        assert_eq!(waiting.await.expect("took"), 3);
        assert_eq!(budget.try_take(1), None);
    }
}
