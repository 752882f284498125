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
use crate::message::Message;
use crate::settle::Settler;

/// Turns what a producer emits into messages.
pub(crate) type Transform<F> = Arc<F>;

pub(crate) struct Entry<P, T, F>
where
    P: Producer,
    T: Send + 'static,
    F: Fn(P::Event) -> Message<T> + Send + Sync + 'static,
{
    inner: Delegate<P, ProducerKind<Entry<P, T, F>>>,
    transform: Transform<F>,
    settler: Arc<Settler>,
    /// The acknowledgement group last bound: consecutive messages mostly share one.
    last_group: Option<Arc<AckGroup>>,
}

impl<P, T, F> Entry<P, T, F>
where
    P: Producer,
    T: Send + 'static,
    F: Fn(P::Event) -> Message<T> + Send + Sync + 'static,
{
    pub(crate) fn new(producer: P, transform: Transform<F>, settler: Arc<Settler>) -> Self {
        Entry {
            inner: Delegate::new(producer, |message| message),
            transform,
            settler,
            last_group: None,
        }
    }

    /// Makes messages of what the producer emitted, bound to this pipeline.
    fn take_in(&mut self, events: Vec<P::Event>) -> Vec<Message<T>> {
        if events.is_empty() {
            return Vec::new();
        }
        let count = events.len() as u64;
        let messages: Vec<Message<T>> = events
            .into_iter()
            .map(|event| {
                let message = (self.transform)(event);
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
                message
            })
            .collect();
        self.settler
            .counts
            .taken_in
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        messages
    }
}

impl<P, T, F> Producer for Entry<P, T, F>
where
    P: Producer,
    T: Send + 'static,
    F: Fn(P::Event) -> Message<T> + Send + Sync + 'static,
{
    type Event = Message<T>;
    type Message = P::Message;

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
        message: P::Message,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let events = self.inner.handle_message(message, ctx).await?;
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
