//! The classic `[A] -> [B] -> [C]` pipeline: a counter producer, a multiplier and a
//! slow printing consumer. The consumer's small demand holds the producer back: the
//! producer only ever runs as far ahead as the consumer asked.
//!
//! ```sh
//! cargo run --release -p gen-stage-examples --example pipeline
//! ```

use std::time::Duration;

use gen_stage::{
    BoxError, Consumer, ConsumerContext, ExitReason, Producer, ProducerConsumer,
    ProducerConsumerContext, ProducerContext, SubscribeOptions, SubscriptionTag,
};

/// [A]: emits 0, 1, 2, ... up to a limit, only when asked.
struct Counter {
    next: u64,
    limit: u64,
}

impl Producer for Counter {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        let end = (self.next + demand as u64).min(self.limit);
        println!("[A] asked for {demand:>2}, emitting {}..{end}", self.next);
        let events = (self.next..end).collect();
        self.next = end;
        if self.next == self.limit {
            // Stop once every event emitted so far has been dispatched.
            ctx.stop(ExitReason::Normal);
        }
        Ok(events)
    }
}

/// [B]: multiplies every event.
struct Multiplier(u64);

impl ProducerConsumer for Multiplier {
    type Input = u64;
    type Output = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(events.into_iter().map(|x| x * self.0).collect())
    }
}

/// [C]: prints what it gets, slowly.
struct SlowPrinter;

impl Consumer for SlowPrinter {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        println!("        [C] got {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let a = gen_stage::producer(Counter { next: 0, limit: 60 })
        .start()
        .await?;
    let b = gen_stage::producer_consumer(Multiplier(2))
        .subscribe_to(&a, SubscribeOptions::new().max_demand(10))
        .start()
        .await?;
    let c = gen_stage::consumer(SlowPrinter)
        .subscribe_to(&b, SubscribeOptions::new().max_demand(4).min_demand(2))
        .start()
        .await?;
    // When A finishes, B and C follow (their subscriptions are permanent).
    let reason = c.stopped().await;
    println!("pipeline finished: {reason}");
    Ok(())
}
