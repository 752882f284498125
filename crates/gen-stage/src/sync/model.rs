//! What the pool's model check runs on in place of the real primitives: loom's atomics
//! and waker, made to keep the guarantees the pool relies on, and models of tokio's
//! `Notify` and tasks, which loom does not provide.

mod notify;
pub(crate) mod task;

use std::task::Waker;

pub(crate) use notify::Notify;
pub(crate) use std::sync::atomic::Ordering;

/// Loom models a `SeqCst` load or store as an `AcqRel` one, which would let it report
/// store-buffering outcomes that cannot happen (the pool's `draining` flag against a
/// worker's `current` task is such a pair: each side stores one, then loads the other).
/// A `SeqCst` fence on each side of a `SeqCst` access, which loom does model, restores
/// the single order that all of the pool's accesses (`SeqCst`, every one) share.
macro_rules! sequenced_atomic {
    ($name:ident, $value:ty) => {
        #[derive(Debug, Default)]
        pub(crate) struct $name(loom::sync::atomic::$name);

        impl $name {
            pub(crate) fn load(&self, order: Ordering) -> $value {
                sequenced(order, || self.0.load(order))
            }

            pub(crate) fn store(&self, value: $value, order: Ordering) {
                sequenced(order, || self.0.store(value, order))
            }
        }
    };
}

sequenced_atomic!(AtomicBool, bool);
sequenced_atomic!(AtomicU64, u64);

impl AtomicBool {
    pub(crate) fn new(value: bool) -> Self {
        Self(loom::sync::atomic::AtomicBool::new(value))
    }
}

fn sequenced<T>(order: Ordering, access: impl FnOnce() -> T) -> T {
    let fence = || {
        if order == Ordering::SeqCst {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
    };
    fence();
    let value = access();
    fence();
    value
}

/// `futures::task::AtomicWaker`'s interface over loom's model of it.
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

impl AtomicWaker {
    pub(crate) fn register(&self, waker: &Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}
