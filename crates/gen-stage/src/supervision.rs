//! Supervision: the [`Supervisor`](supervisor::Supervisor) of stages, the
//! [`ConsumerSupervisor`] of tasks, and what they share (children's specs and
//! shutdown policies).

pub(crate) mod child;
mod consumer_supervisor;
mod events;
mod intensity;
pub mod supervisor;

pub use consumer_supervisor::{ConsumerSupervisor, TaskCounts, TaskId, TaskMessage};
