//! Leases: renewed while jobs are in flight, handed back for jobs never handled.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

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
        in_flight
            .jobs
            .iter()
            .map(|(&id, &attempt)| (id, attempt))
            .unzip()
    };
    if ids.is_empty() {
        return;
    }
    let lease_ms = i64::try_from(inner.options.lease.as_millis()).unwrap_or(i64::MAX);
    let span = tracing::debug_span!("renew leases", jobs = ids.len());
    let renewed = async {
        let client = inner.control().await?;
        client
            .execute(
                renew,
                &[&ids, &attempts, &lease_ms, &inner.options.consumer],
            )
            .await
    };
    let result = tracing::Instrument::instrument(renewed, span).await;
    match result {
        Ok(_) => inner.reached(),
        Err(error) => {
            tracing::warn!(%error, "PostgreSQL queue: renewing leases failed");
            inner.unreached(&error, false);
        }
    }
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

/// Runs [`give_back_sql`] for `ids`, taking them out of flight. Jobs it cannot hand
/// back (the server is gone) come due when their leases end.
pub(crate) async fn give_back(inner: &Inner, statement: &str, ids: Vec<i64>) {
    let (ids, attempts): (Vec<i64>, Vec<i32>) = inner
        .settle(ids)
        .into_iter()
        .filter_map(|(id, attempt)| Some((id, attempt?)))
        .unzip();
    hand_back(inner, statement, ids, attempts).await;
}

/// Runs [`give_back_sql`] for jobs claimed at `attempts`, in flight or not (a claim
/// whose fetch was cancelled).
#[tracing::instrument(level = "debug", name = "give back jobs", skip_all, fields(jobs = ids.len()))]
pub(crate) async fn hand_back(inner: &Inner, statement: &str, ids: Vec<i64>, attempts: Vec<i32>) {
    if ids.is_empty() {
        return;
    }
    let result = match inner.control().await {
        Ok(client) => client.query_one(statement, &[&ids, &attempts]).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => inner.reached(),
        Err(error) => {
            tracing::warn!(%error, jobs = ids.len(), "PostgreSQL queue: giving jobs back failed; they come due when their leases end");
            inner.unreached(&error, false);
        }
    }
}
