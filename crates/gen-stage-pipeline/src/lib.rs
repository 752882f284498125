//! Acknowledged message pipelines on [`gen_stage`], after Elixir's Broadway.
//!
//! A pipeline takes messages from one or more sources (a broker, a table, a queue in
//! memory), handles them concurrently in *processors*, groups them in *batchers*,
//! writes each batch out in a *batch processor*, and tells each source how every
//! message ended, only once it is done with it. A process that dies mid-way loses
//! nothing: the source still has every message it was not told about, and delivers it
//! again.
//!
//! ```text
//! [producer] ─┐                      ┌─> [batcher "db"] ──> [batch processor] ...
//! [producer] ─┼─> [processor] x N ───┤
//!             └─>                    └─> (no batcher: acknowledged after handle_message)
//! ```
//!
//! Demand flows back through every stage (gen-stage's back-pressure): a slow batch
//! processor holds its batcher back, which holds the processors back, which ask the
//! sources for no more than they can take.
//!
//! # Messages and their outcomes
//!
//! A [`Message`] carries the data, what the source says of it ([`Metadata`]: its
//! attempt, its id), and an [`AckHandle`]: the obligation to settle it in exactly one
//! [`Outcome`]:
//!
//! - handled: [`Outcome::Ack`];
//! - failed this time, delivered again after a delay: [`Outcome::Retry`];
//! - failed for good, sent to the source's dead-letter route: [`Outcome::Reject`];
//! - never to be delivered again, and sent nowhere: [`Outcome::Terminate`];
//! - not handled, left for the source to deliver again: [`Outcome::Release`].
//!
//! The pipeline settles messages for you: a message acknowledged after its last
//! callback succeeded, a failed one as the [`RetryPolicy`] says (retry with backoff,
//! then reject) unless [`Handler::handle_failed`] chooses. A message whose handle is
//! dropped without an outcome (a panic, a cancelled callback, a drain's deadline)
//! settles as [`PipelineBuilder::on_drop`] says, [`Outcome::Release`] by default,
//! never as a success, and is counted. Outcomes reach the source through its
//! [`Acknowledger`], many at a time.
//!
//! # Callbacks
//!
//! Implement [`Handler`]: `handle_message` for each message, and optionally
//! `prepare_messages`, `handle_batch` and `handle_failed`. The handler is shared by
//! every stage through `&self`: its fields are the callbacks' shared context.
//!
//! # Ordering
//!
//! What order holds, and what does not:
//!
//! - **Within one processor**, messages are handled in the order they arrived: one
//!   delivery at a time, its messages one after the other.
//! - **Across processors**, there is no order: each delivery goes to whichever
//!   processor asked for the most, and processors run at once.
//! - **With [`partition_by`](PipelineBuilder::partition_by)**, the messages of one
//!   key all go to the same processor, in the order their producer emitted them, and
//!   from it to their batcher in that order: a batch holds a key's messages in order.
//!   With more than one batch processor, a batcher also groups its batches by
//!   partition, and each batch goes to the batch processor of its partition: a key's
//!   batches are handled one after the other, in order.
//! - **Without `partition_by`**, batches go to a batcher's batch processors as they
//!   ask: with more than one, batches are handled out of order.
//! - **After a failure**, a retried message comes back from its source later (after
//!   its delay): messages of its key that came after it may be handled before it.
//! - **Outcomes** reach each acknowledger in the order they were settled, which is not
//!   the order of delivery: processors and batch processors settle at once. A source
//!   that can only commit in order (Kafka offsets, MQTT acknowledgements) keeps a
//!   watermark: it commits the contiguous prefix of what was settled, and holds the
//!   rest until the gap closes.
//!
//! # When a stage fails
//!
//! A callback's error, panic or timeout fails the messages it held, and the stage goes
//! on. A stage itself stops only for what happens outside the callbacks (a panic in
//! a `Drop` of your data, a producer's error): a producer is then restarted alone,
//! and a processor, batcher or batch processor is restarted with every stage after
//! the producers. What the stopped stages held settles as `on_drop` (never as a
//! success), so the source delivers it again. Restarts share one budget
//! ([`PipelineBuilder::max_restarts`]); past it, the pipeline stops and
//! [`Pipeline::failed`] says why. [`Pipeline::child_spec`] runs a pipeline under your
//! own supervisor.
//!
//! # Watching a pipeline
//!
//! [`Pipeline::snapshot`] shows every stage at once (demand, buffer, messages in
//! hand, busy share, rate over the last seconds) with the counts by outcome, the
//! restarts and the rate limit; [`Pipeline::counts`] reads the counts alone.
//! `tracing` spans cover the acknowledgements (`ack`, with the pipeline, the number of
//! messages and their counts per outcome).
//!
//! # Writing a connector
//!
//! A broker's connector is a [`gen_stage::source::Fetch`] whose items are
//! [`Message`]s, each holding a handle of an [`AckGroup`] whose [`Acknowledger`]
//! tells the broker the outcomes. Three pieces are shared by the project's
//! connectors and open to yours: [`InFlight`], the messages fetched and not settled
//! under a budget every producer of the source shares; [`Backoff`], the jittered wait
//! before a reconnection; and [`SourceHealth`], the connection's state in the
//! snapshot and the budget that [`PipelineBuilder::start`] checks against the
//! batchers' batch sizes.
//!
//! # A complete example
//!
//! Orders from an in-memory queue are parsed, written out in batches, and the bad
//! ones dead-lettered after three attempts:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use gen_stage::BoxError;
//! use gen_stage_pipeline::{
//!     Batch, BatchOutcome, BatcherOptions, Handler, MemoryQueue, Message, Pipeline,
//!     ProcessorContext, ProcessorOptions, RetryPolicy,
//! };
//!
//! #[derive(Default)]
//! struct Orders {
//!     /// Where the batches are written: a database in real life.
//!     written: Mutex<Vec<Vec<u64>>>,
//! }
//!
//! impl Handler for Orders {
//!     type Data = String;
//!
//!     async fn handle_message(&self, message: &mut Message<String>, _: &ProcessorContext) -> Result<(), BoxError> {
//!         let amount: u64 = message.data().trim().parse()?;
//!         message.set_data(amount.to_string());
//!         message.put_batcher("ledger");
//!         Ok(())
//!     }
//!
//!     async fn handle_batch(&self, batch: Batch<String>) -> BatchOutcome<String> {
//!         let amounts = batch.data().filter_map(|data| data.parse().ok()).collect();
//!         self.written.lock().expect("not poisoned").push(amounts);
//!         batch.done()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let queue = MemoryQueue::new();
//! queue.extend(["10", "20", "not a number", "30"].map(String::from));
//!
//! let orders = Arc::new(Orders::default());
//! let handler = Arc::clone(&orders);
//! let source = queue.clone();
//! let pipeline = Pipeline::builder(handler)
//!     .name("orders")
//!     .producer(move || source.producer())
//!     .processors(ProcessorOptions::new().concurrency(2))
//!     .batcher("ledger", BatcherOptions::new().batch_size(10).batch_timeout(Duration::from_millis(100)))
//!     .retry(RetryPolicy::new().max_attempts(3))
//!     .start()
//!     .await?;
//!
//! queue.settled().await; // every message acked or dead-lettered
//! let report = pipeline.drain(Duration::from_secs(5)).await;
//! assert_eq!(report.settled.acked, 3);
//! assert_eq!(report.settled.retried, 2); // the bad order, twice
//! assert_eq!(report.settled.rejected, 1); // then dead-lettered
//! assert_eq!(report.settled.total(), report.taken_in);
//! assert_eq!(queue.dead_letters()[0].data, "not a number");
//! let mut written: Vec<u64> = orders.written.lock().expect("not poisoned").concat();
//! written.sort_unstable();
//! assert_eq!(written, [10, 20, 30]);
//! # Ok(())
//! # }
//! ```

mod ack;
mod activity;
mod backoff;
mod batch;
mod builder;
mod demand_view;
mod downstream_keeper;
mod error;
mod failure;
mod handler;
mod in_flight;
mod keeper;
mod memory;
mod message;
mod options;
mod pipeline;
mod rate_limit;
mod report;
mod settle;
mod snapshot;
mod source_health;
mod stages;
mod supervised;
mod sync;
mod testing;
mod topology;

pub use ack::{AckError, AckGroup, AckHandle, AckTag, Acknowledger, Outcome, Settled};
pub use backoff::Backoff;
pub use batch::{Batch, BatchInfo, BatchOutcome, BatchTrigger};
pub use builder::PipelineBuilder;
pub use demand_view::DemandView;
pub use error::StartError;
pub use failure::{Callback, Failure, RetryPolicy, SharedError};
pub use handler::{Handler, ProcessorContext};
pub use in_flight::{InFlight, Reservation};
pub use memory::{DeadLetter, MemoryFetch, MemoryQueue};
pub use message::{BatchKey, Message, MessageId, Metadata};
pub use options::{BatcherOptions, ProcessorOptions};
pub use pipeline::{NoRateLimit, Pipeline};
pub use rate_limit::{RateLimit, RateLimitState};
pub use report::{OutcomeCounts, PipelineReport};
pub use snapshot::{PipelineSnapshot, StageLayer, StageSnapshot};
pub use source_health::{SourceHealth, SourceStatus};
pub use supervised::PipelineSlot;
