//! A model of `tokio::sync::Notify`, as much of it as the pool uses, built on loom's
//! lock so that loom explores it: `notify_one` wakes the oldest waiting `Notified`, or
//! stores one permit when none waits; a `Notified` waits from its `enable` (or first
//! poll) and takes a stored permit then; one dropped after `notify_one` chose it passes
//! the notification on, as tokio's does.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use loom::sync::{Mutex, MutexGuard};

#[derive(Debug, Default)]
pub(crate) struct Notify {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    permit: bool,
    next_id: u64,
    /// The enabled `Notified`s not yet chosen, oldest first, with their wakers once
    /// polled.
    waiting: VecDeque<(u64, Option<Waker>)>,
    /// Those chosen by a `notify_one`, not yet polled since.
    chosen: Vec<u64>,
}

impl State {
    /// Chooses the oldest waiting `Notified` (its waker, to wake once the lock is
    /// released), or stores a permit.
    fn notify_one(&mut self) -> Option<Waker> {
        let Some((id, waker)) = self.waiting.pop_front() else {
            self.permit = true;
            return None;
        };
        self.chosen.push(id);
        waker
    }
}

impl Notify {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn notify_one(&self) {
        let waker = self.lock().notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            stage: Stage::New,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Notified<'a> {
    notify: &'a Notify,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    New,
    Waiting(u64),
    Done,
}

impl Notified<'_> {
    /// Starts waiting (taking a stored permit if there is one); true if notified.
    pub(crate) fn enable(self: Pin<&mut Self>) -> bool {
        let this = self.get_mut();
        if this.stage == Stage::New {
            let mut state = this.notify.lock();
            if std::mem::take(&mut state.permit) {
                this.stage = Stage::Done;
            } else {
                let id = state.next_id;
                state.next_id += 1;
                state.waiting.push_back((id, None));
                this.stage = Stage::Waiting(id);
            }
        }
        this.stage == Stage::Done
    }
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.as_mut().enable();
        let this = self.get_mut();
        let Stage::Waiting(id) = this.stage else {
            return Poll::Ready(());
        };
        let mut state = this.notify.lock();
        if let Some(at) = state.chosen.iter().position(|chosen| *chosen == id) {
            state.chosen.swap_remove(at);
            this.stage = Stage::Done;
            return Poll::Ready(());
        }
        if let Some((_, waker)) = state.waiting.iter_mut().find(|(waiting, _)| *waiting == id) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Stage::Waiting(id) = self.stage else {
            return;
        };
        let mut state = self.notify.lock();
        state.waiting.retain(|(waiting, _)| *waiting != id);
        let Some(at) = state.chosen.iter().position(|chosen| *chosen == id) else {
            return;
        };
        state.chosen.swap_remove(at);
        let passed_on = state.notify_one();
        drop(state);
        if let Some(waker) = passed_on {
            waker.wake();
        }
    }
}
