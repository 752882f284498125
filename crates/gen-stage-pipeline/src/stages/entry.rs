//! A pipeline's producer stage: runs the user's producer, turns what it emits into
//! messages, and takes them into the pipeline (its acknowledgements are settled and
//! counted there).

use std::sync::Arc;

use gen_stage::kind::ProducerKind;
use gen_stage::{
    BoxError, CancelReason, Delegate, ExitReason, Init, Producer, ProducerContext,
    SubscribeOptions, SubscriptionTag,
};

use crate::ack::AckGroup;
use crate::activity::Activity;
use crate::message::Message;
use crate::rate_limit::RateLimiter;
use crate::settle::Settler;

/// What an entry stage handles besides its producer's hooks.
pub(crate) enum EntryMessage<M, T> {
    /// The inner producer's own message.
    Inner(M),
    /// Messages pushed beside the producer (the test helpers).
    Push(Vec<Message<T>>),
    /// A rate-limit window started again: pass on the demand it held back.
    RateWindow,
}

/// Turns what a producer emits into messages.
pub(crate) trait Transform<E, T>: Send + Sync + 'static {
    fn messages(&self, events: Vec<E>) -> Vec<Message<T>>;
}

/// A producer's messages, as they are: the same `Vec`, untouched.
pub(crate) struct AsTheyAre;

impl<T: Send + 'static> Transform<Message<T>, T> for AsTheyAre {
    fn messages(&self, events: Vec<Message<T>>) -> Vec<Message<T>> {
        events
    }
}

/// Events turned into messages one by one, by a closure.
pub(crate) struct MapWith<F>(pub(crate) F);

impl<E, T, F> Transform<E, T> for MapWith<F>
where
    F: Fn(E) -> Message<T> + Send + Sync + 'static,
{
    fn messages(&self, events: Vec<E>) -> Vec<Message<T>> {
        events.into_iter().map(&self.0).collect()
    }
}

pub(crate) struct Entry<P, T, F>
where
    P: Producer,
    T: Send + 'static,
    F: Transform<P::Event, T>,
{
    inner: Delegate<P, ProducerKind<Entry<P, T, F>>>,
    transform: Arc<F>,
    settler: Arc<Settler>,
    /// The acknowledgement group last bound: consecutive messages mostly share one.
    last_group: Option<Arc<AckGroup>>,
    limiter: Option<RateLimiter>,
    /// Demand the rate limit held back from the producer.
    owed: u64,
    /// Whether a timer waits for the next rate-limit window.
    window_timer: bool,
    activity: Arc<Activity>,
}

impl<P, T, F> Entry<P, T, F>
where
    P: Producer,
    T: Send + 'static,
    F: Transform<P::Event, T>,
{
    pub(crate) fn new(
        producer: P,
        transform: Arc<F>,
        settler: Arc<Settler>,
        limiter: Option<RateLimiter>,
        activity: Arc<Activity>,
    ) -> Self {
        Entry {
            inner: Delegate::new(producer, EntryMessage::Inner),
            transform,
            settler,
            last_group: None,
            limiter,
            owed: 0,
            window_timer: false,
            activity,
        }
    }

    /// Of `demand` (and what the limit held back before), what the rate limit lets
    /// through to the producer now; a timer is set for the rest.
    fn admit(&mut self, demand: usize, ctx: &mut ProducerContext<'_, Self>) -> usize {
        let Some(limiter) = &self.limiter else {
            return demand;
        };
        self.owed += demand as u64;
        let (granted, next_window) = limiter.take(self.owed);
        self.owed -= granted;
        if let Some(next) = next_window {
            if !self.window_timer {
                self.window_timer = true;
                let wait = next.saturating_duration_since(tokio::time::Instant::now());
                let _timer = ctx.send_after(wait, EntryMessage::RateWindow);
            }
        }
        granted as usize
    }

    /// Binds, counts and emits messages.
    fn push(&mut self, messages: Vec<Message<T>>, ctx: &mut ProducerContext<'_, Self>) {
        let count = messages.len() as u64;
        for message in &messages {
            self.bind(message);
        }
        self.count_taken_in(count);
        ctx.emit(messages);
    }

    fn bind(&mut self, message: &Message<T>) {
        if let Some(group) = message.ack.group() {
            let known = self
                .last_group
                .as_ref()
                .is_some_and(|last| Arc::ptr_eq(last, group));
            if !known {
                group.bind(&self.settler);
                self.last_group = Some(group.clone());
            }
        }
    }

    fn count_taken_in(&self, count: u64) {
        self.activity.count(count as usize);
        self.settler
            .counts
            .taken_in
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes messages of what the producer emitted, bound to this pipeline.
    fn take_in(&mut self, events: Vec<P::Event>) -> Vec<Message<T>> {
        if events.is_empty() {
            return Vec::new();
        }
        let count = events.len() as u64;
        let messages = self.transform.messages(events);
        for message in &messages {
            self.bind(message);
        }
        self.count_taken_in(count);
        messages
    }
}

impl<P, T, F> Producer for Entry<P, T, F>
where
    P: Producer,
    T: Send + 'static,
    F: Transform<P::Event, T>,
{
    type Event = Message<T>;
    type Message = EntryMessage<P::Message, T>;

    async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        let (init, events) = self.inner.init(ctx).await?;
        let messages = self.take_in(events);
        ctx.emit(messages);
        Ok(init)
    }

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<Message<T>>, BoxError> {
        let demand = self.admit(demand, ctx);
        if demand == 0 {
            return Ok(Vec::new());
        }
        let events = self.inner.handle_demand(demand, ctx).await?;
        Ok(self.take_in(events))
    }

    async fn handle_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let events = self
            .inner
            .handle_consumer_subscribed(tag, options, ctx)
            .await?;
        let messages = self.take_in(events);
        ctx.emit(messages);
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let events = self.inner.handle_cancel(tag, reason, ctx).await?;
        let messages = self.take_in(events);
        ctx.emit(messages);
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: EntryMessage<P::Message, T>,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let events = match message {
            EntryMessage::Inner(message) => self.inner.handle_message(message, ctx).await?,
            EntryMessage::Push(messages) => {
                self.push(messages, ctx);
                return Ok(());
            }
            EntryMessage::RateWindow => {
                self.window_timer = false;
                // A draining stage asks its producer for nothing more.
                let demand = if ctx.is_draining() {
                    0
                } else {
                    self.admit(0, ctx)
                };
                if demand == 0 {
                    return Ok(());
                }
                self.inner.handle_demand(demand, ctx).await?
            }
        };
        let messages = self.take_in(events);
        ctx.emit(messages);
        Ok(())
    }

    async fn prepare_for_draining(
        &mut self,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let events = self.inner.prepare_for_draining(ctx).await?;
        let messages = self.take_in(events);
        ctx.emit(messages);
        Ok(())
    }

    fn handle_discarded(&mut self, count: usize) -> bool {
        self.inner.handle_discarded(count)
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        self.inner.terminate(reason).await;
    }
}
