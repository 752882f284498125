//! Test kit for gen-stage: stages that record what they see, producers that follow a
//! script, and gates that hold a stage until the test lets it go.
//!
//! - [`CollectingConsumer`] records its batches, subscriptions, cancellations, starts
//!   and exits in a [`Record`]; it can panic, fail or stop on chosen events, and be
//!   cloned into a supervisor's `ChildSpec`, each incarnation filling one record.
//! - [`Relay`] is a producer-consumer that records what it passes on.
//! - [`Counter`] emits consecutive numbers exactly as demanded; [`ScriptedProducer`]
//!   emits what the test queues, and can refuse subscriptions.
//! - [`Gate`] holds a stage inside a hook; [`Watch`] and [`Recorded`] share values
//!   with the test and wait for them to change.
//!
//! Everything here synchronises explicitly: waiting for a condition wakes on each
//! change of the recorded state, never on a timer. A wait on a collecting consumer's
//! record fails (panics) once every consumer filling it is gone, and any wait fails
//! after [`WAIT_LIMIT`], rather than waiting forever.
//!
//! ```
//! use gen_stage::SubscribeOptions;
//! use gen_stage_test::{CollectingConsumer, Counter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), gen_stage::BoxError> {
//! let (counter, demands) = Counter::new(0).limit(10).recorded();
//! let producer = gen_stage::producer(counter).start().await?;
//! let (consumer, record) = CollectingConsumer::<u64>::new();
//! gen_stage::consumer(consumer)
//!     .subscribe_to(&producer, SubscribeOptions::new().max_demand(4).min_demand(2))
//!     .start()
//!     .await?;
//! record.wait_for_events(10).await;
//! assert_eq!(record.events(), (0..10).collect::<Vec<_>>());
//! assert_eq!(demands.snapshot()[0], 4);
//! # Ok(())
//! # }
//! ```

mod collecting;
mod counter;
mod gate;
mod record;
mod relay;
mod scripted;
mod watch;

pub use collecting::{CollectingConsumer, Request};
pub use counter::Counter;
pub use counter::LimitReached;
pub use gate::Gate;
pub use record::Record;
pub use relay::Relay;
pub use scripted::{ProducerRecord, Script, ScriptedProducer};
pub use watch::{Recorded, WAIT_LIMIT, Watch};
