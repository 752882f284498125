//! The stages the gen-stage side of the benchmarks uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use gen_stage::{
    BoxError, Consumer, ConsumerContext, Producer, ProducerConsumer, ProducerConsumerContext,
    ProducerContext, SubscriptionTag,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Emits 0, 1, 2, ... exactly as demanded, forever.
pub(crate) struct Counter(pub(crate) u64);

impl Producer for Counter {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        demand: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        let events = (self.0..self.0 + demand as u64).collect();
        self.0 += demand as u64;
        Ok(events)
    }
}

/// Multiplies every event by two.
pub(crate) struct Doubler;

impl ProducerConsumer for Doubler {
    type Input = u64;
    type Output = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(events.into_iter().map(|x| x.wrapping_mul(2)).collect())
    }
}

/// A countdown shared by the consumers of one run: the consumer that takes it to zero
/// records the time.
#[derive(Clone)]
pub(crate) struct Countdown {
    left: Arc<AtomicI64>,
    done: Arc<std::sync::Mutex<Option<oneshot::Sender<Instant>>>>,
}

impl Countdown {
    pub(crate) fn new(events: u64) -> (Self, oneshot::Receiver<Instant>) {
        let (sender, receiver) = oneshot::channel();
        let countdown = Countdown {
            left: Arc::new(AtomicI64::new(events as i64)),
            done: Arc::new(std::sync::Mutex::new(Some(sender))),
        };
        (countdown, receiver)
    }

    /// Counts `count` events; the count that reaches zero records the time.
    pub(crate) fn count(&self, count: usize) {
        let before = self.left.fetch_sub(count as i64, Ordering::AcqRel);
        if before > 0 && before <= count as i64 {
            self.finish();
        }
    }

    /// Records the time: every event was counted.
    pub(crate) fn finish(&self) {
        let now = Instant::now();
        if let Some(done) = self.done.lock().ok().and_then(|mut done| done.take()) {
            let _ = done.send(now);
        }
    }
}

/// Counts what it receives. Alone, it counts in a field of its own and touches the
/// shared countdown once, when its own count is done, as the baseline's consumers count
/// in a local variable; sharing the countdown with other consumers, it counts there.
pub(crate) enum Counting {
    Alone { left: u64, countdown: Countdown },
    Sharing(Countdown),
}

impl Counting {
    /// The only consumer of a run of `events` events.
    pub(crate) fn alone(events: u64, countdown: Countdown) -> Self {
        Counting::Alone {
            left: events,
            countdown,
        }
    }
}

impl Consumer for Counting {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match self {
            Counting::Alone { left, countdown } => {
                let count = events.len() as u64;
                if *left > 0 && *left <= count {
                    countdown.finish();
                }
                *left = left.saturating_sub(count);
            }
            Counting::Sharing(countdown) => countdown.count(events.len()),
        }
        Ok(())
    }
}
