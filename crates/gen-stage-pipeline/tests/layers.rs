//! More than one layer of processors (Broadway issue #39), with the acknowledgement
//! carried through: a message is acked only after its last layer, and one that fails
//! in a later layer is not acked.

mod support;

use std::sync::Arc;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatcherOptions, Handler, MemoryQueue, Message, MessageId, Outcome,
    ProcessorContext, ProcessorOptions, RetryPolicy,
};
use support::{Log, SECOND, assert_adds_up, assert_settled_once, start};

/// Layer 0 doubles; layer 1 fails what was 3 and batches the rest.
struct TwoSteps {
    calls: Log<(u64, usize)>,
    batched: Log<u64>,
}

fn id(message: &Message<u64>) -> u64 {
    match message.metadata().id {
        Some(MessageId::Number(id)) => id,
        _ => u64::MAX,
    }
}

impl Handler for TwoSteps {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        ctx: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.calls.push((id(message), ctx.layer));
        match ctx.layer {
            0 => {
                let doubled = message.data() * 2;
                message.set_data(doubled);
            }
            _ => {
                if *message.data() == 6 {
                    return Err("three, doubled, is refused in layer 1".into());
                }
                message.put_batcher("out");
            }
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<u64>) -> BatchOutcome<u64> {
        for data in batch.data() {
            self.batched.push(*data);
        }
        batch.done()
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_failed_in_layer_2_is_not_acked_and_the_others_are_after_their_last_layer() {
    let queue = MemoryQueue::new();
    queue.extend(0..20);
    let handler = Arc::new(TwoSteps {
        calls: Log::default(),
        batched: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2).max_demand(4))
            .then_processors(ProcessorOptions::new().concurrency(3).max_demand(2))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(5).batch_timeout(SECOND),
            )
            .retry(RetryPolicy::new().max_attempts(1))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    // Every message went through layer 0, then layer 1.
    let calls = handler.calls.take();
    for message in 1..=20 {
        let layers: Vec<usize> = calls
            .iter()
            .filter(|(id, _)| *id == message)
            .map(|(_, l)| *l)
            .collect();
        assert_eq!(layers, [0, 1], "message {message}");
    }
    // The one that failed in layer 1 was never acked: it was rejected.
    let dead = queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data, 3, "the queue keeps the data it delivered");
    assert!(
        queue
            .history()
            .iter()
            .all(|(id, _, outcome)| (*outcome == Outcome::Ack) != (*id == dead[0].id))
    );
    // The others were batched with layer 0's work, then acked.
    let mut batched = handler.batched.take();
    batched.sort_unstable();
    let expected: Vec<u64> = (0..20).filter(|n| *n != 3).map(|n| n * 2).collect();
    assert_eq!(batched, expected);
    assert_eq!(queue.acked(), 19);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}
