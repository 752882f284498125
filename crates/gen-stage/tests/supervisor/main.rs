//! `Supervisor`: restarts and strategies (`restarts`), nesting, shutdown and start
//! failures (`shutdown`), and its children's events awaited through a watcher
//! (`watch`).
//!
//! The children are the kit's `CollectingConsumer`s: each test makes its workers with
//! `children::worker`, all filling one record, so that it sees the order in which
//! they start and stop across the supervisor's children and their restarts.

#[path = "../support/mod.rs"]
mod support;

mod children;
mod restarts;
mod shutdown;
mod watch;
