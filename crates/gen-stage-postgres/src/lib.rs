//! A PostgreSQL table as a job queue for [`gen_stage_pipeline`]: jobs enqueued in
//! your own transactions, claimed by as many pipeline instances as you run
//! (`FOR UPDATE SKIP LOCKED`), leased while they are handled, and settled in the
//! table: deleted when done, due again after a retry's delay, moved to a dead-letter
//! table when rejected.
//!
//! # A complete example
//!
//! ```no_run
//! use gen_stage_pipeline::{Handler, Message, PipelineBuilder, ProcessorContext};
//! use gen_stage_postgres::{PgQueue, PgQueueOptions, QueueTable, enqueue_batch};
//!
//! struct SendEmail;
//!
//! impl Handler for SendEmail {
//!     type Data = Vec<u8>;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<Vec<u8>>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         // The job's id is stable across its attempts: key side effects by it.
//!         let _id = message.metadata().id.clone();
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let table = QueueTable::new("emails")?;
//! let queue = PgQueue::connect_url(
//!     "postgres://postgres@127.0.0.1/test",
//!     PgQueueOptions::new(table.clone()).consumer("mailer-1"),
//! )
//! .await?;
//!
//! // Enqueue in a transaction of your own: the jobs commit with your data, or not.
//! let (mut client, connection) =
//!     tokio_postgres::connect("postgres://postgres@127.0.0.1/test", tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let transaction = client.transaction().await?;
//! enqueue_batch(&transaction, &table, &[b"to: ada".as_slice(), b"to: alan".as_slice()]).await?;
//! transaction.commit().await?;
//!
//! let pipeline = PipelineBuilder::new(SendEmail)
//!     .producer({
//!         let queue = queue.clone();
//!         move || queue.producer()
//!     })
//!     // The queue's connection in `pipeline.snapshot().sources`.
//!     .source_health(queue.clone())
//!     .start()
//!     .await?;
//! let report = pipeline.drain(std::time::Duration::from_secs(10)).await;
//! println!("{report:?}");
//! # Ok(())
//! # }
//! ```
//!
//! # What the table guarantees
//!
//! - **At least once.** A job is deleted only by its ack; a consumer that dies leaves
//!   its jobs leased until the lease ends ([`PgQueueOptions::lease`], 30 s by
//!   default), then they are due again, their `attempts` one higher; so does a job
//!   whose ack statement failed. Make the handler's effects idempotent, keyed by the
//!   job's id.
//! - **An outcome settles its own lease only.** Each claim raises the job's
//!   `attempts`; an outcome applies only if the job still has the attempt it was
//!   claimed at, so a consumer whose lease ran out cannot delete or reschedule the job
//!   another consumer now holds (the outcome is counted in
//!   [`PgQueueState::voided`]). Leases of jobs in flight are renewed every third of
//!   the lease, so a long handler keeps its job.
//! - **Order.** Jobs are claimed in due order (`run_at`, then `id`); a retried job
//!   is due after its delay, behind jobs due before it. Several consumers, or
//!   several processors in one pipeline, handle jobs side by side: use the
//!   pipeline's `partition_by` for order per key within one instance.
//! - **Granularity**: an idle consumer looks for due jobs no more often than every
//!   20 ms, so a retry's delay is honoured to within about 20 ms.
//! - **In flight** (claimed and not settled) never exceeds
//!   [`PgQueueOptions::max_in_flight`] over every producer of one [`PgQueue`],
//!   checked before each claim; the leased rows (`leased_by` set, `run_at` in the
//!   future) show it in the table.
//! - **Retries**: the pipeline's retry policy decides; a retry's delay is honoured by the
//!   server's clock (`run_at`), to within the granularity above. After the last attempt the
//!   pipeline rejects the job: it moves to `<name>_dead` with its attempts and error.
//! - **Draining** stops claiming; jobs the producer claimed and never emitted are
//!   handed back: due again at once, the claim not counted as an attempt. Jobs the
//!   pipeline released (a drain's deadline, a dropped handle) are due again at once
//!   and do count as an attempt. A claim runs on a task
//!   of its own: one whose fetch was cancelled (the pipeline stopped or drained just
//!   then) hands its jobs back as soon as it returns.
//! - **Connection loss**: every connection is opened again after a failure, after a
//!   jittered, capped [`Backoff`]; outcomes do not depend on the connection they were
//!   claimed on. An outcome whose statement fails is counted in
//!   [`PgQueueState::failed_outcomes`] and reported to the pipeline as an ack
//!   failure; its job comes due again when its lease ends.
//! - **An idle queue** is woken by `NOTIFY` (sent by [`enqueue`]), not by a tight
//!   poll: an idle consumer wakes for a notification, for the earliest job that
//!   comes due, or after [`PgQueueOptions::poll_interval`].
//!
//! # Idempotent effects
//!
//! A job can be handled twice (its consumer died after the effect and before the
//! ack). Key the effect by the job's id, which stays the same across attempts, and
//! let the database drop the repeat:
//!
//! ```no_run
//! use gen_stage_pipeline::{Handler, Message, MessageId, ProcessorContext};
//! use gen_stage_postgres::tokio_postgres::Client;
//!
//! /// Records each email once, however often its job is delivered.
//! struct RecordEmail(Client);
//!
//! impl Handler for RecordEmail {
//!     type Data = Vec<u8>;
//!
//!     async fn handle_message(
//!         &self,
//!         message: &mut Message<Vec<u8>>,
//!         _: &ProcessorContext,
//!     ) -> Result<(), gen_stage::BoxError> {
//!         let Some(MessageId::Number(job)) = message.metadata().id else {
//!             return Err("a job without an id".into());
//!         };
//!         // CREATE TABLE sent (job bigint PRIMARY KEY, body bytea NOT NULL)
//!         self.0
//!             .execute(
//!                 "INSERT INTO sent (job, body) VALUES ($1, $2) ON CONFLICT (job) DO NOTHING",
//!                 &[&(job as i64), message.data()],
//!             )
//!             .await?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Scaling out
//!
//! Run the same pipeline on as many machines as you like, each with its own
//! [`PgQueueOptions::consumer`] name, against one table: each claim skips the rows
//! others are claiming, so the table shares the jobs among them, and a machine that
//! dies leaves its jobs to the others when their leases end. What holds: every job is
//! handled at least once; a job is handled twice only if its lease ended while it was
//! handled (its consumer died, or could not renew) or its ack failed, and then its
//! `attempts` say so.
//!
//! # The schema
//!
//! [`migrate`] declares it (at [`PgQueue::connect`] unless
//! [`PgQueueOptions::declare`] is off); [`schema_sql`] gives the statements for
//! migrations of your own.
//!
//! # The claim at a million rows
//!
//! The claim reads due rows through the `(run_at, id)` index, in order, and stops at
//! its `LIMIT`: its cost follows the jobs it claims, not the table's size. `EXPLAIN
//! (ANALYZE, BUFFERS)` of a claim of 100 in a table of 1 000 000 rows, half of them
//! due (PostgreSQL 15, this project's machine):
//!
//! ```text
//! Update on emails job (actual rows=100 loops=1)
//!   Buffers: shared hit=1608 dirtied=2 written=2
//!   ->  Nested Loop (actual rows=100 loops=1)
//!         ->  Subquery Scan on due (actual rows=100 loops=1)
//!               ->  Limit (actual rows=100 loops=1)
//!                     ->  LockRows (actual rows=100 loops=1)
//!                           ->  Index Scan using emails_due on emails (actual rows=100 loops=1)
//!                                 Index Cond: (run_at <= now())
//!                                 Buffers: shared hit=103
//!         ->  Index Scan using emails_pkey on emails job (actual rows=1 loops=100)
//!               Index Cond: (id = due.id)
//! ```
//!
//! Rows deleted by acks leave dead index entries until autovacuum passes: a queue
//! that moves millions of jobs an hour wants autovacuum tuned for its table.
//!
//! # TLS
//!
//! [`PgQueue::connect`] takes the client's own [`Config`](tokio_postgres::Config)
//! and any TLS connector the client takes (`postgres-native-tls`,
//! `postgres-openssl`, `tokio-postgres-rustls`): every authentication and TLS
//! option of `tokio-postgres` is reachable, with no feature of this crate.
//!
//! # Troubleshooting
//!
//! - [`ConnectError::Connect`]: the server refused or could not be reached; the
//!   error's source is the client's.
//! - [`ConnectError::Schema`]: the role may not create the tables; declare them
//!   elsewhere ([`schema_sql`]) and turn [`PgQueueOptions::declare`] off.
//! - [`FetchError`]: logged with `tracing` and retried after the backoff; the
//!   queue's [`PgQueue::state`] says how often in a row and why.
//! - Jobs delivered again with a higher attempt and no failure: their consumer died,
//!   or a handler ran longer than the lease while its renewals could not reach the
//!   server.

mod acker;
mod enqueue;
mod error;
mod fetch;
mod lease;
mod options;
mod queue;
mod schema;
mod table;

pub use enqueue::{enqueue, enqueue_batch, enqueue_batch_after};
pub use error::{ConnectError, EnqueueError, FetchError, SchemaError};
pub use fetch::PgFetch;
pub use gen_stage_pipeline::Backoff;
pub use options::PgQueueOptions;
pub use queue::{PgQueue, PgQueueState};
pub use schema::{migrate, schema_sql};
pub use table::{QueueTable, TableNameError};

/// The client crate, so that its types ([`Config`](tokio_postgres::Config), TLS
/// connectors, [`Transaction`](tokio_postgres::Transaction)) can be named.
pub use tokio_postgres;
