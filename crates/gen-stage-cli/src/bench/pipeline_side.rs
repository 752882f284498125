//! The pipeline scenarios on gen-stage-pipeline: a producer of numbered messages, two
//! processors, and (but in W2) one batcher named "default" with one batch processor;
//! trivial callbacks. Timed from the start of the pipeline to the acknowledgement of
//! the last message counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gen_stage::{BoxError, Producer, ProducerContext};
use gen_stage_pipeline::{
    AckError, AckGroup, AckTag, Acknowledger, Batch, BatchOutcome, BatcherOptions, Handler,
    Message, Pipeline, ProcessorContext, ProcessorOptions, RateLimit, Settled,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bench::pipeline_baseline::{BATCH, Shape};

/// Counts acknowledged messages (one atomic add per call, a call per batch) and says
/// when `target` is reached.
struct Acks {
    acked: AtomicU64,
    target: u64,
    done: std::sync::Mutex<Option<oneshot::Sender<Instant>>>,
}

impl Acknowledger for Acks {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let count = settled.len() as u64;
        let acked = self.acked.fetch_add(count, Ordering::Relaxed) + count;
        if acked >= self.target {
            if let Some(done) = self.done.lock().ok().and_then(|mut done| done.take()) {
                let _ = done.send(Instant::now());
            }
        }
        Ok(())
    }
}

/// Numbered messages of one acknowledgement group, on demand.
struct Numbers {
    next: u64,
    group: Arc<AckGroup>,
}

impl Producer for Numbers {
    type Event = Message<u64>;
    type Message = ();

    async fn handle_demand(
        &mut self,
        demand: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<Message<u64>>, BoxError> {
        let first = self.next;
        self.next += demand as u64;
        Ok((first..self.next)
            .map(|n| Message::new(n, self.group.handle(AckTag(n))))
            .collect())
    }
}

/// Trivial callbacks: messages without a batcher go to "default" when there is one;
/// with `keys`, each message gets the batch key `n % keys`.
struct Trivial {
    keys: u64,
}

impl Handler for Trivial {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let data = *std::hint::black_box(message.data());
        if self.keys > 0 {
            message.put_batch_key(data % self.keys);
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<u64>) -> BatchOutcome<u64> {
        std::hint::black_box(batch.len());
        batch.done()
    }
}

/// The scenario with `shape`'s processors and batcher, or (`defaults`) with the
/// pipeline's own defaults for processors and batcher.
pub(crate) async fn pipeline(
    events: u64,
    shape: Shape,
    defaults: bool,
) -> Result<Duration, BoxError> {
    run(events, shape, defaults, 0).await
}

/// The scenario with `shape`, its messages spread over `keys` batch keys (none if 0).
pub(crate) async fn pipeline_keyed(
    events: u64,
    shape: Shape,
    keys: u64,
) -> Result<Duration, BoxError> {
    run(events, shape, false, keys).await
}

async fn run(events: u64, shape: Shape, defaults: bool, keys: u64) -> Result<Duration, BoxError> {
    let (done, finished) = oneshot::channel();
    let acks = Arc::new(Acks {
        acked: AtomicU64::new(0),
        target: events,
        done: std::sync::Mutex::new(Some(done)),
    });
    let group = AckGroup::new(acks);
    let start = Instant::now();
    let mut builder = Pipeline::builder(Trivial { keys })
        .name("bench")
        .producer(move || Numbers {
            next: 0,
            group: group.clone(),
        });
    if !defaults {
        builder = builder.processors(
            ProcessorOptions::new()
                .concurrency(2)
                .max_demand(shape.max_demand)
                .min_demand(shape.max_demand / 2),
        );
    }
    if shape.batcher {
        let options = if defaults {
            BatcherOptions::new()
        } else {
            BatcherOptions::new()
                .batch_size(BATCH)
                .batch_timeout(Duration::from_secs(1))
        };
        builder = builder.batcher("default", options);
    }
    if shape.rate_limited {
        builder = builder.rate_limit(RateLimit::new(u64::MAX, Duration::from_secs(1)));
    }
    if shape.partitioned {
        builder = builder.partition_by(|message| *message.data());
    }
    let pipeline = builder.start().await?;
    let end = finished
        .await
        .map_err(|_| "the pipeline stopped before acking every message")?;
    pipeline.drain(Duration::from_secs(5)).await;
    Ok(end.duration_since(start))
}
