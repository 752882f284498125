//! The benchmark suite: every scenario on gen-stage and hand-written with tokio
//! channels, alternating within one process, several runs each.

mod baseline;
mod gen_stage_side;
mod memory;
pub(crate) mod report;
mod stages;

use std::time::Duration;

use futures::future::BoxFuture;
use gen_stage::BoxError;

pub(crate) use report::{Report, Row};

type Run = fn(u64) -> BoxFuture<'static, Result<Duration, BoxError>>;

/// One scenario: its name, its size, and how to run each side.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    /// Events per run (each consumer's, for broadcast).
    pub(crate) events: u64,
    gen_stage: Run,
    baseline: Run,
}

/// Every scenario but `memory_flat`, at full size.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "linear_md1",
            events: 300_000,
            gen_stage: |events| Box::pin(gen_stage_side::linear(events, 1)),
            baseline: |events| Box::pin(baseline::linear(events, 1)),
        },
        Scenario {
            name: "linear_md10",
            events: 3_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::linear(events, 10)),
            baseline: |events| Box::pin(baseline::linear(events, 10)),
        },
        Scenario {
            name: "linear_md100",
            events: 30_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::linear(events, 100)),
            baseline: |events| Box::pin(baseline::linear(events, 100)),
        },
        Scenario {
            name: "linear_md1000",
            events: 300_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::linear(events, 1000)),
            baseline: |events| Box::pin(baseline::linear(events, 1000)),
        },
        Scenario {
            name: "linear_md10000",
            events: 300_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::linear(events, 10_000)),
            baseline: |events| Box::pin(baseline::linear(events, 10_000)),
        },
        Scenario {
            name: "three_stage",
            events: 200_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::three_stage(events)),
            baseline: |events| Box::pin(baseline::three_stage(events)),
        },
        Scenario {
            name: "fan_out_demand_4",
            events: 200_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::fan_out_demand_4(events)),
            baseline: |events| Box::pin(baseline::fan_out_demand_4(events)),
        },
        Scenario {
            name: "broadcast_4",
            events: 50_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::broadcast_4(events)),
            baseline: |events| Box::pin(baseline::broadcast_4(events)),
        },
        Scenario {
            name: "partition_4",
            events: 50_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::partition_4(events)),
            baseline: |events| Box::pin(baseline::partition_4(events)),
        },
        Scenario {
            name: "stream_interop",
            events: 100_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::stream_interop(events)),
            baseline: |events| Box::pin(baseline::stream_interop(events)),
        },
        Scenario {
            name: "consumer_supervisor",
            events: 1_000_000,
            gen_stage: |events| Box::pin(gen_stage_side::consumer_supervisor(events)),
            baseline: |events| Box::pin(baseline::consumer_supervisor(events)),
        },
    ]
}

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Runs of each side per scenario.
    pub(crate) runs: usize,
    /// Divides every scenario's size.
    pub(crate) shrink: u64,
    /// Only scenarios whose name contains one of these (all when empty).
    pub(crate) only: Vec<String>,
}

impl Plan {
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|wanted| name.contains(wanted.as_str()))
    }
}

/// Runs the plan, alternating gen-stage and baseline runs, and reports each scenario
/// as it completes through `progress`.
pub(crate) async fn run(plan: &Plan, mut progress: impl FnMut(&Row)) -> Result<Report, BoxError> {
    let mut report = Report::default();
    for scenario in scenarios() {
        if !plan.wants(scenario.name) {
            continue;
        }
        let events = (scenario.events / plan.shrink).max(1);
        let mut gen_stage = Vec::new();
        let mut baseline = Vec::new();
        for _ in 0..plan.runs {
            gen_stage.push(rate(events, on_worker((scenario.gen_stage)(events)).await?));
            baseline.push(rate(events, on_worker((scenario.baseline)(events)).await?));
        }
        let row = Row::throughput(scenario.name, events, gen_stage, baseline);
        progress(&row);
        report.rows.push(row);
    }
    if plan.wants("memory_flat") {
        let events = (memory::EVENTS / plan.shrink).max(1000);
        let row = memory::memory_flat(events).await?;
        progress(&row);
        report.rows.push(row);
    }
    Ok(report)
}

/// Runs one side of a scenario as a task of the runtime, as an application's code would
/// run, rather than on the thread that waits in `block_on` (which is not a worker: every
/// wake-up of code there crosses threads).
///
/// A run must leave no task behind: one that kept working would slow down every run
/// after it. Tasks may take a moment to wind down (consumers stop once told that their
/// producer has), so this waits up to a second for them.
async fn on_worker(
    run: BoxFuture<'static, Result<Duration, BoxError>>,
) -> Result<Duration, BoxError> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let elapsed = tokio::spawn(run)
        .await
        .map_err(|error| format!("a benchmark task failed: {error}"))??;
    for _ in 0..200 {
        if metrics.num_alive_tasks() <= before {
            return Ok(elapsed);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!(
        "a benchmark run left {} tasks running",
        metrics.num_alive_tasks() - before
    )
    .into())
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}
