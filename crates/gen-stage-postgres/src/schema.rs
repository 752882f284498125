//! The queue's schema: a table of jobs, an index for the claim, a table of dead
//! letters.

use tokio_postgres::GenericClient;

use crate::error::SchemaError;
use crate::table::QueueTable;

/// Declares the queue's tables and index if they do not exist (idempotent, and safe
/// when several instances start at once: they take turns under an advisory lock held
/// for the statement's transaction).
///
/// The queue's table (`<name>`):
///
/// | column | type | what it holds |
/// | --- | --- | --- |
/// | `id` | `bigserial` primary key | the job's stable id ([`MessageId::Number`](gen_stage_pipeline::MessageId)) |
/// | `payload` | `bytea` | the job's data |
/// | `attempts` | `integer` | deliveries so far (a claim adds one) |
/// | `run_at` | `timestamptz` | due time: when it may next be claimed; while leased, the lease's end |
/// | `leased_by` | `text` | the consumer holding it, or null |
/// | `enqueued_at` | `timestamptz` | |
/// | `last_error` | `text` | why its last attempt failed |
///
/// A claim takes due rows (`run_at <= now()`) in `(run_at, id)` order, through the
/// index `<name>_due` on those columns, and sets `run_at` to the lease's end: a
/// lease that runs out makes its row due again with no sweeper. `<name>_dead` holds
/// rejected jobs with their attempts and error.
///
/// Run it yourself with [`PgQueueOptions::declare`](crate::PgQueueOptions::declare)
/// off (the default declares at [`PgQueue::connect`](crate::PgQueue::connect)), or
/// take the statements from [`schema_sql`] into your migrations.
///
/// # Errors
///
/// [`SchemaError`] if a statement fails (for example, the role may not create
/// tables).
pub async fn migrate(client: &impl GenericClient, table: &QueueTable) -> Result<(), SchemaError> {
    // One simple query is one transaction (the caller's, if it has one open): the
    // advisory lock ends with it, whatever happens.
    let declare = format!(
        "SELECT pg_advisory_xact_lock(hashtext('gen_stage_postgres:{}')); {}",
        table.name(),
        schema_sql(table)
    );
    client.batch_execute(&declare).await.map_err(SchemaError)
}

/// The statements [`migrate`] runs, for migrations of your own.
///
/// ```
/// use gen_stage_postgres::{QueueTable, schema_sql};
///
/// let sql = schema_sql(&QueueTable::new("emails")?);
/// assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"emails\""));
/// assert!(sql.contains("CREATE INDEX IF NOT EXISTS \"emails_due\""));
/// # Ok::<(), gen_stage_postgres::TableNameError>(())
/// ```
pub fn schema_sql(table: &QueueTable) -> String {
    let (queue, dead, due) = (table.queue(), table.dead(), table.due_index());
    format!(
        "CREATE TABLE IF NOT EXISTS {queue} (
            id bigserial PRIMARY KEY,
            payload bytea NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            run_at timestamptz NOT NULL DEFAULT now(),
            leased_by text,
            enqueued_at timestamptz NOT NULL DEFAULT now(),
            last_error text
        );
        CREATE INDEX IF NOT EXISTS {due} ON {queue} (run_at, id);
        CREATE TABLE IF NOT EXISTS {dead} (
            id bigint PRIMARY KEY,
            payload bytea NOT NULL,
            attempts integer NOT NULL,
            enqueued_at timestamptz NOT NULL,
            failed_at timestamptz NOT NULL DEFAULT now(),
            error text
        );"
    )
}
