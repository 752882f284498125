//! An in-memory queue with acknowledgements: the test double of a broker. It
//! redelivers retried and released messages, counting their attempts, and keeps
//! rejected ones as dead letters.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use gen_stage::source::{Fetch, FetchProducer, Fetched};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ack::{AckError, AckGroup, AckTag, Acknowledger, Outcome, Settled};
use crate::failure::Failure;
use crate::message::{Message, MessageId};
use crate::sync::lock;

/// A message the queue gave up on: rejected after its last attempt.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter<T> {
    /// The message's data.
    pub data: T,
    /// Its id in the queue.
    pub id: u64,
    /// How often it was delivered.
    pub attempts: u32,
    /// Why it failed last, if the pipeline said.
    pub failure: Option<Failure>,
}

/// One message the queue holds until it is settled.
struct Entry<T> {
    data: T,
    /// The attempt of its next (or current) delivery, from 1.
    attempt: u32,
}

struct State<T> {
    next_id: u64,
    /// Ids to deliver, in order.
    ready: VecDeque<u64>,
    /// Ids to deliver once due.
    delayed: BTreeSet<(Instant, u64)>,
    /// Every message not yet acked, rejected or terminated.
    entries: HashMap<u64, Entry<T>>,
    /// Ids delivered and not yet settled.
    in_flight: HashSet<u64>,
    /// Outcomes for ids that were not in flight: settled twice, or never delivered.
    stray: u64,
    dead: Vec<DeadLetter<T>>,
    /// Every outcome received for a message in flight, in order: its id, the
    /// attempt it settled, and the outcome.
    history: Vec<(u64, u32, Outcome)>,
    acked: u64,
    terminated: u64,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken whenever the state changes.
    changed: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }
}

/// An in-memory message queue for pipelines: push data in, and a pipeline's producer
/// ([`MemoryQueue::producer`]) delivers it as messages that the queue keeps until they
/// are settled.
///
/// - [`Outcome::Ack`] forgets a message; [`Outcome::Terminate`] too.
/// - [`Outcome::Retry`] delivers it again after its delay, with its attempt raised.
/// - [`Outcome::Release`] delivers it again at once, with its attempt raised.
/// - [`Outcome::Reject`] moves it to the [dead letters](MemoryQueue::dead_letters).
///
/// Delays follow tokio's clock: under `tokio::time::pause` they pass without sleeping.
///
/// ```
/// use gen_stage_pipeline::MemoryQueue;
///
/// let queue = MemoryQueue::new();
/// queue.push("a");
/// queue.extend(["b", "c"]);
/// assert_eq!(queue.unsettled(), 3);
/// ```
pub struct MemoryQueue<T> {
    shared: Arc<Shared<T>>,
    group: Arc<AckGroup>,
}

impl<T> Clone for MemoryQueue<T> {
    fn clone(&self) -> Self {
        MemoryQueue {
            shared: self.shared.clone(),
            group: self.group.clone(),
        }
    }
}

impl<T> fmt::Debug for MemoryQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("MemoryQueue")
            .field("unsettled", &state.entries.len())
            .field("acked", &state.acked)
            .field("dead", &state.dead.len())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> Default for MemoryQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + 'static> MemoryQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_id: 1,
                ready: VecDeque::new(),
                delayed: BTreeSet::new(),
                entries: HashMap::new(),
                in_flight: HashSet::new(),
                stray: 0,
                dead: Vec::new(),
                history: Vec::new(),
                acked: 0,
                terminated: 0,
                closed: false,
            }),
            changed: Notify::new(),
        });
        let group = AckGroup::new(QueueAcker(shared.clone()));
        MemoryQueue { shared, group }
    }

    /// Adds a message; returns its id.
    pub fn push(&self, data: T) -> u64 {
        let id = {
            let mut state = self.shared.lock();
            let id = state.next_id;
            state.next_id += 1;
            state.entries.insert(id, Entry { data, attempt: 1 });
            state.ready.push_back(id);
            id
        };
        self.shared.changed.notify_waiters();
        id
    }

    /// Adds messages, in order.
    pub fn extend(&self, data: impl IntoIterator<Item = T>) {
        for item in data {
            self.push(item);
        }
    }

    /// Says that nothing more will be pushed: once every message is settled for good,
    /// the producer ends.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
    }

    /// Messages pushed and not yet acked, rejected or terminated: waiting, delayed or
    /// in a pipeline.
    pub fn unsettled(&self) -> usize {
        self.shared.lock().entries.len()
    }

    /// Messages delivered and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight.len()
    }

    /// Outcomes the queue received for messages that were not in flight: a message
    /// settled twice, or one never delivered. Always 0 for a correct pipeline.
    pub fn stray_outcomes(&self) -> u64 {
        self.shared.lock().stray
    }

    /// Every outcome the queue received for a message in flight, in the order it
    /// received them: the message's id, the attempt the outcome settled, the outcome.
    /// What a test checks a pipeline's outcomes against.
    pub fn history(&self) -> Vec<(u64, u32, Outcome)> {
        self.shared.lock().history.clone()
    }

    /// Messages acked.
    pub fn acked(&self) -> u64 {
        self.shared.lock().acked
    }

    /// Messages terminated.
    pub fn terminated(&self) -> u64 {
        self.shared.lock().terminated
    }

    /// The messages rejected, in the order they were.
    pub fn dead_letters(&self) -> Vec<DeadLetter<T>> {
        self.shared.lock().dead.clone()
    }

    /// Waits until no message is left unsettled.
    pub async fn settled(&self) {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.unsettled() == 0 {
                return;
            }
            changed.await;
        }
    }

    /// A producer that delivers the queue's messages, for
    /// [`PipelineBuilder::producer`](crate::PipelineBuilder::producer).
    pub fn producer(&self) -> FetchProducer<MemoryFetch<T>> {
        FetchProducer::new(MemoryFetch(self.clone()))
    }
}

/// The [`Fetch`] source of a [`MemoryQueue`]'s producer.
#[derive(Debug)]
pub struct MemoryFetch<T>(MemoryQueue<T>);

impl<T: Clone + Send + 'static> Fetch for MemoryFetch<T> {
    type Item = Message<T>;
    type Error = Infallible;

    async fn fetch(
        &mut self,
        max: usize,
        into: &mut Vec<Message<T>>,
    ) -> Result<Fetched, Infallible> {
        let queue = &self.0;
        loop {
            let changed = queue.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_due = {
                let mut state = queue.shared.lock();
                let now = Instant::now();
                while let Some(&(due, id)) = state.delayed.first() {
                    if due > now {
                        break;
                    }
                    state.delayed.pop_first();
                    state.ready.push_back(id);
                }
                while into.len() < max {
                    let Some(id) = state.ready.pop_front() else {
                        break;
                    };
                    let Some(entry) = state.entries.get(&id) else {
                        continue;
                    };
                    let message = Message::new(entry.data.clone(), queue.group.handle(AckTag(id)))
                        .with_attempt(entry.attempt)
                        .with_id(MessageId::Number(id));
                    state.in_flight.insert(id);
                    into.push(message);
                }
                if !into.is_empty() {
                    return Ok(Fetched::More);
                }
                if state.closed && state.entries.is_empty() {
                    return Ok(Fetched::End);
                }
                state.delayed.first().map(|&(due, _)| due)
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    async fn give_back(&mut self, messages: Vec<Message<T>>) {
        {
            let mut state = self.0.shared.lock();
            for message in messages.into_iter().rev() {
                let (_, _, handle) = message.into_parts();
                let id = handle.into_tag().0;
                state.in_flight.remove(&id);
                state.ready.push_front(id);
            }
        }
        self.0.shared.changed.notify_waiters();
    }

    // `fetch` waits for messages itself, and never comes back empty.
    async fn idle(&mut self, _empty: u32) {}
}

/// Settles the queue's messages.
struct QueueAcker<T>(Arc<Shared<T>>);

impl<T: Send + 'static> Acknowledger for QueueAcker<T> {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        {
            let mut state = self.0.lock();
            let now = Instant::now();
            for Settled {
                tag,
                outcome,
                failure,
                ..
            } in settled
            {
                let id = tag.0;
                if !state.in_flight.remove(&id) {
                    state.stray += 1;
                    continue;
                }
                let attempt = state.entries.get(&id).map_or(0, |entry| entry.attempt);
                state.history.push((id, attempt, outcome));
                match outcome {
                    Outcome::Ack => {
                        if state.entries.remove(&id).is_some() {
                            state.acked += 1;
                        }
                    }
                    Outcome::Terminate => {
                        if state.entries.remove(&id).is_some() {
                            state.terminated += 1;
                        }
                    }
                    Outcome::Reject => {
                        if let Some(entry) = state.entries.remove(&id) {
                            state.dead.push(DeadLetter {
                                data: entry.data,
                                id,
                                attempts: entry.attempt,
                                failure,
                            });
                        }
                    }
                    Outcome::Retry { after } => {
                        if let Some(entry) = state.entries.get_mut(&id) {
                            entry.attempt += 1;
                            if after.is_zero() {
                                state.ready.push_back(id);
                            } else {
                                state.delayed.insert((now + after, id));
                            }
                        }
                    }
                    Outcome::Release => {
                        if let Some(entry) = state.entries.get_mut(&id) {
                            entry.attempt += 1;
                            state.ready.push_back(id);
                        }
                    }
                }
            }
        }
        self.0.changed.notify_waiters();
        Ok(())
    }
}
