//! `ConsumerSupervisor`: one task per event under demand (`demand`), restarts of
//! failed tasks (`restarts`), the task API and shutdown policies (`tasks`), and its
//! tasks' events awaited through a watcher (`watch`). Its property tests are in
//! `consumer_supervisor_properties.rs`.
//!
//! The tasks are driven by the test through `jobs`.

#[path = "../support/mod.rs"]
mod support;

mod demand;
mod jobs;
mod restarts;
mod tasks;
mod watch;
