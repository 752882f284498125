//! What a stage's handles and its loop share about its life: requests that overtake
//! the mailbox (stop, drain, urgent cancellations, abandoning the work in hand), the
//! kill switch, the bound on user messages, and the reason the stage stops, told to
//! the calls it leaves unanswered.
//!
//! The mailbox is FIFO: a stop sent through it would wait behind every queued
//! delivery. Requests are put here instead, and a flag tells the loop, which reads it
//! between two messages and between two batches of a delivery.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use std::task::Context;

use futures::task::AtomicWaker;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A time limit beyond any a stage will see.
const FAR: Duration = Duration::from_secs(86400 * 365 * 30);

use crate::entry_bound::EntryBound;
use crate::exit::{CancelReason, ExitReason};
use crate::subscription::SubscriptionTag;

pub(crate) struct Lifecycle {
    /// Set while `requests` holds something for the loop.
    pending: AtomicBool,
    requests: Mutex<Requests>,
    /// Set once the work in hand is to be dropped (a stop that timed out).
    abandoned: AtomicBool,
    /// The stage's task, polled by the race with [`Lifecycle::abandoned`] at each of
    /// its wake-ups: an atomic register, no lock.
    abandon: AtomicWaker,
    abort: Abort,
    /// The stage's task, to tell a reply handle dropped by the stage's own code from
    /// one dropped elsewhere.
    task: OnceLock<tokio::task::Id>,
    /// Why the stage stops, once it is known, before its peers and callers are told.
    stopping: OnceLock<ExitReason>,
    /// The bound on user messages queued in the mailbox.
    pub(crate) entry: EntryBound,
    /// Handles user code holds (see [`crate::reachability`]).
    handles: AtomicUsize,
}

/// What the loop is asked to do ahead of its mailbox.
#[derive(Default)]
pub(crate) struct Requests {
    pub(crate) stop: Option<ExitReason>,
    /// A drain, and when it ends as a stop does (counted from the request).
    pub(crate) drain: Option<(ExitReason, Instant)>,
    /// Subscriptions whose producer ended abnormally: the consumer stops at once if
    /// its cancel mode says so; otherwise the cancellation waits its turn in the
    /// mailbox, behind the events sent before it.
    pub(crate) urgent: Vec<(SubscriptionTag, CancelReason)>,
    /// Reply handles the stage's code dropped without replying, held until the loop
    /// knows whether the stage stops, so that the callers learn why.
    pub(crate) replies: Vec<Box<dyn Send>>,
}

/// How to kill a stage's task: its abort handle once spawned, and a kill asked for
/// before that (a stage found by name while it starts), carried out when it is.
#[derive(Default)]
struct Abort {
    handle: OnceLock<AbortHandle>,
    asked: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn new(entry_capacity: usize) -> Self {
        Lifecycle {
            pending: AtomicBool::new(false),
            requests: Mutex::default(),
            abandoned: AtomicBool::new(false),
            abandon: AtomicWaker::new(),
            abort: Abort::default(),
            task: OnceLock::new(),
            stopping: OnceLock::new(),
            entry: EntryBound::new(entry_capacity),
            handles: AtomicUsize::new(0),
        }
    }

    /// Handles user code holds now.
    pub(crate) fn handles(&self) -> usize {
        self.handles.load(Ordering::Acquire)
    }

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// True if it was the last.
    pub(crate) fn remove_handle(&self) -> bool {
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn lock(&self) -> MutexGuard<'_, Requests> {
        // Each update leaves the requests whole: a poisoned lock is still consistent.
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn request(&self, add: impl FnOnce(&mut Requests)) {
        add(&mut self.lock());
        self.pending.store(true, Ordering::Release);
    }

    /// Asks the stage to stop before it handles anything more (the first reason wins).
    pub(crate) fn request_stop(&self, reason: ExitReason) {
        self.request(|requests| {
            requests.stop.get_or_insert(reason);
        });
    }

    /// Asks the stage to drain, then stop, within `timeout` from now.
    pub(crate) fn request_drain(&self, reason: ExitReason, timeout: Duration) {
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now + FAR);
        self.request(|requests| {
            requests.drain.get_or_insert((reason, deadline));
        });
    }

    /// Tells the stage that the producer of `tag` ended abnormally.
    pub(crate) fn urgent_cancel(&self, tag: SubscriptionTag, reason: CancelReason) {
        self.request(|requests| requests.urgent.push((tag, reason)));
    }

    /// Whether requests wait for the loop. One relaxed-cost load: read between every
    /// two messages and batches.
    pub(crate) fn has_requests(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    pub(crate) fn take_requests(&self) -> Requests {
        let mut requests = self.lock();
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *requests)
    }

    /// Asks the stage to drop the work in hand (its stop timed out).
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        self.abandon.wake();
    }

    /// Whether [`Self::abandon`] was called; if not, the task of `cx` is woken when it
    /// is. `registered` says whether this task registered its waker already: only the
    /// stage's own task polls this, and every waker of a task wakes that task, so one
    /// register (two atomic exchanges) is enough, and a poll after it costs one load.
    pub(crate) fn poll_abandoned(&self, cx: &Context<'_>, registered: &mut bool) -> bool {
        if self.abandoned.load(Ordering::Acquire) {
            return true;
        }
        if *registered {
            // `abandon` takes the waker only to wake it, after setting the flag.
            return false;
        }
        self.abandon.register(cx.waker());
        *registered = true;
        // Set between the load and the register: its wake may have found no waker.
        self.abandoned.load(Ordering::Acquire)
    }

    pub(crate) fn set_abort(&self, abort: AbortHandle) {
        let _ = self.task.set(abort.id());
        let _ = self.abort.handle.set(abort);
        // A kill asked for before the handle was set is carried out now. (Each side
        // stores, then reads the other's: at least one of them sees both.)
        if self.abort.asked.load(Ordering::SeqCst) {
            self.kill();
        }
    }

    pub(crate) fn kill(&self) {
        self.abort.asked.store(true, Ordering::SeqCst);
        if let Some(abort) = self.abort.handle.get() {
            abort.abort();
        }
    }

    /// Records why the stage stops (the first reason is kept).
    pub(crate) fn set_stopping(&self, reason: &ExitReason) {
        let _ = self.stopping.set(reason.clone());
    }

    /// Why the stage stops, once its loop knows.
    pub(crate) fn stopping(&self) -> Option<&ExitReason> {
        self.stopping.get()
    }

    /// Keeps a reply handle dropped without a reply until the loop knows whether the
    /// stage stops, when it is dropped on the stage's own task while the stage runs;
    /// otherwise gives it back, to be dropped now.
    pub(crate) fn defer_reply(&self, reply: Box<dyn Send>) -> Option<Box<dyn Send>> {
        let own_task =
            self.task.get().is_some() && tokio::task::try_id() == self.task.get().copied();
        if !own_task || self.stopping.get().is_some() {
            return Some(reply);
        }
        self.request(|requests| requests.replies.push(reply));
        None
    }
}
