//! Redis Streams as a source for [`gen_stage_pipeline`]: a stream read through a
//! consumer group that every instance of a pipeline shares, each instance under a
//! consumer name of its own; entries read as the pipeline's demand asks, acked with
//! `XACK`, retried after a delay through a sorted set, rejected to a dead-letter
//! stream, and claimed from instances that died.
//!
//! # A complete example
//!
//! ```no_run
//! use gen_stage_pipeline::{Handler, Message, PipelineBuilder, ProcessorContext};
//! use gen_stage_redis::{RedisOptions, RedisSource};
//! use redis::AsyncCommands;
//! use redis::streams::StreamId;
//!
//! struct Bill;
//!
//! impl Handler for Bill {
//!     type Data = StreamId;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<StreamId>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         // The entry id, the same across retries: key side effects by it.
//!         let _id = message.metadata().id.clone();
//!         let _order: Option<String> = message.data().get("order");
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // The consumer name is this instance's own, the same after each restart.
//! let source = RedisSource::connect(
//!     "redis://127.0.0.1:6379",
//!     RedisOptions::new("orders", "billing", "billing-0"),
//! )
//! .await?;
//!
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let mut connection = client.get_multiplexed_async_connection().await?;
//! let _: String = connection.xadd("orders", "*", &[("order", "42 apples")]).await?;
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
//! // What was read and never handled is claimable by the other instances at once,
//! // and the consumer name is free for this instance's restart.
//! source.close().await?;
//! println!("{report:?}");
//! # Ok(())
//! # }
//! ```
//!
//! # What the server must be configured with
//!
//! | What | Setting |
//! |------|---------|
//! | Version | Redis 7.0 or later (the connector is tested on 7.0) |
//! | Persistence | `appendonly yes` (with `appendfsync everysec` or `always`) for entries, pending lists and waiting retries that survive a server restart: without it (`save ""`, `appendonly no`), a restart loses everything |
//! | Group | created by the source with [`RedisOptions::declare`] on (the default), reading from the stream's start; with it off, `XGROUP CREATE <stream> <group> 0 MKSTREAM` yourself |
//! | Keys | the stream; `<stream>:delayed` (a sorted set of retries waiting for their due time); `<stream>:dead` (the dead-letter stream); `<stream>:<group>:<consumer>:owner` (which process holds a consumer name) |
//! | Consumers | one per instance, named by you; and `gen-stage-released`, which holds released entries until a sweep claims them (no instance may use that name) |
//! | Trimming | acked entries stay in the stream: trim it (`XADD ... MAXLEN ~ n`, `XTRIM`), or turn on [`RedisOptions::delete_on_ack`] when only one group reads it; an entry trimmed while pending is acknowledged when settled, counted in [`RedisState::vanished`] |
//! | Rights (ACL) | `+xreadgroup +xack +xdel +xclaim +xpending +xinfo +xgroup +xadd +xrange +zadd +zrangebyscore +zrange +zrem +get +set +del +evalsha +script\|load +time` on those keys (`~orders*`); the scripts are loaded on first use |
//! | Cluster | not supported: one server, or a primary with replicas (scripts touch several keys) |
//!
//! # What it guarantees
//!
//! - **At least once.** An entry stays in the group's pending list until acked. One
//!   whose instance died, or whose outcome was lost with the connection, is claimed
//!   by a running instance once it has been idle for the
//!   [`lease`](RedisOptions::lease) (found with `XPENDING ... IDLE`, taken with
//!   `XCLAIM`; each instance sweeps every quarter lease), its delivery count (its
//!   [`attempt`](gen_stage_pipeline::Metadata::attempt)) one higher. Make effects
//!   idempotent, keyed by the entry id
//!   ([`MessageId::Text`](gen_stage_pipeline::MessageId::Text)).
//! - **Leases.** The source renews the lease of each entry it holds every third of
//!   the lease (`XCLAIM ... JUSTID`), so a handler may run as long as it needs while
//!   its instance lives; an instance cut off from the server for longer than the
//!   lease loses its entries to the others, and its outcomes for them are voided
//!   (counted in [`RedisState::voided`]). Every instance of a group must use the
//!   same lease.
//! - **Outcomes.** Ack and terminate are `XACK` while the entry has been held for
//!   less than a quarter of its lease (judged with the connection in hand). Every
//!   other outcome, and a later ack, goes through a script that first checks that the pending
//!   list still shows the entry as this consumer's, with the delivery count it was
//!   read with: otherwise another instance claimed it, and the outcome is voided. A
//!   retry copies the entry into the sorted set `<stream>:delayed`, scored by its due
//!   time (the server's clock), and acks it, in one script; when due, the source's
//!   upkeep adds it back to the stream as a new entry carrying its first id and its
//!   attempts in the fields `gen-stage-id` and `gen-stage-attempt` (taken out of the
//!   fields the handler sees). A retry is added back within milliseconds of its due
//!   time while its instance runs, and within a [`block`](RedisOptions::block) by
//!   another instance if it stopped. A reject copies the entry to the dead-letter
//!   stream with the fields `gen-stage-id`, `gen-stage-attempt`, `gen-stage-stream`,
//!   `gen-stage-group` and `gen-stage-error` (at most 4 KiB), and acks it, in one
//!   script; with no dead-letter stream it is acked. A release (a drain's leftovers)
//!   hands the entry to the consumer `gen-stage-released`, idle for a lease and
//!   keeping its delivery count, so the next sweep of any instance claims it (this
//!   instance's next read sweeps at once). An entry whose field names are not UTF-8
//!   cannot be handed to the pipeline: it is rejected as it is read, and counted in
//!   [`RedisState::malformed`]. An outcome that cannot be sent (the connection
//!   failed) is not retried on another connection: the entry is claimed again after
//!   its lease, counted in [`RedisState::failed_outcomes`].
//! - **Budget.** Reads ask for no more than is free of
//!   [`max_in_flight`](RedisOptions::max_in_flight), across the source's producers;
//!   `XPENDING` shows at most that many entries for the consumer: an entry leaves
//!   the budget only once the server has answered its outcome. Redis cannot
//!   enforce the budget itself: entries whose
//!   outcome was lost with a connection (or whose read timed out after the server
//!   sent them) stay pending for this consumer until their lease runs out, beyond
//!   the budget the source counts.
//! - **Consumer names.** Each instance needs a name of its own that stays the same
//!   across its restarts. The source holds it with a key that expires after a lease
//!   and is renewed while it runs, so a second process with the same name fails
//!   with [`ConnectError::ConsumerInUse`] rather than taking entries out of the
//!   first one's hands. On connecting, it makes the entries it held before a restart
//!   claimable at once, and claims them with its first read. Consumers of the group
//!   idle with nothing pending are removed after
//!   [`forget_consumers_after`](RedisOptions::forget_consumers_after) (an hour).
//! - **Order.** Within one instance, entries arrive in stream order, and the
//!   pipeline's processors handle them side by side (`partition_by` keeps order per
//!   key). Across instances the group hands each entry to whichever reads first: no
//!   order between them. A retried entry comes back at the end of the stream, after
//!   its delay; a claimed one before new entries.
//! - **Connection loss.** Each producer reads on a connection of its own and makes it
//!   again after a failure, waiting the source's backoff (jittered, exponential,
//!   capped), for ever unless
//!   [`max_reconnect_attempts`](RedisOptions::max_reconnect_attempts) says otherwise.
//!   Outcomes go on a shared connection made again on the next use. The pending
//!   list lives at the server, so an outcome after a reconnection is valid as long
//!   as the entry is still this consumer's (the check above); one that could not be
//!   sent is counted in [`RedisState::failed_outcomes`] and the entry claimed again
//!   after its lease.
//! - **Draining.** A drain settles what is in flight; what the producers had read
//!   and never emitted is released. Call [`RedisSource::close`] after it: it waits
//!   for releases under way, releases whatever this consumer still has pending and
//!   lets the name go. A read still waiting at the server (up to a
//!   [`block`](RedisOptions::block)) is not waited for: what it brings is released
//!   when it returns, or, if the process has exited, at the next start under the
//!   same name, or once its lease runs out.
//!
//! # Idempotent effects
//!
//! An entry can be handled twice (its instance died after the effect and before the
//! ack reached the server). Let the sink refuse a repeat by the entry id: in a
//! database, a unique key on it and `INSERT ... ON CONFLICT DO NOTHING`; in Redis
//! itself, `SET <id> 1 NX` in the same transaction as the effect. Here a set stands
//! in for it:
//!
//! ```
//! use std::collections::HashSet;
//! use std::sync::Mutex;
//!
//! use gen_stage_pipeline::{Handler, Message, MessageId, ProcessorContext};
//! use redis::streams::StreamId;
//!
//! /// Applies each order once, however often its entry is delivered.
//! #[derive(Default)]
//! struct ApplyOrder(Mutex<HashSet<String>>);
//!
//! impl Handler for ApplyOrder {
//!     type Data = StreamId;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<StreamId>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         let Some(MessageId::Text(id)) = &message.metadata().id else {
//!             return Err("an entry without an id".into());
//!         };
//!         let first_time = self.0.lock().map_err(|_| "poisoned")?.insert(id.clone());
//!         if first_time {
//!             // ... the effect, once per entry ...
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Scaling out
//!
//! Run the same pipeline on each machine with the same stream and group, and a
//! consumer name per instance (a pod name, or the host name and a slot number): the
//! group hands each entry to one of them.
//!
//! # Troubleshooting
//!
//! - [`ConnectError::Connect`]: the server is unreachable, or refused the
//!   credentials (`redis://user:password@host:6379`, the ACL user's name and
//!   password; `WRONGPASS` in the error).
//! - [`ConnectError::Group`]: the key holds something other than a stream
//!   (`WRONGTYPE`), the user may not create groups (`NOPERM`), or, with declaring
//!   off, the group does not exist.
//! - [`ConnectError::ConsumerInUse`]: another live process uses the consumer name.
//! - [`FetchError`]: logged with `tracing` and retried after the backoff; the
//!   source's [`RedisSource::state`] says why.
//!   [`FetchError::ConsumerTaken`]: this instance was cut off for longer than the
//!   lease and another process took its name; it reads again once the name is free.
//! - `voided` in the state grows: entries are claimed by other instances while this
//!   one still holds them; the lease is shorter on some instance, or this one was cut
//!   off.
//!
//! # TLS
//!
//! `rediss://` URLs use TLS with a cargo feature on: `rustls` (the platform's root
//! certificates) or `native-tls`. Client certificates and private CAs go in the
//! client's [`ConnectionInfo`](redis::ConnectionInfo).

mod acker;
mod budget;
mod connection;
mod delivery;
mod entry;
mod error;
mod fetch;
mod options;
mod scripts;
mod source;
mod upkeep;

pub use error::{ConnectError, FetchError};
pub use fetch::RedisFetch;
pub use gen_stage_pipeline::Backoff;
pub use options::RedisOptions;
pub use source::{RedisSource, RedisState};

/// The client crate, so users can name its types (the entries, connection options)
/// with the version this crate was built against.
pub use redis;
