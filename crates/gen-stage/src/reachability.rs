//! Which stages user code can still reach; the others stop.
//!
//! The rule: stages joined by subscriptions keep running while user code can reach
//! any one of them, through a handle ([`StageRef`](crate::StageRef) clones a user
//! holds, a registry's entry, a supervisor's child, a builder or an
//! [`EventStream`](crate::stream::EventStream) that subscribes to it); once none of them can
//! be reached, every stage of that set stops with [`ExitReason::Unreachable`]. A
//! pipeline whose handles were all lost (an early return, a `?`) does not run on
//! for ever.
//!
//! Each stage counts the handles user code holds (its own, and those inside its
//! peers' subscription tables, do not count). A process-wide graph records the
//! stages and their subscriptions. When a stage's last handle goes, a subscription
//! ends, or a stage stops, the stages around it are looked at: if no stage of a
//! connected set has a handle, each is asked to check again, on its own task, and
//! stops if it still finds the set unreachable (a hook may have subscribed anew in
//! the meantime). These are rare events; the event path never touches the graph.
//!
//! [`ExitReason::Unreachable`]: crate::ExitReason::Unreachable

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::lifecycle::Lifecycle;
use crate::subscription::{StageId, SubscriptionTag};

/// Asks a stage to check whether it is still reachable (and wakes it).
pub(crate) type Poke = Box<dyn Fn() + Send + Sync>;

struct Node {
    life: Arc<Lifecycle>,
    poke: Poke,
    /// This stage's subscriptions, both sides: the stage at the other end.
    links: HashMap<SubscriptionTag, StageId>,
}

static GRAPH: LazyLock<Mutex<HashMap<StageId, Node>>> = LazyLock::new(Mutex::default);

fn graph() -> MutexGuard<'static, HashMap<StageId, Node>> {
    // Every update leaves the graph whole: a poisoned lock is still consistent.
    GRAPH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a stage that starts.
pub(crate) fn add_stage(id: StageId, life: Arc<Lifecycle>, poke: Poke) {
    let node = Node {
        life,
        poke,
        links: HashMap::new(),
    };
    graph().insert(id, node);
}

/// Forgets a stage that stopped; what was joined to it may now be unreachable.
pub(crate) fn remove_stage(id: StageId) {
    let mut graph = graph();
    let Some(node) = graph.remove(&id) else {
        return;
    };
    let neighbours: Vec<StageId> = node.links.values().copied().collect();
    for (tag, other) in &node.links {
        if let Some(other) = graph.get_mut(other) {
            other.links.remove(tag);
        }
    }
    poke_unreachable(&graph, &neighbours);
    drop(graph);
    // Dropped outside the lock: the poke holds a handle of the stage.
    drop(node);
}

/// Records the subscription `tag` of `consumer` to `producer`.
pub(crate) fn link(tag: SubscriptionTag, consumer: StageId, producer: StageId) {
    let mut graph = graph();
    if !graph.contains_key(&consumer) || !graph.contains_key(&producer) {
        return;
    }
    for (one, other) in [(consumer, producer), (producer, consumer)] {
        if let Some(node) = graph.get_mut(&one) {
            node.links.insert(tag, other);
        }
    }
}

/// Forgets the subscription `tag` of `consumer`; either end may now be unreachable.
pub(crate) fn unlink(tag: SubscriptionTag, consumer: StageId) {
    let mut graph = graph();
    let Some(producer) = graph
        .get_mut(&consumer)
        .and_then(|node| node.links.remove(&tag))
    else {
        return;
    };
    if let Some(node) = graph.get_mut(&producer) {
        node.links.remove(&tag);
    }
    poke_unreachable(&graph, &[consumer, producer]);
}

/// The last handle of `id` went away.
pub(crate) fn last_handle_dropped(id: StageId) {
    let graph = graph();
    poke_unreachable(&graph, &[id]);
}

/// Whether no stage joined to `id` (itself included) can be reached.
pub(crate) fn is_unreachable(id: StageId) -> bool {
    let graph = graph();
    graph.contains_key(&id) && component(&graph, id).is_some()
}

/// Asks every stage of each unreachable set around `starts` to check again.
fn poke_unreachable(graph: &HashMap<StageId, Node>, starts: &[StageId]) {
    let mut seen: HashSet<StageId> = HashSet::new();
    for &start in starts {
        if seen.contains(&start) || !graph.contains_key(&start) {
            continue;
        }
        if let Some(members) = component(graph, start) {
            for member in &members {
                if let Some(node) = graph.get(member) {
                    (node.poke)();
                }
            }
            seen.extend(members);
        }
    }
}

/// The stages joined to `start`, if none of them has a handle; `None` as soon as one
/// does.
fn component(graph: &HashMap<StageId, Node>, start: StageId) -> Option<Vec<StageId>> {
    let mut members = vec![start];
    let mut known = HashSet::from([start]);
    let mut next = 0;
    while let Some(&id) = members.get(next) {
        next += 1;
        let Some(node) = graph.get(&id) else {
            continue;
        };
        if node.life.handles() > 0 {
            return None;
        }
        for &other in node.links.values() {
            if known.insert(other) {
                members.push(other);
            }
        }
    }
    Some(members)
}
