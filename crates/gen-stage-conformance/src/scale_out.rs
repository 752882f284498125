//! The scale-out scenario, for any broker: several workers in processes of their
//! own share one queue, stream or table; messages are published once every worker
//! says it is ready; every message is processed, none twice within one delivery, and
//! each worker handles its share.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Records, check_processed, read_records, wait_until};

/// One scale-out scenario: the worker binary and its first arguments (`BROKER URL
/// NAME`; a record file and an instance name are added for each), and how many
/// workers.
#[derive(Clone, Debug)]
pub struct ScaleOut {
    /// The `conformance-worker` binary (`env!("CARGO_BIN_EXE_conformance-worker")`).
    pub worker: PathBuf,
    /// Its first arguments: broker, URL, queue or stream name.
    pub args: Vec<String>,
    /// How many workers share the work.
    pub instances: usize,
}

/// What the scenario saw.
#[derive(Clone, Debug)]
pub struct ScaleOutSummary {
    /// Messages each worker processed.
    pub per_instance: Vec<usize>,
    /// Messages processed more than once, each after a redelivery.
    pub processed_twice: usize,
}

impl ScaleOut {
    /// Starts the workers, waits for each to print `ready`, then runs `publish`
    /// (which returns the ids it published) and waits until `left` (read from the
    /// broker) says every message is acked. Panics if a message was never processed,
    /// was processed twice within one delivery, or a worker handled less than a
    /// tenth of the messages.
    pub async fn run<P, PF, L, LF>(&self, publish: P, mut left: L) -> ScaleOutSummary
    where
        P: FnOnce() -> PF,
        PF: Future<Output = Vec<i64>>,
        L: FnMut() -> LF,
        LF: Future<Output = u64>,
    {
        let files: Vec<PathBuf> = (0..self.instances)
            .map(|instance| {
                // Named after the scenario's queue too: scenarios run side by side.
                let name = self.args.join("-").replace(['/', ':', '@', '%'], "_");
                std::env::temp_dir().join(format!(
                    "gsc-scale-out-{}-{name}-{instance}.records",
                    std::process::id()
                ))
            })
            .collect();
        let mut workers = Vec::new();
        for (instance, file) in files.iter().enumerate() {
            let _ = std::fs::remove_file(file);
            workers.push(self.spawn(file, instance).await);
        }
        let ids = publish().await;
        wait_until("every message acked", Duration::from_secs(120), || {
            let left = left();
            async move { left.await == 0 }
        })
        .await;
        for worker in &mut workers {
            worker.start_kill().expect("SIGKILL sent");
            worker.wait().await.expect("the worker is gone");
        }
        let mut processed = Records::new();
        let mut per_instance = Vec::new();
        for file in &files {
            let records = read_records(file).expect("a worker's records");
            let _ = std::fs::remove_file(file);
            per_instance.push(records.len());
            for (id, attempts) in records {
                processed.entry(id).or_default().extend(attempts);
            }
        }
        let processed_twice = check_processed(&ids, &processed)
            .unwrap_or_else(|problem| panic!("{problem} (per worker: {per_instance:?})"));
        for (instance, &count) in per_instance.iter().enumerate() {
            assert!(
                count * 10 >= ids.len(),
                "worker {instance} processed {count} of {} messages: less than a tenth ({per_instance:?})",
                ids.len()
            );
        }
        ScaleOutSummary {
            per_instance,
            processed_twice,
        }
    }

    /// Starts worker `instance` and waits for its `ready` line.
    async fn spawn(&self, records: &PathBuf, instance: usize) -> Child {
        let mut child = Command::new(&self.worker)
            .args(&self.args)
            .arg(records)
            .arg(format!("scale-out-{instance}"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the worker starts");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let read = reader.read_line(&mut line);
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the worker says it is ready within a minute")
            .expect("its output");
        assert_eq!(line.trim(), "ready", "worker {instance} says {line:?}");
        child
    }
}
