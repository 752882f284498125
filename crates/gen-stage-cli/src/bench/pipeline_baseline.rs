//! The pipeline scenarios (the Broadway anchor's W1-W5) written by hand, with the
//! pipeline's task structure: one producer task, two processor tasks, one batcher task
//! and one batch-processor task (no batcher in W2), joined by bounded tokio channels
//! carrying `Vec` batches of the sizes the pipeline's demand makes, and one atomic add
//! per acknowledged batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gen_stage::BoxError;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

type Outcome = Result<Duration, BoxError>;

/// The processors of every row.
const PROCESSORS: usize = 2;

/// What varies between the rows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// The processors' `max_demand` (their `min_demand` is half of it).
    pub(crate) max_demand: usize,
    /// Whether messages go through a batcher (size `BATCH`, timeout 1 s).
    pub(crate) batcher: bool,
    /// Whether the producer checks a rate limit (one that never binds).
    pub(crate) rate_limited: bool,
    /// Whether the producer partitions messages between the processors by key.
    pub(crate) partitioned: bool,
}

/// The batcher's batch size.
pub(crate) const BATCH: usize = 100;

/// The batcher's timeout.
const BATCH_TIMEOUT: Duration = Duration::from_secs(1);

/// Counts acknowledged messages and says when `target` is reached.
struct Acks {
    acked: AtomicU64,
    target: u64,
    done: std::sync::Mutex<Option<oneshot::Sender<Instant>>>,
}

impl Acks {
    /// One atomic add per batch.
    fn ack(&self, batch: usize) {
        let acked = self.acked.fetch_add(batch as u64, Ordering::Relaxed) + batch as u64;
        if acked >= self.target {
            if let Some(done) = self.done.lock().ok().and_then(|mut done| done.take()) {
                let _ = done.send(Instant::now());
            }
        }
    }
}

/// A fixed window of a limit that never binds, checked per batch, as the pipeline's
/// producers check theirs per demand.
struct Window {
    allowed: u64,
    state: Mutex<(Instant, u64)>,
}

impl Window {
    async fn take(&self, wanted: u64) -> u64 {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if now >= state.0 + Duration::from_secs(1) {
            *state = (now, 0);
        }
        let granted = wanted.min(self.allowed - state.1);
        state.1 += granted;
        granted
    }
}

pub(crate) async fn pipeline(events: u64, shape: Shape) -> Outcome {
    let start = Instant::now();
    let (done, finished) = oneshot::channel();
    let acks = Arc::new(Acks {
        acked: AtomicU64::new(0),
        target: events,
        done: std::sync::Mutex::new(Some(done)),
    });
    let stop = Arc::new(AtomicBool::new(false));
    // What a processor handles at once: GenStage's batches of max - min.
    let chunk = shape.max_demand - shape.max_demand / 2;
    // Two batches in a channel, as a subscription's `max_demand` lets through.
    let (to_batcher, batcher_input) = mpsc::channel::<Vec<u64>>((BATCH / chunk).max(2));
    let mut processor_inputs = Vec::new();
    for _ in 0..PROCESSORS {
        let (sender, mut receiver) = mpsc::channel::<Vec<u64>>(2);
        processor_inputs.push(sender);
        let to_batcher = shape.batcher.then(|| to_batcher.clone());
        let acks = acks.clone();
        tokio::spawn(async move {
            while let Some(batch) = receiver.recv().await {
                for message in &batch {
                    std::hint::black_box(message);
                }
                match &to_batcher {
                    Some(batcher) => {
                        if batcher.send(batch).await.is_err() {
                            break;
                        }
                    }
                    None => acks.ack(batch.len()),
                }
            }
        });
    }
    drop(to_batcher);
    if shape.batcher {
        batcher(batcher_input, acks.clone());
    }
    producer(processor_inputs, chunk, shape, stop.clone());
    let end = finished
        .await
        .map_err(|_| "the pipeline stopped before acking every message")?;
    stop.store(true, Ordering::Relaxed);
    Ok(end.duration_since(start))
}

/// Sends batches of `chunk` messages to the processors in turn, or split by key,
/// until told to stop.
fn producer(
    processors: Vec<mpsc::Sender<Vec<u64>>>,
    chunk: usize,
    shape: Shape,
    stop: Arc<AtomicBool>,
) {
    let limit = shape.rate_limited.then(|| Window {
        allowed: u64::MAX,
        state: Mutex::new((Instant::now(), 0)),
    });
    tokio::spawn(async move {
        let mut next = 0u64;
        let mut turn = 0;
        while !stop.load(Ordering::Relaxed) {
            if shape.partitioned {
                // A batch for each processor, each of its key's messages.
                let size = (chunk * PROCESSORS) as u64;
                let granted = match &limit {
                    Some(limit) => limit.take(size).await,
                    None => size,
                };
                let mut parts: Vec<Vec<u64>> =
                    (0..PROCESSORS).map(|_| Vec::with_capacity(chunk)).collect();
                for n in next..next + granted {
                    parts[(n % PROCESSORS as u64) as usize].push(n);
                }
                next += granted;
                for (processor, part) in processors.iter().zip(parts) {
                    if processor.send(part).await.is_err() {
                        return;
                    }
                }
            } else {
                let granted = match &limit {
                    Some(limit) => limit.take(chunk as u64).await,
                    None => chunk as u64,
                };
                let batch: Vec<u64> = (next..next + granted).collect();
                next += granted;
                if processors[turn % PROCESSORS].send(batch).await.is_err() {
                    return;
                }
                turn += 1;
            }
        }
    });
}

/// Groups messages into batches of `BATCH`, closed early `BATCH_TIMEOUT` after their
/// first message, for one batch processor that acks each batch.
fn batcher(mut input: mpsc::Receiver<Vec<u64>>, acks: Arc<Acks>) {
    let (to_processor, mut batches) = mpsc::channel::<Vec<u64>>(1);
    tokio::spawn(async move {
        while let Some(batch) = batches.recv().await {
            std::hint::black_box(&batch);
            acks.ack(batch.len());
        }
    });
    tokio::spawn(async move {
        let mut open: Vec<u64> = Vec::with_capacity(BATCH);
        let mut deadline = Instant::now();
        loop {
            let received = if open.is_empty() {
                input.recv().await
            } else {
                tokio::select! {
                    received = input.recv() => received,
                    () = tokio::time::sleep_until(deadline) => {
                        let full = std::mem::replace(&mut open, Vec::with_capacity(BATCH));
                        if to_processor.send(full).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            };
            let Some(messages) = received else {
                return;
            };
            for message in messages {
                if open.is_empty() {
                    deadline = Instant::now() + BATCH_TIMEOUT;
                }
                open.push(message);
                if open.len() == BATCH {
                    let full = std::mem::replace(&mut open, Vec::with_capacity(BATCH));
                    if to_processor.send(full).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}
