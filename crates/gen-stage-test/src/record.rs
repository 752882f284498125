//! Shared, watchable records.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// How long the waits of [`Watch`] wait before they fail the test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A value shared between a stage and a test, with a way to wait for it to change.
pub struct Watch<V> {
    value: Arc<Mutex<V>>,
    version: watch::Sender<u64>,
}

impl<V> Clone for Watch<V> {
    fn clone(&self) -> Self {
        Watch {
            value: self.value.clone(),
            version: self.version.clone(),
        }
    }
}

impl<V: Default> Default for Watch<V> {
    fn default() -> Self {
        Self::new(V::default())
    }
}

impl<V> fmt::Debug for Watch<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl<V> Watch<V> {
    /// A watch over `value`.
    pub fn new(value: V) -> Self {
        Watch {
            value: Arc::new(Mutex::new(value)),
            version: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, V> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.value
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the value and wakes the waiters.
    pub fn update<R>(&self, change: impl FnOnce(&mut V) -> R) -> R {
        let result = change(&mut self.lock());
        self.version.send_modify(|version| *version += 1);
        result
    }

    /// Reads the value.
    pub fn read<R>(&self, read: impl FnOnce(&V) -> R) -> R {
        read(&self.lock())
    }

    /// Waits until `condition` holds, checking after every change.
    ///
    /// # Panics
    ///
    /// If it does not hold within [`WAIT_LIMIT`] of tokio time, so that a test whose
    /// stage is stuck or gone fails instead of hanging. With a paused clock
    /// (`start_paused`), that is as soon as every task waits and no timer is due.
    pub async fn wait_until(&self, mut condition: impl FnMut(&V) -> bool) {
        let mut changes = self.version.subscribe();
        let waiting = async {
            loop {
                changes.borrow_and_update();
                if self.read(&mut condition) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let waited = tokio::time::timeout(WAIT_LIMIT, waiting).await;
        assert!(
            waited.is_ok(),
            "waited {WAIT_LIMIT:?} and the condition never held: what should change it is stuck or gone"
        );
    }
}

impl<V: Clone> Watch<V> {
    /// A copy of the value.
    pub fn snapshot(&self) -> V {
        self.lock().clone()
    }
}

/// Values a stage recorded in order, shared with the test.
pub type Recorded<V> = Watch<Vec<V>>;

impl<V> Watch<Vec<V>> {
    /// Appends a value.
    pub fn push(&self, value: V) {
        self.update(|values| values.push(value));
    }

    /// How many values were recorded.
    pub fn len(&self) -> usize {
        self.read(Vec::len)
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.read(Vec::is_empty)
    }

    /// Waits until at least `count` values were recorded.
    pub async fn wait_for_len(&self, count: usize) {
        self.wait_until(|values| values.len() >= count).await;
    }
}

/// What a [`CollectingConsumer`](crate::CollectingConsumer) saw.
#[derive(Debug)]
pub struct Record<T> {
    /// Each `handle_events` call: the subscription and its events, in order.
    pub batches: Vec<(gen_stage::SubscriptionTag, Vec<T>)>,
    /// Subscriptions made, in order.
    pub subscriptions: Vec<gen_stage::SubscriptionTag>,
    /// `handle_cancel` calls, in order.
    pub cancels: Vec<(gen_stage::SubscriptionTag, gen_stage::CancelReason)>,
    /// The reason given to `terminate`, once it ran.
    pub terminated: Option<gen_stage::ExitReason>,
    /// Whether the consumer is gone (its stage stopped or was killed): nothing more
    /// will be recorded, and the waits below fail rather than wait forever.
    pub gone: bool,
}

impl<T> Default for Record<T> {
    fn default() -> Self {
        Record {
            batches: Vec::new(),
            subscriptions: Vec::new(),
            cancels: Vec::new(),
            terminated: None,
            gone: false,
        }
    }
}

impl<T: Clone> Watch<Record<T>> {
    /// Every event received, in order.
    pub fn events(&self) -> Vec<T> {
        self.read(|record| {
            record
                .batches
                .iter()
                .flat_map(|(_, batch)| batch.iter().cloned())
                .collect()
        })
    }

    /// The size of each batch, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.read(|record| {
            record
                .batches
                .iter()
                .map(|(_, batch)| batch.len())
                .collect()
        })
    }
}

impl<T> Watch<Record<T>> {
    /// How many events were received.
    pub fn event_count(&self) -> usize {
        self.read(|record| record.batches.iter().map(|(_, batch)| batch.len()).sum())
    }

    /// Waits until `condition` holds.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first: it will record nothing more.
    pub async fn wait_for(&self, what: &str, mut condition: impl FnMut(&Record<T>) -> bool) {
        self.wait_until(|record| condition(record) || record.gone)
            .await;
        if !self.read(&mut condition) {
            let reason = self.read(|record| record.terminated.clone());
            panic!("the consumer is gone ({reason:?}) before {what}");
        }
    }

    /// Waits until at least `count` events were received.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first.
    pub async fn wait_for_events(&self, count: usize) {
        let what = format!("{count} events");
        self.wait_for(&what, |record| {
            record.batches.iter().map(|(_, b)| b.len()).sum::<usize>() >= count
        })
        .await;
    }

    /// Waits until at least `count` subscriptions were made, and returns their tags.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first.
    pub async fn wait_for_subscriptions(&self, count: usize) -> Vec<gen_stage::SubscriptionTag> {
        let what = format!("{count} subscriptions");
        self.wait_for(&what, |record| record.subscriptions.len() >= count)
            .await;
        self.read(|record| record.subscriptions.clone())
    }

    /// Waits until at least `count` cancellations were handled.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first.
    pub async fn wait_for_cancels(
        &self,
        count: usize,
    ) -> Vec<(gen_stage::SubscriptionTag, gen_stage::CancelReason)> {
        let what = format!("{count} cancellations");
        self.wait_for(&what, |record| record.cancels.len() >= count)
            .await;
        self.read(|record| record.cancels.clone())
    }
}
