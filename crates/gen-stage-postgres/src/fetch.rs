//! A producer's claims: due jobs, as many as the pipeline asks for and the budget
//! allows, leased to this consumer.

use std::sync::Arc;
use std::time::Duration;

use gen_stage::source::{Fetch, Fetched, OnFetchError};
use gen_stage_pipeline::{AckTag, Message, MessageId};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::error::FetchError;
use crate::lease;
use crate::queue::PgQueue;

/// The shortest wait after a claim that found nothing to take: the granularity of
/// due times seen by an idle consumer.
const MIN_WAIT: Duration = Duration::from_millis(20);

/// The [`Fetch`] source of a [`PgQueue`]'s producer: made by
/// [`PgQueue::producer`].
///
/// Each fetch claims up to what the pipeline asked for, within the queue's
/// in-flight budget, in due order (`run_at`, then `id`). When nothing is due it
/// waits, on its connection, for a `NOTIFY` from [`enqueue`](crate::enqueue), for the
/// earliest job that comes due, or for the poll interval, whichever is first.
///
/// The claim runs on a task of its own: a fetch cancelled while its claim runs (the
/// pipeline stopped or drained just then) loses nothing, as the task hands the jobs it
/// claimed back at once.
pub struct PgFetch {
    queue: PgQueue,
    /// This producer's connection, with `LISTEN` on the queue's channel.
    client: Option<Arc<Client>>,
    /// Woken by notifications on the connection.
    woken: Arc<Notify>,
    claim: Arc<str>,
    next_due: String,
    give_back: Arc<str>,
}

impl std::fmt::Debug for PgFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFetch")
            .field("queue", &self.queue)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl PgFetch {
    pub(crate) fn new(queue: PgQueue) -> Self {
        let table = &queue.inner.options.table;
        let queue_table = table.queue();
        // The claim takes due rows in order through the `(run_at, id)` index, skipping
        // rows other consumers are claiming; the lease is the new due time.
        let claim = format!(
            "UPDATE {queue_table} AS job
             SET attempts = job.attempts + 1,
                 run_at = now() + $2::int8 * interval '1 millisecond',
                 leased_by = $3
             FROM (
                 SELECT id, run_at FROM {queue_table}
                 WHERE run_at <= now()
                 ORDER BY run_at, id
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
             ) AS due
             WHERE job.id = due.id
             RETURNING job.id, job.payload, job.attempts, due.run_at"
        );
        let next_due =
            format!("SELECT extract(epoch FROM (min(run_at) - now()))::float8 FROM {queue_table}");
        let give_back = lease::give_back_sql(table);
        PgFetch {
            queue,
            client: None,
            woken: Arc::new(Notify::new()),
            claim: claim.into(),
            next_due,
            give_back: give_back.into(),
        }
    }

    /// This producer's connection, opened (and listening) if it is not.
    async fn connection(&mut self) -> Result<&Arc<Client>, FetchError> {
        if self.client.as_ref().is_none_or(|client| client.is_closed()) {
            self.client = None;
            let inner = &self.queue.inner;
            let client = inner
                .open(Some(self.woken.clone()))
                .await
                .map_err(FetchError::Connect)?;
            let listen = format!("LISTEN {}", inner.options.table.channel());
            if let Err(error) = client.batch_execute(&listen).await {
                inner.unreached(&error, true);
                return Err(FetchError::Connect(error));
            }
            self.client = Some(Arc::new(client));
        }
        match &self.client {
            Some(client) => Ok(client),
            None => unreachable!("the connection was just opened"),
        }
    }

    /// Claims up to `max` due jobs into `into`; how many.
    #[tracing::instrument(level = "debug", name = "claim jobs", skip_all, fields(table = %self.queue.inner.options.table, max))]
    async fn claim(
        &mut self,
        max: usize,
        into: &mut Vec<Message<Vec<u8>>>,
    ) -> Result<usize, FetchError> {
        let queue = self.queue.clone();
        let inner = &queue.inner;
        let reservation = inner.reserve(max);
        if reservation.granted == 0 {
            return Ok(0);
        }
        let lease_ms = lease::millis(inner.options.lease);
        let limit = i64::try_from(reservation.granted).unwrap_or(i64::MAX);
        let started = Instant::now();
        let client = self.connection().await?.clone();
        // On a task of its own, so that a fetch dropped while the claim runs loses
        // nothing: what the task claimed is handed back unless this fetch takes it.
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (statement, give_back) = (self.claim.clone(), self.give_back.clone());
        let (owner, claimant) = (inner.options.consumer.clone(), queue.inner.clone());
        tokio::spawn(async move {
            let rows = client
                .query(&*statement, &[&limit, &lease_ms, &owner])
                .await;
            let claim = Claim {
                rows: Some(rows),
                reservation: Some(reservation),
                hand_back: Some((claimant, give_back)),
            };
            // Refused (the fetch is gone): dropped here, and handed back.
            let _ = sender.send(claim);
        });
        let Ok(claim) = receiver.await else {
            return Err(FetchError::Interrupted);
        };
        let (claimed, reservation) = claim.take();
        let rows = match claimed {
            Ok(rows) => rows,
            Err(error) => {
                inner.unreached(&error, false);
                return Err(FetchError::Claim(error));
            }
        };
        inner.reached();
        inner.record_fetch_latency(started.elapsed());
        // Read as the schema says; a table declared otherwise is an error, not a panic
        // (its claimed rows come due again when their leases end).
        let mut jobs = rows
            .into_iter()
            .map(|row| {
                Ok(ClaimedJob {
                    id: row.try_get(0)?,
                    payload: row.try_get(1)?,
                    attempts: row.try_get(2)?,
                    due: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<ClaimedJob>, tokio_postgres::Error>>()
            .map_err(FetchError::Claim)?;
        // In due order: `RETURNING` keeps none.
        jobs.sort_by_key(|job| (job.due, job.id));
        let tags = reservation.claimed(jobs.iter().map(|job| (job.id, job.attempts)));
        for (job, tag) in jobs.into_iter().zip(tags) {
            let handle = self.queue.group.handle(AckTag(tag));
            into.push(
                Message::new(job.payload, handle)
                    .with_attempt(u32::try_from(job.attempts).unwrap_or(u32::MAX))
                    .with_id(MessageId::Number(job.id as u64)),
            );
        }
        lease::keep_renewing(&queue);
        Ok(into.len())
    }

    /// How long until the earliest job comes due, as far as the table says now.
    #[tracing::instrument(level = "debug", name = "next due time", skip_all)]
    async fn until_next_due(&mut self) -> Option<Duration> {
        let client = self.client.as_ref()?;
        let row = client.query_one(&self.next_due, &[]).await.ok()?;
        let seconds: Option<f64> = row.try_get(0).ok()?;
        seconds.map(|seconds| Duration::from_secs_f64(seconds.max(0.0)))
    }
}

impl Fetch for PgFetch {
    type Item = Message<Vec<u8>>;
    type Error = FetchError;

    async fn fetch(
        &mut self,
        max: usize,
        into: &mut Vec<Message<Vec<u8>>>,
    ) -> Result<Fetched, FetchError> {
        loop {
            // Enabled before the claim: a notification during it is not missed.
            let woken = self.woken.clone();
            let notified = woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let inner = self.queue.inner.clone();
            let budget = inner.budget_freed.notified();
            tokio::pin!(budget);
            budget.as_mut().enable();
            if self.claim(max, into).await? > 0 {
                return Ok(Fetched::More);
            }
            let poll = self.queue.inner.options.poll_interval;
            if self.budget_left() == 0 {
                // Nothing may be claimed before budget frees (jobs in flight settle, or
                // another producer's claim takes less than it set aside).
                tokio::select! {
                    () = &mut budget => {}
                    () = &mut notified => {}
                    () = tokio::time::sleep(poll) => {}
                }
                continue;
            }
            // Not before `MIN_WAIT`: rows that are due but locked by another consumer's
            // claim would otherwise make this loop claim again at once.
            let wait = self
                .until_next_due()
                .await
                .map_or(poll, |due| due.min(poll))
                .max(MIN_WAIT);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn give_back(&mut self, messages: Vec<Message<Vec<u8>>>) {
        let tags: Vec<u64> = messages
            .into_iter()
            .map(|message| message.into_parts().2.into_tag().0)
            .collect();
        lease::give_back(&self.queue.inner, &self.give_back, tags).await;
    }

    fn on_error(&mut self, error: &FetchError, attempt: u32) -> OnFetchError {
        let after = self.queue.inner.options.backoff.delay(attempt);
        tracing::warn!(%error, attempt, ?after, "PostgreSQL queue: fetch failed, retrying");
        OnFetchError::Retry { after }
    }

    // `fetch` waits on its own and never comes back empty.
    async fn idle(&mut self, _empty: u32) {}
}

/// What a claim's task claimed: handed back when dropped, unless the fetch took it
/// ([`Claim::take`]): dropped in the channel, or refused by a fetch that is gone.
struct Claim {
    rows: Option<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>,
    reservation: Option<crate::queue::Reservation>,
    hand_back: Option<(Arc<crate::queue::Inner>, Arc<str>)>,
}

impl Claim {
    fn take(
        mut self,
    ) -> (
        Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        crate::queue::Reservation,
    ) {
        self.hand_back = None;
        match (self.rows.take(), self.reservation.take()) {
            (Some(rows), Some(reservation)) => (rows, reservation),
            _ => unreachable!("a claim is taken once"),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let (Some((inner, statement)), Some(Ok(rows))) = (self.hand_back.take(), &self.rows) else {
            return;
        };
        let (ids, attempts): (Vec<i64>, Vec<i32>) = rows
            .iter()
            .filter_map(|row| {
                Some((
                    row.try_get::<_, i64>(0).ok()?,
                    row.try_get::<_, i32>(2).ok()?,
                ))
            })
            .unzip();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { lease::hand_back(&inner, &statement, ids, attempts).await });
        }
    }
}

/// One row a claim returned.
struct ClaimedJob {
    id: i64,
    payload: Vec<u8>,
    attempts: i32,
    due: std::time::SystemTime,
}

impl PgFetch {
    fn budget_left(&self) -> usize {
        let inner = &self.queue.inner;
        inner
            .lock_in_flight()
            .budget_left(inner.options.max_in_flight)
    }
}
