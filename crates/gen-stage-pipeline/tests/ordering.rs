//! `partition_by`: the messages of one key are handled in order, one at a time, while
//! processors handle different keys at once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{Handler, MemoryQueue, Message, ProcessorContext, ProcessorOptions};
use support::{Log, SECOND, assert_adds_up, assert_settled_once, start};

/// Takes a time that varies by message; records (key, data, processor) in order.
struct Uneven {
    handled: Log<(u64, u64, usize)>,
}

impl Handler for Uneven {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        ctx: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let data = *message.data();
        tokio::time::sleep(Duration::from_millis(data * 7 % 13)).await;
        self.handled.push((data % 5, data, ctx.index));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_messages_of_a_key_are_handled_in_order_by_one_processor() {
    let queue = MemoryQueue::new();
    queue.extend(0..500);
    let handler = Arc::new(Uneven {
        handled: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(4).max_demand(8))
            .partition_by(|message| *message.data() % 5)
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let handled = handler.handled.take();
    assert_eq!(handled.len(), 500);
    for key in 0..5 {
        let of_key: Vec<&(u64, u64, usize)> = handled.iter().filter(|(k, ..)| *k == key).collect();
        let data: Vec<u64> = of_key.iter().map(|(_, data, _)| *data).collect();
        assert!(
            data.windows(2).all(|pair| pair[0] < pair[1]),
            "key {key}: {data:?}"
        );
        let processor = of_key[0].2;
        assert!(
            of_key.iter().all(|(.., p)| *p == processor),
            "key {key} moved"
        );
        assert_eq!(processor as u64, key % 4);
    }
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Batches everything; each batch takes a time that varies with its first message;
/// records the order in which messages are written, by key.
struct UnevenBatches {
    written: Log<u64>,
}

impl Handler for UnevenBatches {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        message.put_batcher("out");
        Ok(())
    }

    async fn handle_batch(
        &self,
        batch: gen_stage_pipeline::Batch<u64>,
    ) -> gen_stage_pipeline::BatchOutcome<u64> {
        let first = batch.data().next().copied().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(first * 11 % 17)).await;
        for data in batch.data() {
            self.written.push(*data);
        }
        batch.done()
    }
}

#[tokio::test(start_paused = true)]
async fn with_partition_by_a_keys_batches_are_handled_in_order_by_several_batch_processors() {
    let queue = MemoryQueue::new();
    queue.extend(0..600);
    let handler = Arc::new(UnevenBatches {
        written: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(3).max_demand(6))
            .batcher(
                "out",
                gen_stage_pipeline::BatcherOptions::new()
                    .batch_size(4)
                    .batch_timeout(SECOND)
                    .concurrency(3),
            )
            .partition_by(|message| *message.data() % 7)
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let written = handler.written.take();
    assert_eq!(written.len(), 600);
    for key in 0..7 {
        let of_key: Vec<u64> = written.iter().copied().filter(|d| d % 7 == key).collect();
        assert!(
            of_key.windows(2).all(|pair| pair[0] < pair[1]),
            "key {key}: {of_key:?}"
        );
    }
    assert_adds_up(&report);
    assert_settled_once(&queue);
}
