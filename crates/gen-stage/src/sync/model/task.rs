//! A model of the tokio tasks the pool's workers run as: each on a loom thread of its
//! own, polled by loom's `block_on`. `abort` stops it at its next wait (dropping its
//! future there) as tokio's does, and awaiting the handle joins its thread.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use loom::future::AtomicWaker;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
struct Abort {
    asked: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug)]
pub(crate) struct JoinHandle<T> {
    abort: Arc<Abort>,
    /// `None` once joined.
    thread: Option<loom::thread::JoinHandle<Option<T>>>,
}

pub(crate) fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let abort = Arc::new(Abort::default());
    let asked = abort.clone();
    let thread = loom::thread::spawn(move || {
        let mut future = pin!(future);
        loom::future::block_on(poll_fn(|cx| {
            asked.waker.register_by_ref(cx.waker());
            if asked.asked.load(Ordering::SeqCst) {
                return Poll::Ready(None);
            }
            future.as_mut().poll(cx).map(Some)
        }))
    });
    JoinHandle {
        abort,
        thread: Some(thread),
    }
}

impl<T> JoinHandle<T> {
    pub(crate) fn abort(&self) {
        self.abort.asked.store(true, Ordering::SeqCst);
        self.abort.waker.wake();
    }
}

impl<T> Future for JoinHandle<T> {
    /// The task's output, `None` if it was aborted.
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<T>> {
        let output = self
            .thread
            .take()
            .and_then(|thread| thread.join().ok())
            .flatten();
        Poll::Ready(output)
    }
}

/// The model's scheduler switches threads at every step anyway.
pub(crate) async fn consume_budget() {}
