//! Crash, PostgreSQL: a pipeline in a process of its own is killed with SIGKILL at
//! random points, ten times, and a new one takes over each time. Every job is
//! processed at least once, a job processed twice was delivered twice (the table's
//! attempts say so), and the table ends empty.

use gen_stage_conformance::{Crash, brokers};
use gen_stage_postgres::{QueueTable, enqueue_batch, migrate};

const JOBS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_ten_kills_of_their_worker_processed_at_least_once_and_doubled_only_when_redelivered()
 {
    let Some(db) = brokers::postgres().await else {
        return;
    };
    let table = QueueTable::new(format!("gsc_crash_{}", std::process::id())).expect("a valid name");
    migrate(&db, &table).await.expect("declared");
    let payloads: Vec<Vec<u8>> = (0..JOBS).map(|n| n.to_string().into_bytes()).collect();
    let ids = enqueue_batch(&db, &table, &payloads)
        .await
        .expect("enqueued");
    let crash = Crash {
        worker: env!("CARGO_BIN_EXE_conformance-worker").into(),
        args: vec![
            "postgres".into(),
            brokers::postgres_url(),
            table.name().to_owned(),
        ],
        kills: 10,
    };
    let count = format!("SELECT count(*) FROM \"{}\"", table.name());
    let summary = crash
        .run(&ids, || async {
            let left: i64 = db.query_one(&count, &[]).await.expect("counted").get(0);
            left as u64
        })
        .await;
    let dead: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM \"{}_dead\"", table.name()),
            &[],
        )
        .await
        .expect("counted")
        .get(0);
    db.batch_execute(&format!(
        "DROP TABLE \"{0}\"; DROP TABLE \"{0}_dead\";",
        table.name()
    ))
    .await
    .expect("dropped");
    assert_eq!(dead, 0, "no job failed");
    println!(
        "{} jobs, {} processed more than once, each after a redelivery",
        ids.len(),
        summary.processed_twice
    );
}
