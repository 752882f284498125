//! An in-memory queue to fetch from: the test double of a broker.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{Fetch, Fetched};

/// An in-memory queue that a [`FetchProducer`](super::FetchProducer) fetches from, and
/// that anyone holding a clone pushes into: the test double of a broker, and an example
/// of a [`Fetch`] source.
///
/// Clones share the queue. A fetch takes what is queued, up to its `max`, without
/// waiting; after a fetch that found the queue empty, [`Fetch::idle`] waits for the
/// next push (or the close), so the producer never polls an empty queue on a timer.
/// Items given back go to the front of the queue, in their order, to be fetched
/// first. Once [`closed`](MemorySource::close) and empty, the source has ended.
///
/// ```
/// use gen_stage::source::MemorySource;
/// use gen_stage::{ExitReason, SubscribeOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let queue = MemorySource::new();
/// queue.extend(["a", "b", "c"]);
/// queue.close();
/// let producer = gen_stage::source::from_fetch(queue.clone()).start().await?;
/// let letters = gen_stage::stream::subscribe(&producer, SubscribeOptions::new())?;
/// let letters: Vec<&str> = futures::StreamExt::collect(letters).await;
/// assert_eq!(letters, ["a", "b", "c"]);
/// assert_eq!(producer.stopped().await, ExitReason::Normal);
/// assert!(queue.is_empty());
/// # Ok(())
/// # }
/// ```
pub struct MemorySource<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Told of each push and of the close.
    changed: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
    given_back: usize,
}

impl<T> Clone for MemorySource<T> {
    fn clone(&self) -> Self {
        MemorySource {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Default for MemorySource<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for MemorySource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemorySource")
            .field("len", &state.queue.len())
            .field("closed", &state.closed)
            .field("given_back", &state.given_back)
            .finish()
    }
}

impl<T> MemorySource<T> {
    /// An empty, open queue.
    pub fn new() -> Self {
        MemorySource {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    closed: false,
                    given_back: 0,
                }),
                changed: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; if something did, the queue is whole.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` at the back.
    pub fn push(&self, item: T) {
        self.extend([item]);
    }

    /// Queues `items` at the back, in order.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        self.lock().queue.extend(items);
        self.shared.changed.notify_waiters();
    }

    /// Ends the source: once the queue is empty, a fetch says [`Fetched::End`]. Items
    /// pushed or given back after the close are still fetched first.
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.changed.notify_waiters();
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Takes every queued item, front first.
    pub fn drain(&self) -> Vec<T> {
        self.lock().queue.drain(..).collect()
    }

    /// How many items were given back so far, in all.
    pub fn given_back(&self) -> usize {
        self.lock().given_back
    }
}

impl<T: Send + 'static> Fetch for MemorySource<T> {
    type Item = T;
    type Error = Infallible;

    async fn fetch(&mut self, max: usize, into: &mut Vec<T>) -> Result<Fetched, Infallible> {
        let mut state = self.lock();
        let take = max.min(state.queue.len());
        into.extend(state.queue.drain(..take));
        if state.closed && state.queue.is_empty() {
            Ok(Fetched::End)
        } else {
            Ok(Fetched::More)
        }
    }

    async fn give_back(&mut self, items: Vec<T>) {
        let mut state = self.lock();
        state.given_back += items.len();
        for item in items.into_iter().rev() {
            state.queue.push_front(item);
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Waits until something is queued or the queue is closed.
    async fn idle(&mut self, _empty: u32) {
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the check: a push between the two still wakes it.
            changed.as_mut().enable();
            {
                let state = self.lock();
                if !state.queue.is_empty() || state.closed {
                    return;
                }
            }
            changed.await;
        }
    }
}
