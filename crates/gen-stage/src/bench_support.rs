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

/// Moves `events` through a producer's buffer as a stage does when its consumers ask
/// for less than it emits: stored at once, then taken `take` at a time. Returns how
/// many came out.
pub fn buffer_through<T>(events: Vec<T>, take: usize) -> usize {
    use crate::options::{BufferKeep, BufferSize};
    let mut buffer: crate::buffer::Buffer<T, ()> =
        crate::buffer::Buffer::new(BufferSize::Unbounded, BufferKeep::Last);
    buffer.store(events, &mut Vec::new());
    let mut out = 0;
    while buffer.len() > 0 {
        out += std::hint::black_box(buffer.take(take)).len();
    }
    out
}
