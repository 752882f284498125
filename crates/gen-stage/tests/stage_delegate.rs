//! A stage that runs another producer's hooks through a `Delegate`: what the inner
//! producer emits comes back to the wrapper in order, its timers and casts reach it
//! through the wrapper's mailbox, its stop stops the wrapper, and its handle is the
//! wrapper's (but cannot be subscribed to).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gen_stage::error::SubscribeError;
use gen_stage::kind::ProducerKind;
use gen_stage::{
    BoxError, Delegate, ExitReason, Init, Producer, ProducerContext, ProducerRef, SubscribeOptions,
};
use gen_stage_test::CollectingConsumer;
use support::within;

/// The inner producer's messages.
enum Step {
    /// Emits `label`.
    Emit(&'static str),
    /// Emits `label`, then casts `Emit(then)` to itself through its handle.
    EmitThenCast(&'static str, &'static str),
    /// Stops the stage.
    Stop,
    /// Emits `label`, then fails.
    EmitThenFail(&'static str),
}

/// A user's producer: its first demand emits "emitted" and returns "returned" (later
/// demand gets nothing); with `tick`, `init` sets a timer that emits "tick" later.
#[derive(Default)]
struct Inner {
    tick: Option<Duration>,
    served: bool,
    /// The inner producer's own handle, kept by `init`.
    me: Arc<Mutex<Option<ProducerRef<Inner>>>>,
}

impl Producer for Inner {
    type Event = &'static str;
    type Message = Step;

    async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        if let Some(delay) = self.tick {
            let _timer = ctx.send_after(delay, Step::EmitThenCast("tick", "cast"));
        }
        *self.me.lock().map_err(|_| "poisoned")? = Some(ctx.stage_ref().clone());
        Ok(Init::Start)
    }

    async fn handle_demand(
        &mut self,
        _demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<&'static str>, BoxError> {
        if std::mem::replace(&mut self.served, true) {
            return Ok(Vec::new());
        }
        ctx.emit(vec!["emitted"]);
        Ok(vec!["returned"])
    }

    async fn handle_message(
        &mut self,
        step: Step,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match step {
            Step::Emit(label) => ctx.emit(vec![label]),
            Step::EmitThenCast(label, then) => {
                ctx.emit(vec![label]);
                ctx.stage_ref().cast(Step::Emit(then))?;
            }
            Step::Stop => ctx.stop(ExitReason::Shutdown),
            Step::EmitThenFail(label) => {
                ctx.emit(vec![label]);
                return Err("the inner producer failed".into());
            }
        }
        Ok(())
    }
}

/// The wrapper's messages: its own, and the inner producer's.
enum Outer {
    Inner(Step),
}

/// A wrapper that labels what it forwards and counts the inner producer's messages.
struct Wrapper {
    inner: Delegate<Inner, ProducerKind<Wrapper>>,
    messages: Arc<Mutex<usize>>,
}

impl Wrapper {
    fn new(inner: Inner) -> (Self, Arc<Mutex<usize>>) {
        let messages = Arc::new(Mutex::new(0));
        let wrapper = Wrapper {
            inner: Delegate::new(inner, Outer::Inner),
            messages: messages.clone(),
        };
        (wrapper, messages)
    }
}

impl Producer for Wrapper {
    type Event = &'static str;
    type Message = Outer;

    async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        let (init, events) = self.inner.init(ctx).await?;
        ctx.emit(events);
        Ok(init)
    }

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<&'static str>, BoxError> {
        self.inner.handle_demand(demand, ctx).await
    }

    async fn handle_message(
        &mut self,
        message: Outer,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let Outer::Inner(step) = message;
        *self.messages.lock().map_err(|_| "poisoned")? += 1;
        match self.inner.handle_message(step, ctx).await {
            Ok(events) => ctx.emit(events),
            // The wrapper decides: here it forwards what was emitted before the
            // failure, and keeps running.
            Err(_) => ctx.emit(self.inner.take_emitted()),
        }
        Ok(())
    }
}

/// A stream asking one event at a time, so that each demand is one `handle_demand`.
fn one_at_a_time() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(1).min_demand(0)
}

#[tokio::test]
async fn what_the_inner_producer_emits_comes_before_what_it_returns() {
    let (wrapper, _) = Wrapper::new(Inner::default());
    let stage = gen_stage::producer(wrapper).start().await.expect("starts");
    let stream = gen_stage::stream::subscribe(&stage, SubscribeOptions::new()).expect("subscribes");
    let events: Vec<_> = within("two events", stream.take(2).collect()).await;
    assert_eq!(events, ["emitted", "returned"]);
}

#[tokio::test(start_paused = true)]
async fn the_inner_producers_timer_and_casts_reach_it_through_the_wrapper() {
    let inner = Inner {
        tick: Some(Duration::from_millis(10)),
        ..Inner::default()
    };
    let (wrapper, messages) = Wrapper::new(inner);
    let stage = gen_stage::producer(wrapper).start().await.expect("starts");
    let stream = gen_stage::stream::subscribe(&stage, one_at_a_time()).expect("subscribes");
    // Demand first ("emitted", "returned"), then the timer, then the cast it made.
    let events: Vec<_> = within("four events", stream.take(4).collect()).await;
    assert_eq!(events, ["emitted", "returned", "tick", "cast"]);
    assert_eq!(
        *messages.lock().expect("not poisoned"),
        2,
        "wrapped messages"
    );
}

#[tokio::test]
async fn the_inner_producer_stops_its_wrapper() {
    let (wrapper, _) = Wrapper::new(Inner::default());
    let stage = gen_stage::producer(wrapper).start().await.expect("starts");
    stage
        .cast(Outer::Inner(Step::Stop))
        .expect("the wrapper runs");
    let reason = within("the wrapper stops", stage.stopped()).await;
    assert_eq!(reason, ExitReason::Shutdown);
}

#[tokio::test]
async fn the_inner_producers_handle_is_the_wrapper_and_cannot_be_subscribed_to() {
    let inner = Inner::default();
    let kept = inner.me.clone();
    let (wrapper, messages) = Wrapper::new(inner);
    let stage = gen_stage::producer(wrapper).start().await.expect("starts");
    let view = kept
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("init kept the handle");
    assert_eq!(view.id(), stage.id());
    assert!(view.is_alive());

    // A message sent through the view reaches the wrapper, wrapped.
    view.cast(Step::Emit("through the view"))
        .expect("the wrapper runs");
    let stream = gen_stage::stream::subscribe(&stage, one_at_a_time()).expect("subscribes");
    let events: Vec<_> = within("three events", stream.take(3).collect()).await;
    assert!(events.contains(&"through the view"), "{events:?}");
    assert_eq!(*messages.lock().expect("not poisoned"), 1);

    // Consumers subscribe to the wrapper, never through the inner producer's view.
    let (consumer, _record) = CollectingConsumer::<&'static str>::new();
    let consumer = gen_stage::consumer(consumer).start().await.expect("starts");
    let refused = within(
        "the subscription is answered",
        consumer.subscribe_to(&view, SubscribeOptions::new()),
    )
    .await;
    assert!(
        matches!(refused, Err(SubscribeError::DelegatedProducer)),
        "subscribed through the view: {refused:?}"
    );

    // Stopping through the view stops the wrapper.
    view.stop(ExitReason::Normal).await.expect("was alive");
    assert!(!stage.is_alive());
}

#[tokio::test]
async fn a_failing_inner_hook_keeps_what_it_emitted_for_the_wrapper() {
    let (wrapper, _) = Wrapper::new(Inner::default());
    let stage = gen_stage::producer(wrapper).start().await.expect("starts");
    stage
        .cast(Outer::Inner(Step::EmitThenFail("kept")))
        .expect("the wrapper runs");
    let stream = gen_stage::stream::subscribe(&stage, one_at_a_time()).expect("subscribes");
    let events: Vec<_> = within("three events", stream.take(3).collect()).await;
    assert!(events.contains(&"kept"), "{events:?}");
    assert!(stage.is_alive(), "the wrapper decided to keep running");
}
