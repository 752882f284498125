//! What a supervisor tells its watchers: children started, exited, restarted.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::exit::ExitReason;

/// Something that happened to a supervisor's child, as [`ChildEvents`] reports it.
///
/// `Id` names the child: the [`ChildSpec`](super::child::ChildSpec) id (a `String`)
/// for a [`Supervisor`](crate::supervision::Supervisor)'s children, the
/// [`TaskId`](crate::supervision::TaskId) for a
/// [`ConsumerSupervisor`](crate::supervision::ConsumerSupervisor)'s tasks.
///
/// A child's events come in order: `Started`, then `Exited` each time it stops, each
/// followed by `Restarted` if it was started again. The supervisor's own end comes
/// last, after the exits of the children it stopped on its way out.
///
/// ```
/// use gen_stage::ExitReason;
/// use gen_stage::supervision::ChildEvent;
///
/// fn describe(event: &ChildEvent) -> String {
///     match event {
///         ChildEvent::Started { id } => format!("{id} started"),
///         ChildEvent::Exited { id, reason } => format!("{id} exited: {reason}"),
///         ChildEvent::Restarted { id } => format!("{id} restarted"),
///         ChildEvent::SupervisorStopped { reason } => format!("the supervisor stopped: {reason}"),
///         _ => String::from("something new"),
///     }
/// }
///
/// let event = ChildEvent::Exited { id: "db".to_string(), reason: ExitReason::Shutdown };
/// assert_eq!(describe(&event), "db exited: shutdown");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildEvent<Id = String> {
    /// The child started (at the supervisor's start, or a task a
    /// `ConsumerSupervisor` was given).
    Started {
        /// The child.
        id: Id,
    },
    /// The child stopped: it ended or failed by itself (`reason` says how), or the
    /// supervisor stopped it (a restart strategy, or the supervisor's own stop).
    Exited {
        /// The child.
        id: Id,
        /// Why it stopped. A task of a `ConsumerSupervisor` that succeeded exits
        /// with [`ExitReason::Normal`]; one aborted (`terminate_child`, or still
        /// running when the supervisor's shutdown time ran out) with
        /// [`ExitReason::Killed`].
        reason: ExitReason,
    },
    /// The child was started again after it exited.
    Restarted {
        /// The child.
        id: Id,
    },
    /// The supervisor stopped, with `reason`; its children had exited before. Nothing
    /// follows: the next [`ChildEvents::next`] returns `None`.
    SupervisorStopped {
        /// Why the supervisor stopped.
        reason: ExitReason,
    },
}

/// A watcher fell behind: this many events were dropped before it read them (the
/// oldest ones), as [`ChildEvents::next`] reports in place of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Missed(pub u64);

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missed {} child events", self.0)
    }
}

impl std::error::Error for Missed {}

/// The events of a supervisor's children, from the moment it was made (see
/// [`SupervisorRef::watch`](crate::supervision::SupervisorRef::watch) and
/// [`ConsumerRef::watch`](crate::ConsumerRef::watch)).
///
/// A watcher never holds its supervisor back: the supervisor keeps the events that not
/// every watcher has read in a buffer of bounded capacity (see
/// [`Supervisor::watch_capacity`](crate::supervision::Supervisor::watch_capacity)),
/// and a watcher that falls further behind loses the oldest ones, which
/// [`next`](ChildEvents::next) reports as [`Missed`] with their count before it goes
/// on with the ones that remain. Once the supervisor has stopped and its last events
/// are read, `next` returns `None`.
///
/// Awaiting a restart, without polling the supervisor:
///
/// ```
/// use gen_stage::supervision::{ChildEvent, ChildSpec, Supervisor};
/// use gen_stage::{BoxError, Consumer, ConsumerContext, ExitReason, SubscriptionTag};
///
/// /// Receives nothing; stands for a real stage.
/// struct Idle;
///
/// impl Consumer for Idle {
///     type Event = u64;
///     type Message = ();
///
///     async fn handle_events(&mut self, _: Vec<u64>, _: SubscriptionTag, _: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let (handles, mut started) = tokio::sync::mpsc::unbounded_channel();
/// let supervisor = Supervisor::new().child(ChildSpec::new("worker", move || {
///     let handles = handles.clone();
///     async move {
///         let stage = gen_stage::consumer(Idle).start().await?;
///         let _ = handles.send(stage.clone());
///         Ok(stage)
///     }
/// }));
/// // Watched before the start: the first event is the child's start.
/// let mut events = supervisor.watch();
/// let supervisor = supervisor.start().await?;
/// assert_eq!(events.next().await, Some(Ok(ChildEvent::Started { id: "worker".to_string() })));
///
/// let worker = started.recv().await.ok_or("no worker")?;
/// worker.stop(ExitReason::error("lost its connection")).await?;
/// match events.next().await {
///     Some(Ok(ChildEvent::Exited { id, reason })) => {
///         assert_eq!(id, "worker");
///         assert_eq!(reason.to_string(), "error: lost its connection");
///     }
///     other => panic!("expected the worker's exit, got {other:?}"),
/// }
/// assert_eq!(events.next().await, Some(Ok(ChildEvent::Restarted { id: "worker".to_string() })));
///
/// supervisor.stop(ExitReason::Shutdown).await?;
/// // Its last events: the worker stopped, then the supervisor; then the end.
/// while let Some(event) = events.next().await {
///     println!("{:?}", event?);
/// }
/// # Ok(())
/// # }
/// ```
pub struct ChildEvents<Id = String> {
    receiver: broadcast::Receiver<ChildEvent<Id>>,
}

impl<Id> fmt::Debug for ChildEvents<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildEvents")
            .field("unread", &self.receiver.len())
            .finish_non_exhaustive()
    }
}

impl<Id: Clone> ChildEvents<Id> {
    /// The next event: `Some(Ok(event))`, or `Some(Err(Missed(n)))` if this watcher
    /// fell so far behind that the `n` events after the last one it read were dropped
    /// (the next call returns the oldest event kept). `None` once the supervisor has
    /// stopped and every event it sent has been read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event is taken only when the future returns it, so `next` can
    /// be a branch of `tokio::select!`.
    pub async fn next(&mut self) -> Option<Result<ChildEvent<Id>, Missed>> {
        match self.receiver.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Err(Missed(missed))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The most events a supervisor keeps for its watchers, by default.
pub(crate) const DEFAULT_WATCH_CAPACITY: usize = 256;

/// The largest capacity a supervisor takes (more is taken as this).
pub(crate) const MAX_WATCH_CAPACITY: usize = 1 << 16;

/// A supervisor's side of its watchers: the channel is made when the first watcher
/// comes, and dropped when an event finds nobody watching, so a supervisor nobody
/// watches pays one branch per event and holds no buffer.
pub(crate) struct Announcer<Id> {
    state: Mutex<State<Id>>,
}

struct State<Id> {
    capacity: usize,
    channel: Channel<Id>,
}

enum Channel<Id> {
    /// Nobody watches.
    Idle,
    Open(broadcast::Sender<ChildEvent<Id>>),
    /// The supervisor has stopped: watchers made now end at once.
    Closed,
}

impl<Id> fmt::Debug for Announcer<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        let channel = match &state.channel {
            Channel::Idle => "idle",
            Channel::Open(_) => "open",
            Channel::Closed => "closed",
        };
        f.debug_struct("Announcer")
            .field("capacity", &state.capacity)
            .field("channel", &channel)
            .finish()
    }
}

/// Nothing panics while the lock is held (a send clones no user value), so a poisoned
/// state is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<Id: Clone> Default for Announcer<Id> {
    fn default() -> Self {
        Announcer {
            state: Mutex::new(State {
                capacity: DEFAULT_WATCH_CAPACITY,
                channel: Channel::Idle,
            }),
        }
    }
}

impl<Id: Clone> Announcer<Id> {
    /// Sets the capacity of the channel made for the next first watcher (taken
    /// between 1 and [`MAX_WATCH_CAPACITY`]).
    pub(crate) fn set_capacity(&self, capacity: usize) {
        lock(&self.state).capacity = capacity.clamp(1, MAX_WATCH_CAPACITY);
    }

    /// A new watcher: it sees the events announced from now on.
    pub(crate) fn watch(&self) -> ChildEvents<Id> {
        let mut state = lock(&self.state);
        let receiver = match &state.channel {
            Channel::Open(sender) => sender.subscribe(),
            Channel::Idle => {
                let (sender, receiver) = broadcast::channel(state.capacity);
                state.channel = Channel::Open(sender);
                receiver
            }
            Channel::Closed => broadcast::channel(1).1,
        };
        ChildEvents { receiver }
    }

    /// Sends the event `make` builds to the watchers, if there are any (only then is
    /// it built). Never waits. Inlined: a ConsumerSupervisor announces twice per task,
    /// and nobody watching must cost it a branch, not a call.
    #[inline]
    pub(crate) fn announce(&mut self, make: impl FnOnce() -> ChildEvent<Id>) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        send(&mut state.channel, make);
    }

    /// Whether someone may be watching (the channel is open).
    pub(crate) fn is_watched(&mut self) -> bool {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        matches!(state.channel, Channel::Open(_))
    }

    /// [`Announcer::announce`] through a shared reference (it takes the lock).
    pub(crate) fn announce_shared(&self, make: impl FnOnce() -> ChildEvent<Id>) {
        send(&mut lock(&self.state).channel, make);
    }

    /// The supervisor has stopped: its watchers end after the events sent so far, and
    /// those made from now on end at once.
    pub(crate) fn close(&self) {
        lock(&self.state).channel = Channel::Closed;
    }
}

#[inline]
fn send<Id>(channel: &mut Channel<Id>, make: impl FnOnce() -> ChildEvent<Id>) {
    if let Channel::Open(sender) = channel {
        if sender.send(make()).is_err() {
            // Every watcher is gone: free the buffer until the next one comes.
            *channel = Channel::Idle;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: u32) -> ChildEvent<u32> {
        ChildEvent::Started { id }
    }

    #[tokio::test]
    async fn an_event_nobody_watches_is_not_even_built() {
        let mut announcer = Announcer::<u32>::default();
        announcer.announce(|| panic!("built with no watcher"));
        announcer.announce_shared(|| panic!("built with no watcher"));
    }

    #[tokio::test]
    async fn a_watcher_sees_the_events_after_it_came_then_the_end() {
        let mut announcer = Announcer::default();
        let mut first = announcer.watch();
        announcer.announce(|| started(1));
        let mut second = announcer.watch();
        announcer.announce(|| started(2));
        announcer.close();
        assert_eq!(first.next().await, Some(Ok(started(1))));
        assert_eq!(first.next().await, Some(Ok(started(2))));
        assert_eq!(first.next().await, None);
        assert_eq!(second.next().await, Some(Ok(started(2))));
        assert_eq!(second.next().await, None);
        assert_eq!(announcer.watch().next().await, None, "made after the close");
    }

    #[tokio::test]
    async fn the_channel_is_freed_when_every_watcher_is_gone() {
        let mut announcer = Announcer::default();
        drop(announcer.watch());
        announcer.announce(|| started(1));
        assert!(matches!(lock(&announcer.state).channel, Channel::Idle));
        announcer.announce(|| panic!("built with no watcher"));
        let mut again = announcer.watch();
        announcer.announce(|| started(2));
        assert_eq!(again.next().await, Some(Ok(started(2))));
    }

    #[tokio::test]
    async fn a_watcher_past_the_capacity_is_told_how_many_it_missed() {
        let mut announcer = Announcer::default();
        announcer.set_capacity(4);
        let mut events = announcer.watch();
        for id in 0..10 {
            announcer.announce(|| started(id));
        }
        assert_eq!(events.next().await, Some(Err(Missed(6))));
        for id in 6..10 {
            assert_eq!(events.next().await, Some(Ok(started(id))));
        }
    }

    #[test]
    fn a_capacity_out_of_range_is_brought_into_it() {
        let announcer = Announcer::<u32>::default();
        announcer.set_capacity(0);
        assert_eq!(lock(&announcer.state).capacity, 1);
        announcer.set_capacity(usize::MAX);
        assert_eq!(lock(&announcer.state).capacity, MAX_WATCH_CAPACITY);
    }
}
