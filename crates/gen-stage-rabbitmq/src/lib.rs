//! RabbitMQ as a source for [`gen_stage_pipeline`]: a queue consumed with a prefetch
//! equal to the pipeline's in-flight budget, messages taken as the pipeline's demand
//! asks, acked on the channel that delivered them, retried after a delay through
//! delay queues, rejected to a dead-letter queue, and the connection made again
//! after a failure.
//!
//! # A complete example
//!
//! ```no_run
//! use gen_stage_pipeline::{Handler, Message, PipelineBuilder, ProcessorContext};
//! use gen_stage_rabbitmq::lapin::options::BasicPublishOptions;
//! use gen_stage_rabbitmq::lapin::{BasicProperties, Connection, ConnectionProperties};
//! use gen_stage_rabbitmq::{RabbitMessage, RabbitOptions, RabbitSource};
//!
//! struct Bill;
//!
//! impl Handler for Bill {
//!     type Data = RabbitMessage;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<RabbitMessage>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         // The publisher's `message_id`, stable across deliveries: key effects by it.
//!         let _id = message.metadata().id.clone();
//!         let _order = message.data().data();
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
//! let source = RabbitSource::connect(url, RabbitOptions::new("orders")).await?;
//!
//! // Publish with the client, with an id for each message.
//! let connection = Connection::connect(url, ConnectionProperties::default()).await?;
//! let channel = connection.create_channel().await?;
//! let properties = BasicProperties::default()
//!     .with_message_id("order-42".into())
//!     .with_delivery_mode(2); // persistent
//! channel
//!     .basic_publish("".into(), "orders".into(), BasicPublishOptions::default(), b"42 apples", properties)
//!     .await?;
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
//! // The broker takes back what it pushed and the pipeline never took.
//! source.close().await?;
//! println!("{report:?}");
//! # Ok(())
//! # }
//! ```
//!
//! # What the broker must be configured with
//!
//! With [`RabbitOptions::declare`] on (the default) the source declares what is
//! missing; with it off, provision these yourself:
//!
//! | What | Setting |
//! |------|---------|
//! | Queue | durable, and messages published persistent (`delivery_mode` 2), for messages that survive a broker restart; a quorum queue (`x-queue-type: quorum`) for replication and a delivery count the source reads |
//! | Dead letters | the queue [`RabbitOptions::dead_letter_queue`] names (`<queue>.dead`), or none and the queue's own dead-letter exchange |
//! | Delay queues | declared by the source on first use, `<queue>.delay.<ms>`, with a time to live and the queue as their dead-letter route; they delete themselves when idle |
//! | Consumer timeout | the broker's `consumer_timeout` (30 minutes by default) closes a channel whose delivery is not settled in time: longer than your longest handler |
//! | Rights | configure on `<queue>.delay.*` (and on the queues with declaring on), write to the default exchange for the queue, its dead-letter and delay queues, read on the queue |
//!
//! # What it guarantees
//!
//! - **At least once.** A message leaves the queue only when acked. One whose
//!   instance died or whose connection failed is delivered again, marked
//!   redelivered. Make effects idempotent, keyed by the `message_id` property the
//!   publisher sets ([`MessageId::Text`](gen_stage_pipeline::MessageId::Text)): the
//!   broker has no id of its own.
//! - **Outcomes.** Ack is `basic.ack`: the acks of one settled group that lie
//!   below every tag still unsettled on the channel go as one `basic.ack` with
//!   `multiple` (never covering a message still in a handler or whose own outcome
//!   is on its way), the rest one by one; terminate is `basic.ack` too (the message
//!   goes nowhere, not even to a dead-letter exchange); a release is `basic.nack`
//!   with requeue. A retry publishes a copy (waiting for the broker's confirm), then
//!   acks the original: to a delay queue whose messages expire into the queue after
//!   the delay, or back to the queue itself for a retry without delay. Delays up to
//!   16 ms are exact; longer ones are rounded up to one of eight steps per doubling
//!   (at most 12.5 % later, never earlier), so that jittered delays share a few
//!   queues. A reject publishes a copy to the dead-letter queue, with headers
//!   `x-gen-stage-error`, `x-gen-stage-attempt`, `x-gen-stage-queue` and where the
//!   original was published, then acks the original; without a dead-letter queue it
//!   is `basic.reject` without requeue. A crash between a copy and its ack leaves
//!   both: the message is handled again. A copy that cannot be published (no
//!   rights on delay queues, the dead-letter queue deleted) leaves its original
//!   requeued at once, counted in [`RabbitState::failed_outcomes`]. Copies leave
//!   out the publisher's `user_id` (kept in `x-gen-stage-user-id`: the broker would
//!   refuse it from another user) and its `expiration`.
//! - **The delay hop.** A delayed copy moves from its delay queue back to the queue
//!   by the broker's own dead-lettering, which has no confirms: if the queue is
//!   deleted (or, for a quorum queue, unavailable) when the copy expires, the broker
//!   drops it. Keep the queue while retries are pending.
//! - **Attempts.** Classic queues keep no delivery count, so a retried copy carries
//!   its attempt in the header `x-gen-stage-attempt`; a delivery's attempt is that
//!   (1 for an original) plus one if the broker marks it redelivered, or plus the
//!   quorum queue's `x-delivery-count`. A classic queue's redelivered flag does not
//!   say how often: a message whose instances keep dying is seen as attempt 2 each
//!   time; use a quorum queue where that matters. A message released unhandled (by
//!   a drain, or pushed ahead and taken back at [`RabbitSource::close`]) comes back
//!   as a redelivery, its attempt one higher, as on a crash.
//! - **Budget.** The channel's prefetch is [`RabbitOptions::max_in_flight`], so the
//!   broker never has more unacknowledged messages out to this instance; the
//!   producers take from them no more than is free. The budget is per instance (per
//!   connection). Just after a reconnection the broker may not yet have taken back
//!   what the lost connection held, so for a moment it counts up to twice the budget
//!   unacknowledged; the pipeline's own count never exceeds it.
//! - **Order.** Within one instance, messages arrive in queue order, and the
//!   pipeline's processors handle them side by side (`partition_by` keeps order per
//!   key). Across instances the broker hands messages round-robin: no order between
//!   them. A retried message comes back at the end of the queue, after its delay.
//! - **Connection loss.** The producers connect again with the source's backoff
//!   (jittered, exponential, capped), for ever unless
//!   [`RabbitOptions::max_reconnect_attempts`] says otherwise; each attempt is
//!   bounded by [`RabbitOptions::connect_timeout`]. Leave the client's own recovery
//!   (`ConnectionProperties::enable_auto_recover`) off: the source recovers itself. Messages delivered on
//!   the lost connection go back to the queue with it; their outcomes are voided
//!   (counted in [`RabbitState::voided`]), never sent on the new connection, where
//!   their delivery tags would name other messages.
//! - **Draining.** A drain settles what is in flight and requeues what the producers
//!   held; the broker pushed up to the prefetch ahead, and takes those back when the
//!   connection closes: call [`RabbitSource::close`] after the drain.
//! - **No leases.** RabbitMQ has no lease to renew: a handler may run until the
//!   broker's `consumer_timeout`.
//!
//! # Idempotent effects
//!
//! A message can be handled twice (its instance died after the effect and before the
//! ack reached the broker). Give each message an id when publishing, and let the sink
//! refuse a repeat: in a database, a unique key on the id and
//! `INSERT ... ON CONFLICT DO NOTHING`; here a set stands in for it:
//!
//! ```
//! use std::collections::HashSet;
//! use std::sync::Mutex;
//!
//! use gen_stage_pipeline::{Handler, Message, MessageId, ProcessorContext};
//! use gen_stage_rabbitmq::RabbitMessage;
//!
//! /// Applies each order once, however often its message is delivered.
//! #[derive(Default)]
//! struct ApplyOrder(Mutex<HashSet<String>>);
//!
//! impl Handler for ApplyOrder {
//!     type Data = RabbitMessage;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<RabbitMessage>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         let Some(MessageId::Text(id)) = &message.metadata().id else {
//!             return Err("a message published without a message_id".into());
//!         };
//!         let first_time = self.0.lock().map_err(|_| "poisoned")?.insert(id.clone());
//!         if first_time {
//!             // ... the effect, once per id ...
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Scaling out
//!
//! Run the same pipeline on each machine with the same queue name: the broker shares
//! the messages among the instances' consumers, each up to its own prefetch.
//!
//! # Troubleshooting
//!
//! - [`ConnectError::Connect`]: the broker is unreachable, or refused the
//!   credentials or the virtual host (`amqp://user:password@host:5672/vhost`, the
//!   default virtual host written `%2f`).
//! - [`ConnectError::Queue`]: the queue does not exist with declaring off, or exists
//!   with other arguments than [`RabbitOptions::queue_arguments`]
//!   (`PRECONDITION_FAILED`: declare with the same, or turn declaring off).
//! - [`ConnectError::Consume`]: another connection consumes the queue exclusively,
//!   or the user may not read it.
//! - [`FetchError`]: logged with `tracing` and retried after the backoff; the
//!   source's [`RabbitSource::state`] says why.
//! - `failed_outcomes` in the state: a copy (a retry or a dead letter) could not be
//!   published (no rights to declare delay queues, the dead-letter queue deleted):
//!   the original is requeued instead.
//!
//! # TLS
//!
//! `amqps://` URLs use TLS: the default cargo feature `rustls` (ring, the platform's
//! root certificates), or `native-tls`. A client certificate or a private CA goes in
//! the [`OwnedTLSConfig`](lapin::tcp::OwnedTLSConfig) of
//! [`RabbitSource::connect_with`].

mod acker;
mod copy;
mod delay;
mod error;
mod fetch;
mod message;
mod options;
mod session;
mod source;

pub use error::{ConnectError, FetchError};
pub use fetch::RabbitFetch;
pub use gen_stage_pipeline::Backoff;
pub use message::RabbitMessage;
pub use options::RabbitOptions;
pub use source::{RabbitSource, RabbitState};

/// The client crate, so that its types ([`BasicProperties`](lapin::BasicProperties),
/// [`FieldTable`](lapin::types::FieldTable),
/// [`ConnectionProperties`](lapin::ConnectionProperties)) can be named.
pub use lapin;
