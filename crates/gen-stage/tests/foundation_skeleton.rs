//! The skeleton the pipeline crate needs, built on the public API alone: a stage that
//! wraps a user's producer (here one that fetches asynchronously from a queue), holds
//! its events to a rate (a window on the stage's timer), cancels each consumer once
//! its events have gone out when it drains (`prepare_for_draining`), is held through a
//! handle typed by event, and is supervised, its restart awaited through the
//! supervisor's child events.

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use gen_stage::kind::ProducerKind;
use gen_stage::source::{FetchProducer, MemorySource};
use gen_stage::supervision::{ChildEvent, ChildSpec, Restart, Supervisor};
use gen_stage::{
    AnyProducer, BoxError, CancelMode, CancelReason, Delegate, ExitReason, Init, Producer,
    ProducerContext, Registry, SubscribeOptions, SubscriptionTag,
};
use support::within;

/// The wrapper's messages: its own, and the inner producer's.
enum Control<M> {
    Inner(M),
    /// A rate-limit window ends.
    Window,
}

/// Lets at most `per_window` events out per `window`; holds the rest.
struct RateLimited<P: Producer<Event = u64>> {
    inner: Delegate<P, ProducerKind<RateLimited<P>>>,
    per_window: usize,
    window: Duration,
    allowance: usize,
    held: VecDeque<u64>,
    draining: bool,
}

impl<P: Producer<Event = u64>> RateLimited<P> {
    fn new(inner: P, per_window: usize, window: Duration) -> Self {
        RateLimited {
            inner: Delegate::new(inner, Control::Inner),
            per_window,
            window,
            allowance: per_window,
            held: VecDeque::new(),
            draining: false,
        }
    }

    /// What the allowance lets out now; the rest waits for the next windows.
    fn admit(&mut self, events: Vec<u64>) -> Vec<u64> {
        self.held.extend(events);
        let out = self.allowance.min(self.held.len());
        self.allowance -= out;
        self.held.drain(..out).collect()
    }
}

impl<P: Producer<Event = u64>> Producer for RateLimited<P> {
    type Event = u64;
    type Message = Control<P::Message>;

    async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        let (init, events) = self.inner.init(ctx).await?;
        let _window = ctx.send_after(self.window, Control::Window);
        let out = self.admit(events);
        ctx.emit(out);
        Ok(init)
    }

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        if self.draining {
            return Ok(Vec::new());
        }
        let events = self.inner.handle_demand(demand, ctx).await?;
        Ok(self.admit(events))
    }

    async fn handle_message(
        &mut self,
        message: Control<P::Message>,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Control::Inner(message) => {
                let events = self.inner.handle_message(message, ctx).await?;
                let out = self.admit(events);
                ctx.emit(out);
            }
            Control::Window => {
                self.allowance = self.per_window;
                let out = self.admit(Vec::new());
                ctx.emit(out);
                let _next = ctx.send_after(self.window, Control::Window);
            }
        }
        Ok(())
    }

    /// The stage drains: the inner producer stops fetching (and gives back what it
    /// holds), what was held goes out at once, and each consumer leaves after it.
    async fn prepare_for_draining(
        &mut self,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.draining = true;
        let events = self.inner.prepare_for_draining(ctx).await?;
        self.held.extend(events);
        let held: Vec<u64> = self.held.drain(..).collect();
        ctx.emit(held);
        for tag in ctx.consumers() {
            ctx.cancel_consumer_after_buffered(tag, ExitReason::Shutdown)?;
        }
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let events = self.inner.handle_cancel(tag, reason, ctx).await?;
        let out = self.admit(events);
        ctx.emit(out);
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        // The inner producer gives back to its queue what it fetched and did not emit.
        self.inner.terminate(reason).await;
    }
}

const PER_WINDOW: usize = 4;
const WINDOW: Duration = Duration::from_millis(100);

fn child(registry: &Registry, queue: &MemorySource<u64>) -> ChildSpec {
    let (registry, queue) = (registry.clone(), queue.clone());
    ChildSpec::new("limited", move || {
        let fetching = FetchProducer::new(queue.clone()).prefetch(5);
        gen_stage::producer(RateLimited::new(fetching, PER_WINDOW, WINDOW))
            .name(&registry, "limited")
            .start()
    })
    .restart(Restart::Transient)
}

fn temporary(max_demand: usize) -> SubscribeOptions {
    SubscribeOptions::new()
        .max_demand(max_demand)
        .cancel(CancelMode::Temporary)
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_wrapper_of_a_fetching_producer_is_supervised_and_drains() {
    let queue = MemorySource::new();
    queue.extend(0..100_u64);
    let registry = Registry::new();
    let supervisor = Supervisor::new()
        .child(child(&registry, &queue))
        .start()
        .await
        .expect("starts");
    let mut child_events = supervisor.watch();

    // Held by event type alone: no need to name the wrapper's type.
    let limited: AnyProducer<u64> = registry.lookup_producer("limited").expect("running");
    let started = tokio::time::Instant::now();
    let mut stream = gen_stage::stream::subscribe(&limited, temporary(10)).expect("valid");
    let mut arrivals = Vec::new();
    for _ in 0..(3 * PER_WINDOW) {
        let event = within("an event", stream.next()).await.expect("running");
        arrivals.push((event, started.elapsed()));
    }
    let events: Vec<u64> = arrivals.iter().map(|(event, _)| *event).collect();
    assert_eq!(events, (0..12).collect::<Vec<_>>(), "in the queue's order");
    for (window, chunk) in arrivals.chunks(PER_WINDOW).enumerate() {
        let opened = WINDOW * window as u32;
        assert!(
            chunk
                .iter()
                .all(|(_, at)| *at >= opened && *at < opened + WINDOW),
            "window {window}: {chunk:?}"
        );
    }
    drop(stream);

    // The wrapper fails: the supervisor restarts it, and says so.
    limited.kill();
    let restarted = within("the restart", async {
        while let Some(event) = child_events.next().await {
            if let Ok(ChildEvent::Restarted { id }) = event {
                return id;
            }
        }
        panic!("the supervisor stopped");
    })
    .await;
    assert_eq!(restarted, "limited");
    let limited: AnyProducer<u64> = registry.lookup_producer("limited").expect("restarted");
    assert!(limited.is_alive());

    // A drain, through the event-typed handle: the consumer gets what was held for
    // it, then is let go; the wrapper stops, and its inner producer gives back what
    // it fetched and did not emit.
    let mut stream = gen_stage::stream::subscribe(&limited, temporary(10)).expect("valid");
    let first = within("the restarted wrapper's first event", stream.next()).await;
    assert!(first.is_some());
    let (rest, drained) = within("the drain", async {
        tokio::join!(
            stream.collect::<Vec<u64>>(),
            limited.drain_and_stop(ExitReason::Shutdown, Duration::from_secs(10)),
        )
    })
    .await;
    assert_eq!(drained, Ok(ExitReason::Shutdown));
    assert_eq!(limited.stats().events_emitted as usize, 1 + rest.len());
    assert!(queue.given_back() > 0, "the prefetched items went back");
    // A shutdown is not restarted: the transient child is done.
    supervisor.stop(ExitReason::Normal).await.expect("alive");
}
