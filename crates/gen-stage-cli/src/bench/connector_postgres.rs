//! `connector_postgres`: drain N jobs preloaded in a fresh queue table (the preload is
//! not timed), through a pipeline with trivial work and acks, against the loop
//! tokio-postgres's users write by hand for the same table: the same claim statement,
//! the next claim in flight while a batch is handled, each batch's acks sent as one
//! statement without waiting for it before the next batch, and every ack confirmed by
//! the server before the run ends, as the pipeline's are when its drain returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_postgres::tokio_postgres::{self, Client, NoTls};
use gen_stage_postgres::{PgQueue, PgQueueOptions, QueueTable, migrate};

use super::connector_count::drain_through;
use crate::broker_servers::postgres_url as url;
use tokio::time::Instant;

/// Jobs per claim on both sides: the processors ask for this many at once.
const BATCH: usize = 100;

/// Whether the server answers.
pub(crate) async fn reachable() -> Result<(), BoxError> {
    connect().await.map(drop)
}

async fn connect() -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A fresh table of `jobs` jobs, and a client of the server.
async fn preloaded(jobs: u64) -> Result<(Client, QueueTable), BoxError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let client = connect().await?;
    let table = QueueTable::new(format!(
        "gsb_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))?;
    migrate(&client, &table).await?;
    let jobs = i64::try_from(jobs)?;
    client
        .execute(
            &format!(
                "INSERT INTO \"{}\" (payload) SELECT convert_to(n::text, 'UTF8') FROM generate_series(1, $1::int8) AS n",
                table.name()
            ),
            &[&jobs],
        )
        .await?;
    client
        .execute(&format!("ANALYZE \"{}\"", table.name()), &[])
        .await?;
    Ok((client, table))
}

async fn drop_table(client: &Client, table: &QueueTable) -> Result<(), BoxError> {
    client
        .batch_execute(&format!(
            "DROP TABLE \"{0}\"; DROP TABLE \"{0}_dead\";",
            table.name()
        ))
        .await?;
    Ok(())
}

/// The pipeline: a `PgQueue` producer, two processors asking `BATCH` at a time.
pub(crate) async fn gen_stage(jobs: u64) -> Result<Duration, BoxError> {
    let (client, table) = preloaded(jobs).await?;
    let start = Instant::now();
    let queue =
        PgQueue::connect_url(&url(), PgQueueOptions::new(table.clone()).declare(false)).await?;
    let report = drain_through(jobs, BATCH, move || queue.producer()).await?;
    let elapsed = start.elapsed();
    let left: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{}\"", table.name()), &[])
        .await?
        .try_get(0)?;
    drop_table(&client, &table).await?;
    if report.settled.acked != jobs || report.ack_failures.total() > 0 || left != 0 {
        return Err(format!("the pipeline did not ack every job ({left} left): {report:?}").into());
    }
    Ok(elapsed)
}

/// The hand-written loop, with the connector's claim and ack statements (without
/// their ordering of the claimed rows, counting and notifications).
pub(crate) async fn baseline(jobs: u64) -> Result<Duration, BoxError> {
    let (client, table) = preloaded(jobs).await?;
    let name = table.name();
    let claim: Arc<str> = format!(
        "UPDATE \"{name}\" AS job
         SET attempts = job.attempts + 1, run_at = now() + interval '30 seconds', leased_by = 'hand'
         FROM (SELECT id FROM \"{name}\" WHERE run_at <= now() ORDER BY run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) AS due
         WHERE job.id = due.id
         RETURNING job.id, job.payload, job.attempts"
    )
    .into();
    let ack = format!(
        "DELETE FROM \"{name}\" AS job USING unnest($1::int8[], $2::int4[]) AS held(id, attempts)
         WHERE job.id = held.id AND job.attempts = held.attempts"
    );
    let start = Instant::now();
    let claims = Arc::new(connect().await?);
    let acks = Arc::new(connect().await?);
    let limit = BATCH as i64;
    let fetch = |claims: Arc<Client>, claim: Arc<str>| {
        tokio::spawn(async move { claims.query(&*claim, &[&limit]).await })
    };
    let mut next = fetch(claims.clone(), claim.clone());
    let mut handled = 0;
    let mut sent = Vec::new();
    while handled < jobs {
        let rows = next.await??;
        // The next claim runs while this batch is handled.
        next = fetch(claims.clone(), claim.clone());
        let (mut ids, mut attempts) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        for row in &rows {
            std::hint::black_box(row.try_get::<_, &[u8]>(1)?);
            ids.push(row.try_get::<_, i64>(0)?);
            attempts.push(row.try_get::<_, i32>(2)?);
        }
        handled += rows.len() as u64;
        let (acks, ack) = (acks.clone(), ack.clone());
        sent.push(tokio::spawn(async move {
            acks.execute(&ack, &[&ids, &attempts]).await
        }));
    }
    next.abort();
    let mut acked = 0;
    for batch in sent {
        acked += batch.await??;
    }
    let elapsed = start.elapsed();
    drop_table(&client, &table).await?;
    if acked != jobs {
        return Err(format!("the loop acked {acked} of {jobs} jobs").into());
    }
    Ok(elapsed)
}
