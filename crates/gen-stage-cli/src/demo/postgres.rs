//! The demo's jobs in a PostgreSQL table of their own, consumed through
//! gen-stage-postgres.

use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{Message, PipelineBuilder};
use gen_stage_postgres::tokio_postgres::{self, Client, NoTls};
use gen_stage_postgres::{PgQueue, PgQueueOptions, QueueTable, enqueue_batch, migrate};

use crate::broker_servers::postgres_url as url;

use super::payload::{self, encode};
use super::work::{Job, Work};

/// How often the demo looks whether the table is empty.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A queue table made for this run, and a client to watch and drop it.
pub(crate) struct PgSource {
    queue: PgQueue,
    client: Client,
    table: QueueTable,
}

impl PgSource {
    /// Makes the table and enqueues `jobs`, in batches of 1000.
    pub(crate) async fn new(jobs: Vec<Job>) -> Result<PgSource, BoxError> {
        let (client, connection) =
            tokio_postgres::connect(&url(), NoTls)
                .await
                .map_err(|error| {
                    format!("PostgreSQL at {} (GEN_STAGE_POSTGRES_URL): {error}", url())
                })?;
        tokio::spawn(connection);
        let table = QueueTable::new(format!("gen_stage_demo_{}", std::process::id()))?;
        migrate(&client, &table).await?;
        for chunk in jobs.chunks(1000) {
            let payloads: Vec<[u8; 17]> = chunk.iter().map(encode).collect();
            enqueue_batch(&client, &table, &payloads).await?;
        }
        let queue =
            PgQueue::connect_url(&url(), PgQueueOptions::new(table.clone()).declare(false)).await?;
        Ok(PgSource {
            queue,
            client,
            table,
        })
    }

    pub(crate) fn feed(&self, builder: PipelineBuilder<Work>) -> PipelineBuilder<Work> {
        let queue = self.queue.clone();
        builder
            .producer_with(move || queue.producer(), decode_message)
            .source_health(self.queue.clone())
    }

    /// Completes once the table is empty: every job acked (or dead-lettered).
    pub(crate) async fn settled(&self) {
        let count = format!("SELECT count(*) FROM \"{}\"", self.table.name());
        loop {
            if let Ok(row) = self.client.query_one(&count, &[]).await {
                if row.try_get::<_, i64>(0).is_ok_and(|left| left == 0) {
                    return;
                }
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    pub(crate) fn leftovers(&self) -> (usize, u64) {
        let state = self.queue.state();
        (state.in_flight, state.voided)
    }

    pub(crate) async fn finish(self, keep: bool) -> Result<Option<String>, BoxError> {
        if keep {
            let name = self.table.name();
            return Ok(Some(format!(
                "PostgreSQL tables {name} and {name}_dead (drop them when done)"
            )));
        }
        self.client
            .batch_execute(&format!(
                "DROP TABLE \"{0}\"; DROP TABLE \"{0}_dead\";",
                self.table.name()
            ))
            .await?;
        Ok(None)
    }
}

fn decode_message(message: Message<Vec<u8>>) -> Message<Job> {
    payload::decode_message(message, |payload| payload)
}
