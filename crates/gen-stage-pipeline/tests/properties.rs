//! Properties over random topologies, message counts, failures, panics, timeouts and
//! drains, on a paused clock, with the in-memory queue as the witness:
//! - every message ends in at most one final outcome, and exactly one when the run
//!   waits for the queue to settle; the queue never gets an outcome twice;
//! - no message is acked unless `handle_message` (and `handle_batch`, if it was
//!   batched) succeeded for that delivery of it;
//! - batches never exceed their size;
//! - a drain's report adds up.

mod support;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatcherOptions, Handler, MemoryQueue, Message, MessageId, Outcome,
    ProcessorContext, ProcessorOptions, RetryPolicy,
};
use proptest::prelude::*;
use support::{Log, assert_adds_up};

/// What can go wrong, in percent of deliveries.
#[derive(Clone, Copy, Debug)]
struct Chaos {
    seed: u64,
    fail: u64,
    panic: u64,
    slow: u64,
    batch_fail: u64,
    batch_panic: u64,
}

impl Chaos {
    /// A deterministic roll in 0..100 for a delivery and a kind of trouble.
    fn roll(&self, id: u64, attempt: u32, kind: u64) -> u64 {
        let mut hasher =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        hasher.write_u64(self.seed);
        hasher.write_u64(id);
        hasher.write_u32(attempt);
        hasher.write_u64(kind);
        hasher.finish() % 100
    }
}

/// A delivery: the queue's id of the message, and the attempt.
fn delivery(message: &Message<u64>) -> (u64, u32) {
    let id = match message.metadata().id {
        Some(MessageId::Number(id)) => id,
        _ => u64::MAX,
    };
    (id, message.metadata().attempt)
}

struct Chaotic {
    chaos: Chaos,
    batchers: usize,
    /// Layers of processors: a delivery counts as handled after the last.
    layers: usize,
    /// Deliveries whose handle_message succeeded.
    handled: Log<(u64, u32)>,
    /// Deliveries a handle_batch returned as done, not failed.
    batched: Log<(u64, u32)>,
    /// The size of each batch.
    batch_sizes: Log<usize>,
}

impl Handler for Chaotic {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        ctx: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let (id, attempt) = delivery(message);
        // Each layer rolls its own trouble.
        let attempt = attempt * 4 + ctx.layer as u32;
        if self.chaos.roll(id, attempt, 1) < self.chaos.slow {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        if self.chaos.roll(id, attempt, 2) < self.chaos.panic {
            panic!("chaos");
        }
        if self.chaos.roll(id, attempt, 3) < self.chaos.fail {
            return Err("chaos".into());
        }
        if ctx.layer + 1 < self.layers {
            return Ok(());
        }
        let (id, _) = delivery(message);
        if self.batchers > 0 {
            message.put_batcher(["a", "b"][id as usize % self.batchers]);
            message.put_batch_key(id % 3);
        }
        self.handled.push(delivery(message));
        Ok(())
    }

    async fn handle_batch(&self, mut batch: Batch<u64>) -> BatchOutcome<u64> {
        self.batch_sizes.push(batch.len());
        let (id, attempt) = delivery(&batch.messages()[0]);
        if self.chaos.roll(id, attempt, 4) < self.chaos.batch_panic {
            panic!("batch chaos");
        }
        for message in batch.messages_mut() {
            let (id, attempt) = delivery(message);
            if self.chaos.roll(id, attempt, 5) < self.chaos.batch_fail {
                message.fail("batch chaos");
            } else {
                self.batched.push((id, attempt));
            }
        }
        batch.done()
    }
}

#[derive(Clone, Debug)]
struct Case {
    messages: u64,
    processors: usize,
    max_demand: usize,
    batchers: usize,
    batch_size: usize,
    batch_timeout_ms: u64,
    partitioned: bool,
    layers: usize,
    chaos: Chaos,
    /// `None`: wait for the queue to settle, then drain; otherwise drain after this
    /// many milliseconds, within the given deadline.
    early_drain: Option<(u64, u64)>,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        (
            0u64..150,
            1usize..4,
            1usize..12,
            0usize..3,
            1usize..8,
            1u64..400,
            any::<bool>(),
        ),
        (
            any::<u64>(),
            0u64..15,
            0u64..8,
            0u64..8,
            0u64..15,
            0u64..8,
            1usize..3,
        ),
        proptest::option::of((0u64..300, 0u64..2000)),
    )
        .prop_map(
            |(
                (
                    messages,
                    processors,
                    max_demand,
                    batchers,
                    batch_size,
                    batch_timeout_ms,
                    partitioned,
                ),
                (seed, fail, panic, slow, batch_fail, batch_panic, layers),
                early_drain,
            )| Case {
                messages,
                processors,
                max_demand,
                batchers,
                batch_size,
                batch_timeout_ms,
                partitioned,
                layers,
                chaos: Chaos {
                    seed,
                    fail,
                    panic,
                    slow,
                    batch_fail,
                    batch_panic,
                },
                early_drain,
            },
        )
}

async fn run(case: Case) -> Result<(), TestCaseError> {
    let queue = MemoryQueue::new();
    queue.extend(0..case.messages);
    let handler = Arc::new(Chaotic {
        chaos: case.chaos,
        batchers: case.batchers,
        layers: case.layers,
        handled: Log::default(),
        batched: Log::default(),
        batch_sizes: Log::default(),
    });
    let source = queue.clone();
    let mut builder = gen_stage_pipeline::Pipeline::builder(handler.clone())
        .producer(move || source.producer())
        .processors(
            ProcessorOptions::new()
                .concurrency(case.processors)
                .max_demand(case.max_demand)
                .timeout(Duration::from_secs(1)),
        )
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .first_delay(Duration::from_millis(50)),
        );
    for _ in 1..case.layers {
        builder = builder.then_processors(
            ProcessorOptions::new()
                .concurrency(case.processors)
                .max_demand(case.max_demand)
                .timeout(Duration::from_secs(1)),
        );
    }
    for name in ["a", "b"].iter().take(case.batchers) {
        builder = builder.batcher(
            *name,
            BatcherOptions::new()
                .batch_size(case.batch_size)
                .batch_timeout(Duration::from_millis(case.batch_timeout_ms))
                .timeout(Duration::from_secs(1)),
        );
    }
    if case.partitioned {
        builder = builder.partition_by(|message| *message.data());
    }
    let pipeline = builder
        .start()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let report = match case.early_drain {
        None => {
            queue.settled().await;
            pipeline.drain(Duration::from_secs(30)).await
        }
        Some((after, deadline)) => {
            tokio::time::sleep(Duration::from_millis(after)).await;
            pipeline.drain(Duration::from_millis(deadline)).await
        }
    };

    prop_assert_eq!(report.settled.total(), report.taken_in, "{:?}", report);
    assert_adds_up(&report);
    prop_assert_eq!(
        queue.stray_outcomes(),
        0,
        "an outcome for a message not in flight"
    );
    prop_assert_eq!(queue.in_flight(), 0, "messages left in flight");

    let handled: HashSet<(u64, u32)> = handler.handled.take().into_iter().collect();
    let batched: HashSet<(u64, u32)> = handler.batched.take().into_iter().collect();
    let mut finals: HashMap<u64, Outcome> = HashMap::new();
    for (id, attempt, outcome) in queue.history() {
        prop_assert!(
            !finals.contains_key(&id),
            "{id} settled after its final outcome"
        );
        if outcome == Outcome::Ack {
            prop_assert!(
                handled.contains(&(id, attempt)),
                "{id}/{attempt} acked unhandled"
            );
            if case.batchers > 0 {
                prop_assert!(
                    batched.contains(&(id, attempt)),
                    "{id}/{attempt} acked unbatched"
                );
            }
        }
        if matches!(outcome, Outcome::Ack | Outcome::Reject | Outcome::Terminate) {
            finals.insert(id, outcome);
        }
    }
    if case.early_drain.is_none() {
        prop_assert_eq!(
            finals.len() as u64,
            case.messages,
            "not every message ended"
        );
        prop_assert_eq!(queue.unsettled(), 0);
    }
    let largest = handler.batch_sizes.take().into_iter().max().unwrap_or(0);
    prop_assert!(
        largest <= case.batch_size,
        "a batch of {largest} > {}",
        case.batch_size
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_time: 60_000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_ends_once_and_only_after_its_callbacks_succeeded(case in cases()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            match tokio::time::timeout(Duration::from_secs(3600), run(case)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(TestCaseError::fail("the case stalled")),
            }
        })?;
    }
}
