//! Outcomes settled in the table: each applies only to the lease it settles.

use std::sync::Arc;
use std::time::Duration;

use gen_stage_pipeline::{AckError, Acknowledger, Outcome, Settled};
use tokio_postgres::types::ToSql;

use crate::queue::{ControlError, Inner};

/// The queue's [`Acknowledger`]: one statement per kind of outcome in each call.
pub(crate) struct PgAcker(pub(crate) Arc<Inner>);

/// Jobs settled the same way: ids, the attempts they were claimed at, and per job a
/// delay and an error where the statement takes them.
#[derive(Default)]
struct Jobs {
    ids: Vec<i64>,
    attempts: Vec<i32>,
    delays_ms: Vec<i64>,
    errors: Vec<Option<String>>,
}

impl Jobs {
    fn push(&mut self, id: i64, attempt: i32, delay: Duration, error: Option<String>) {
        self.ids.push(id);
        self.attempts.push(attempt);
        self.delays_ms.push(crate::lease::millis(delay));
        self.errors.push(error);
    }

    fn len(&self) -> u64 {
        self.ids.len() as u64
    }
}

impl Acknowledger for PgAcker {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let inner = &self.0;
        let claims = inner.settle(settled.iter().map(|settled| settled.tag.0));
        let (mut delete, mut retry, mut reject) =
            (Jobs::default(), Jobs::default(), Jobs::default());
        let mut not_in_flight = 0;
        for (settled, claim) in settled.iter().zip(claims) {
            let Some((id, attempt)) = claim else {
                // Settled before (twice), or given back: nothing to apply.
                not_in_flight += 1;
                continue;
            };
            let error = settled.failure.as_ref().map(ToString::to_string);
            match settled.outcome {
                Outcome::Ack | Outcome::Terminate => delete.push(id, attempt, Duration::ZERO, None),
                Outcome::Retry { after } => retry.push(id, attempt, after, error),
                Outcome::Reject => reject.push(id, attempt, Duration::ZERO, error),
                // Release, and any outcome added later: due again now.
                _ => retry.push(id, attempt, Duration::ZERO, error),
            }
        }
        inner.count_voided(not_in_flight);
        let table = &inner.options.table;
        let mut failure = None;
        for (jobs, statement) in [
            (&delete, delete_sql(table)),
            (&retry, retry_sql(table)),
            (&reject, reject_sql(table)),
        ] {
            if jobs.ids.is_empty() {
                continue;
            }
            match apply(inner, &statement, jobs).await {
                Ok(applied) => inner.count_voided(jobs.len().saturating_sub(applied)),
                Err(error) => {
                    inner.count_failed_outcomes(jobs.len());
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(error) => Err(AckError::new(error)),
        }
    }
}

/// Runs one outcome's statement; how many jobs it applied to (those whose lease was
/// still the claim's).
async fn apply(inner: &Inner, statement: &str, jobs: &Jobs) -> Result<u64, ControlError> {
    let span = tracing::debug_span!("settle jobs", jobs = jobs.ids.len());
    let parameters: [&(dyn ToSql + Sync); 4] =
        [&jobs.ids, &jobs.attempts, &jobs.delays_ms, &jobs.errors];
    let applied = async {
        let rows = inner.on_control(statement, &parameters).await?;
        // Every statement ends by counting the rows it applied to.
        let count = match rows.first() {
            Some(row) => row.try_get::<_, i64>(0).map_err(ControlError::Database)?,
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    };
    tracing::Instrument::instrument(applied, span).await
}

/// The held jobs: `unnest` of the four arrays every statement takes.
const HELD: &str =
    "unnest($1::int8[], $2::int4[], $3::int8[], $4::text[]) AS held(id, attempts, delay_ms, error)";

fn delete_sql(table: &crate::QueueTable) -> String {
    format!(
        "WITH gone AS (
             DELETE FROM {queue} AS job USING {HELD}
             WHERE job.id = held.id AND job.attempts = held.attempts
             RETURNING job.id
         )
         SELECT count(*) FROM gone",
        queue = table.queue()
    )
}

/// Due again after each job's delay; idle consumers are notified, so that they learn
/// the new due times.
fn retry_sql(table: &crate::QueueTable) -> String {
    format!(
        "WITH changed AS (
             UPDATE {queue} AS job
             SET run_at = now() + held.delay_ms * interval '1 millisecond',
                 leased_by = NULL,
                 last_error = held.error
             FROM {HELD}
             WHERE job.id = held.id AND job.attempts = held.attempts
             RETURNING job.id
         )
         SELECT count(*) FROM changed, LATERAL (SELECT pg_notify('{channel}', '')) AS notified",
        queue = table.queue(),
        channel = table.channel_name()
    )
}

fn reject_sql(table: &crate::QueueTable) -> String {
    format!(
        "WITH moved AS (
             DELETE FROM {queue} AS job USING {HELD}
             WHERE job.id = held.id AND job.attempts = held.attempts
             RETURNING job.id, job.payload, job.attempts, job.enqueued_at, held.error
         ), kept AS (
             INSERT INTO {dead} (id, payload, attempts, enqueued_at, error)
             SELECT id, payload, attempts, enqueued_at, error FROM moved
             ON CONFLICT (id) DO NOTHING
         )
         SELECT count(*) FROM moved",
        queue = table.queue(),
        dead = table.dead()
    )
}
