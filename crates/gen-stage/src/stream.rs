//! Consuming producers as a `futures::Stream`, with back-pressure.
//!
//! [`subscribe`] subscribes a new [`EventStream`] to a producer: the stream is a
//! consumer that lives in the task that polls it, not a stage of its own. It asks
//! `max_demand` once first polled, and asks again only as events are pulled out of it,
//! so a stream nobody polls holds its producers back. [`EventStream::subscribe_to`]
//! adds producers (their events interleave; each one's order is kept), and
//! [`EventStream::batches`] turns it into an [`EventBatches`], a stream of the `Vec`s
//! the producers delivered, cut as a consumer's `handle_events` would receive them.
//!
//! Use a stream at the edge of a pipeline: to read its output from `async` code, in a
//! test, or to feed it to a `futures` combinator. Inside a pipeline, a [`Consumer`]
//! stage has hooks, a mailbox and a supervisor; a stream has none of those.
//!
//! ```
//! use futures::StreamExt;
//! use gen_stage::SubscribeOptions;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), gen_stage::BoxError> {
//! let numbers = gen_stage::source::from_iter(1..=5u32).start().await?;
//! let mut events = gen_stage::stream::subscribe(&numbers, SubscribeOptions::new().max_demand(2))?;
//! let mut seen = Vec::new();
//! while let Some(event) = events.next().await {
//!     seen.push(event);
//! }
//! assert_eq!(seen, [1, 2, 3, 4, 5]);
//! // The producer finished normally: the stream ended without a reason to report.
//! assert_eq!(events.end_reason(), None);
//! assert!(numbers.stopped().await.is_normal());
//! # Ok(())
//! # }
//! ```
//!
//! The other way round, a `futures::Stream` made into a producer, is
//! [`source::from_stream`](crate::source::from_stream).
//!
//! [`Consumer`]: crate::Consumer

pub use crate::event_stream::{EventBatches, EventStream, subscribe};
