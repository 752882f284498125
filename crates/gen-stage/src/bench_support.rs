//! Internal pieces the crate's own benchmarks (`benches/hot_paths.rs`) measure, with
//! the `bench-internals` feature: not part of the API, and not covered by semver.
//!
//! The feature is off by default; the crate's dev-dependency on itself turns it on for
//! its benchmarks and tests, so `cargo bench -p gen-stage` needs no flag.

/// Cuts `events` as a consumer with automatic demand (`min`, `max`) cuts a delivery it
/// has asked for; returns the batch sizes.
pub fn split_batches<T>(events: Vec<T>, min: usize, max: usize) -> Vec<usize> {
    let (batches, _) = crate::demand::AutoDemand::new(min, max).split(events);
    batches
        .into_iter()
        .map(|batch| batch.events.len())
        .collect()
}
