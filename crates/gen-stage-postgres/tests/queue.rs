//! The queue against the real server: every job settled once, retries and dead
//! letters, transactions, leases, hand-backs, the budget, two consumers.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gen_stage::BoxError;
use gen_stage::source::Fetch;
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions, RetryPolicy,
};
use gen_stage_postgres::{PgQueue, PgQueueOptions, enqueue, enqueue_batch};
use support::{OwnTable, client, count, eventually, url};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// Sends each job it handles (id, attempt, when) to the test; fails jobs whose
/// payload is `bad`; waits for a permit first if gated.
struct Record {
    seen: mpsc::UnboundedSender<(i64, u32, Instant)>,
    gate: Option<Arc<Semaphore>>,
}

impl Handler for Record {
    type Data = Vec<u8>;

    async fn handle_message(
        &self,
        message: &mut Message<Vec<u8>>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let id = match message.metadata().id {
            Some(MessageId::Number(id)) => id as i64,
            _ => -1,
        };
        let _ = self
            .seen
            .send((id, message.metadata().attempt, Instant::now()));
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        if message.data() == b"bad" {
            return Err("bad job".into());
        }
        Ok(())
    }
}

async fn queue(
    table: &OwnTable,
    options: impl FnOnce(PgQueueOptions) -> PgQueueOptions,
) -> PgQueue {
    PgQueue::connect_url(&url(), options(PgQueueOptions::new(table.0.clone())))
        .await
        .expect("the queue connects")
}

/// A pipeline whose producer takes jobs from `queue`.
fn fed_by(queue: &PgQueue, handler: Record) -> PipelineBuilder<Record> {
    let queue = queue.clone();
    PipelineBuilder::new(handler).producer(move || queue.producer())
}

fn recorder(
    gate: Option<Arc<Semaphore>>,
) -> (Record, mpsc::UnboundedReceiver<(i64, u32, Instant)>) {
    let (seen, receiver) = mpsc::unbounded_channel();
    (Record { seen, gate }, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_is_acked_once_and_none_is_left() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("acked");
    let queue = queue(&table, |options| options).await;
    let payloads: Vec<Vec<u8>> = (0..500).map(|n| format!("job {n}").into_bytes()).collect();
    let ids = enqueue_batch(&db, &table.0, &payloads)
        .await
        .expect("enqueued");
    assert_eq!(ids.len(), 500);
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&queue, handler)
        .processors(ProcessorOptions::new().concurrency(4))
        .start()
        .await
        .expect("the pipeline starts");
    let mut handled: HashMap<i64, u32> = HashMap::new();
    while handled.len() < ids.len() {
        let (id, _, _) = seen.recv().await.expect("the pipeline runs");
        *handled.entry(id).or_default() += 1;
    }
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 500, "{report:?}");
    assert_eq!(report.ack_failures.total(), 0);
    assert!(
        handled.values().all(|&times| times == 1),
        "a job handled twice"
    );
    let mut expected = ids.clone();
    expected.sort_unstable();
    let mut got: Vec<i64> = handled.into_keys().collect();
    got.sort_unstable();
    assert_eq!(got, expected);
    let queued = format!("SELECT count(*) FROM \"{}\"", table.0.name());
    assert_eq!(count(&db, &queued).await, 0, "every job deleted by its ack");
    let state = queue.state();
    assert_eq!(
        (state.in_flight, state.voided, state.failed_outcomes),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_retried_after_its_delay_then_dead_lettered_with_its_attempts() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("retried");
    let queue = queue(&table, |options| options).await;
    let bad = enqueue(&db, &table.0, b"bad").await.expect("enqueued");
    let good = enqueue(&db, &table.0, b"good").await.expect("enqueued");
    let (handler, mut seen) = recorder(None);
    let delay = Duration::from_millis(200);
    let pipeline = fed_by(&queue, handler)
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .first_delay(delay)
                .max_delay(delay)
                .no_jitter(),
        )
        .start()
        .await
        .expect("the pipeline starts");
    let mut attempts_of_bad = Vec::new();
    let mut good_seen = false;
    while attempts_of_bad.len() < 3 || !good_seen {
        let (id, attempt, at) = seen.recv().await.expect("the pipeline runs");
        if id == bad {
            attempts_of_bad.push((attempt, at));
        } else {
            assert_eq!(id, good);
            good_seen = true;
        }
    }
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(
        attempts_of_bad
            .iter()
            .map(|&(attempt, _)| attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3],
        "the attempt count comes from the table"
    );
    for pair in attempts_of_bad.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= delay,
            "a retry came before its delay"
        );
    }
    assert_eq!(
        (
            report.settled.acked,
            report.settled.retried,
            report.settled.rejected
        ),
        (1, 2, 1),
        "{report:?}"
    );
    let dead = db
        .query_one(
            &format!(
                "SELECT id, attempts, error, payload FROM \"{}_dead\"",
                table.0.name()
            ),
            &[],
        )
        .await
        .expect("one dead letter");
    assert_eq!(dead.get::<_, i64>(0), bad);
    assert_eq!(dead.get::<_, i32>(1), 3);
    assert!(
        dead.get::<_, Option<String>>(2)
            .is_some_and(|error| error.contains("bad job"))
    );
    assert_eq!(dead.get::<_, Vec<u8>>(3), b"bad");
    let queued = format!("SELECT count(*) FROM \"{}\"", table.0.name());
    assert_eq!(count(&db, &queued).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_transaction_is_delivered_only_if_it_commits() {
    let Some(mut db) = client().await else { return };
    let table = OwnTable::new("transactional");
    let queue = queue(&table, |options| options).await;
    let rolled_back = db.transaction().await.expect("a transaction");
    enqueue(&rolled_back, &table.0, b"never")
        .await
        .expect("enqueued");
    rolled_back.rollback().await.expect("rolled back");
    let committed = db.transaction().await.expect("a transaction");
    let id = enqueue(&committed, &table.0, b"once")
        .await
        .expect("enqueued");
    committed.commit().await.expect("committed");
    let mut source = queue.fetch_source();
    let mut claimed = Vec::new();
    source.fetch(10, &mut claimed).await.expect("a claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].data(), b"once");
    assert_eq!(claimed[0].metadata().id, Some(MessageId::Number(id as u64)));
    source.give_back(claimed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_handed_back_are_due_again_with_the_claim_not_counted() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("handed_back");
    let queue = queue(&table, |options| options).await;
    enqueue_batch(&db, &table.0, &[b"a", b"b", b"c"])
        .await
        .expect("enqueued");
    let mut source = queue.fetch_source();
    let mut claimed = Vec::new();
    source.fetch(3, &mut claimed).await.expect("a claim");
    assert_eq!(claimed.len(), 3);
    assert!(
        claimed
            .iter()
            .all(|message| message.metadata().attempt == 1)
    );
    let name = table.0.name();
    let leased =
        format!("SELECT count(*) FROM \"{name}\" WHERE leased_by IS NOT NULL AND run_at > now()");
    assert_eq!(count(&db, &leased).await, 3);
    assert_eq!(queue.state().in_flight, 3);
    source.give_back(claimed).await;
    assert_eq!(count(&db, &leased).await, 0);
    let fresh = format!("SELECT count(*) FROM \"{name}\" WHERE attempts = 0 AND run_at <= now()");
    assert_eq!(
        count(&db, &fresh).await,
        3,
        "due again, the claim not counted"
    );
    assert_eq!(queue.state().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_stay_within_the_in_flight_budget() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("budget");
    let queue = queue(&table, |options| options.max_in_flight(4)).await;
    let payloads: Vec<Vec<u8>> = (0..10).map(|n| vec![n]).collect();
    enqueue_batch(&db, &table.0, &payloads)
        .await
        .expect("enqueued");
    // Two producers' sources share the budget.
    let (mut first, mut second) = (queue.fetch_source(), queue.fetch_source());
    let mut claimed = Vec::new();
    first.fetch(10, &mut claimed).await.expect("a claim");
    assert_eq!(claimed.len(), 4, "no more than the budget");
    let leased = format!(
        "SELECT count(*) FROM \"{}\" WHERE leased_by IS NOT NULL AND run_at > now()",
        table.0.name()
    );
    assert_eq!(count(&db, &leased).await, 4, "the table's own view");
    let returned: Vec<_> = claimed.drain(..2).collect();
    first.give_back(returned).await;
    let mut more = Vec::new();
    second.fetch(10, &mut more).await.expect("a claim");
    assert_eq!(more.len(), 2, "the budget freed by the hand-back, no more");
    assert_eq!(queue.state().in_flight, 4);
    assert_eq!(count(&db, &leased).await, 4);
    first.give_back(claimed).await;
    second.give_back(more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_for_a_lease_that_ran_out_is_voided_not_applied() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("voided");
    // One job in flight at most: the first consumer cannot claim the job again itself.
    let first = queue(&table, |options| {
        options
            .consumer("first")
            .lease(Duration::from_secs(60))
            .max_in_flight(1)
    })
    .await;
    let second = queue(&table, |options| {
        options.consumer("second").lease(Duration::from_secs(60))
    })
    .await;
    let id = enqueue(&db, &table.0, b"slow").await.expect("enqueued");
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&first, handler)
        .start()
        .await
        .expect("the pipeline starts");
    // The first consumer holds the job in its handler; its lease runs out.
    assert_eq!(
        seen.recv().await.map(|(id, attempt, _)| (id, attempt)),
        Some((id, 1))
    );
    let name = table.0.name();
    db.execute(
        &format!("UPDATE \"{name}\" SET run_at = now() - interval '1 second'"),
        &[],
    )
    .await
    .expect("the lease ends");
    let mut source = second.fetch_source();
    let mut claimed = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), source.fetch(1, &mut claimed))
        .await
        .expect("the job is due again")
        .expect("a claim");
    assert_eq!(claimed[0].metadata().attempt, 2, "claimed again");
    // The first consumer's ack comes late: it must not delete the second's job.
    gate.add_permits(1);
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 1);
    assert_eq!(first.state().voided, 1);
    let row = db
        .query_one(
            &format!("SELECT attempts, leased_by FROM \"{name}\" WHERE id = $1"),
            &[&id],
        )
        .await
        .expect("the job is still there");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, Option<String>>(1)),
        (2, Some("second".to_owned()))
    );
    source.give_back(claimed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_the_table_and_never_claim_the_same_job() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("shared");
    let payloads: Vec<Vec<u8>> = (0..400).map(|n| format!("{n}").into_bytes()).collect();
    let first = queue(&table, |options| {
        options.consumer("first").max_in_flight(20)
    })
    .await;
    let second = queue(&table, |options| {
        options.consumer("second").max_in_flight(20)
    })
    .await;
    let (seen, mut all) = mpsc::unbounded_channel();
    let mut pipelines = Vec::new();
    for queue in [first, second] {
        let handler = Record {
            seen: seen.clone(),
            gate: None,
        };
        let pipeline = PipelineBuilder::new(handler)
            .producer(move || queue.producer())
            .processors(
                ProcessorOptions::new()
                    .concurrency(2)
                    .max_demand(5)
                    .min_demand(2),
            )
            .start()
            .await
            .expect("the pipeline starts");
        pipelines.push(pipeline);
    }
    let ids = enqueue_batch(&db, &table.0, &payloads)
        .await
        .expect("enqueued");
    let mut handled: HashMap<i64, u32> = HashMap::new();
    while handled.len() < ids.len() {
        let (id, _, _) = all.recv().await.expect("the pipelines run");
        *handled.entry(id).or_default() += 1;
    }
    let mut acked = 0;
    for pipeline in pipelines {
        acked += pipeline.drain(Duration::from_secs(30)).await.settled.acked;
    }
    assert_eq!(acked, 400);
    assert!(
        handled.values().all(|&times| times == 1),
        "a job claimed twice"
    );
    let queued = format!("SELECT count(*) FROM \"{}\"", table.0.name());
    assert_eq!(count(&db, &queued).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_cancelled_midway_frees_its_budget() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("cancelled");
    let queue = queue(&table, |options| options.max_in_flight(3)).await;
    enqueue_batch(&db, &table.0, &[b"a", b"b", b"c"])
        .await
        .expect("enqueued");
    let mut source = queue.fetch_source();
    let mut claimed = Vec::new();
    // Polled once, then dropped: the budget is set aside and the connection is being
    // opened. (A zero timeout would not do: tokio's timer fires on its next
    // millisecond tick, and polls the fetch again meanwhile.)
    let cancelled = source.fetch(3, &mut claimed).now_or_never();
    assert!(cancelled.is_none(), "cancelled before it claimed");
    assert!(claimed.is_empty());
    tokio::time::timeout(Duration::from_secs(60), source.fetch(3, &mut claimed))
        .await
        .expect("the whole budget is free again")
        .expect("a claim");
    assert_eq!(claimed.len(), 3);
    source.give_back(claimed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_runs_three_leases_long_keeps_its_job_from_the_other_consumer() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("renewed");
    // Renewed every second: two renewals late by a second each still keep it.
    let lease = Duration::from_secs(3);
    let first = queue(&table, |options| options.consumer("first").lease(lease)).await;
    let second = queue(&table, |options| options.consumer("second").lease(lease)).await;
    let id = enqueue(&db, &table.0, b"long").await.expect("enqueued");
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&first, handler)
        .start()
        .await
        .expect("the pipeline starts");
    assert_eq!(seen.recv().await.map(|(id, _, _)| id), Some(id));
    // The handler holds the job for three leases; the first consumer renews its lease
    // meanwhile, so the second finds nothing due all that time (the scenario is the
    // time passing, not a timing: waiting longer could only let a lapse show).
    let mut source = second.fetch_source();
    let mut claimed = Vec::new();
    let waited = tokio::time::timeout(3 * lease, source.fetch(1, &mut claimed)).await;
    assert!(
        waited.is_err() && claimed.is_empty(),
        "the job was claimed again"
    );
    gate.add_permits(1);
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 1);
    assert_eq!(
        first.state().voided,
        0,
        "the ack applied to a lease still held"
    );
    let queued = format!("SELECT count(*) FROM \"{}\"", table.0.name());
    assert_eq!(count(&db, &queued).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_of_its_own_consumes_a_table_declared_elsewhere_with_declare_off() {
    use gen_stage_postgres::tokio_postgres::{Config, NoTls};
    let Some(db) = client().await else { return };
    let table = OwnTable::new("role");
    let name = table.0.name();
    gen_stage_postgres::migrate(&db, &table.0)
        .await
        .expect("declared by the admin");
    // A role that may use the queue's tables and nothing more (no CREATE).
    let role = format!("{name}_consumer");
    db.batch_execute(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'not-a-secret';
         GRANT SELECT, INSERT, UPDATE, DELETE ON \"{name}\", \"{name}_dead\" TO \"{role}\";
         GRANT USAGE ON SEQUENCE \"{name}_id_seq\" TO \"{role}\";"
    ))
    .await
    .expect("the role is made");
    let mut config: Config = url().parse().expect("a valid URL");
    config.user(&role).password("not-a-secret");
    let connected = PgQueue::connect(
        config,
        NoTls,
        PgQueueOptions::new(table.0.clone()).declare(false),
    )
    .await;
    let id = enqueue(&db, &table.0, b"for the role")
        .await
        .expect("enqueued");
    let claimed = match &connected {
        Ok(queue) => {
            let mut source = queue.fetch_source();
            let mut claimed = Vec::new();
            let fetched = source.fetch(1, &mut claimed).await;
            let ids: Vec<_> = claimed
                .iter()
                .map(|message| message.metadata().id.clone())
                .collect();
            source.give_back(claimed).await;
            fetched.map(|_| ids)
        }
        Err(error) => panic!("the role connects: {error}"),
    };
    db.batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"))
        .await
        .expect("the role is dropped");
    assert_eq!(
        claimed.expect("a claim as the role"),
        [Some(MessageId::Number(id as u64))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_acks_what_was_handled_and_hands_back_what_was_only_fetched() {
    use gen_stage::source::FetchProducer;
    let Some(db) = client().await else { return };
    let table = OwnTable::new("drained");
    let queue = queue(&table, |options| options).await;
    let payloads: Vec<Vec<u8>> = (0..30).map(|n| vec![n]).collect();
    enqueue_batch(&db, &table.0, &payloads)
        .await
        .expect("enqueued");
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = PipelineBuilder::new(handler)
        .producer({
            let queue = queue.clone();
            // Fetches 10 beyond the processors' demand: those are held by the producer.
            move || FetchProducer::new(queue.fetch_source()).prefetch(10)
        })
        .processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(2)
                .min_demand(1),
        )
        .start()
        .await
        .expect("the pipeline starts");
    seen.recv().await.expect("a job is in the handler");
    let pipeline = Arc::new(pipeline);
    let draining = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.drain(Duration::from_secs(30)).await }
    });
    gate.add_permits(100);
    let report = draining.await.expect("the drain ends");
    assert!(!report.deadline_reached);
    assert_eq!(
        report.settled.total(),
        report.taken_in,
        "the report adds up: {report:?}"
    );
    let name = table.0.name();
    let left = count(&db, &format!("SELECT count(*) FROM \"{name}\"")).await;
    assert_eq!(
        left as u64,
        30 - report.settled.acked,
        "what was handled is acked"
    );
    // What was only fetched is handed back: by the producer as it drains, and by the
    // claim task of a fetch the drain cancelled, at once on its own task.
    let (leased, counted) = (
        format!("SELECT count(*) FROM \"{name}\" WHERE leased_by IS NOT NULL"),
        format!("SELECT count(*) FROM \"{name}\" WHERE attempts > 0"),
    );
    eventually(|| async { count(&db, &leased).await == 0 && count(&db, &counted).await == 0 })
        .await;
    assert_eq!(queue.state().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_claimed_for_a_fetch_that_was_cancelled_are_handed_back_at_once() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("orphaned");
    // A lease far longer than the wait below: only a hand-back makes the jobs due.
    let queue = queue(&table, |options| options.lease(Duration::from_secs(600))).await;
    let mut source = queue.fetch_source();
    let mut claimed = Vec::new();
    // Connected and listening first (fetches on the empty table, cut short), so that
    // the next fetch goes straight to its claim.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let idle =
            tokio::time::timeout(Duration::from_millis(200), source.fetch(3, &mut claimed)).await;
        assert!(idle.is_err() && claimed.is_empty(), "nothing was due yet");
        if queue.state().last_fetch_latency.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the source never claimed");
    }
    enqueue_batch(&db, &table.0, &[b"a", b"b", b"c"])
        .await
        .expect("enqueued");
    let name = table.0.name();
    let before = row_versions(&db, name).await;
    // Dropped after its first poll: the claim was sent and runs on.
    let cancelled = source.fetch(3, &mut claimed).now_or_never();
    assert!(cancelled.is_none() && claimed.is_empty());
    let due = format!(
        "SELECT count(*) FROM \"{name}\" WHERE leased_by IS NULL AND attempts = 0 AND run_at <= now()"
    );
    // Due again, and rewritten since: the claim ran, and its rows were handed back.
    eventually(|| async { count(&db, &due).await == 3 && row_versions(&db, name).await != before })
        .await;
    tokio::time::timeout(Duration::from_secs(60), source.fetch(3, &mut claimed))
        .await
        .expect("the jobs are due")
        .expect("a claim");
    assert_eq!(claimed.len(), 3);
    assert!(
        claimed
            .iter()
            .all(|message| message.metadata().attempt == 1),
        "the lost claim did not count"
    );
    source.give_back(claimed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_of_one_job_to_one_consumer_are_told_apart() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("twice");
    let queue = queue(&table, |options| options.lease(Duration::from_secs(600))).await;
    let id = enqueue(&db, &table.0, b"once").await.expect("enqueued");
    let (mut first, mut second) = (queue.fetch_source(), queue.fetch_source());
    let mut stale = Vec::new();
    first.fetch(1, &mut stale).await.expect("a claim");
    let name = table.0.name();
    // The first delivery's lease runs out: the same queue claims the job again.
    db.execute(
        &format!("UPDATE \"{name}\" SET run_at = now() - interval '1 second'"),
        &[],
    )
    .await
    .expect("the lease ends");
    let mut fresh = Vec::new();
    second.fetch(1, &mut fresh).await.expect("a claim");
    assert_eq!(fresh[0].metadata().attempt, 2);
    assert_eq!(queue.state().in_flight, 2, "two deliveries in flight");
    // The stale delivery handed back must not touch the fresh one's lease.
    first.give_back(stale).await;
    assert_eq!(queue.state().in_flight, 1);
    let row = db
        .query_one(
            &format!("SELECT attempts, leased_by IS NOT NULL FROM \"{name}\" WHERE id = $1"),
            &[&id],
        )
        .await
        .expect("the job");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, bool>(1)),
        (2, true),
        "still the fresh delivery's"
    );
    second.give_back(fresh).await;
    assert_eq!(queue.state().in_flight, 0);
}

/// The rows' versions (`xmin`), in id order: they change with every update.
async fn row_versions(db: &gen_stage_postgres::tokio_postgres::Client, name: &str) -> String {
    db.query_one(
        &format!("SELECT string_agg(xmin::text, ',' ORDER BY id) FROM \"{name}\""),
        &[],
    )
    .await
    .expect("the rows' versions")
    .get(0)
}
