//! `memory_flat`: peak resident memory of `linear_md1000` with N and with 10 N events.

use gen_stage::BoxError;

use crate::bench::gen_stage_side;
use crate::bench::report::Row;

/// N at full size.
pub(crate) const EVENTS: u64 = 30_000_000;

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

async fn peak_of_run(events: u64) -> Result<Option<u64>, BoxError> {
    let reset = reset_peak();
    gen_stage_side::linear(events, gen_stage_side::Window::max_demand(1000)).await?;
    Ok(if reset { peak_kib() } else { None })
}

pub(crate) async fn memory_flat(events: u64) -> Result<Row, BoxError> {
    // A first run warms the allocator and the runtime's threads.
    gen_stage_side::linear(events, gen_stage_side::Window::max_demand(1000)).await?;
    let small = peak_of_run(events).await?;
    let large = peak_of_run(events * 10).await?;
    Ok(Row::memory("memory_flat", events, small, large))
}
