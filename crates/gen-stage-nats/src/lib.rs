//! NATS JetStream as a source for [`gen_stage_pipeline`]: a durable pull consumer
//! that every instance of a pipeline shares, pulled as the pipeline's demand asks,
//! with the server's own outcomes (ack, nak with a delay, term), ack waits renewed
//! while a handler works, and rejected messages published to a dead-letter subject.
//!
//! # A complete example
//!
//! ```no_run
//! use gen_stage_nats::{JetStreamOptions, JetStreamSource};
//! use gen_stage_pipeline::{Handler, Message, PipelineBuilder, ProcessorContext};
//!
//! struct Bill;
//!
//! impl Handler for Bill {
//!     type Data = async_nats::Message;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<async_nats::Message>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         // The stream sequence is stable across deliveries: key side effects by it.
//!         let _id = message.metadata().id.clone();
//!         let _order = &message.data().payload;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let source = JetStreamSource::connect_url(
//!     "nats://127.0.0.1:4222",
//!     JetStreamOptions::new("ORDERS", "billing")
//!         .subjects(["orders.>"])
//!         .dead_letter_subject("dead.orders"),
//! )
//! .await?;
//!
//! // Publish with the client, waiting for the stream to store each message.
//! let jetstream = async_nats::jetstream::new(source.client().clone());
//! jetstream.publish("orders.new", "42 apples".into()).await?.await?;
//!
//! let pipeline = PipelineBuilder::new(Bill)
//!     .producer({
//!         let source = source.clone();
//!         move || source.producer()
//!     })
//!     // The connection in `pipeline.snapshot().sources`; the budget checked at start.
//!     .source_health(source.clone())
//!     .start()
//!     .await?;
//! let report = pipeline.drain(std::time::Duration::from_secs(10)).await;
//! // The last outcomes reach the server before the process exits.
//! source.flush(std::time::Duration::from_secs(5)).await?;
//! println!("{report:?}");
//! # Ok(())
//! # }
//! ```
//!
//! # What the server must be configured with
//!
//! With [`JetStreamOptions::declare`] on (the default) the source declares what is
//! missing; with it off, provision these yourself:
//!
//! | What | Setting |
//! |------|---------|
//! | Stream | the subjects you publish to; `retention: workqueue` (a message is removed when acked; one consumer per subject) or `limits`/`interest` if other consumers read it too; `storage: file` for messages that survive a server restart |
//! | Consumer | durable, pull, `ack_policy: explicit`; `ack_wait` as [`JetStreamOptions::ack_wait`] (the source renews it); `max_ack_pending` at least the sum of the instances' budgets; `max_deliver` -1 or above the pipeline's retries |
//! | Dead letters | a stream whose subjects hold the dead-letter subject (declared as `<stream>_dead`) |
//! | Rights | publish to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` and `$JS.ACK.<stream>.<consumer>.>`, the dead-letter subject, `$JS.API.STREAM.MSG.GET.<stream>` (to copy a rejected message), and read stream and consumer info |
//!
//! # What it guarantees
//!
//! - **At least once.** A message leaves the stream only when acked (or terminated).
//!   One whose instance died, or whose outcome was lost with the connection, is
//!   delivered again when its ack wait runs out, its delivery count (its
//!   [`attempt`](gen_stage_pipeline::Metadata::attempt)) one higher. Make effects
//!   idempotent, keyed by the stream sequence
//!   ([`MessageId::Number`](gen_stage_pipeline::MessageId::Number)).
//! - **Outcomes.** Ack is `+ACK`; a retry is a nak with its delay (`-NAK {"delay":..}`,
//!   honoured by the server to the millisecond), a release or a retry without delay a
//!   plain nak; terminate is `+TERM`; reject publishes the message to the dead-letter
//!   subject (waiting for the server to store it) and then terminates it. A nak counts
//!   as a delivery: a message released by a drain comes back with its attempt one
//!   higher. Outcomes are published as messages settle, and the client writes them
//!   out at once, without waiting for each to be confirmed (as the client's own
//!   `ack()` does); [`JetStreamSource::flush`] waits for the server to have them:
//!   call it after a drain, before the process exits.
//! - **Leases.** Every third of the ack wait the source sends `+WPI` for each message
//!   in flight, so a handler may run for longer than the ack wait (renewals are sent
//!   only while connected, and count once the server answered a request sent after
//!   them). An
//!   outcome whose message's ack wait may have run out (no renewal of that message
//!   within it) is not sent, and counted in [`JetStreamState::voided`]: the server
//!   delivers that message again, and an ack now could settle the new delivery; once
//!   lapsed, a message stays so. Outcomes made while the client is disconnected are
//!   voided too (the client would send them after the reconnection, perhaps after
//!   their ack waits): their messages are delivered again.
//! - **Budget.** Messages in flight (delivered and not settled) never exceed
//!   [`JetStreamOptions::max_in_flight`] across the source's producers: each pull
//!   asks for no more than is free. The consumer's `max_ack_pending` bounds all
//!   instances together at the server; a message nakked with a delay counts there
//!   until it is delivered again, so many long retry delays can hold back new
//!   deliveries: raise `max_ack_pending` above the budgets' sum for such loads.
//! - **Order.** Within one instance, messages are delivered in stream order, and a
//!   pipeline's processors handle them side by side (`partition_by` keeps order per
//!   key). Across instances, the server hands each pull the next messages: no order
//!   between instances. A retried message comes back after its delay, behind messages
//!   delivered meanwhile.
//! - **Draining.** A drain stops pulling, settles what is in flight, and naks
//!   what was delivered and never handled, including what a pull under way delivers
//!   after the producer stopped. What a dead process held, outcomes lost with a
//!   connection, and a rejected message whose dead letter could not be published are
//!   left to the ack wait.
//!
//! # Idempotent effects
//!
//! A message can be handled twice (its instance died after the effect and before the
//! ack reached the server). Key the effect by the stream sequence, which stays the
//! same across deliveries, and let the sink drop the repeat. Here the sink is a
//! key-value bucket of the same server, written with `create`, which refuses a key
//! that exists:
//!
//! ```no_run
//! use gen_stage_nats::async_nats::jetstream::kv::{CreateErrorKind, Store};
//! use gen_stage_pipeline::{Handler, Message, MessageId, ProcessorContext};
//!
//! /// Stores each order once, however often its message is delivered.
//! struct StoreOrder(Store);
//!
//! impl Handler for StoreOrder {
//!     type Data = gen_stage_nats::async_nats::Message;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<Self::Data>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         let Some(MessageId::Number(sequence)) = message.metadata().id else {
//!             return Err("a message without its stream sequence".into());
//!         };
//!         let key = format!("order-{sequence}");
//!         match self.0.create(&key, message.data().payload.clone()).await {
//!             Ok(_) => Ok(()),
//!             // Stored by an earlier delivery: nothing to do again.
//!             Err(error) if error.kind() == CreateErrorKind::AlreadyExists => Ok(()),
//!             Err(error) => Err(error.into()),
//!         }
//!     }
//! }
//! ```
//!
//! # Scaling out
//!
//! Run the same pipeline on each machine with the same stream and consumer names:
//! the server shares the messages among the instances' pulls. Set the consumer's
//! `max_ack_pending` to the sum of their budgets (or more).
//!
//! # Troubleshooting
//!
//! - [`ConnectError::Connect`]: the server is unreachable or refused the
//!   credentials (`nats://user:password@host`, or the client's
//!   [`ConnectOptions`](async_nats::ConnectOptions) for tokens, NKeys, credentials
//!   files and TLS).
//! - [`ConnectError::Stream`]: JetStream is not enabled on the server (`-js`), the
//!   stream does not exist with declaring off, or its subjects overlap another
//!   stream's.
//! - [`ConnectError::Consumer`]: the consumer does not exist with declaring off, or a
//!   work-queue stream already has a consumer over the same subjects.
//! - [`FetchError`]: logged with `tracing` and retried after the backoff; the source's
//!   [`JetStreamSource::state`] says why.
//! - Messages delivered again with a higher attempt and no failure: an instance died,
//!   its renewals could not reach the server within the ack wait, its outcomes were
//!   lost with a connection, or a message's dead letter could not be published.
//!
//! # TLS
//!
//! The client always speaks TLS when the server asks for it (`tls://` URLs, or
//! [`ConnectOptions::require_tls`](async_nats::ConnectOptions::require_tls)), with
//! the `ring` crypto provider by default; the cargo feature `aws-lc-rs` selects the
//! other one.

mod acker;
mod error;
mod fetch;
mod lease;
mod options;
mod source;

pub use error::{ConnectError, FetchError, FlushError};
pub use fetch::JetStreamFetch;
pub use gen_stage_pipeline::Backoff;
pub use options::JetStreamOptions;
pub use source::{JetStreamSource, JetStreamState};

/// The client crate, so that its types ([`ConnectOptions`](async_nats::ConnectOptions),
/// [`Message`](async_nats::Message), [`Client`](async_nats::Client)) can be named.
pub use async_nats;
