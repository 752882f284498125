//! Supervision: start stages, watch them, restart them when they stop.
//!
//! Two supervisors, for two kinds of children:
//!
//! - a [`Supervisor`] runs *stages* (and other supervisors), started from
//!   [`ChildSpec`]s that can start them again, and restarts them by a [`Strategy`];
//!   its handle is a [`SupervisorRef`]. Use it to keep a pipeline running through
//!   crashes, its stages finding each other again by name in a
//!   [`Registry`](crate::Registry).
//! - a [`ConsumerSupervisor`] is a consumer stage that runs one *task* per event
//!   (named by a [`TaskId`], counted in [`TaskCounts`]), with demand as the limit on
//!   tasks running at once. Use it for work per event that waits (a request, a file),
//!   where a stage per event would be too much.
//!
//! Both share the [`Restart`] types and [`Shutdown`] policies, and both can be
//! watched: [`ChildEvents`] streams each child's start, exit and restart.
//!
//! # Supervising stages
//!
//! A [`Supervisor`] starts its children in order, from [`ChildSpec`]s that can start
//! them again. When a child stops, its [`Restart`] type decides whether it is
//! restarted, and the [`Strategy`] decides which other children are restarted with it.
//! If children restart more than `max_restarts` times within a `period` (both set by
//! [`Supervisor::intensity`]), the supervisor
//! gives up: it stops every child and stops with [`ExitReason::TooManyRestarts`], for
//! its own supervisor to decide. Supervisors nest: a [`SupervisorRef`] is a child like
//! any other. Stopping a supervisor stops its children in reverse start order.
//!
//! ## A pipeline under rest-for-one
//!
//! Start the producer first and the consumers after it, subscribing by name. With
//! [`Strategy::RestForOne`], a crash of the producer restarts it and everything
//! started after it, and the restarted consumers find the new producer by name; a
//! crash of a consumer restarts only that consumer (and those after it).
//!
//! ```
//! use std::time::Duration;
//!
//! use gen_stage::supervision::{ChildSpec, Strategy, Supervisor};
//! use gen_stage::{
//!     BoxError, Consumer, ConsumerContext, Producer, ProducerContext, Registry,
//!     SubscribeOptions, SubscriptionTag,
//! };
//!
//! /// 0, 1, 2, ... on demand.
//! struct Counter(u64);
//!
//! impl Producer for Counter {
//!     type Event = u64;
//!     type Message = ();
//!
//!     async fn handle_demand(&mut self, demand: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
//!         let events = (self.0..self.0 + demand as u64).collect();
//!         self.0 += demand as u64;
//!         Ok(events)
//!     }
//! }
//!
//! /// Adds up what it receives.
//! struct Sum(u64);
//!
//! impl Consumer for Sum {
//!     type Event = u64;
//!     type Message = ();
//!
//!     async fn handle_events(&mut self, events: Vec<u64>, _: SubscriptionTag, _: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
//!         self.0 += events.iter().sum::<u64>();
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let registry = Registry::new();
//! // Each child's start function owns what it uses: it runs again at every restart.
//! let (names, lookups) = (registry.clone(), registry.clone());
//! let supervisor = Supervisor::new()
//!     .strategy(Strategy::RestForOne)
//!     .intensity(3, Duration::from_secs(5))
//!     .child(ChildSpec::new("producer", move || {
//!         gen_stage::producer(Counter(0)).name(&names, "numbers").start()
//!     }))
//!     .child(ChildSpec::new("consumer", move || {
//!         gen_stage::consumer(Sum(0))
//!             .subscribe_to_name(&lookups, "numbers", SubscribeOptions::new())
//!             .start()
//!     }))
//!     .start()
//!     .await?;
//! assert_eq!(supervisor.which_children().await?.len(), 2);
//! supervisor.stop(gen_stage::ExitReason::Shutdown).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A finite producer that finishes normally would be started again from scratch if it
//! were permanent: make finite stages [`Restart::Transient`], so that only failures
//! restart them.
//!
//! ## A pool of consumers
//!
//! Several consumers of one producer under [`Strategy::OneForOne`]: each restarts on
//! its own, and the producer's demand dispatcher balances the events between the live
//! ones. Events a consumer was handling when it crashed are lost (they were in its
//! hands); the producer does not resend them.
//!
//! ## Watching the children
//!
//! [`SupervisorRef::watch`] (or [`Supervisor::watch`], before the start) returns
//! [`ChildEvents`]: each child's start, exit (with its reason) and restart, as the
//! supervisor handles them, then the supervisor's own stop. A test or a topology awaits
//! "restarted" with it instead of polling [`SupervisorRef::which_children`]. A
//! [`ConsumerSupervisor`]'s tasks are watched the same way,
//! through [`ConsumerRef::watch`](crate::ConsumerRef::watch).
//!
//! [`ExitReason::TooManyRestarts`]: crate::ExitReason::TooManyRestarts

pub(crate) mod child;
mod consumer_supervisor;
mod events;
mod intensity;
mod supervisor;

pub use child::{ChildSpec, Restart, Shutdown, Supervised};
pub use consumer_supervisor::{ConsumerSupervisor, TaskCounts, TaskId, TaskMessage};
pub use events::{ChildEvent, ChildEvents, Missed};
pub use intensity::RestartIntensity;
pub use supervisor::{ChildInfo, Strategy, Supervisor, SupervisorError, SupervisorRef};
