//! The benchmark suite: every scenario on gen-stage and hand-written with tokio
//! channels, alternating within one process, several runs each.

mod baseline;
#[cfg(any(
    feature = "postgres",
    feature = "nats",
    feature = "rabbitmq",
    feature = "redis"
))]
mod connector_count;
#[cfg(feature = "nats")]
mod connector_nats;
#[cfg(feature = "postgres")]
mod connector_postgres;
#[cfg(feature = "rabbitmq")]
mod connector_rabbitmq;
#[cfg(feature = "redis")]
mod connector_redis;
mod gen_stage_side;
mod memory;
mod pipeline_baseline;
mod pipeline_side;
pub(crate) mod report;
mod stages;
pub(crate) mod traffic;

use std::time::Duration;

use std::future::Future;

use futures::future::BoxFuture;
use gen_stage::BoxError;

pub(crate) use report::{Report, Row};
use traffic::Measured;

use gen_stage_side::Window;

type Run = Box<dyn Fn(u64) -> BoxFuture<'static, Result<Measured, BoxError>>>;

/// One scenario: its name, its size, and how to run each side.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    /// Events per run (each consumer's, for broadcast).
    pub(crate) events: u64,
    gen_stage: Run,
    baseline: Run,
}

/// A side's run: its time, and its traffic where it counts it.
fn boxed<F, M>(side: impl Fn(u64) -> F + 'static) -> Run
where
    F: Future<Output = Result<M, BoxError>> + Send + 'static,
    M: Into<Measured>,
{
    Box::new(move |events| {
        let run = side(events);
        Box::pin(async move { run.await.map(Into::into) })
    })
}

fn scenario<G, B, GM, BM>(
    name: &'static str,
    events: u64,
    gen_stage: impl Fn(u64) -> G + 'static,
    baseline: impl Fn(u64) -> B + 'static,
) -> Scenario
where
    G: Future<Output = Result<GM, BoxError>> + Send + 'static,
    B: Future<Output = Result<BM, BoxError>> + Send + 'static,
    GM: Into<Measured>,
    BM: Into<Measured>,
{
    Scenario {
        name,
        events,
        gen_stage: boxed(gen_stage),
        baseline: boxed(baseline),
    }
}

/// `linear` on gen-stage at `max_demand`, against `hand` given the same `max_demand`.
fn linear_against<B>(
    name: &'static str,
    events: u64,
    max_demand: usize,
    hand: fn(u64, usize) -> B,
) -> Scenario
where
    B: Future<Output = Result<Measured, BoxError>> + Send + 'static,
{
    scenario(
        name,
        events,
        move |n| gen_stage_side::linear(n, Window::max_demand(max_demand)),
        move |n| hand(n, max_demand),
    )
}

/// Every scenario but `memory_flat`, at full size: the benchmark issue's, then the
/// linear ones against the demand protocol written by hand ([`baseline::credit`]),
/// then the same topologies with their consumers subscribed at the baseline's window
/// ([`Window::baseline`]: batches of 1000, or of 250 for the partition baseline's
/// parts), which show what the stages cost when the demand protocol lets as many
/// events be in flight as the hand-written pipeline does.
pub(crate) fn scenarios() -> Vec<Scenario> {
    use gen_stage_side as stages;
    let wide = Window::baseline(1000);
    // A counter producer and a counting consumer at `max_demand`, against the
    // baseline's channels or against the demand protocol written by hand.
    let linear =
        |name, events, max_demand| linear_against(name, events, max_demand, baseline::linear);
    let credit =
        |name, events, max_demand| linear_against(name, events, max_demand, baseline::credit);
    vec![
        linear("linear_md1", 300_000, 1),
        linear("linear_md10", 3_000_000, 10),
        linear("linear_md100", 30_000_000, 100),
        linear("linear_md1000", 300_000_000, 1000),
        linear("linear_md10000", 300_000_000, 10_000),
        scenario(
            "three_stage",
            200_000_000,
            |n| stages::three_stage(n, Window::max_demand(1000)),
            baseline::three_stage,
        ),
        scenario(
            "fan_out_demand_4",
            200_000_000,
            |n| stages::fan_out_demand_4(n, Window::max_demand(1000)),
            baseline::fan_out_demand_4,
        ),
        scenario(
            "broadcast_4",
            50_000_000,
            |n| stages::broadcast_4(n, Window::max_demand(1000)),
            baseline::broadcast_4,
        ),
        scenario(
            "partition_4",
            50_000_000,
            |n| stages::partition_4(n, Window::max_demand(1000)),
            baseline::partition_4,
        ),
        scenario(
            "stream_interop",
            100_000_000,
            stages::stream_interop,
            baseline::stream_interop,
        ),
        scenario(
            "stream_batches",
            100_000_000,
            stages::stream_batches,
            baseline::stream_batches,
        ),
        scenario(
            "consumer_supervisor",
            1_000_000,
            stages::consumer_supervisor,
            baseline::consumer_supervisor,
        ),
        credit("credit_md1", 300_000, 1),
        credit("credit_md10", 3_000_000, 10),
        credit("credit_md100", 30_000_000, 100),
        credit("credit_md1000", 300_000_000, 1000),
        scenario(
            "linear_wide",
            300_000_000,
            move |n| stages::linear(n, wide),
            |n| baseline::linear(n, 1000),
        ),
        scenario(
            "three_stage_wide",
            200_000_000,
            move |n| stages::three_stage(n, wide),
            baseline::three_stage,
        ),
        scenario(
            "fan_out_demand_4_wide",
            200_000_000,
            move |n| stages::fan_out_demand_4(n, wide),
            baseline::fan_out_demand_4,
        ),
        scenario(
            "broadcast_4_wide",
            50_000_000,
            move |n| stages::broadcast_4(n, wide),
            baseline::broadcast_4,
        ),
        scenario(
            "partition_4_wide",
            50_000_000,
            // The baseline splits each batch of 1000 in four parts of about 250.
            |n| stages::partition_4(n, Window::baseline(250)),
            baseline::partition_4,
        ),
        // The Broadway anchor's scenarios: a producer of numbered messages -> 2
        // processors -> a batcher (size 100, timeout 1 s) -> a batch processor -> ack.
        pipeline("pipeline_w1", W1),
        pipeline(
            "pipeline_w2",
            PipelineShape {
                batcher: false,
                ..W1
            },
        ),
        pipeline(
            "pipeline_w3",
            PipelineShape {
                max_demand: 1000,
                ..W1
            },
        ),
        pipeline(
            "pipeline_w4",
            PipelineShape {
                rate_limited: true,
                ..W1
            },
        ),
        pipeline(
            "pipeline_w5",
            PipelineShape {
                partitioned: true,
                ..W1
            },
        ),
        // W1 and W2 at the pipeline's own defaults (processors: twice the cores,
        // `max_demand` 10; batcher: 100, 1 s), against the same hand-written rows.
        pipeline_at_defaults("pipeline_defaults_w1", W1),
        pipeline_at_defaults(
            "pipeline_defaults_w2",
            PipelineShape {
                batcher: false,
                ..W1
            },
        ),
        // The connectors (cargo features of this crate): drain preloaded jobs from the
        // real broker, against the client's own loop written by hand.
        #[cfg(feature = "postgres")]
        scenario(
            "connector_postgres",
            100_000,
            connector_postgres::gen_stage,
            connector_postgres::baseline,
        ),
        #[cfg(feature = "nats")]
        scenario(
            "connector_nats",
            100_000,
            connector_nats::gen_stage,
            connector_nats::baseline,
        ),
        #[cfg(feature = "rabbitmq")]
        scenario(
            "connector_rabbitmq",
            100_000,
            connector_rabbitmq::gen_stage,
            connector_rabbitmq::baseline,
        ),
        #[cfg(feature = "redis")]
        scenario(
            "connector_redis",
            100_000,
            connector_redis::gen_stage,
            connector_redis::baseline,
        ),
    ]
}

/// Whether a connector row's broker answers: a row whose broker does not is skipped
/// with a notice, or fails the run under `GEN_STAGE_REQUIRE_BROKERS=1`.
async fn broker_answers(name: &str) -> Result<bool, BoxError> {
    #[cfg(feature = "postgres")]
    if name == "connector_postgres" {
        return required_or_skipped(name, connector_postgres::reachable().await);
    }
    #[cfg(feature = "nats")]
    if name == "connector_nats" {
        return required_or_skipped(name, connector_nats::reachable().await);
    }
    #[cfg(feature = "rabbitmq")]
    if name == "connector_rabbitmq" {
        return required_or_skipped(name, connector_rabbitmq::reachable().await);
    }
    #[cfg(feature = "redis")]
    if name == "connector_redis" {
        return required_or_skipped(name, connector_redis::reachable().await);
    }
    let _ = name;
    Ok(true)
}

/// A connector row's broker answered, or not: skip it (false), or fail under
/// `GEN_STAGE_REQUIRE_BROKERS=1`.
#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "nats",
        feature = "rabbitmq",
        feature = "redis"
    )),
    allow(dead_code)
)]
fn required_or_skipped(name: &str, answer: Result<(), BoxError>) -> Result<bool, BoxError> {
    match answer {
        Ok(()) => Ok(true),
        Err(error) if std::env::var("GEN_STAGE_REQUIRE_BROKERS").as_deref() == Ok("1") => Err(
            format!("{name}: the broker is unreachable and GEN_STAGE_REQUIRE_BROKERS=1: {error}")
                .into(),
        ),
        Err(error) => {
            eprintln!("{name} skipped: the broker is unreachable ({error})");
            Ok(false)
        }
    }
}

use pipeline_baseline::Shape as PipelineShape;

/// W1: processors at `max_demand` 10 (`min_demand` 5), a batcher.
const W1: PipelineShape = PipelineShape {
    max_demand: 10,
    batcher: true,
    rate_limited: false,
    partitioned: false,
};

/// Messages per run of each pipeline row.
const PIPELINE_MESSAGES: u64 = 2_000_000;

fn pipeline(name: &'static str, shape: PipelineShape) -> Scenario {
    scenario(
        name,
        PIPELINE_MESSAGES,
        move |n| pipeline_side::pipeline(n, shape, false),
        move |n| pipeline_baseline::pipeline(n, shape),
    )
}

fn pipeline_at_defaults(name: &'static str, shape: PipelineShape) -> Scenario {
    scenario(
        name,
        PIPELINE_MESSAGES,
        move |n| pipeline_side::pipeline(n, shape, true),
        move |n| pipeline_baseline::pipeline(n, shape),
    )
}

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Runs of each side per scenario.
    pub(crate) runs: usize,
    /// Divides every scenario's size.
    pub(crate) shrink: u64,
    /// Only these scenarios (all when empty): a scenario's exact name selects it alone
    /// (`linear_md1` is not `linear_md10`), anything else every name containing it.
    pub(crate) only: Vec<String>,
    /// Which sides run.
    pub(crate) sides: Sides,
}

/// Which sides of each scenario run: both (the comparison), or one alone (to profile
/// it; the ratio is then left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Sides {
    /// gen-stage and the baseline, alternating.
    #[default]
    Both,
    /// gen-stage only.
    GenStage,
    /// The hand-written baseline only.
    Baseline,
}

/// Every scenario's name, `memory_flat` included.
fn names() -> Vec<&'static str> {
    scenarios()
        .iter()
        .map(|scenario| scenario.name)
        .chain(memory::ROWS)
        .collect()
}

impl Plan {
    fn wants(&self, name: &str) -> bool {
        let names = names();
        self.only.is_empty()
            || self.only.iter().any(|wanted| {
                if names.contains(&wanted.as_str()) {
                    name == wanted
                } else {
                    name.contains(wanted.as_str())
                }
            })
    }

    /// Refuses `--only` names that select no scenario, listing the scenarios.
    pub(crate) fn check(&self) -> Result<(), String> {
        let names = names();
        match self
            .only
            .iter()
            .find(|wanted| !names.iter().any(|name| name.contains(wanted.as_str())))
        {
            Some(wanted) => Err(format!(
                "no scenario matches --only {wanted}; the scenarios are: {}",
                names.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// Runs the plan, alternating gen-stage and baseline runs, and reports each scenario
/// as it completes through `progress`.
pub(crate) async fn run(plan: &Plan, mut progress: impl FnMut(&Row)) -> Result<Report, BoxError> {
    let mut report = Report::default();
    for scenario in scenarios() {
        if !plan.wants(scenario.name) || !broker_answers(scenario.name).await? {
            continue;
        }
        let events = (scenario.events / plan.shrink).max(1);
        let mut gen_stage = Side::default();
        let mut baseline = Side::default();
        for _ in 0..plan.runs {
            if plan.sides != Sides::Baseline {
                gen_stage.record(events, on_worker((scenario.gen_stage)(events)).await?);
            }
            if plan.sides != Sides::GenStage {
                baseline.record(events, on_worker((scenario.baseline)(events)).await?);
            }
        }
        let row = Row::throughput(scenario.name, events, gen_stage.rates, baseline.rates)
            .with_traffic(gen_stage.traffic, baseline.traffic);
        progress(&row);
        report.rows.push(row);
    }
    if plan.wants("memory_flat") {
        let events = (memory::EVENTS / plan.shrink).max(1000);
        let row = memory::memory_flat(events).await?;
        progress(&row);
        report.rows.push(row);
    }
    let messages = (memory::MESSAGES / plan.shrink).max(1000);
    if plan.wants("memory_pipeline_w1") {
        let row = memory::memory_pipeline_w1(messages).await?;
        progress(&row);
        report.rows.push(row);
    }
    if plan.wants("memory_pipeline_keys") {
        let messages = (memory::KEYED_MESSAGES / plan.shrink).max(1000);
        let row = memory::memory_pipeline_keys(messages).await?;
        progress(&row);
        report.rows.push(row);
    }
    Ok(report)
}

/// One side's rates and its traffic, summed over its runs.
#[derive(Default)]
struct Side {
    rates: Vec<f64>,
    traffic: Option<traffic::Traffic>,
}

impl Side {
    fn record(&mut self, events: u64, run: Measured) {
        self.rates.push(rate(events, run.elapsed));
        if let Some(traffic) = run.traffic {
            self.traffic = Some(self.traffic.unwrap_or_default().add(traffic));
        }
    }
}

/// Runs one side of a scenario as a task of the runtime, as an application's code would
/// run, rather than on the thread that waits in `block_on` (which is not a worker: every
/// wake-up of code there crosses threads).
///
/// A run must leave no task behind: one that kept working would slow down every run
/// after it. Tasks may take a moment to wind down (consumers stop once told that their
/// producer has), so this waits up to a second for them.
async fn on_worker(
    run: BoxFuture<'static, Result<Measured, BoxError>>,
) -> Result<Measured, BoxError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> Plan {
        Plan {
            runs: 1,
            shrink: 1,
            only: names.iter().map(|name| name.to_string()).collect(),
            sides: Sides::Both,
        }
    }

    #[test]
    fn an_exact_name_selects_its_scenario_alone_and_a_part_of_one_every_match() {
        let exact = only(&["linear_md1"]);
        assert!(exact.wants("linear_md1"));
        assert!(!exact.wants("linear_md10"));
        let part = only(&["linear_md"]);
        assert!(part.wants("linear_md1") && part.wants("linear_md10000"));
        assert!(!part.wants("three_stage"));
        assert!(only(&[]).wants("memory_flat"));
        assert!(!only(&["memory_flat"]).wants("linear_md1"));
    }

    #[test]
    fn an_only_name_that_selects_nothing_is_refused_with_the_list() {
        assert!(only(&["linear_md", "memory_flat"]).check().is_ok());
        let error = only(&["linear", "nonexistent"]).check().unwrap_err();
        assert!(error.contains("--only nonexistent"), "{error}");
        assert!(error.contains("three_stage"), "{error}");
    }
}
