//! Micro-benchmarks of the per-batch hot paths: cutting deliveries into batches, and
//! each dispatcher dealing a batch of 1000 events to four consumers (the partition
//! dispatcher beside the same split written by hand).

// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gen_stage::dispatcher::{
    BroadcastDispatcher, Deliveries, DemandDispatcher, Dispatcher, Partition, PartitionDispatcher,
    Subscriber,
};
use gen_stage::{StageId, SubscribeOptions, SubscriptionTag};

fn batch() -> Vec<u64> {
    (0..1000).collect()
}

/// Four subscribers that have each asked for plenty.
fn ready<D: Dispatcher<u64>>(mut dispatcher: D, options: impl Fn(u64) -> SubscribeOptions) -> D {
    let mut out = Deliveries::new();
    for n in 1..=4 {
        let options = options(n);
        let subscriber =
            Subscriber::new(SubscriptionTag::from_raw(n), StageId::from_raw(n), &options);
        dispatcher
            .subscribe(&subscriber, &mut out)
            .expect("accepted");
        dispatcher.ask(SubscriptionTag::from_raw(n), usize::MAX / 8, &mut out);
    }
    dispatcher
}

fn dispatch<D: Dispatcher<u64>>(c: &mut Criterion, name: &str, mut dispatcher: D) {
    let mut out = Deliveries::new();
    c.bench_function(name, |b| {
        b.iter_batched(
            batch,
            |events| {
                let leftovers = dispatcher.dispatch(events, &mut out);
                black_box(out.drain().count());
                leftovers
            },
            BatchSize::SmallInput,
        )
    });
}

fn hot_paths(c: &mut Criterion) {
    c.bench_function("split_1000_in_halves", |b| {
        b.iter_batched(
            batch,
            |events| gen_stage::bench_support::split_batches(events, 500, 1000),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("split_1000_in_twenties", |b| {
        b.iter_batched(
            batch,
            |events| gen_stage::bench_support::split_batches(events, 980, 1000),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("buffer_1000_through_whole", |b| {
        b.iter_batched(
            batch,
            |events| gen_stage::bench_support::buffer_through(events, 1000),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("buffer_1000_through_in_250s", |b| {
        b.iter_batched(
            batch,
            |events| gen_stage::bench_support::buffer_through(events, 250),
            BatchSize::SmallInput,
        )
    });
    dispatch(
        c,
        "demand_dispatch_1000_to_4",
        ready(DemandDispatcher::new(), |_| SubscribeOptions::new()),
    );
    dispatch(
        c,
        "broadcast_dispatch_1000_to_4",
        ready(BroadcastDispatcher::new(), |_| SubscribeOptions::new()),
    );
    // The same split written by hand, as the suite's partition baseline does it: what
    // the partition dispatcher costs on top of moving the events.
    c.bench_function("partition_by_hand_1000_to_4", |b| {
        b.iter_batched(
            batch,
            |events| {
                let capacity = events.len() / 4 + 1;
                let mut parts: Vec<Vec<u64>> =
                    (0..4).map(|_| Vec::with_capacity(capacity)).collect();
                for x in events {
                    parts[(x % 4) as usize].push(x);
                }
                // Dropped here, inside the timing, as the dispatchers' batches are.
                black_box(&parts);
            },
            BatchSize::SmallInput,
        )
    });
    let partitions = PartitionDispatcher::by_count(4, |x: &u64| (*x % 4) as usize);
    dispatch(
        c,
        "partition_dispatch_1000_to_4",
        ready(partitions, |n| {
            SubscribeOptions::new().with(Partition((n - 1) as usize))
        }),
    );
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
