//! Leases: renewed while jobs are in flight, handed back for jobs never handled.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio_postgres::types::ToSql;

use crate::queue::{Inner, PgQueue};
use crate::table::QueueTable;

/// Starts the task that renews the leases of the queue's jobs in flight, every third
/// of the lease, unless it runs. It ends with the queue.
pub(crate) fn keep_renewing(queue: &PgQueue) {
    let inner = &queue.inner;
    if inner.renewing.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(inner);
    let mut gone = inner.gone.subscribe();
    let every = inner.options.lease / 3;
    let renew = renew_sql(&inner.options.table);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                // The queue was dropped: nothing is left to renew.
                _ = gone.changed() => return,
            }
            let Some(inner) = Weak::upgrade(&weak) else {
                return;
            };
            renew_in_flight(&inner, &renew).await;
        }
    });
}

/// Renews the lease of every job in flight that is still this consumer's.
async fn renew_in_flight(inner: &Inner, renew: &str) {
    let (ids, attempts): (Vec<i64>, Vec<i32>) = {
        let in_flight = inner.lock_in_flight();
        in_flight.jobs.values().copied().unzip()
    };
    if ids.is_empty() {
        return;
    }
    let lease_ms = millis(inner.options.lease);
    let span = tracing::debug_span!("renew leases", jobs = ids.len());
    let parameters: [&(dyn ToSql + Sync); 4] =
        [&ids, &attempts, &lease_ms, &inner.options.consumer];
    let renewed = inner.on_control(renew, &parameters);
    if let Err(error) = tracing::Instrument::instrument(renewed, span).await {
        tracing::warn!(%error, "PostgreSQL queue: renewing leases failed");
    }
}

/// A duration in whole milliseconds for the server, capped at a century: a longer
/// delay or lease would overflow PostgreSQL's intervals and fail its whole statement.
pub(crate) fn millis(duration: std::time::Duration) -> i64 {
    const CENTURY_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
    i64::try_from(duration.as_millis().min(CENTURY_MS)).unwrap_or(i64::MAX)
}

fn renew_sql(table: &QueueTable) -> String {
    format!(
        "UPDATE {queue} AS job SET run_at = now() + $3::int8 * interval '1 millisecond'
         FROM unnest($1::int8[], $2::int4[]) AS held(id, attempts)
         WHERE job.id = held.id AND job.attempts = held.attempts AND job.leased_by = $4",
        queue = table.queue()
    )
}

/// Hands back jobs claimed and never handled: due again now, the claim's attempt not
/// counted; idle consumers are notified.
pub(crate) fn give_back_sql(table: &QueueTable) -> String {
    format!(
        "WITH changed AS (
             UPDATE {queue} AS job SET run_at = now(), leased_by = NULL, attempts = job.attempts - 1
             FROM unnest($1::int8[], $2::int4[]) AS held(id, attempts)
             WHERE job.id = held.id AND job.attempts = held.attempts
             RETURNING job.id
         )
         SELECT count(*) FROM changed, LATERAL (SELECT pg_notify('{channel}', '')) AS notified",
        queue = table.queue(),
        channel = table.channel_name()
    )
}

/// Runs [`give_back_sql`] for the deliveries `tags`, taking them out of flight. Jobs
/// it cannot hand back (the server is gone) come due when their leases end.
pub(crate) async fn give_back(inner: &Inner, statement: &str, tags: Vec<u64>) {
    let (ids, attempts): (Vec<i64>, Vec<i32>) = inner.settle(tags).into_iter().flatten().unzip();
    hand_back(inner, statement, ids, attempts).await;
}

/// Runs [`give_back_sql`] for jobs claimed at `attempts`, in flight or not (a claim
/// whose fetch was cancelled).
#[tracing::instrument(level = "debug", name = "give back jobs", skip_all, fields(jobs = ids.len()))]
pub(crate) async fn hand_back(inner: &Inner, statement: &str, ids: Vec<i64>, attempts: Vec<i32>) {
    if ids.is_empty() {
        return;
    }
    let parameters: [&(dyn ToSql + Sync); 2] = [&ids, &attempts];
    if let Err(error) = inner.on_control(statement, &parameters).await {
        tracing::warn!(%error, jobs = ids.len(), "PostgreSQL queue: giving jobs back failed; they come due when their leases end");
    }
}
