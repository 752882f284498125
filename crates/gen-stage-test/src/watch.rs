//! Values shared between a stage and a test, and waits on their changes.

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
