//! Each event to the consumers of its partition.

use std::collections::{HashMap, VecDeque};

use batch_queue::BatchQueue;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::buffer::{Bound, Overflow};
use crate::dispatcher::{Deliveries, Dispatcher, Marker, Subscriber};
use crate::exit::BoxError;
use crate::options::{BufferKeep, BufferSize, DEFAULT_BUFFER_SIZE, SubscribeOptions};
use crate::subscription::{SubscriptionTag, TagMap};

/// The partition a consumer takes from a [`PartitionDispatcher`]; give it with
/// [`SubscribeOptions::with`](crate::SubscribeOptions::with). Its type must be the
/// dispatcher's key type; for partitions made by count any integer type will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partition<K>(pub K);

/// Why a [`PartitionDispatcher`] refused a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionError {
    /// The subscription named no partition (no `Partition<K>` option of the
    /// dispatcher's key type, given as text).
    Missing {
        /// The expected option type.
        expected: String,
    },
    /// The partition named does not exist (its key, as debug text).
    Unknown(String),
    /// The partition has a consumer already and the dispatcher does not share.
    Taken(String),
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionError::Missing { expected } => {
                write!(
                    f,
                    "subscribing to a partition dispatcher requires a {expected} option"
                )
            }
            PartitionError::Unknown(key) => write!(f, "unknown partition {key}"),
            PartitionError::Taken(key) => write!(f, "partition {key} is already taken"),
        }
    }
}

impl std::error::Error for PartitionError {}

struct PartitionState<T> {
    /// `(tag, demand)`, most demand first.
    consumers: Vec<(SubscriptionTag, usize)>,
    /// Events waiting for this partition's consumers, in the batches they came in.
    queue: BatchQueue<T>,
    /// Events that have left `queue` (sent, or dropped from its front), ever.
    left_queue: u64,
    /// The last ask of the partition's consumers: a batch smaller than this may be
    /// held back while more mail waits (see [`PartitionDispatcher`]'s docs).
    last_ask: usize,
}

/// Moves events from the front of the iterator to their partitions' batches until
/// `demand` of them have been placed (a discarded event takes no demand), and returns
/// how many were placed. One call per batch: the user's hash is inlined in the loop
/// over the events rather than called through a pointer for each of them (routing is
/// this dispatcher's per-event cost).
type Route<T> = Box<dyn Fn(&mut std::vec::IntoIter<T>, usize, &mut [Vec<T>]) -> usize + Send>;

/// A [`Route`] from a function that gives one event's partition index, or [`DISCARD`].
fn route_each<T>(route: impl Fn(&T) -> usize + Send + 'static) -> Route<T> {
    Box::new(move |events, demand, batches| {
        let mut placed = 0;
        // Rounds of as many events as the demand left could place: the loop over a
        // round's events checks no demand (a discarded event takes none, so a round
        // with discards leaves demand for another).
        loop {
            let round = (demand - placed).min(events.len());
            if round == 0 {
                return placed;
            }
            let mut discarded = 0;
            let mut place = |event: T| match route(&event) {
                DISCARD => discarded += 1,
                index => batches[index].push(event),
            };
            if round == events.len() {
                // The usual case: demand covers the whole batch.
                events.by_ref().for_each(&mut place);
            } else {
                events.by_ref().take(round).for_each(&mut place);
            }
            placed += round - discarded;
        }
    })
}

/// The event has no partition (its hash returned `None`, or a key that is no partition,
/// which the route logs): it is discarded and counted.
const DISCARD: usize = usize::MAX;

fn unknown_partition(key: impl fmt::Debug) -> usize {
    tracing::error!("partition dispatcher: no partition {key:?}; event discarded");
    DISCARD
}

/// Reads a partition number given as another integer type (`Partition(2)` is a
/// `Partition<i32>`).
fn numbered_partition(options: &SubscribeOptions) -> Option<usize> {
    fn read<N: Copy + TryInto<usize> + Send + Sync + 'static>(
        options: &SubscribeOptions,
    ) -> Option<usize> {
        options
            .extension::<Partition<N>>()
            .and_then(|&Partition(n)| n.try_into().ok())
    }
    read::<usize>(options)
        .or_else(|| read::<i32>(options))
        .or_else(|| read::<u32>(options))
        .or_else(|| read::<i64>(options))
        .or_else(|| read::<u64>(options))
        .or_else(|| read::<u16>(options))
        .or_else(|| read::<u8>(options))
        .or_else(|| read::<i16>(options))
        .or_else(|| read::<i8>(options))
        .or_else(|| read::<isize>(options))
}

/// Sends each event to the consumers of its partition.
///
/// A hash function maps each event to a partition, or to `None`: the event is then
/// discarded (counted in the stage's discards) and consumes no demand. Partitions are
/// numbered (`0..n`, see [`PartitionDispatcher::by_count`]) or named by keys of any
/// type ([`PartitionDispatcher::new`]). Each consumer names its partition with a
/// [`Partition`] option; a missing, unknown or taken partition refuses the
/// subscription with a [`PartitionError`].
///
/// Events for a partition whose consumers have no demand (or that has no consumer
/// yet) are held for it, in order, up to a limit per partition (10,000 by default);
/// beyond it the oldest are discarded (or the newest, with [`BufferKeep::First`]) and
/// counted. When a partition's consumer cancels, the events held for the partition
/// stay for the next consumer that takes it.
///
/// While more messages wait in the stage's mailbox (typically the asks of several
/// consumers), a partition's share of a dispatch that is smaller than its consumers'
/// last ask is held back, to go out with the shares of the next dispatches: each
/// consumer then gets fewer, larger batches, not a quarter of every ask (with four
/// partitions). What is held back goes out once it makes up that ask, after as many
/// dispatches in a row as there are partitions (2 to 16), when its consumer asks, or
/// when the mailbox is empty ([`Dispatcher::idle`]), whichever comes first.
///
/// By default a partition has one consumer, which receives its events in order.
/// [`PartitionDispatcher::shared`] lets several consumers take the same partition and
/// share its events by demand, as a pool (order then holds per consumer only).
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use gen_stage::dispatcher::{Partition, PartitionDispatcher};
/// use gen_stage::{BoxError, Consumer, ConsumerContext, DemandMode, SubscribeOptions, SubscriptionTag};
///
/// /// Keeps every event it receives where the caller can read them.
/// struct Collect(Arc<Mutex<Vec<u64>>>);
///
/// impl Consumer for Collect {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_events(&mut self, events: Vec<u64>, _: SubscriptionTag, _: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
///         self.0.lock().expect("not poisoned").extend(events);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // Even numbers to partition 0, odd ones to partition 1.
/// let producer = gen_stage::source::from_iter(0..20u64)
///     .dispatcher(PartitionDispatcher::by_count(2, |x: &u64| (*x % 2) as usize))
///     // Hold the events until both partitions have their consumer: a short source
///     // could otherwise run dry, and stop, before the second one subscribes.
///     .demand_mode(DemandMode::Accumulate)
///     .start()
///     .await?;
/// let mut consumers = Vec::new();
/// for partition in 0..2 {
///     let received = Arc::new(Mutex::new(Vec::new()));
///     let consumer = gen_stage::consumer(Collect(received.clone()))
///         .subscribe_to(&producer, SubscribeOptions::new().with(Partition(partition)))
///         .start()
///         .await?;
///     consumers.push((consumer, received));
/// }
/// producer.set_demand_mode(DemandMode::Forward)?;
/// for (consumer, _) in &consumers {
///     assert!(consumer.stopped().await.is_normal());
/// }
/// assert_eq!(*consumers[0].1.lock().expect("not poisoned"), vec![0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
/// assert_eq!(*consumers[1].1.lock().expect("not poisoned"), vec![1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct PartitionDispatcher<T, K> {
    keys: Vec<K>,
    index: HashMap<K, usize>,
    route: Route<T>,
    /// How a subscription names its partition.
    read_key: fn(&SubscribeOptions) -> Option<K>,
    partitions: Vec<PartitionState<T>>,
    /// This dispatch's events for each partition, by partition index (apart from the
    /// partitions' state, so that routing an event reaches its batch in one short step).
    batches: Vec<Vec<T>>,
    by_tag: TagMap<usize>,
    shared: bool,
    /// How many events each partition holds, and which go beyond.
    hold_limit: Bound,
    held: usize,
    /// The stage's markers, in order, each with the partitions that held events when
    /// it came and, for each, the value its `left_queue` reaches once those have gone.
    markers: VecDeque<(Marker, Vec<(usize, u64)>)>,
    /// Upstream demand asked and not yet dispatched.
    waiting: usize,
    /// Demand of cancelled consumers that was already asked upstream.
    owed: usize,
    /// Dispatches in a row that held events back while more mail waited.
    holding_back: usize,
}

impl<T, K: fmt::Debug> fmt::Debug for PartitionDispatcher<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionDispatcher")
            .field("partitions", &self.keys)
            .field("shared", &self.shared)
            .field("held", &self.held)
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> PartitionDispatcher<T, usize> {
    /// Partitions `0..count`; `hash` returns an event's partition (a number out of
    /// range discards the event, with an error logged).
    pub fn by_count(count: usize, hash: impl Fn(&T) -> usize + Send + 'static) -> Self {
        let mut dispatcher = Self::build(
            (0..count).collect(),
            route_each(move |event| match hash(event) {
                partition if partition < count => partition,
                partition => unknown_partition(partition),
            }),
        );
        dispatcher.read_key = numbered_partition;
        dispatcher
    }

    /// Partitions `0..count`, each event going to the partition of its hash (a fixed
    /// hash: the same event always goes to the same partition, in every run of one
    /// build; the standard library does not promise the same hash across Rust
    /// releases, so a partitioning that must outlive a build should use
    /// [`PartitionDispatcher::by_count`] with a hash of its own).
    pub fn hashed(count: usize) -> Self
    where
        T: Hash,
    {
        Self::by_count(count, move |event| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            event.hash(&mut hasher);
            (hasher.finish() % count.max(1) as u64) as usize
        })
    }
}

impl<T: Send + 'static, K> PartitionDispatcher<T, K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// Partitions named by `keys`; `hash` returns an event's partition, or `None` to
    /// discard it. A key that is not a partition discards the event, with an error
    /// logged.
    pub fn new(
        keys: impl IntoIterator<Item = K>,
        hash: impl Fn(&T) -> Option<K> + Send + 'static,
    ) -> Self {
        let keys: Vec<K> = keys.into_iter().collect();
        let lookup: HashMap<K, usize> = keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        Self::build(
            keys,
            route_each(move |event| match hash(event) {
                None => DISCARD,
                Some(key) => match lookup.get(&key) {
                    Some(&index) => index,
                    None => unknown_partition(key),
                },
            }),
        )
    }

    fn build(keys: Vec<K>, route: Route<T>) -> Self {
        let index = keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        let partitions = keys
            .iter()
            .map(|_| PartitionState {
                consumers: Vec::new(),
                queue: BatchQueue::default(),
                left_queue: 0,
                last_ask: 0,
            })
            .collect();
        let batches = keys.iter().map(|_| Vec::new()).collect();
        PartitionDispatcher {
            keys,
            index,
            route,
            read_key: |options| {
                options
                    .extension::<Partition<K>>()
                    .map(|Partition(key)| key.clone())
            },
            partitions,
            batches,
            by_tag: TagMap::default(),
            shared: false,
            hold_limit: Bound::new(
                BufferSize::Bounded(DEFAULT_BUFFER_SIZE),
                BufferKeep::default(),
            ),
            held: 0,
            markers: VecDeque::new(),
            waiting: 0,
            owed: 0,
            holding_back: 0,
        }
    }

    /// Lets several consumers take the same partition and share its events by demand.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Holds at most `limit` events per partition, keeping the first or the last
    /// (default 10,000, keep the last).
    pub fn hold_limit(mut self, limit: usize, keep: BufferKeep) -> Self {
        self.hold_limit = Bound::new(BufferSize::Bounded(limit), keep);
        self
    }
}

/// The most dispatches in a row that may hold events back.
const MAX_HOLDING_BACK: usize = 16;

impl<T, K> PartitionDispatcher<T, K> {
    /// Sends what every partition held back while more mail waited, as far as its
    /// consumers' demand allows.
    fn release_held_back(&mut self, deliveries: &mut Deliveries<T>) {
        self.holding_back = 0;
        for partition in &mut self.partitions {
            let before = partition.queue.len();
            partition.deliver(deliveries);
            self.held -= before - partition.queue.len();
        }
    }

    /// Gives back, in order, the markers whose events have all left their partitions'
    /// queues: a marker waits for the events held before it, not for those held for
    /// a lagging partition since.
    fn release_markers(&mut self, deliveries: &mut Deliveries<T>) {
        while let Some((_, waits)) = self.markers.front() {
            let partitions = &self.partitions;
            if !waits
                .iter()
                .all(|&(index, position)| partitions[index].left_queue >= position)
            {
                break;
            }
            if let Some((marker, _)) = self.markers.pop_front() {
                deliveries.release(marker);
            }
        }
    }
}

fn insert_by_demand(
    consumers: &mut Vec<(SubscriptionTag, usize)>,
    tag: SubscriptionTag,
    demand: usize,
) {
    let position = consumers
        .iter()
        .position(|&(_, other)| other < demand)
        .unwrap_or(consumers.len());
    consumers.insert(position, (tag, demand));
}

impl<T> PartitionState<T> {
    /// Hands the new batch as it is to the consumer with the most demand, when nothing
    /// is held before it and that consumer can take all of it (the usual case): the
    /// events are not copied again. False if the batch must queue instead.
    fn send_whole_batch(&mut self, batch: &mut Vec<T>, deliveries: &mut Deliveries<T>) -> bool {
        let count = batch.len();
        match self.consumers.first() {
            Some(&(tag, demand)) if self.queue.is_empty() && demand >= count => {
                deliveries.push(tag, std::mem::take(batch));
                self.charge_first(count);
                true
            }
            _ => false,
        }
    }

    /// Sends queued events, in order, to the consumers with demand, most demand first.
    fn deliver(&mut self, deliveries: &mut Deliveries<T>) {
        while !self.queue.is_empty() {
            let Some(&(tag, demand)) = self.consumers.first() else {
                break;
            };
            if demand == 0 {
                break;
            }
            let count = demand.min(self.queue.len());
            deliveries.push(tag, self.queue.take_front(count));
            self.left_queue += count as u64;
            self.charge_first(count);
        }
    }

    /// The consumer with the most demand (first) was sent `count` events: it moves to
    /// its new place in the demand order.
    fn charge_first(&mut self, count: usize) {
        let (tag, demand) = self.consumers.remove(0);
        insert_by_demand(&mut self.consumers, tag, demand - count);
    }
}

impl<T: Send + 'static, K> Dispatcher<T> for PartitionDispatcher<T, K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        _: &mut Deliveries<T>,
    ) -> Result<usize, BoxError> {
        let Some(key) = (self.read_key)(subscriber.options) else {
            let key = std::any::type_name::<K>();
            return Err(Box::new(PartitionError::Missing {
                expected: format!("gen_stage::dispatcher::Partition<{key}>"),
            }));
        };
        let Some(&index) = self.index.get(&key) else {
            return Err(Box::new(PartitionError::Unknown(format!("{key:?}"))));
        };
        let partition = &mut self.partitions[index];
        if !self.shared && !partition.consumers.is_empty() {
            return Err(Box::new(PartitionError::Taken(format!("{key:?}"))));
        }
        partition.consumers.push((subscriber.tag, 0));
        self.by_tag.insert(subscriber.tag, index);
        Ok(0)
    }

    fn cancel(&mut self, tag: SubscriptionTag, _: &mut Deliveries<T>) -> usize {
        let Some(index) = self.by_tag.remove(&tag) else {
            return 0;
        };
        let consumers = &mut self.partitions[index].consumers;
        if let Some(position) = consumers.iter().position(|&(t, _)| t == tag) {
            let (_, demand) = consumers.remove(position);
            self.owed = self.owed.saturating_add(demand);
        }
        0
    }

    fn ask(
        &mut self,
        tag: SubscriptionTag,
        demand: usize,
        deliveries: &mut Deliveries<T>,
    ) -> usize {
        let Some(&index) = self.by_tag.get(&tag) else {
            return 0;
        };
        let partition = &mut self.partitions[index];
        partition.last_ask = demand;
        if let Some(position) = partition.consumers.iter().position(|&(t, _)| t == tag) {
            let (_, current) = partition.consumers.remove(position);
            insert_by_demand(
                &mut partition.consumers,
                tag,
                current.saturating_add(demand),
            );
        }
        let before = partition.queue.len();
        partition.deliver(deliveries);
        self.held -= before - partition.queue.len();
        if !self.markers.is_empty() {
            self.release_markers(deliveries);
        }
        let already_asked = self.owed.min(demand);
        self.owed -= already_asked;
        let upstream = demand - already_asked;
        self.waiting = self.waiting.saturating_add(upstream);
        upstream
    }

    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        // Room for an even share in each partition's batch, so that pushes rarely grow.
        let share = events.len() / self.partitions.len().max(1) + 1;
        for batch in &mut self.batches {
            batch.reserve(share);
        }
        let mut events = events.into_iter();
        let before = events.len();
        // Only as many events as upstream demand covers are routed: those past it stay
        // for a later dispatch.
        let placed = (self.route)(&mut events, self.waiting, &mut self.batches);
        self.waiting -= placed;
        // Demand of cancelled consumers already asked upstream (`owed`) is part of
        // `waiting`: once it has arrived, it is owed no longer.
        self.owed = self.owed.min(self.waiting);
        // Events without a partition: they took no demand.
        deliveries.discard(before - events.len() - placed);
        let leftovers: Vec<T> = events.collect();
        let may_hold_back = deliveries.more_mail_waiting()
            && self.holding_back < self.partitions.len().clamp(2, MAX_HOLDING_BACK);
        let mut held_back = false;
        for (partition, batch) in self.partitions.iter_mut().zip(&mut self.batches) {
            if batch.is_empty() {
                continue;
            }
            let hold_back =
                may_hold_back && partition.queue.len() + batch.len() < partition.last_ask;
            if !hold_back && partition.send_whole_batch(batch, deliveries) {
                continue;
            }
            held_back |= hold_back;
            let before = partition.queue.len();
            partition.queue.push(std::mem::take(batch));
            if !hold_back {
                partition.deliver(deliveries);
            }
            let overflow = self.hold_limit.overflow(0, partition.queue.len());
            partition.queue.drop_overflow(overflow);
            if let Overflow::Oldest(dropped) = overflow {
                // Dropped from the front: they have left the queue.
                partition.left_queue += dropped as u64;
            }
            // Held beyond the limit: they took demand, which stays used.
            deliveries.discard_taken(overflow.count());
            self.held = self.held + partition.queue.len() - before;
        }
        if held_back {
            self.holding_back += 1;
        } else if self.holding_back > 0 {
            self.release_held_back(deliveries);
        }
        if !self.markers.is_empty() {
            self.release_markers(deliveries);
        }
        leftovers
    }

    fn held(&self) -> usize {
        self.held
    }

    fn idle(&mut self, deliveries: &mut Deliveries<T>) {
        if self.holding_back > 0 {
            self.release_held_back(deliveries);
            if !self.markers.is_empty() {
                self.release_markers(deliveries);
            }
        }
    }

    /// The marker waits for the events each partition holds now, or comes back at
    /// once when none holds any.
    fn queue_marker(&mut self, marker: Marker, deliveries: &mut Deliveries<T>) {
        let waits: Vec<(usize, u64)> = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.queue.is_empty())
            .map(|(index, p)| (index, p.left_queue + p.queue.len() as u64))
            .collect();
        self.markers.push_back((marker, waits));
        self.release_markers(deliveries);
    }
}

mod batch_queue;
#[cfg(test)]
mod tests;
