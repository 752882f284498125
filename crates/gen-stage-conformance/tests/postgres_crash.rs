//! Crash: a pipeline in a process of its own is killed with SIGKILL at random points,
//! ten times, and a new one takes over each time. Every job is processed at least
//! once, a job processed twice was delivered twice (the table's attempts say so), and
//! the table ends empty.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use gen_stage_conformance::{read_records, recorded};
use gen_stage_postgres::tokio_postgres::{self, NoTls};
use gen_stage_postgres::{QueueTable, enqueue_batch, migrate};
use tokio::process::{Child, Command};

const JOBS: usize = 2000;
const KILLS: u32 = 10;

fn url() -> String {
    std::env::var("GEN_STAGE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A small generator for the kill points, from a seed the test prints.
struct Draws(u64);

impl Draws {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn worker(table: &QueueTable, records: &PathBuf, run: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_conformance-worker"))
        .args(["postgres", &url(), table.name()])
        .arg(records)
        .arg(format!("worker-{run}"))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts")
}

/// Waits until `done` says so, looking every 20 ms, for at most two minutes (a guard
/// against a hang: the conditions are the record file and the table).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached in two minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_ten_kills_of_their_worker_processed_at_least_once_and_doubled_only_when_redelivered()
 {
    let db = match tokio_postgres::connect(&url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(error) if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!(
                "PostgreSQL at {} is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}",
                url()
            )
        }
        Err(error) => {
            eprintln!("skipped: PostgreSQL at {} is unreachable ({error})", url());
            return;
        }
    };
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1;
    println!("crash scenario seed: {seed}");
    let table = QueueTable::new(format!("gsc_crash_{}", std::process::id())).expect("a valid name");
    migrate(&db, &table).await.expect("declared");
    let payloads: Vec<Vec<u8>> = (0..JOBS).map(|n| n.to_string().into_bytes()).collect();
    let ids = enqueue_batch(&db, &table, &payloads)
        .await
        .expect("enqueued");
    let records = std::env::temp_dir().join(format!("gsc-crash-{}.records", std::process::id()));
    let _ = std::fs::remove_file(&records);
    let mut draws = Draws(seed);
    for run in 1..=KILLS {
        let mut child = worker(&table, &records, run);
        let target = recorded(&records) + 1 + draws.next(150) as usize;
        eventually("the worker processes jobs", || recorded(&records) >= target).await;
        child.start_kill().expect("SIGKILL sent");
        child.wait().await.expect("the worker is gone");
    }
    // The last worker finishes the table.
    let mut last = worker(&table, &records, KILLS + 1);
    let count = format!("SELECT count(*) FROM \"{}\"", table.name());
    let mut left = i64::MAX;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while left > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} jobs left after two minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = db.query_one(&count, &[]).await.expect("counted").get(0);
    }
    last.start_kill().expect("SIGKILL sent");
    last.wait().await.expect("the worker is gone");
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
    let processed = read_records(&records).expect("the records");
    let _ = std::fs::remove_file(&records);
    assert_eq!(dead, 0, "no job failed");
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !processed.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "never processed (seed {seed}): {missing:?}"
    );
    let mut twice = 0;
    for (id, attempts) in &processed {
        let mut seen = attempts.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            attempts.len(),
            "job {id} processed twice in one delivery (seed {seed}): attempts {attempts:?}"
        );
        twice += usize::from(attempts.len() > 1);
    }
    println!(
        "{} jobs, {} processed more than once, each after a redelivery",
        ids.len(),
        twice
    );
}
