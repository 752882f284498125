//! Each scenario on gen-stage. Each function times from the first subscription to the
//! last event received, and returns the events counted and the time taken.

use std::time::Duration;

use futures::StreamExt;
use gen_stage::dispatcher::{BroadcastDispatcher, Partition, PartitionDispatcher};
use gen_stage::supervision::ConsumerSupervisor;
use gen_stage::{BoxError, ExitReason, SubscribeOptions};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bench::stages::{Countdown, Counter, Counting, Doubler};
use crate::bench::traffic::{Measured, Traffic};

type Outcome = Result<Duration, BoxError>;

async fn finished(start: Instant, done: oneshot::Receiver<Instant>) -> Outcome {
    let end = done
        .await
        .map_err(|_| "the consumers stopped before counting every event")?;
    Ok(end.duration_since(start))
}

/// How a scenario's consumers subscribe: how many events may be in flight to each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    max_demand: usize,
    min_demand: Option<usize>,
}

impl Window {
    /// The baseline's window for its batches of `batch` events: its channels hold two
    /// batches and each of its tasks one more, up to four batches in flight per
    /// consumer with one message per batch. A subscription with `max_demand` 4 ×
    /// `batch` and `min_demand` 3 × `batch` lets as many events be in flight, in
    /// batches of `batch` with an ask after each.
    pub(crate) fn baseline(batch: usize) -> Self {
        Window {
            max_demand: 4 * batch,
            min_demand: Some(3 * batch),
        }
    }

    /// `max_demand`, with the default `min_demand` (half of it).
    pub(crate) fn max_demand(max_demand: usize) -> Self {
        Window {
            max_demand,
            min_demand: None,
        }
    }

    fn options(self) -> SubscribeOptions {
        let options = SubscribeOptions::new().max_demand(self.max_demand);
        match self.min_demand {
            Some(min_demand) => options.min_demand(min_demand),
            None => options,
        }
    }
}

/// Also counts the consumer's traffic (its deliveries and asks), as it stands when it
/// has counted every event.
pub(crate) async fn linear(events: u64, window: Window) -> Result<Measured, BoxError> {
    let producer = gen_stage::producer(Counter(0)).start().await?;
    let (countdown, done) = Countdown::new(events);
    let start = Instant::now();
    let consumer = gen_stage::consumer(Counting::alone(events, countdown))
        .subscribe_to(&producer, window.options())
        .start()
        .await?;
    let elapsed = finished(start, done).await;
    let traffic = traffic(consumer.stats());
    producer.stop(ExitReason::Shutdown).await?;
    Ok(Measured::with_traffic(elapsed?, traffic))
}

pub(crate) async fn three_stage(events: u64, window: Window) -> Outcome {
    let producer = gen_stage::producer(Counter(0)).start().await?;
    let doubler = gen_stage::producer_consumer(Doubler).start().await?;
    let (countdown, done) = Countdown::new(events);
    let start = Instant::now();
    doubler.subscribe_to(&producer, window.options()).await?;
    gen_stage::consumer(Counting::alone(events, countdown))
        .subscribe_to(&doubler, window.options())
        .start()
        .await?;
    let elapsed = finished(start, done).await;
    producer.stop(ExitReason::Shutdown).await?;
    elapsed
}

/// One producer with `dispatcher` and four consumers sharing one countdown of
/// `events` (with `per_consumer`, each consumer counts its own `events`). The traffic
/// is the four consumers' together.
async fn fan_out<D>(
    events: u64,
    dispatcher: D,
    per_consumer: bool,
    options: impl Fn(usize) -> SubscribeOptions,
) -> Result<Measured, BoxError>
where
    D: gen_stage::dispatcher::Dispatcher<u64>,
{
    let producer = gen_stage::producer(Counter(0))
        .dispatcher(dispatcher)
        .start()
        .await?;
    let (shared, shared_done) = Countdown::new(events);
    let mut dones = vec![shared_done];
    let mut consumers = Vec::new();
    for index in 0..4 {
        let countdown = if per_consumer && index > 0 {
            let (own, done) = Countdown::new(events);
            dones.push(done);
            own
        } else {
            shared.clone()
        };
        consumers.push(
            gen_stage::consumer(Counting::Sharing(countdown))
                .start()
                .await?,
        );
    }
    let start = Instant::now();
    for (index, consumer) in consumers.iter().enumerate() {
        consumer.async_subscribe_to(&producer, options(index))?;
    }
    let mut elapsed = Duration::ZERO;
    for done in dones {
        elapsed = elapsed.max(finished(start, done).await?);
    }
    let traffic = consumers
        .iter()
        .map(|consumer| traffic(consumer.stats()))
        .fold(Traffic::default(), Traffic::add);
    producer.stop(ExitReason::Shutdown).await?;
    Ok(Measured::with_traffic(elapsed, traffic))
}

/// A consumer's traffic, from its statistics.
fn traffic(stats: gen_stage::stats::StageStats) -> Traffic {
    Traffic {
        events: stats.events_received,
        deliveries: stats.deliveries_received,
        asks: stats.asks_sent,
    }
}

pub(crate) async fn fan_out_demand_4(events: u64, window: Window) -> Result<Measured, BoxError> {
    fan_out(
        events,
        gen_stage::dispatcher::DemandDispatcher::new(),
        false,
        |_| window.options(),
    )
    .await
}

pub(crate) async fn broadcast_4(events: u64, window: Window) -> Result<Measured, BoxError> {
    fan_out(events, BroadcastDispatcher::new(), true, |_| {
        window.options()
    })
    .await
}

pub(crate) async fn partition_4(events: u64, window: Window) -> Result<Measured, BoxError> {
    let dispatcher = PartitionDispatcher::by_count(4, |x: &u64| (*x % 4) as usize);
    fan_out(events, dispatcher, false, |index| {
        window.options().with(Partition(index))
    })
    .await
}

pub(crate) async fn stream_interop(events: u64) -> Outcome {
    let producer = gen_stage::source::from_iter(0..events).start().await?;
    let start = Instant::now();
    let counted = gen_stage::stream::subscribe(&producer, Window::max_demand(1000).options())?
        .count()
        .await as u64;
    stream_counted(counted, events)?;
    Ok(start.elapsed())
}

pub(crate) async fn stream_batches(events: u64) -> Outcome {
    let producer = gen_stage::source::from_iter(0..events).start().await?;
    let start = Instant::now();
    let counted = gen_stage::stream::subscribe(&producer, Window::max_demand(1000).options())?
        .batches()
        .fold(
            0,
            |counted, batch| async move { counted + batch.len() as u64 },
        )
        .await;
    stream_counted(counted, events)?;
    Ok(start.elapsed())
}

fn stream_counted(counted: u64, events: u64) -> Result<(), BoxError> {
    if counted == events {
        Ok(())
    } else {
        Err(format!("the stream yielded {counted} events, not {events}").into())
    }
}

pub(crate) async fn consumer_supervisor(events: u64) -> Outcome {
    let producer = gen_stage::producer(Counter(0)).start().await?;
    let (countdown, done) = Countdown::new(events);
    let start = Instant::now();
    let supervisor = ConsumerSupervisor::new(move |_event: u64| {
        let countdown = countdown.clone();
        async move {
            countdown.count(1);
            Ok::<(), BoxError>(())
        }
    });
    gen_stage::consumer(supervisor)
        .subscribe_to(&producer, Window::max_demand(50).options())
        .start()
        .await?;
    let elapsed = finished(start, done).await;
    producer.stop(ExitReason::Shutdown).await?;
    elapsed
}
