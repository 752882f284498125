//! The synchronization primitives the worker pool coordinates through, in one place so
//! that its model check can swap them.
//!
//! In every ordinary build these are the std, tokio and futures types themselves, so
//! the pool pays nothing for the check. Under `RUSTFLAGS="--cfg loom"` the pool's unit
//! tests instead see loom's models (threads, atomics, locks, wakers) and the small
//! models in `sync/model` of what loom lacks (tokio's `Notify`, task spawn and
//! abort), and `supervision/consumer_supervisor/pool/loom_tests.rs` explores their interleavings,
//! as tokio's own `src/loom` module lets tokio's tests do.

#[cfg(not(all(test, loom)))]
pub(crate) use futures::task::AtomicWaker;
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(all(test, loom)))]
pub(crate) use tokio::sync::Notify;

/// Spawning and yielding, the pool's only contact with the runtime's tasks.
#[cfg(not(all(test, loom)))]
pub(crate) mod task {
    pub(crate) use tokio::task::coop::consume_budget;
    pub(crate) use tokio::task::{JoinHandle, spawn};
}

#[cfg(all(test, loom))]
mod model;

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(all(test, loom))]
pub(crate) use model::{AtomicBool, AtomicU64, AtomicWaker, Notify, Ordering, task};
