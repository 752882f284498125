//! Peak resident memory with N and with 10 N events: `memory_flat` (`linear_md1000`),
//! `memory_pipeline_w1` (the pipeline's W1) and `memory_pipeline_keys` (W1 with
//! 10 000 batch keys).

use std::future::Future;

use gen_stage::BoxError;

use crate::bench::gen_stage_side;
use crate::bench::pipeline_baseline::Shape;
use crate::bench::pipeline_side;
use crate::bench::report::Row;

/// N at full size.
pub(crate) const EVENTS: u64 = 30_000_000;

/// N at full size for the pipeline rows (each message is a callback and an outcome).
pub(crate) const MESSAGES: u64 = 2_000_000;

/// N at full size for the row with 10 000 batch keys: its batcher holds up to
/// 10 000 open batches, which take about 3 million messages to fill for the first
/// time; with fewer, the peak at N is not yet the steady state.
pub(crate) const KEYED_MESSAGES: u64 = 5_000_000;

/// The memory rows' names.
pub(crate) const ROWS: [&str; 3] = ["memory_flat", "memory_pipeline_w1", "memory_pipeline_keys"];

/// Peak resident memory in KiB since the last reset (Linux), or `None`.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak to the current resident memory (Linux).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak of one run of `run` with `events`.
async fn peak_of_run<F, M>(run: impl Fn(u64) -> F, events: u64) -> Result<Option<u64>, BoxError>
where
    F: Future<Output = Result<M, BoxError>>,
{
    let reset = reset_peak();
    run(events).await?;
    Ok(if reset { peak_kib() } else { None })
}

/// A row: a warming run, then the peaks with N and with 10 N.
async fn row<F, M>(name: &'static str, run: impl Fn(u64) -> F, events: u64) -> Result<Row, BoxError>
where
    F: Future<Output = Result<M, BoxError>>,
{
    // A first run warms the allocator and the runtime's threads.
    run(events).await?;
    let small = peak_of_run(&run, events).await?;
    let large = peak_of_run(&run, events * 10).await?;
    Ok(Row::memory(name, events, small, large))
}

pub(crate) async fn memory_flat(events: u64) -> Result<Row, BoxError> {
    let linear = |n| gen_stage_side::linear(n, gen_stage_side::Window::max_demand(1000));
    row("memory_flat", linear, events).await
}

/// The pipeline's W1: 2 processors at `max_demand` 10, a batcher of 100.
const W1: Shape = Shape {
    max_demand: 10,
    batcher: true,
    rate_limited: false,
    partitioned: false,
};

pub(crate) async fn memory_pipeline_w1(messages: u64) -> Result<Row, BoxError> {
    let w1 = |n| pipeline_side::pipeline_keyed(n, W1, 0);
    row("memory_pipeline_w1", w1, messages).await
}

pub(crate) async fn memory_pipeline_keys(messages: u64) -> Result<Row, BoxError> {
    let keyed = |n| pipeline_side::pipeline_keyed(n, W1, 10_000);
    row("memory_pipeline_keys", keyed, messages).await
}
