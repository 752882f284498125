//! The same work hand-written with tokio mpsc channels carrying `Vec<u64>` batches of
//! the scenario's size. Channels hold two batches, about the events a gen-stage
//! subscription with the same `max_demand` lets through.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gen_stage::BoxError;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::bench::traffic::{Measured, Traffic};

type Outcome = Result<Duration, BoxError>;

/// Batches in flight per channel.
const CAPACITY: usize = 2;

/// Sends `0..` in batches of `batch` to `sender` until it closes.
fn counter(sender: mpsc::Sender<Vec<u64>>, batch: usize) {
    tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            let events: Vec<u64> = (next..next + batch as u64).collect();
            next += batch as u64;
            if sender.send(events).await.is_err() {
                break;
            }
        }
    });
}

/// Receives until `events` were counted. Each batch received frees a slot of the
/// channel for the sender: that is its ask.
async fn count(mut receiver: mpsc::Receiver<Vec<u64>>, events: u64) -> Result<Traffic, BoxError> {
    let mut traffic = Traffic::default();
    while traffic.events < events {
        let batch = receiver.recv().await.ok_or("the sender stopped early")?;
        traffic.events += batch.len() as u64;
        traffic.deliveries += 1;
    }
    traffic.asks = traffic.deliveries;
    Ok(traffic)
}

pub(crate) async fn linear(events: u64, batch: usize) -> Result<Measured, BoxError> {
    let start = Instant::now();
    let (sender, receiver) = mpsc::channel(CAPACITY);
    counter(sender, batch);
    let traffic = count(receiver, events).await?;
    Ok(Measured::with_traffic(start.elapsed(), traffic))
}

/// The demand protocol itself, written by hand: the consumer asks `max_demand` at
/// first, counts what arrives in chunks of `max_demand - min_demand` (`min_demand` is
/// half, as gen-stage's default) and asks for each chunk once counted; the producer
/// sends exactly what was asked, one batch per ask. As many events are in flight as in
/// a gen-stage subscription with that `max_demand`, so gen-stage against this measures
/// what the library costs beyond the protocol.
pub(crate) async fn credit(events: u64, max_demand: usize) -> Result<Measured, BoxError> {
    let start = Instant::now();
    // Unbounded, as the demand bounds what they hold.
    let (asks, mut asked) = mpsc::unbounded_channel::<usize>();
    let (sender, mut receiver) = mpsc::unbounded_channel::<Vec<u64>>();
    tokio::spawn(async move {
        let mut next = 0u64;
        while let Some(demand) = asked.recv().await {
            let batch: Vec<u64> = (next..next + demand as u64).collect();
            next += demand as u64;
            if sender.send(batch).is_err() {
                break;
            }
        }
    });
    let chunk = max_demand - max_demand / 2;
    asks.send(max_demand)
        .map_err(|_| "the producer stopped early")?;
    let mut traffic = Traffic {
        asks: 1,
        ..Traffic::default()
    };
    while traffic.events < events {
        let batch = receiver.recv().await.ok_or("the producer stopped early")?;
        traffic.deliveries += 1;
        for part in batch.chunks(chunk) {
            traffic.events += std::hint::black_box(part).len() as u64;
            // Once the run is over the producer has stopped; the ask is not needed.
            let _ = asks.send(part.len());
            traffic.asks += 1;
        }
    }
    Ok(Measured::with_traffic(start.elapsed(), traffic))
}

pub(crate) async fn three_stage(events: u64) -> Outcome {
    let start = Instant::now();
    let (sender, mut middle) = mpsc::channel::<Vec<u64>>(CAPACITY);
    let (doubled, receiver) = mpsc::channel(CAPACITY);
    counter(sender, 1000);
    tokio::spawn(async move {
        while let Some(batch) = middle.recv().await {
            let batch: Vec<u64> = batch.into_iter().map(|x| x.wrapping_mul(2)).collect();
            if doubled.send(batch).await.is_err() {
                break;
            }
        }
    });
    count(receiver, events).await?;
    Ok(start.elapsed())
}

/// One producer task feeding four consumer tasks through four channels; `route`
/// turns a batch into what each consumer gets. The traffic is the four consumers'
/// together (each batch received frees a slot of its channel: its ask).
async fn fan_out(
    events: u64,
    route: fn(Vec<u64>, usize) -> Vec<Vec<u64>>,
    total: u64,
) -> Result<Measured, BoxError> {
    let start = Instant::now();
    let mut senders = Vec::new();
    let mut counters = Vec::new();
    let (done, mut finished) = mpsc::unbounded_channel::<u64>();
    for _ in 0..4 {
        let (sender, mut receiver) = mpsc::channel::<Vec<u64>>(CAPACITY);
        senders.push(sender);
        let done = done.clone();
        counters.push(tokio::spawn(async move {
            while let Some(batch) = receiver.recv().await {
                // Once the run is over, stop (the producer then stops too).
                if done.send(batch.len() as u64).is_err() {
                    break;
                }
            }
        }));
    }
    tokio::spawn(async move {
        let mut next = 0u64;
        let mut turn = 0;
        'produce: loop {
            let batch: Vec<u64> = (next..next + 1000).collect();
            next += 1000;
            for (index, part) in route(batch, turn).into_iter().enumerate() {
                if !part.is_empty() && senders[index].send(part).await.is_err() {
                    break 'produce;
                }
            }
            turn += 1;
        }
    });
    let mut traffic = Traffic::default();
    while traffic.events < total {
        traffic.events += finished.recv().await.ok_or("the consumers stopped early")?;
        traffic.deliveries += 1;
    }
    traffic.asks = traffic.deliveries;
    let _ = events;
    Ok(Measured::with_traffic(start.elapsed(), traffic))
}

pub(crate) async fn fan_out_demand_4(events: u64) -> Result<Measured, BoxError> {
    // Round-robin: each batch to the next consumer.
    fan_out(
        events,
        |batch, turn| {
            let mut parts = vec![Vec::new(); 4];
            parts[turn % 4] = batch;
            parts
        },
        events,
    )
    .await
}

pub(crate) async fn broadcast_4(events: u64) -> Result<Measured, BoxError> {
    // Every consumer gets a copy; the run ends when each has `events`.
    fan_out(
        events,
        |batch, _| vec![batch.clone(), batch.clone(), batch.clone(), batch],
        events * 4,
    )
    .await
}

pub(crate) async fn partition_4(events: u64) -> Result<Measured, BoxError> {
    fan_out(
        events,
        |batch, _| {
            let capacity = batch.len() / 4 + 1;
            let mut parts: Vec<Vec<u64>> = (0..4).map(|_| Vec::with_capacity(capacity)).collect();
            for x in batch {
                parts[(x % 4) as usize].push(x);
            }
            parts
        },
        events,
    )
    .await
}

/// A channel of batches of 1000, fed from `0..events` by a task, as a stream of its
/// batches.
fn batch_stream(events: u64) -> impl futures::Stream<Item = Vec<u64>> {
    let (sender, receiver) = mpsc::channel::<Vec<u64>>(CAPACITY);
    tokio::spawn(async move {
        let mut items = 0..events;
        loop {
            let batch: Vec<u64> = items.by_ref().take(1000).collect();
            if batch.is_empty() || sender.send(batch).await.is_err() {
                break;
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    })
}

pub(crate) async fn stream_interop(events: u64) -> Outcome {
    let start = Instant::now();
    let counted = batch_stream(events)
        .flat_map(futures::stream::iter)
        .count()
        .await as u64;
    if counted != events {
        return Err("the baseline stream lost events".into());
    }
    Ok(start.elapsed())
}

pub(crate) async fn stream_batches(events: u64) -> Outcome {
    let start = Instant::now();
    let counted = batch_stream(events)
        .fold(
            0,
            |counted, batch| async move { counted + batch.len() as u64 },
        )
        .await;
    if counted != events {
        return Err("the baseline stream lost events".into());
    }
    Ok(start.elapsed())
}

pub(crate) async fn consumer_supervisor(events: u64) -> Outcome {
    // One task per event, at most 50 at once.
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(50));
    let (done, mut finished) = mpsc::unbounded_channel::<()>();
    let (sender, mut receiver) = mpsc::channel::<Vec<u64>>(CAPACITY);
    counter(sender, 50);
    tokio::spawn(async move {
        while let Some(batch) = receiver.recv().await {
            if done.is_closed() {
                // The run is over: stop, and so stop the producer.
                return;
            }
            for event in batch {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let done = done.clone();
                tokio::spawn(async move {
                    std::hint::black_box(event);
                    drop(permit);
                    let _ = done.send(());
                });
            }
        }
    });
    for _ in 0..events {
        finished.recv().await.ok_or("the tasks stopped early")?;
    }
    Ok(start.elapsed())
}
