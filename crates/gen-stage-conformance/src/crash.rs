//! The crash scenario, for any broker: workers in processes of their own, killed
//! with SIGKILL at random points, each followed by a new one, then a last one that
//! finishes; the record file and the broker's view are the witnesses.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{check_processed, read_records, recorded, wait_until};

/// How long a worker may take to reach a kill point, or the last one to finish.
const TWO_MINUTES: Duration = Duration::from_secs(120);

/// How long the records must stop growing before the broker is asked whether any
/// message is left.
const STALLED: Duration = Duration::from_secs(1);

/// One crash scenario: the worker binary and its arguments (`BROKER URL NAME`; the
/// record file and an instance name are added), and how many kills.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The `conformance-worker` binary (`env!("CARGO_BIN_EXE_conformance-worker")`).
    pub worker: PathBuf,
    /// Its first arguments: broker, URL, queue or stream name.
    pub args: Vec<String>,
    /// How many workers are killed before the last one finishes.
    pub kills: u32,
}

/// What the scenario saw.
#[derive(Clone, Copy, Debug)]
pub struct CrashSummary {
    /// The seed of the kill points.
    pub seed: u64,
    /// Messages processed more than once, each after a redelivery.
    pub processed_twice: usize,
}

/// A small generator for the kill points, from a seed the scenario prints.
struct Draws(u64);

impl Draws {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

impl Crash {
    fn spawn(&self, records: &Path, run: u32) -> Child {
        Command::new(&self.worker)
            .args(&self.args)
            .arg(records)
            .arg(format!("worker-{run}"))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the worker starts")
    }

    /// Runs the scenario over the messages `ids` (published before), `left` reading
    /// from the broker how many are not yet acked. Panics, naming the seed, if a
    /// message was never processed or was processed twice within one delivery (the
    /// same attempt recorded twice).
    pub async fn run<L, F>(&self, ids: &[i64], mut left: L) -> CrashSummary
    where
        L: FnMut() -> F,
        F: Future<Output = u64>,
    {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
        println!("crash scenario seed: {seed}");
        let records =
            std::env::temp_dir().join(format!("gsc-crash-{}-{}.records", std::process::id(), seed));
        let _ = std::fs::remove_file(&records);
        let mut draws = Draws(seed);
        for run in 1..=self.kills {
            assert!(
                left().await > 0,
                "no message left before kill {run}: publish more (seed {seed})"
            );
            let mut child = self.spawn(&records, run);
            let target = recorded(&records) + 1 + draws.next(150) as usize;
            // The broker is asked only once the records stop growing for a while:
            // asking may take longer than the worker needs to pass the kill point.
            let ran_out = &std::cell::Cell::new(false);
            let growth = &std::cell::Cell::new((recorded(&records), Instant::now()));
            wait_until("the worker processes messages", TWO_MINUTES, || {
                let now = recorded(&records);
                let reached = now >= target;
                if now != growth.get().0 {
                    growth.set((now, Instant::now()));
                }
                let stalled = growth.get().1.elapsed() >= STALLED;
                let left = left();
                async move {
                    ran_out.set(!reached && stalled && left.await == 0);
                    reached || ran_out.get()
                }
            })
            .await;
            assert!(
                !ran_out.get(),
                "every message was acked before kill {run}: publish more (seed {seed})"
            );
            child.start_kill().expect("SIGKILL sent");
            child.wait().await.expect("the worker is gone");
        }
        // The last worker finishes.
        let mut last = self.spawn(&records, self.kills + 1);
        wait_until("every message acked", TWO_MINUTES, || {
            let left = left();
            async move { left.await == 0 }
        })
        .await;
        last.start_kill().expect("SIGKILL sent");
        last.wait().await.expect("the worker is gone");
        let processed = read_records(&records).expect("the records");
        let _ = std::fs::remove_file(&records);
        let processed_twice = check_processed(ids, &processed)
            .unwrap_or_else(|problem| panic!("{problem} (seed {seed})"));
        CrashSummary {
            seed,
            processed_twice,
        }
    }
}
