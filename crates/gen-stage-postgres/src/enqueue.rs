//! Putting jobs in the queue, in a transaction of the caller's if it likes.

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::error::EnqueueError;
use crate::table::QueueTable;

/// Adds a job due now; returns its id.
///
/// `client` may be a [`Client`](tokio_postgres::Client) or a
/// [`Transaction`](tokio_postgres::Transaction): in a transaction, the job commits
/// with the caller's own writes, or not at all, and the queue's consumers are
/// notified (`NOTIFY`) only when it commits.
///
/// # Errors
///
/// [`EnqueueError`] if the insert fails (for example, the table does not exist).
pub async fn enqueue(
    client: &impl GenericClient,
    table: &QueueTable,
    payload: &[u8],
) -> Result<i64, EnqueueError> {
    let ids = enqueue_batch_after(client, table, &[payload], Duration::ZERO).await?;
    ids.first().copied().ok_or(EnqueueError::NoId)
}

/// Adds jobs due now, in one statement; returns their ids in the order given.
///
/// # Errors
///
/// [`EnqueueError`] if the insert fails.
pub async fn enqueue_batch<P: AsRef<[u8]>>(
    client: &impl GenericClient,
    table: &QueueTable,
    payloads: &[P],
) -> Result<Vec<i64>, EnqueueError> {
    enqueue_batch_after(client, table, payloads, Duration::ZERO).await
}

/// Adds jobs due once `delay` has passed (by the server's clock), in one statement;
/// returns their ids in the order given.
///
/// # Errors
///
/// [`EnqueueError`] if the insert fails.
#[tracing::instrument(level = "debug", name = "enqueue", skip_all, fields(table = %table, jobs = payloads.len()))]
pub async fn enqueue_batch_after<P: AsRef<[u8]>>(
    client: &impl GenericClient,
    table: &QueueTable,
    payloads: &[P],
    delay: Duration,
) -> Result<Vec<i64>, EnqueueError> {
    if payloads.is_empty() {
        return Ok(Vec::new());
    }
    let payloads: Vec<&[u8]> = payloads.iter().map(AsRef::as_ref).collect();
    let delay_ms = crate::lease::millis(delay);
    // `WITH ORDINALITY` and the ordered select keep the ids in the payloads' order;
    // the notification (one per transaction and channel, however many rows) wakes
    // idle consumers, also for delayed jobs, whose due time they then learn.
    let insert = format!(
        "WITH added AS (
            INSERT INTO {queue} (payload, run_at)
            SELECT payload, now() + $2::int8 * interval '1 millisecond'
            FROM unnest($1::bytea[]) WITH ORDINALITY AS given(payload, position)
            ORDER BY position
            RETURNING id
        )
        SELECT added.id FROM added, LATERAL (SELECT pg_notify($3, '')) AS notified
        ORDER BY added.id",
        queue = table.queue(),
    );
    let rows = client
        .query(&insert, &[&payloads, &delay_ms, &table.channel_name()])
        .await
        .map_err(EnqueueError::Database)?;
    rows.iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<_, _>>()
        .map_err(EnqueueError::Database)
}
